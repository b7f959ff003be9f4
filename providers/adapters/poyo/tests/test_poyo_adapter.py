"""PoYo adapter: contract tests from the documented payloads (seeds/000, providers.md "PoYo"),
every validation rule, error classification, callbacks, and real HTTP against the PoYo
sandbox."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from providers.adapters.conftest import AdapterKit, answer, closed_port, provider_error, refusal, run
from providers.adapters.poyo import PoyoAdapter
from providers.base import TaskState
from providers.http import ProviderError, ProviderHttp, Sent

DANCER = "a tiktok dancer is dancing on a small drone, doing flips and tricks"

kit = AdapterKit(PoyoAdapter, model="hailuo-2.3", mode="text-to-video", prompt=DANCER, duration=6, resolution="768p")
req, adapter = kit.req, kit.adapter
POYO_KEY = kit.key



# --- request body, exactly as documented (seeds/000, the curl example) ---------------------------
def test_submit_body_matches_the_documented_example():
    body = adapter().build_submit_body(
        req(options={"prompt_optimizer": True}), callback_url="https://your-domain.com/callback"
    )
    assert body == {
        "model": "hailuo-2.3",
        "callback_url": "https://your-domain.com/callback",
        "input": {
            "prompt": DANCER,
            "duration": 6,
            "resolution": "768p",
            "prompt_optimizer": True,
        },
    }


def test_image_to_video_sends_start_image_url_and_no_callback_when_none():
    body = adapter().build_submit_body(
        req(mode="image-to-video", duration=6, resolution="1080p", image_url="https://example.com/first.png")
    )
    assert body == {
        "model": "hailuo-2.3",
        "input": {
            "prompt": DANCER,
            "duration": 6,
            "resolution": "1080p",
            "start_image_url": "https://example.com/first.png",
        },
    }


def test_submit_answer_gives_the_documented_task_id():
    """seeds/000 "Response": {code: 200, data: {task_id, status: not_started, created_time}}."""
    documented = {
        "code": 200,
        "data": {"task_id": "task-unified-1757165031-uyujaw3d", "status": "not_started", "created_time": "2025-11-12T10:30:00"},
    }

    async def go():
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=documented))
        async with httpx.AsyncClient(transport=transport) as client:
            return await adapter().submit(ProviderHttp(client), req(), callback_url="https://your-domain.com/callback")

    result = asyncio.run(go())
    assert result.task_id == "task-unified-1757165031-uyujaw3d"
    update = adapter().parse_status(documented)
    assert update.state is TaskState.QUEUED
    assert update.created_at == datetime(2025, 11, 12, 10, 30, tzinfo=UTC)


def test_requests_go_to_the_documented_paths_with_bearer_key():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization")))
        if request.method == "POST":
            return httpx.Response(200, json={"code": 200, "data": {"task_id": "t-1", "status": "not_started"}})
        return httpx.Response(200, json={"code": 200, "data": {"task_id": "t-1", "status": "running", "progress": 40}})

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            http = ProviderHttp(client)
            await adapter().submit(http, req())
            return await adapter().fetch_status(http, task_id="t-1", model="hailuo-2.3")

    update = asyncio.run(go())
    assert seen == [
        ("POST", "/api/generate/submit", f"Bearer {POYO_KEY}"),
        ("GET", "/api/generate/status/t-1", f"Bearer {POYO_KEY}"),
    ]
    assert update.state is TaskState.RUNNING and update.progress == 40


# --- status parsing: every documented state (providers.md, PoYo "Status") ------------------------
FINISHED = {
    "code": 200,
    "data": {
        "task_id": "task-unified-1757165031-uyujaw3d",
        "status": "finished",
        "progress": 100,
        "files": [
            {"file_url": "https://storage.poyo.ai/cover.jpg", "file_type": "image"},
            {"file_url": "https://storage.poyo.ai/video.mp4", "file_type": "video"},
        ],
        "created_time": "2025-11-12T10:30:00",
        "finished_time": "2025-11-12T10:32:05",
        "credits_amount": 35,
        "error_message": None,
    },
}
FAILED = {
    "code": 200,
    "data": {
        "task_id": "task-unified-1757165031-uyujaw3d",
        "status": "failed",
        "progress": 0,
        "files": [],
        "created_time": "2025-11-12T10:30:00",
        "error_message": "Content policy violation",
    },
}


def test_finished_takes_the_video_file_and_reports_credits():
    update = adapter().parse_status(FINISHED)
    assert update.state is TaskState.SUCCEEDED
    assert update.result_urls == ("https://storage.poyo.ai/video.mp4",)
    assert update.progress == 100
    assert update.completed_at == datetime(2025, 11, 12, 10, 32, 5, tzinfo=UTC)
    assert update.provider_cost == {"credits": 35, "usd": "0.175"}


def test_failed_keeps_the_error_message():
    update = adapter().parse_status(FAILED)
    assert update.state is TaskState.FAILED
    assert update.fail_message == "Content policy violation"
    assert update.provider_cost is None  # failed tasks consume no credits


@pytest.mark.parametrize(
    "status,expected",
    [
        ("not_started", TaskState.QUEUED),
        ("running", TaskState.RUNNING),
        ("RUNNING", TaskState.RUNNING),
        ("paused", TaskState.UNKNOWN),
        ("", TaskState.UNKNOWN),
    ],
)
def test_every_documented_state_and_unknown_ones(status, expected):
    assert adapter().parse_status({"code": 200, "data": {"task_id": "t", "status": status}}).state is expected


def test_finished_without_a_video_is_not_a_success():
    body = {"code": 200, "data": {"task_id": "t", "status": "finished", "files": [{"file_url": "https://x/a.jpg", "file_type": "image"}]}}
    assert adapter().parse_status(body).state is TaskState.UNKNOWN


def test_created_time_with_a_zone_is_kept():
    update = adapter().parse_status({"data": {"task_id": "t", "status": "running", "created_time": "2025-11-12T10:30:00+02:00"}})
    assert update.created_at == datetime(2025, 11, 12, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("credits,usd", [(70, "0.350"), (60, "0.300"), ("35", "0.175")])
def test_credits_convert_at_half_a_cent(credits, usd):
    update = adapter().parse_status({"data": {"task_id": "t", "status": "running", "credits_amount": credits}})
    assert Decimal(update.provider_cost["usd"]) == Decimal(usd)


# --- errors: non-2xx or body code != 200; body {code, error: {message, type}} --------------------
@pytest.mark.parametrize(
    "http_status,body,permanent,code",
    [
        (400, {"code": 400, "error": {"message": "Invalid duration", "type": "invalid_request_error"}}, True, "invalid_request_error"),
        (401, {"code": 401, "error": {"message": "Invalid API key", "type": "authentication_error"}}, True, "authentication_error"),
        (403, {"code": 403, "error": {"message": "Task belongs to another user", "type": "permission_error"}}, True, "permission_error"),
        (404, {"code": 404, "error": {"message": "Task not found", "type": "not_found_error"}}, True, "not_found_error"),
        (429, {"code": 429, "error": {"message": "Too many requests", "type": "rate_limit_error"}}, False, "rate_limit_error"),
        (500, {"code": 500, "error": {"message": "Internal error", "type": "server_error"}}, False, "server_error"),
        (502, {"code": 502, "error": {"message": "Bad gateway", "type": "server_error"}}, False, "server_error"),
        (200, {"code": 401, "error": {"message": "Invalid API key", "type": "authentication_error"}}, True, "authentication_error"),
        (200, {"code": 429, "error": {"message": "Slow down", "type": "rate_limit_error"}}, False, "rate_limit_error"),
        (503, {"code": 503}, False, "503"),
    ],
)
def test_error_answers_are_classified(http_status, body, permanent, code):
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(http_status, body))
    e = err.value
    assert e.permanent is permanent and e.code == code and e.sent == Sent.YES
    assert e.message.startswith("PoYo: ")
    if "error" in body:
        assert body["error"]["message"] in e.message


def test_429_carries_retry_after():
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(429, {"code": 429, "error": {"message": "slow", "type": "rate_limit_error"}}, {"Retry-After": "7"}))
    assert err.value.retry_after == 7.0 and not err.value.permanent


def test_non_json_error_is_classified_by_status():
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(httpx.Response(502, text="<html>bad gateway</html>"))
    assert err.value.http_status == 502 and not err.value.permanent


def test_ok_answer_passes():
    assert adapter().read_answer(answer(200, FINISHED)) == FINISHED


# --- validation: every documented rule, with the provider and the rule named ---------------------
@pytest.mark.parametrize(
    "overrides,field,fragment",
    [
        (dict(model="hailuo-02"), "model", "unknown model"),
        (dict(mode="pro-text-to-video"), "mode", "has no mode"),
        (dict(prompt="  "), "prompt", "a prompt is required"),
        (dict(prompt="x" * 5001), "prompt", "limited to 5000 characters"),
        (dict(duration=5), "duration", "takes 6 or 10 seconds"),
        (dict(resolution="720p"), "resolution", "768p, 1080p only"),
        (dict(duration=10, resolution="1080p"), "duration", "1080p supports only 6 seconds"),
        (dict(mode="image-to-video"), "image_url", "needs exactly one first-frame image"),
        (dict(image_url="https://example.com/a.png"), "image_url", "takes no image"),
        (dict(mode="image-to-video", image_url="ftp://example.com/a.png"), "image_url", "http(s) URL"),
        (dict(options={"prompt_optimizer": "yes"}), "prompt_optimizer", "Prompt optimizer must be true or false"),
        (dict(options={"end_image_url": "https://example.com/b.png"}), "end_image_url", "has no option"),
    ],
)
def test_validation_rules(overrides, field, fragment):
    refused = refusal(adapter(), req(**overrides))
    assert field in {v.field for v in refused.violations}
    messages = [v.message for v in refused.violations]
    assert all(m.startswith("PoYo: ") for m in messages)
    assert any(fragment in m for m in messages), messages


def test_the_1080p_rule_names_itself_exactly():
    refused = refusal(adapter(), req(duration=10, resolution="1080p"))
    assert [v.message for v in refused.violations] == ["PoYo: 1080p supports only 6 seconds"]


@pytest.mark.parametrize(
    "mode,duration,resolution,image",
    [
        ("text-to-video", 6, "768p", ""),
        ("text-to-video", 10, "768p", ""),
        ("text-to-video", 6, "1080p", ""),
        ("image-to-video", 6, "768p", "https://e.com/a.jpg"),
        ("image-to-video", 10, "768p", "https://e.com/a.jpg"),
        ("image-to-video", 6, "1080p", "https://e.com/a.jpg"),
    ],
)
def test_every_documented_combination_is_accepted(mode, duration, resolution, image):
    adapter().validate(req(mode=mode, duration=duration, resolution=resolution, image_url=image, options={"prompt_optimizer": False}))


def test_capabilities_declare_no_image_rules():
    model = PoyoAdapter.capabilities.model("hailuo-2.3")
    assert model.image_rules is None and model.prompt_max_chars == 5000
    assert PoyoAdapter.capabilities.callbacks and not PoyoAdapter.capabilities.cancel


# --- callbacks: status shape, the 300 s timestamp window, no signature check -----------------------
def test_parse_callback_takes_the_status_shape():
    hint = adapter().parse_callback({}, json.dumps(FINISHED).encode())
    assert (hint.task_id, hint.provider_state) == ("task-unified-1757165031-uyujaw3d", "finished")
    with pytest.raises(ValueError):
        adapter().parse_callback({}, b"not json")
    with pytest.raises(ValueError):
        adapter().parse_callback({}, b'{"code": 200, "data": {}}')


@pytest.mark.parametrize(
    "offset,ok",
    [(0, True), (-299, True), (299, True), (-301, False), (301, False), (-3600, False)],
)
def test_callback_timestamp_window(offset, ok):
    now = 1_762_943_400.0
    headers = {"X-Webhook-Timestamp": str(int(now + offset)), "x-webhook-signature": "whatever"}
    if ok:
        adapter().verify_callback(headers, b"{}", secret="", now=now)
    else:
        with pytest.raises(ValueError, match="300 s"):
            adapter().verify_callback(headers, b"{}", secret="", now=now)


def test_callback_timestamp_in_milliseconds_and_absent_or_garbage():
    now = time.time()
    adapter().verify_callback({"x-webhook-timestamp": str(int(now * 1000))}, b"{}", secret="")
    adapter().verify_callback({}, b"{}", secret="")
    with pytest.raises(ValueError):
        adapter().verify_callback({"x-webhook-timestamp": "yesterday"}, b"{}", secret="")


def test_cadence_and_billing_facts():
    cadence = adapter().poll_cadence(req())
    assert (cadence.first_delay, cadence.interval) == (20.0, 10.0)
    facts = adapter().billing_facts(req(mode="image-to-video", duration=10, image_url="https://e.com/a.jpg"))
    assert (facts.provider_kind, facts.model, facts.mode, facts.seconds, facts.resolution) == (
        "poyo", "hailuo-2.3", "image-to-video", 10, "768p",
    )


@pytest.mark.parametrize(
    "body,expected",
    [
        ({"code": 200, "data": {"credits": 1200}}, Decimal("1200")),
        ({"code": 200, "data": {"balance": "12.5"}}, Decimal("12.5")),
        ({"code": 200, "data": {"email": "a@b.c"}}, None),
    ],
)
def test_balance_reads_credits_or_balance(body, expected):
    async def go():
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
        async with httpx.AsyncClient(transport=transport) as client:
            return await adapter().fetch_balance(ProviderHttp(client))

    assert asyncio.run(go()) == expected


# --- real HTTP against the sandbox ----------------------------------------------------------------


def test_submit_and_poll_to_success_over_http(sandbox):
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(options={"prompt_optimizer": True})))
    assert result.task_id
    sent = [r for r in sandbox.requests("api") if r["method"] == "POST"]
    assert sent[-1]["body"] == a.build_submit_body(req(options={"prompt_optimizer": True}))
    first = run(kit.status(a, result.task_id))
    assert first.state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED)
    sandbox.configure(generation_seconds=0)
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.SUCCEEDED, update
    assert update.result_urls and update.result_urls[0].startswith(("http://", "https://"))
    assert update.task_id == result.task_id


def test_image_to_video_over_http(sandbox, image_url):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(mode="image-to-video", image_url=image_url)))
    sent = [r for r in sandbox.requests("api") if r["method"] == "POST"]
    assert sent[-1]["body"]["input"]["start_image_url"] == image_url
    assert kit.poll_until_final(a, result.task_id).state is TaskState.SUCCEEDED


def test_unreachable_first_frame_fails_the_task(sandbox):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(mode="image-to-video", image_url="http://127.0.0.1:9/none.png")))
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.FAILED and update.fail_message


def test_failure_over_http(sandbox):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(prompt="a dancer [fail]")))
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.FAILED
    assert update.fail_message


def test_wrong_key_is_permanent_401(sandbox):
    a = PoyoAdapter(api_key="sk-wrong", base_url=sandbox.base_url)
    err = provider_error(kit.submit(a, req()))
    assert err.http_status == 401 and err.permanent and err.sent == Sent.YES


def test_429_is_transient(sandbox):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt="busy [http:429]")))
    assert err.http_status == 429 and not err.permanent


def test_rate_limit_knob_is_transient(sandbox):
    sandbox.configure(rate_limit_every=1)
    err = provider_error(kit.submit(adapter(sandbox.base_url), req()))
    assert err.http_status == 429 and not err.permanent


def test_500_is_transient(sandbox):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt="x [http:500]")))
    assert err.http_status == 500 and not err.permanent


def test_unknown_task_is_permanent(sandbox):
    err = provider_error(kit.status(adapter(sandbox.base_url), "task-does-not-exist"))
    assert err.permanent


def test_connection_refused_means_not_sent():
    port = closed_port()
    err = provider_error(kit.submit(adapter(f"http://127.0.0.1:{port}"), req()))
    assert err.sent == Sent.NO
