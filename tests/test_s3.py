"""S3 storage for real: uploads, archived videos, posters, byte-range playback and access checks
against a local S3-compatible server (moto's server mode, a separate process on a free
loopback port, started once per test session and stopped at its end: ``s3_endpoint`` in
``tests/conftest.py``, shared with tests/test_production.py).

These tests configure ``STORAGES["default"]`` with ``config.settings.s3_storage`` (what
``HAILUO_S3_BUCKET`` builds), each on a fresh bucket; the rest of the suite keeps the
filesystem storage. Without moto/boto3/django-storages they skip, unless
``HAILUO_REQUIRE_S3=1`` (set by ``make test``), which makes a missing server a failure.
"""

from __future__ import annotations

import io
import time

import httpx
import pytest
from django.core.files.storage import default_storage, storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from PIL import Image

from config.settings import s3_storage
from generations import services, tasks
from generations.models import Generation, InputImage, State

from .conftest import CREDENTIALS, REGION, Bucket, make_params, record_queue


@pytest.fixture
def s3(s3_endpoint, settings, tmp_path):
    """Default storage on a fresh bucket of the local S3 server (MEDIA_ROOT points at an empty directory
    that must stay empty)."""
    bucket = Bucket(s3_endpoint)
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": s3_storage(bucket=bucket.name, endpoint_url=s3_endpoint, region=REGION, prefix=bucket.prefix, **CREDENTIALS),
    }
    assert type(storages["default"]).__name__ == "S3Storage"
    yield bucket
    assert not settings.MEDIA_ROOT.exists() or not any(settings.MEDIA_ROOT.rglob("*")), "a file went to the filesystem"


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.django_db
def test_an_uploaded_first_frame_is_stored_in_the_bucket_and_served(client, member, apixo_account, settings, s3, monkeypatch):
    settings.HAILUO_PUBLIC_BASE_URL = "http://studio.test"
    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    client.force_login(member)
    data = png(800, 450)
    form = {
        "provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-image-to-video",
        "duration": 6, "resolution": "768p", "prompt": "animate this frame", "image_url": "",
        "image_file": SimpleUploadedFile("frame.png", data, content_type="image/png"),
    }
    response = client.post("/studio/", form, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.content.decode()[:2000]
    image = InputImage.objects.get()
    assert type(InputImage._meta.get_field("file").storage._wrapped).__name__ == "S3Storage"
    assert s3.keys() == [f"{s3.prefix}/{image.file.name}"]
    assert s3.read(image.file.name) == data
    served = client.get(f"/u/{image.pk}.png")
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert b"".join(served.streaming_content) == data
    assert Generation.objects.get().image_url == f"http://studio.test/u/{image.pk}.png"


@pytest.mark.django_db
def test_a_generation_is_archived_to_the_bucket_and_played_with_ranges_behind_access_checks(
    client, member, teammate, outsider, apixo_account, sandbox, s3, monkeypatch
):
    queue = record_queue(monkeypatch)
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    services.generation_submit(generation_id=generation.pk)
    deadline = time.monotonic() + 20
    with override_settings(HAILUO_POLL_TIME_SCALE=0):
        while True:
            tasks.sweep_once()
            queue.run()
            generation.refresh_from_db()
            if generation.is_final and generation.archive_state != "pending":
                break
            assert time.monotonic() < deadline, f"stuck in {generation.state}/{generation.archive_state}"
            time.sleep(0.1)
    assert generation.state == State.SUCCEEDED and generation.has_video, generation.archive_error

    # Archive and poster: objects in the bucket, under the configured prefix.
    assert s3.keys() == sorted([f"{s3.prefix}/{generation.video.name}", f"{s3.prefix}/{generation.poster.name}"])
    video = s3.read(generation.video.name)
    assert video[4:8] == b"ftyp" and len(video) == generation.video_bytes
    poster = s3.read(generation.poster.name)
    assert poster[:2] == b"\xff\xd8"

    # Playback through the app: whole, byte ranges, suffix ranges, out of range.
    client.force_login(member)
    url = f"/g/{generation.pk}/video.mp4"
    whole = client.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    assert whole["Content-Length"] == str(len(video)) and b"".join(whole.streaming_content) == video
    first = client.get(url, HTTP_RANGE="bytes=0-99")
    assert first.status_code == 206 and first["Content-Range"] == f"bytes 0-99/{len(video)}"
    assert b"".join(first.streaming_content) == video[:100]
    middle = client.get(url, HTTP_RANGE=f"bytes=1000-{len(video) + 50}")
    assert middle.status_code == 206 and middle["Content-Range"] == f"bytes 1000-{len(video) - 1}/{len(video)}"
    assert b"".join(middle.streaming_content) == video[1000:]
    last = client.get(url, HTTP_RANGE="bytes=-64")
    assert last.status_code == 206 and b"".join(last.streaming_content) == video[-64:]
    beyond = client.get(url, HTTP_RANGE=f"bytes={len(video)}-")
    assert beyond.status_code == 416 and beyond["Content-Range"] == f"bytes */{len(video)}"
    shown = client.get(f"/g/{generation.pk}/poster.jpg")
    assert shown.status_code == 200 and shown["Content-Type"] == "image/jpeg"
    assert b"".join(shown.streaming_content) == poster

    # A teammate sees the team's video; a member of another team gets 404 for video and poster.
    client.force_login(teammate)
    assert client.get(url, HTTP_RANGE="bytes=0-15").status_code == 206
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    assert client.get(url, HTTP_RANGE="bytes=0-99").status_code == 404
    assert client.get(f"/g/{generation.pk}/poster.jpg").status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


@pytest.mark.django_db
def test_the_bucket_objects_are_private(s3_endpoint, s3):
    """Objects are written with a private ACL (no public grant); a URL of the storage is signed."""
    from django.core.files.base import ContentFile

    name = default_storage.save("probe/private.txt", ContentFile(b"members only"))
    assert s3.read(name) == b"members only"
    acl = s3.client.get_object_acl(Bucket=s3.name, Key=f"{s3.prefix}/{name}")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    assert all(g["Grantee"].get("URI") is None for g in acl["Grants"])  # no AllUsers/AuthenticatedUsers grant
    signed = default_storage.url(name)
    assert "Signature=" in signed or "X-Amz-Signature=" in signed
    assert httpx.get(signed, trust_env=False).content == b"members only"
