"""Every provider end to end through its own sandbox over real HTTP: the adapter submits,
the sweep polls, the video is archived, the ledger captures; a failing task releases; a
callback from the sandbox reaches our live server and wakes the poll."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from billing.models import LedgerEntry
from generations import services, tasks
from generations.models import Generation, State
from providers.models import ProviderAccount
from providers.registry import ADAPTERS
from providers.sandbox import hang_seconds_outlasting, sandbox_kinds, start_sandbox
from providers.sandbox.testing import wait_for

from .conftest import record_queue

#: Per provider: the sandbox's base path, a text-to-video request, its documented price,
#: an image-to-video request, and the fail code its sandbox reports for ``[fail]``.
CASES = {
    "apixo": dict(path="/api/v1", model="hailuo-2-3", mode="standard-text-to-video", duration=6, resolution="768p",
                  price="0.336", image_mode="standard-image-to-video"),
    "poyo": dict(path="", model="hailuo-2.3", mode="text-to-video", duration=10, resolution="768p",
                 price="0.35", image_mode="image-to-video"),
    "qingbo": dict(path="", model="hailuo-2.3", mode="text-to-video", duration=6, resolution="1080p",
                   price="0.459", image_mode="image-to-video"),
    "piapi": dict(path="", model="v2.3", mode="text-to-video", duration=6, resolution="768p",
                  price="0.23", image_mode="image-to-video"),
    "minimax": dict(path="", model="MiniMax-Hailuo-2.3", mode="text-to-video", duration=6, resolution="1080p",
                    price="0.49", image_mode="image-to-video"),
}


def _available(kind):
    return kind in ADAPTERS and kind in sandbox_kinds()


KINDS = [pytest.param(k, marks=pytest.mark.skipif(not _available(k), reason=f"{k} adapter or sandbox missing")) for k in CASES]


@pytest.fixture
def provider(request, db):
    kind = request.param
    key = f"sk-test-{kind}-7788"
    handle = start_sandbox(kind, generation_seconds=0.6, api_keys=[key], callback_retry_delays=[0.2, 0.4])
    account = ProviderAccount(kind=kind, label=f"{kind} e2e", base_url=handle.origin + CASES[kind]["path"])
    account.set_api_key(key)
    account.save()
    yield kind, handle, account
    handle.stop()


@pytest.fixture(autouse=True)
def _fast(settings, monkeypatch):
    settings.HAILUO_POLL_TIME_SCALE = 0
    _QUEUE[:] = [record_queue(monkeypatch)]


_QUEUE: list = []


def params(kind, account, **overrides):
    case = CASES[kind]
    values = dict(provider_account_id=account.pk, model=case["model"], mode=case["mode"], duration=case["duration"],
                  resolution=case["resolution"], prompt="a paper boat drifting down a rainy street, macro shot")
    values.update(overrides)
    return services.CreateParams(**values)


def run_to_end(generation, timeout=15.0):
    services.generation_submit(generation_id=generation.pk)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks.sweep_once()
        _QUEUE[0].run()
        generation.refresh_from_db()
        if generation.is_final and generation.archive_state != "pending":
            return generation
        time.sleep(0.15)
    raise AssertionError(f"{generation.provider_kind}: stuck in {generation.state}/{generation.archive_state}")


def entries(generation):
    return list(LedgerEntry.objects.filter(generation=generation).order_by("id").values_list("kind", "amount"))


@pytest.mark.django_db
@pytest.mark.parametrize("provider", KINDS, indirect=True)
def test_text_to_video_succeeds_and_is_charged_once(provider, member):
    kind, handle, account = provider
    generation = run_to_end(services.generation_create(user=member, params=params(kind, account)))
    assert generation.state == State.SUCCEEDED, (generation.fail_code, generation.fail_message)
    assert generation.archive_state == "done" and generation.video.open("rb").read(8)[4:8] == b"ftyp"
    price = Decimal(CASES[kind]["price"])
    assert entries(generation) == [("hold", price), ("capture", price)]
    posts = [r for r in handle.requests("api") if r["method"] == "POST"]
    assert len(posts) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("provider", KINDS, indirect=True)
def test_a_failed_task_shows_the_providers_failure_and_releases(provider, member):
    kind, _, account = provider
    generation = run_to_end(services.generation_create(user=member, params=params(kind, account, prompt="a storm [fail]")))
    assert generation.state == State.FAILED
    assert generation.fail_code or generation.fail_message
    kinds = [k for k, _ in entries(generation)]
    assert kinds == ["hold", "release"]


@pytest.mark.django_db
@pytest.mark.parametrize("provider", KINDS, indirect=True)
def test_image_to_video_with_a_checked_image(provider, member, apixo_sandbox):
    kind, _, account = provider
    image = f"{apixo_sandbox.origin}/_sandbox/image.png?w=1280&h=720"
    generation = services.generation_create(
        user=member, params=params(kind, account, mode=CASES[kind]["image_mode"], image_url=image)
    )
    run_to_end(generation)
    assert generation.state == State.SUCCEEDED, (generation.fail_code, generation.fail_message)


@pytest.mark.django_db
@pytest.mark.parametrize("provider", KINDS, indirect=True)
def test_wrong_key_fails_permanently_without_charge(provider, member):
    kind, _, account = provider
    account.set_api_key("sk-not-this-one")
    account.save()
    generation = services.generation_create(user=member, params=params(kind, account))
    assert services.generation_submit(generation_id=generation.pk) == State.FAILED
    generation.refresh_from_db()
    assert generation.fail_message.startswith(ADAPTERS[kind].label)
    assert [k for k, _ in entries(generation)] == ["hold", "release"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("provider", KINDS, indirect=True)
def test_callback_from_the_sandbox_wakes_the_poll(provider, member, live_server, settings, monkeypatch):
    """``HAILUO_CALLBACK_STATUS_READ=queue``: a callback queues a poll of its generation."""
    kind, handle, account = provider
    if not ADAPTERS[kind].capabilities.callbacks:
        pytest.skip(f"{kind} documents no callbacks")
    settings.HAILUO_PUBLIC_BASE_URL = live_server.url
    settings.HAILUO_CALLBACK_STATUS_READ = "queue"
    woken = []
    monkeypatch.setattr(services, "enqueue_poll", lambda ids: woken.extend(ids))
    generation = services.generation_create(user=member, params=params(kind, account))
    services.generation_submit(generation_id=generation.pk)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and generation.pk not in woken:
        time.sleep(0.1)
    assert generation.pk in woken, handle.requests("callback")
    # The callback is only a hint: the status endpoint decides (some providers push every change).
    while time.monotonic() < deadline and not generation.is_final:
        services.generations_poll(ids=[generation.pk])
        generation.refresh_from_db()
        time.sleep(0.1)
    assert generation.state == State.SUCCEEDED
    assert Generation.objects.get(pk=generation.pk).ledger_entries.filter(kind="capture").count() == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("provider", KINDS, indirect=True)
def test_callback_from_the_sandbox_settles_the_take_by_its_own_status_read(provider, member, live_server, settings, monkeypatch):
    """The default (``inline``): the callback's request reads the task's status with our key and
    settles the generation itself (captured once); a poll is queued only as its fallback."""
    kind, handle, account = provider
    if not ADAPTERS[kind].capabilities.callbacks:
        pytest.skip(f"{kind} documents no callbacks")
    settings.HAILUO_PUBLIC_BASE_URL = live_server.url
    assert settings.HAILUO_CALLBACK_STATUS_READ == "inline"
    woken = []
    monkeypatch.setattr(services, "enqueue_poll", lambda ids: woken.extend(ids))
    generation = services.generation_create(user=member, params=params(kind, account))
    services.generation_submit(generation_id=generation.pk)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not generation.is_final:
        if generation.pk in woken:  # the fallback (a slow read, a held row): the queued poll runs
            services.generations_poll(ids=[generation.pk])
        generation.refresh_from_db()
        time.sleep(0.1)
    assert generation.state == State.SUCCEEDED, handle.requests("callback")
    assert handle.requests("callback") and all(c["status"] == 200 for c in handle.requests("callback") if c.get("status"))
    assert Generation.objects.get(pk=generation.pk).ledger_entries.filter(kind="capture").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("provider", [k for k in KINDS if k.values[0] == "qingbo"], indirect=True)
def test_cancel_while_queued_at_qingbo_releases_the_hold(provider, member):
    kind, handle, account = provider
    handle.configure(queue_seconds=30)
    generation = services.generation_create(user=member, params=params(kind, account))
    services.generation_submit(generation_id=generation.pk)
    assert services.generation_cancel(generation_id=generation.pk, user=member) == State.CANCELED
    assert [k for k, _ in entries(generation)] == ["hold", "release"]


@pytest.mark.django_db
@pytest.mark.parametrize("provider", [k for k in KINDS if k.values[0] == "apixo"], indirect=True)
def test_cancel_is_refused_where_the_provider_has_none(provider, member):
    kind, _, account = provider
    generation = services.generation_create(user=member, params=params(kind, account))
    services.generation_submit(generation_id=generation.pk)
    with pytest.raises(services.GenerationRefused, match="documents no way to cancel"):
        services.generation_cancel(generation_id=generation.pk, user=member)
    queued = services.generation_create(user=member, params=params(kind, account))
    assert services.generation_cancel(generation_id=queued.pk, user=member) == State.CANCELED


def _submits(handle):
    return [r for r in handle.requests("api") if r["method"] == "POST"]


@pytest.mark.django_db
@pytest.mark.parametrize("provider", KINDS, indirect=True)
def test_hang_marker_needs_reconciliation_with_the_demos_timeouts(provider, member, settings):
    """README, "Making the sandbox fail": ``[hang]`` never answers in time, so the generation
    becomes needs_reconciliation and is never resent.  The demo (scripts/run.sh) derives the
    sandboxes' ``hang_seconds`` from HAILUO_PROVIDER_READ_TIMEOUT; here scaled down to 1 s."""
    kind, handle, account = provider
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 1.0
    hang = hang_seconds_outlasting(settings.HAILUO_PROVIDER_READ_TIMEOUT)
    handle.configure(hang_seconds=hang)
    generation = services.generation_create(user=member, params=params(kind, account, prompt="a slow tide [hang]"))
    started = time.monotonic()
    assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    assert time.monotonic() - started < hang
    # The sandbox let go as soon as the client gave up, not after ``hang_seconds``.
    assert wait_for(lambda: "hang" in _submits(handle)[0])
    held = _submits(handle)[0]["hang"]
    assert held["ended"] == "client hung up" and held["seconds"] < hang / 2, held
    for _ in range(3):  # sweeps, a redelivered submit job and the stuck-submit check send nothing more
        Generation.objects.filter(pk=generation.pk).update(next_submit_at=None, next_poll_at=None)
        tasks.sweep_once()
        _QUEUE[0].run()
        services.generation_submit(generation_id=generation.pk)
        services.generations_stuck_submitting(older_than=0)
    generation.refresh_from_db()
    assert generation.state == State.NEEDS_RECONCILIATION and generation.poll_count == 0
    assert "no answer within 1 s" in generation.reconciliation_note
    assert len(_submits(handle)) == 1 and len(handle.tasks()) == 1
