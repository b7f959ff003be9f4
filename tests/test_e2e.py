"""End to end on PostgreSQL: a browser-equivalent request → a django-q2 task in a real
``qcluster`` process → the APIXO adapter → real HTTP to the sandbox → the sandbox's
callback to our live server → poll → download into storage → ledger capture."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from billing.models import LedgerEntry
from generations.models import Generation

from .conftest import qcluster_process

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def qcluster(live_server, tmp_path):
    """A real django-q2 cluster (workers + scheduler) in its own process, on the test database."""
    with qcluster_process(
        public_base_url=live_server.url, media_root=django_settings.MEDIA_ROOT, log_path=tmp_path / "qcluster.log"
    ) as proc:
        yield proc


def wait_for(generation, predicate, timeout=45.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        generation.refresh_from_db()
        if not seen or seen[-1] != generation.state:
            seen.append(generation.state)
        if predicate(generation):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"timed out in {generation.state}/{generation.archive_state}; states seen {seen}")


def test_prompt_to_playable_video_and_a_failure(client, member, apixo_account, sandbox, budget, media_root, qcluster):
    call_command("setup_schedules")
    client.force_login(member)
    form = {
        "provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
        "duration": 6, "resolution": "768p", "image_url": "",
    }
    page = client.get("/studio/").content.decode()
    assert "$0.336" in page

    response = client.post("/studio/", {**form, "prompt": "a tiktok dancer is dancing on a small drone, doing flips and tricks"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    ok = Generation.objects.get(prompt__startswith="a tiktok dancer")
    states = wait_for(ok, lambda g: g.archive_state == "done")
    assert ok.state == "succeeded" and states[0] in ("queued", "submitting", "submitted")

    # The video is served from our storage, not the provider's URL.
    video = client.get(f"/g/{ok.pk}/video.mp4")
    body = b"".join(video.streaming_content)
    assert video.status_code == 200 and body[4:8] == b"ftyp" and len(body) == ok.video_bytes
    assert Path(ok.video.path).is_relative_to(media_root)
    ranged = client.get(f"/g/{ok.pk}/video.mp4", HTTP_RANGE="bytes=0-99")
    assert ranged.status_code == 206 and ranged["Content-Range"] == f"bytes 0-99/{ok.video_bytes}"
    card = client.get(f"/g/{ok.pk}/card/").content.decode()
    assert "<video" in card and f"/g/{ok.pk}/video.mp4" in card and "hx-trigger" not in card

    # The provider's callback arrived and woke the poll.
    callbacks = sandbox.requests("callback")
    assert callbacks and callbacks[-1]["status"] == 200 and callbacks[-1]["ok"]
    entries = list(LedgerEntry.objects.filter(generation=ok).values_list("kind", "amount"))
    assert entries == [("hold", Decimal("0.336")), ("capture", Decimal("0.336"))]

    response = client.post("/studio/", {**form, "prompt": "一只白猫慵懒地躺在阳光下的窗台上 [fail]"}, HTTP_HX_REQUEST="true")
    bad = Generation.objects.get(prompt__startswith="一只白猫")
    wait_for(bad, lambda g: g.state == "failed")
    card = client.get(f"/g/{bad.pk}/card/").content.decode()
    assert "PromptInvalid" in card and "Prompt is invalid or rejected by provider" in card and "not charged" in card
    entries = list(LedgerEntry.objects.filter(generation=bad).values_list("kind", flat=True))
    assert entries == ["hold", "release"]

    # Exactly one submit per generation reached the provider.
    posts = [r for r in sandbox.requests("api") if r["method"] == "POST"]
    assert len(posts) == 2


def test_api_create_to_video_url(client, api_token, apixo_account, sandbox, media_root, qcluster):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_token}", "HTTP_IDEMPOTENCY_KEY": "e2e-1"}
    body = {
        "provider_account_id": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
        "prompt": "a slow dolly shot through a rainy neon street", "duration": 10, "resolution": "768p",
    }
    created = client.post("/api/v1/generations", body, content_type="application/json", **headers)
    assert created.status_code == 201, created.content
    assert created.json()["price_usd"] == "0.560000"
    generation = Generation.objects.get(pk=created.json()["id"])
    wait_for(generation, lambda g: g.archive_state == "done")
    data = client.get(f"/api/v1/generations/{generation.pk}", **headers).json()
    assert data["state"] == "succeeded" and data["charged_usd"] == "0.560000"
    assert data["video_url"].endswith(f"/api/v1/generations/{generation.pk}/video")
    video = client.get(data["video_url"], HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert video.status_code == 200 and video["Content-Type"] == "video/mp4"
    assert b"".join(video.streaming_content) == generation.video.open("rb").read()
