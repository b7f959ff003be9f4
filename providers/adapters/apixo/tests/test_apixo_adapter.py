"""APIXO adapter: contract tests from the documented payloads (seeds/001, seeds/002), every
validation rule, and real HTTP against the APIXO sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from providers.adapters.apixo import ApixoAdapter
from providers.adapters.conftest import AdapterKit, closed_port, provider_error, refusal, run
from providers.base import TaskState
from providers.http import ProviderHttp, Sent, make_submit_client

SUNRISE = "a dramatic sunrise over a futuristic skyline with slow cinematic camera movement"

kit = AdapterKit(ApixoAdapter, model="hailuo-2-3", mode="standard-text-to-video", prompt=SUNRISE, duration=6, resolution="768p")
req, adapter = kit.req, kit.adapter



# --- request bodies, exactly as documented (seeds/001 "Request body") -------------------------
def test_standard_text_to_video_body_matches_the_documented_quickstart():
    body = adapter().build_submit_body(req())
    assert body == {
        "request_type": "async",
        "input": {"mode": "standard-text-to-video", "prompt": SUNRISE, "duration": 6},
    }


def test_standard_image_to_video_body_matches_the_docs():
    prompt = "make this still image move naturally with cinematic camera motion"
    body = adapter().build_submit_body(
        req(mode="standard-image-to-video", prompt=prompt, duration=10, image_url="https://example.com/input.jpg")
    )
    assert body == {
        "request_type": "async",
        "input": {
            "mode": "standard-image-to-video",
            "prompt": prompt,
            "image_urls": ["https://example.com/input.jpg"],
            "duration": 10,
        },
    }


def test_pro_bodies_omit_duration():
    prompt = "a premium commercial shot of a glass perfume bottle with elegant camera movement"
    body = adapter().build_submit_body(req(mode="pro-text-to-video", prompt=prompt, duration=5, resolution="1080p"))
    assert body == {"request_type": "async", "input": {"mode": "pro-text-to-video", "prompt": prompt}}


def test_callback_mode_with_https_url_and_routing_strategy():
    body = adapter(provider="value").build_submit_body(
        req(mode="pro-image-to-video", duration=5, resolution="1080p", image_url="https://example.com/product.jpg"),
        callback_url="https://your-server.com/webhooks/apixo",
    )
    assert body["request_type"] == "callback"
    assert body["callback_url"] == "https://your-server.com/webhooks/apixo"
    assert body["provider"] == "value"
    assert body["input"] == {
        "mode": "pro-image-to-video",
        "prompt": SUNRISE,
        "image_urls": ["https://example.com/product.jpg"],
    }


def test_plain_http_callback_is_not_sent_to_the_real_api():
    """APIXO requires a public HTTPS callback URL: with the real base URL, http stays async."""
    body = adapter().build_submit_body(req(), callback_url="http://127.0.0.1:8000/hooks/x")
    assert body["request_type"] == "async" and "callback_url" not in body


def test_request_routing_overrides_account_default():
    body = adapter(provider="official").build_submit_body(req(options={"provider": "auto"}))
    assert body["provider"] == "auto"


# --- status parsing from the documented answers (seeds/001 "Poll for result") -------------------
PROCESSING = {"code": 200, "message": "success", "data": {"taskId": "task_12345678", "state": "processing", "createTime": 1767965610929}}
SUCCESS = {
    "code": 200,
    "message": "success",
    "data": {
        "taskId": "task_12345678",
        "state": "success",
        "resultJson": "{\"resultUrls\":[\"https://file.apixo.ai/video.mp4\"]}",
        "createTime": 1767965610929,
        "completeTime": 1767965730929,
        "costTime": 120000,
    },
}
FAILED = {
    "code": 200,
    "message": "success",
    "data": {
        "taskId": "task_12345678",
        "state": "failed",
        "failCode": "PromptInvalid",
        "failMsg": "Prompt is invalid or rejected by provider",
        "createTime": 1767965610929,
        "completeTime": 1767965620132,
        "costTime": 9041,
    },
}


def test_parse_processing():
    update = adapter().parse_status(PROCESSING)
    assert update.state is TaskState.RUNNING
    assert update.task_id == "task_12345678"
    assert update.created_at == datetime(2026, 1, 9, 13, 33, 30, 929000, tzinfo=UTC)


def test_parse_success_reads_result_urls_from_the_json_string():
    update = adapter().parse_status(SUCCESS)
    assert update.state is TaskState.SUCCEEDED
    assert update.result_urls == ("https://file.apixo.ai/video.mp4",)
    assert update.completed_at == datetime(2026, 1, 9, 13, 35, 30, 929000, tzinfo=UTC)


def test_parse_failed_keeps_provider_code_and_message():
    update = adapter().parse_status(FAILED)
    assert update.state is TaskState.FAILED
    assert (update.fail_code, update.fail_message) == ("PromptInvalid", "Prompt is invalid or rejected by provider")


@pytest.mark.parametrize("state,expected", [("pending", TaskState.QUEUED), ("processing", TaskState.RUNNING), ("weird", TaskState.UNKNOWN)])
def test_every_documented_state_and_unknown_ones(state, expected):
    update = adapter().parse_status({"code": 200, "data": {"taskId": "t", "state": state, "createTime": 1}})
    assert update.state is expected


def test_success_without_urls_is_not_a_success():
    update = adapter().parse_status({"code": 200, "data": {"taskId": "t", "state": "success", "resultJson": "{}"}})
    assert update.state is TaskState.UNKNOWN


def test_parse_callback_takes_the_status_shape():
    hint = adapter().parse_callback({}, json.dumps(SUCCESS).encode())
    assert (hint.task_id, hint.provider_state) == ("task_12345678", "success")
    with pytest.raises(ValueError):
        adapter().parse_callback({}, b"not json")
    with pytest.raises(ValueError):
        adapter().parse_callback({}, b'{"code": 200, "data": {}}')


# --- validation: every documented rule, with the provider and the rule named --------------------
@pytest.mark.parametrize(
    "overrides,field,fragment",
    [
        (dict(model="hailuo-9"), "model", "unknown model"),
        (dict(mode="standard-text-to-audio"), "mode", "has no mode"),
        (dict(model="hailuo-2-3-fast", mode="standard-text-to-video"), "mode", "has no mode"),
        (dict(model="hailuo-2-3-fast", mode="pro-text-to-video"), "mode", "has no mode"),
        (dict(prompt="   "), "prompt", "prompt is required"),
        (dict(duration=8), "duration", "takes 6 or 10 seconds"),
        (dict(resolution="1080p"), "resolution", "768p only"),
        (dict(mode="pro-text-to-video", duration=6, resolution="1080p"), "duration", "takes 5 seconds"),
        (dict(mode="standard-image-to-video"), "image_url", "needs exactly one first-frame image"),
        (dict(image_url="https://example.com/a.png"), "image_url", "takes no image"),
        (dict(mode="standard-image-to-video", image_url="ftp://example.com/a.png"), "image_url", "http(s) URL"),
        (dict(model="hailuo-2-3-fast", mode="pro-image-to-video", duration=5, resolution="1080p", image_url="https://e.com/a.png"), "duration", "takes 6 seconds"),
        (dict(options={"provider": "cheapest"}), "provider", "Routing strategy must be one of auto, value, official"),
        (dict(options={"turbo": True}), "turbo", "has no option"),
    ],
)
def test_validation_rules(overrides, field, fragment):
    refused = refusal(adapter(), req(**overrides))
    fields = {v.field for v in refused.violations}
    assert field in fields
    message = " ".join(v.message for v in refused.violations)
    assert message.startswith("APIXO:") and fragment in message


@pytest.mark.parametrize(
    "model,mode,duration,resolution,image",
    [
        ("hailuo-2-3", "standard-text-to-video", 6, "768p", ""),
        ("hailuo-2-3", "standard-text-to-video", 10, "768p", ""),
        ("hailuo-2-3", "standard-image-to-video", 10, "768p", "https://e.com/a.jpg"),
        ("hailuo-2-3", "pro-text-to-video", 5, "1080p", ""),
        ("hailuo-2-3", "pro-image-to-video", 5, "1080p", "https://e.com/a.jpg"),
        ("hailuo-2-3-fast", "standard-image-to-video", 6, "768p", "https://e.com/a.jpg"),
        ("hailuo-2-3-fast", "pro-image-to-video", 6, "1080p", "https://e.com/a.jpg"),
    ],
)
def test_every_documented_combination_is_accepted(model, mode, duration, resolution, image):
    adapter().validate(req(model=model, mode=mode, duration=duration, resolution=resolution, image_url=image))


# --- real HTTP against the sandbox ----------------------------------------------------------------


def test_submit_and_poll_to_success_over_http(sandbox):
    sandbox.configure(generation_seconds=3)  # long enough for the first read to see it in flight on a loaded machine
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req()))
    assert result.task_id.startswith("task_")
    sent = [r for r in sandbox.requests("api") if r["method"] == "POST"]
    assert sent[-1]["body"] == {"request_type": "async", "input": {"mode": "standard-text-to-video", "prompt": SUNRISE, "duration": 6}}
    first = run(kit.status(a, result.task_id))
    assert first.state in (TaskState.QUEUED, TaskState.RUNNING)
    sandbox.configure(generation_seconds=0)
    import time

    deadline = time.monotonic() + 15
    update = first
    while not update.state.is_final and time.monotonic() < deadline:
        time.sleep(0.1)
        update = run(kit.status(a, result.task_id))
    assert update.state is TaskState.SUCCEEDED
    assert update.result_urls and update.result_urls[0].startswith(sandbox.origin)


def test_wrong_key_is_permanent_401(sandbox):
    a = ApixoAdapter(api_key="sk-wrong", base_url=sandbox.base_url)
    err = provider_error(kit.submit(a, req()))
    assert err.http_status == 401 and err.permanent and err.sent == Sent.YES


def test_429_is_transient_with_retry_after(sandbox):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt="busy [http:429]")))
    assert err.http_status == 429 and not err.permanent and err.retry_after == 1.0


def test_402_no_balance_is_permanent(sandbox):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt="x [http:402]")))
    assert err.http_status == 402 and err.permanent


def test_503_is_transient(sandbox):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt="x [http:503]")))
    assert err.http_status == 503 and not err.permanent


def test_read_timeout_means_maybe_sent(sandbox):
    sandbox.configure(hang_seconds=3)

    err = provider_error(kit.submit_hanging(adapter(sandbox.base_url), req(prompt="slow [hang]")))
    assert err.sent == Sent.MAYBE and not err.permanent


def test_connection_refused_means_not_sent():
    port = closed_port()
    err = provider_error(kit.submit(adapter(f"http://127.0.0.1:{port}/api/v1"), req()))
    assert err.sent == Sent.NO


def test_unknown_task_is_404(sandbox):
    err = provider_error(kit.status(adapter(sandbox.base_url), "task_does_not_exist"))
    assert err.http_status == 404 and err.permanent


def test_balance(sandbox):
    async def go():
        async with make_submit_client() as client:
            return await adapter(sandbox.base_url).fetch_balance(ProviderHttp(client))

    from decimal import Decimal

    assert run(go()) == Decimal("74.87")
