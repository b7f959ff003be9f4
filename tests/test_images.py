"""Input images: identified, checked against each provider's rules before anything is sent or held."""

from __future__ import annotations

import io
import struct
import zlib

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


# --- the pixel cap and decompression bombs ---------------------------------------------------
def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` pixels in its IHDR (with a tiny IDAT): what a
    decompression bomb looks like to a reader of headers."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


CAP_RULE = "images may have at most 40 megapixels"
OVER_THE_CAP = [
    (100_000, 100_000, f"the image declares 10,000 megapixels: {CAP_RULE}"),  # Pillow: DecompressionBombError
    (12_000, 12_000, f"the image declares 144 megapixels: {CAP_RULE}"),  # Pillow: DecompressionBombWarning
    (8_000, 6_000, f"the image is 8000×6000 (48 megapixels): {CAP_RULE}"),  # under Pillow's limits, over ours
]


@pytest.mark.parametrize("width,height,message", OVER_THE_CAP)
def test_identify_refuses_images_over_the_pixel_cap_and_bombs(width, height, message):
    with pytest.raises(ImageUnavailable) as refused:
        identify(png_header(width, height))
    assert str(refused.value) == message


def test_the_pixel_cap_is_a_setting(settings):
    assert settings.HAILUO_IMAGE_MAX_PIXELS == 40_000_000
    assert (identify(png_header(6_000, 6_000)).width, identify(png_header(8_000, 5_000)).height) == (6_000, 5_000)
    settings.HAILUO_IMAGE_MAX_PIXELS = 1_000_000
    with pytest.raises(ImageUnavailable, match=r"^the image is 1200×900 \(1.1 megapixels\): images may have at most 1 megapixels$"):
        identify(png(1200, 900))
    exclusive = ImageRules(formats=("jpeg", "png"), max_bytes=10 * 1024 * 1024, min_short_side_exclusive=300)
    assert describe_image_rules(exclusive, max_pixels=40_000_000) == "JPEG/PNG, ≤ 10 MB, ≤ 40 megapixels, short side > 300 px"


@pytest.mark.django_db
@pytest.mark.parametrize("width,height,message", OVER_THE_CAP)
def test_the_form_refuses_an_oversized_upload_with_422_naming_the_rule(
    client, member, apixo_account, settings, tmp_path, width, height, message
):
    settings.HAILUO_PUBLIC_BASE_URL = "http://studio.test"
    settings.MEDIA_ROOT = tmp_path
    client.force_login(member)
    upload = SimpleUploadedFile("bomb.png", png_header(width, height), content_type="image/png")
    data = {
        "provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-image-to-video",
        "duration": 6, "resolution": "768p", "prompt": "animate", "image_url": "", "image_file": upload,
    }
    response = client.post("/studio/", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert message in response.content.decode()
    assert Generation.objects.count() == 0 and InputImage.objects.count() == 0


@pytest.mark.django_db
def test_the_form_states_the_pixel_cap_in_the_image_rules(client, member, apixo_account):
    client.force_login(member)
    html = client.get("/studio/", {"provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-image-to-video"}).content.decode()
    assert "≤ 40 megapixels" in html


@pytest.mark.django_db
@pytest.mark.parametrize("width,height,message", OVER_THE_CAP)
def test_the_api_refuses_an_oversized_image_url_with_422_naming_the_rule(
    client, api_token, apixo_account, servers, monkeypatch, width, height, message
):
    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    server = servers({"/bomb.png": (200, {"Content-Type": "image/png"}, png_header(width, height))})
    body = {
        "provider_account_id": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-image-to-video",
        "prompt": "animate", "duration": 6, "resolution": "768p", "image_url": f"http://127.0.0.1:{server.port}/bomb.png",
    }
    response = client.post("/api/v1/generations", body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert response.status_code == 422, response.content
    answer = response.json()
    assert answer["code"] == "validation_error"
    assert answer["fields"]["image_url"] == [f"APIXO: {message}"]
    assert Generation.objects.count() == 0
