"""Input images: identified, checked against each provider's rules before anything is sent or held."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from generations import services
from generations.models import Generation, InputImage
from providers.adapters.apixo.adapter import APIXO_IMAGE_RULES
from providers.base import ImageRules
from providers.images import (
    ImageInfo,
    ImageUnavailable,
    check_image,
    describe_image_rules,
    fetch_image,
    identify,
)

from .conftest import make_params


def png(width, height, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 200)).save(buffer, fmt)
    return buffer.getvalue()


def test_identify_reads_format_and_size():
    info = identify(png(640, 360))
    assert (info.format, info.width, info.height) == ("png", 640, 360)
    assert identify(png(400, 400, "JPEG")).format == "jpeg"
    with pytest.raises(ImageUnavailable):
        identify(b"not an image at all")


@pytest.mark.parametrize(
    "info,fragment",
    [
        (ImageInfo("webp", 800, 600, 1000), "must be JPG or PNG (this one is WebP)"),
        (ImageInfo("png", 800, 600, 21 * 1024 * 1024), "at most 20 MB"),
        (ImageInfo("png", 800, 300, 1000), "short side must be over 300 px"),
        (ImageInfo("png", 1000, 400, 1000), "aspect ratio must be strictly between 2:5 and 5:2"),
        (ImageInfo("png", 400, 1000, 1000), "aspect ratio must be strictly between 2:5 and 5:2"),
    ],
)
def test_apixo_image_rules(info, fragment):
    violations = check_image(info, APIXO_IMAGE_RULES, provider="APIXO")
    assert any(fragment in v.message and v.message.startswith("APIXO: ") for v in violations), violations


def test_a_good_image_passes():
    assert check_image(ImageInfo("jpeg", 1280, 720, 200_000), APIXO_IMAGE_RULES, provider="APIXO") == []


def test_fetch_refuses_non_http_and_private_addresses():
    with pytest.raises(ImageUnavailable, match="only http and https"):
        fetch_image("file:///etc/passwd")
    with pytest.raises(ImageUnavailable, match="non-public address"):
        fetch_image("http://127.0.0.1:9/x.png")


@pytest.mark.django_db
def test_image_url_is_fetched_and_checked_before_any_hold(member, apixo_account, sandbox):
    small = f"{sandbox.origin}/_sandbox/image.png?w=280&h=280"
    with pytest.raises(services.GenerationRefused) as refused:
        services.generation_create(
            user=member, params=make_params(apixo_account, mode="standard-image-to-video", image_url=small)
        )
    assert refused.value.fields["image_url"] == ["APIXO: the image's short side must be over 300 px (this one is 280×280)"]
    missing = f"{sandbox.origin}/nothing-here.png"
    with pytest.raises(services.GenerationRefused, match="answered HTTP 404"):
        services.generation_create(user=member, params=make_params(apixo_account, mode="standard-image-to-video", image_url=missing))
    assert Generation.objects.count() == 0
    good = f"{sandbox.origin}/_sandbox/image.png?w=640&h=360"
    generation = services.generation_create(user=member, params=make_params(apixo_account, mode="standard-image-to-video", image_url=good))
    assert generation.image_url == good


@pytest.mark.django_db
def test_uploaded_image_is_stored_served_publicly_and_used_as_url(client, member, apixo_account, settings, monkeypatch, tmp_path):
    settings.HAILUO_PUBLIC_BASE_URL = "http://studio.test"
    settings.MEDIA_ROOT = tmp_path
    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    client.force_login(member)
    upload = SimpleUploadedFile("frame.png", png(800, 450), content_type="image/png")
    data = {
        "provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-image-to-video",
        "duration": 6, "resolution": "768p", "prompt": "animate this frame", "image_url": "", "image_file": upload,
    }
    response = client.post("/studio/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content.decode()[:2000]
    image = InputImage.objects.get()
    assert (image.format, image.width, image.height) == ("png", 800, 450)
    generation = Generation.objects.get()
    assert generation.image_url == f"http://studio.test/u/{image.pk}.png"
    served = client.get(f"/u/{image.pk}.png")
    client.logout()
    assert served.status_code == 200 and served["Content-Type"] == "image/png"


@pytest.mark.django_db
def test_a_too_small_upload_is_refused_beside_the_field(client, member, apixo_account, settings, tmp_path):
    settings.HAILUO_PUBLIC_BASE_URL = "http://studio.test"
    settings.MEDIA_ROOT = tmp_path
    client.force_login(member)
    upload = SimpleUploadedFile("tiny.png", png(200, 200), content_type="image/png")
    data = {
        "provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-image-to-video",
        "duration": 6, "resolution": "768p", "prompt": "animate", "image_url": "", "image_file": upload,
    }
    html = client.post("/studio/", data, HTTP_HX_REQUEST="true").content.decode()
    assert "APIXO: the image&#x27;s short side must be over 300 px (this one is 200×200)" in html
    assert Generation.objects.count() == 0


def test_image_rules_in_words_as_the_form_and_the_matrix_show_them():
    exclusive = ImageRules(formats=("jpeg", "png"), max_bytes=10 * 1024 * 1024, min_short_side_exclusive=300,
                           aspect_min=0.4, aspect_max=2.5, aspect_exclusive=True)
    assert describe_image_rules(exclusive) == "JPEG/PNG, ≤ 10 MB, short side > 300 px, aspect ratio strictly between 2:5 and 5:2"
    inclusive = ImageRules(formats=("png",), min_side=300, max_side=4096, aspect_min=0.4, aspect_max=2.5, aspect_exclusive=False)
    assert describe_image_rules(inclusive) == "PNG, ≤ 20 MB, sides ≥ 300 px, sides ≤ 4096 px, aspect ratio between 2:5 and 5:2"
