"""PiAPI adapter: contract tests from the documented payloads (seeds/004, providers.md "PiAPI"),
every validation rule, error classification, webhook secret, and real HTTP against the PiAPI
sandbox."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from providers.adapters.conftest import AdapterKit, answer, provider_error, refusal, run
from providers.adapters.piapi import PiapiAdapter
from providers.adapters.piapi.adapter import PIAPI_IMAGE_RULES, parse_time
from providers.base import TaskState
from providers.http import ProviderError, ProviderHttp, Sent, make_submit_client
from providers.images import ImageInfo, check_image

WIND = "autumn wind"

kit = AdapterKit(PiapiAdapter, model="v2.3", mode="text-to-video", prompt=WIND, duration=6, resolution="768p")
req, adapter = kit.req, kit.adapter
PIAPI_KEY = kit.key



# --- request body, exactly as documented (seeds/004 "Request" example) --------------------------
SEED_REQUEST = {
    "model": "hailuo",
    "task_type": "video_generation",
    "input": {
        "prompt": "autumn wind",
        "model": "v2.3",
        "expand_prompt": True,
        "duration": 6,
        "resolution": 768,
    },
    "config": {
        "service_mode": "public",
        "webhook_config": {
            "endpoint": "https://webhook.site/7b206bbd-089a-4c96-9cf7-5927c91bfcca",
            "secret": "",
        },
    },
}


def test_submit_body_matches_the_documented_example():
    body = adapter().build_submit_body(
        req(options={"expand_prompt": True}),
        callback_url="https://webhook.site/7b206bbd-089a-4c96-9cf7-5927c91bfcca",
        callback_secret="",
    )
    assert body == SEED_REQUEST
    assert isinstance(body["input"]["resolution"], int)


def test_image_to_video_body_sends_image_url_integer_1080_and_no_webhook_without_callback():
    body = adapter().build_submit_body(
        req(model="v2.3-fast", mode="image-to-video", resolution="1080p", image_url="https://example.com/first.png")
    )
    assert body == {
        "model": "hailuo",
        "task_type": "video_generation",
        "input": {
            "prompt": WIND,
            "model": "v2.3-fast",
            "duration": 6,
            "resolution": 1080,
            "image_url": "https://example.com/first.png",
        },
        "config": {"service_mode": "public"},
    }


def test_webhook_config_carries_our_secret_and_expand_prompt_false_is_sent():
    body = adapter().build_submit_body(
        req(duration=10, options={"expand_prompt": False}),
        callback_url="https://studio.example/hooks/piapi/1/tok",
        callback_secret="s3cret",
    )
    assert body["config"] == {
        "service_mode": "public",
        "webhook_config": {"endpoint": "https://studio.example/hooks/piapi/1/tok", "secret": "s3cret"},
    }
    assert body["input"]["expand_prompt"] is False and body["input"]["duration"] == 10


# --- get task / webhook parsing (seeds/004 completed example) -------------------------------------
SEED_COMPLETED = {
    "timestamp": 1769349220,
    "data": {
        "task_id": "4d5fe927-66ca-4614-ad53-73430dd1f965",
        "model": "hailuo",
        "task_type": "video_generation",
        "status": "completed",
        "config": {
            "service_mode": "public",
            "webhook_config": {"endpoint": "https://webhook.site/7b206bbd-089a-4c96-9cf7-5927c91bfcca", "secret": ""},
        },
        "input": {
            "duration": 6,
            "expand_prompt": True,
            "image_url": "",
            "model": "v2.3",
            "prompt": "autumn wind",
            "resolution": 768,
        },
        "output": {"video": "https://img.theapi.app/ephemeral/d9cb24bc-3166-41bc-9fe0-7cd7c9942b27.mp4"},
        "meta": {
            "created_at": "2026-01-25T13:52:23.125177638Z",
            "started_at": "2026-01-25T13:52:24.247634887Z",
            "ended_at": "2026-01-25T13:53:40.726939834Z",
            "usage": {"type": "llm", "frozen": 0, "consume": 2300000},
            "is_using_private_pool": False,
        },
        "detail": None,
        "logs": [],
        "error": {"code": 0, "raw_message": "", "message": "", "detail": None},
    },
}


def with_data(**changes) -> dict:
    body = copy.deepcopy(SEED_COMPLETED)
    body["data"].update(changes)
    return body


@pytest.mark.parametrize(
    "body",
    [SEED_COMPLETED, {"code": 200, "message": "success", "data": SEED_COMPLETED["data"]}],
    ids=["webhook-shape", "get-task-shape"],
)
def test_completed_example_parses_to_success_with_video_times_and_cost(body):
    update = adapter().parse_status(body)
    assert update.state is TaskState.SUCCEEDED
    assert update.provider_state == "completed"
    assert update.task_id == "4d5fe927-66ca-4614-ad53-73430dd1f965"
    assert update.result_urls == ("https://img.theapi.app/ephemeral/d9cb24bc-3166-41bc-9fe0-7cd7c9942b27.mp4",)
    assert update.created_at == datetime(2026, 1, 25, 13, 52, 23, 125177, tzinfo=UTC)
    assert update.completed_at == datetime(2026, 1, 25, 13, 53, 40, 726939, tzinfo=UTC)
    assert update.provider_cost == {"type": "llm", "frozen": 0, "consume": 2300000, "usd": "0.23"}
    assert Decimal(update.provider_cost["usd"]) == Decimal("0.23")
    assert (update.fail_code, update.fail_message) == ("", "")
    json.dumps(update.provider_cost)  # stored in a JSONField


@pytest.mark.parametrize(
    "status,expected",
    [
        ("pending", TaskState.QUEUED),
        ("Pending", TaskState.QUEUED),
        ("PENDING", TaskState.QUEUED),
        ("staged", TaskState.QUEUED),
        ("Staged", TaskState.QUEUED),
        ("processing", TaskState.RUNNING),
        ("Processing", TaskState.RUNNING),
        ("PROCESSING", TaskState.RUNNING),
        ("Completed", TaskState.SUCCEEDED),
        ("COMPLETED", TaskState.SUCCEEDED),
        ("failed", TaskState.FAILED),
        ("Failed", TaskState.FAILED),
        ("FAILED", TaskState.FAILED),
        ("retry", TaskState.UNKNOWN),
        ("", TaskState.UNKNOWN),
    ],
)
def test_every_documented_state_in_any_case_and_unknown_ones(status, expected):
    update = adapter().parse_status(with_data(status=status))
    assert update.state is expected
    assert update.provider_state == status


@pytest.mark.parametrize(
    "output,url",
    [
        ({"video": "https://cdn.example/a.mp4"}, "https://cdn.example/a.mp4"),
        ({"video_url": "https://cdn.example/b.mp4"}, "https://cdn.example/b.mp4"),
        ({"download_url": "https://cdn.example/c.mp4"}, "https://cdn.example/c.mp4"),
        ({"video": "", "video_url": "https://cdn.example/b.mp4"}, "https://cdn.example/b.mp4"),
        ({"video": None, "video_url": "", "download_url": "https://cdn.example/c.mp4"}, "https://cdn.example/c.mp4"),
        ({"video": "https://cdn.example/a.mp4", "download_url": "https://cdn.example/c.mp4"}, "https://cdn.example/a.mp4"),
        ({"video_url": ["https://cdn.example/l.mp4"]}, "https://cdn.example/l.mp4"),
    ],
)
def test_video_field_fallbacks(output, url):
    update = adapter().parse_status(with_data(output=output))
    assert update.state is TaskState.SUCCEEDED
    assert update.result_urls == (url,)


@pytest.mark.parametrize("output", [{}, None, {"video": ""}, {"image_url": "https://cdn.example/x.png"}])
def test_completed_without_a_video_is_not_a_success(output):
    update = adapter().parse_status(with_data(output=output))
    assert update.state is TaskState.UNKNOWN and update.result_urls == ()


def test_failed_keeps_error_code_and_message():
    body = with_data(
        status="failed",
        output={},
        error={"code": 10000, "raw_message": "upstream said no", "message": "content moderation failed", "detail": None},
    )
    body["data"]["meta"] = {"created_at": "2026-01-25T13:52:23Z", "ended_at": "0001-01-01T00:00:00Z"}
    update = adapter().parse_status(body)
    assert update.state is TaskState.FAILED
    assert (update.fail_code, update.fail_message) == ("10000", "content moderation failed")
    assert update.completed_at is None and update.provider_cost is None


def test_failed_message_falls_back_to_raw_message():
    body = with_data(status="FAILED", output=None, error={"code": 500, "raw_message": "timeout at model", "message": ""})
    update = adapter().parse_status(body)
    assert update.state is TaskState.FAILED
    assert (update.fail_code, update.fail_message) == ("500", "timeout at model")


@pytest.mark.parametrize(
    "value,expected",
    [
        ("2026-01-25T13:52:23.125177638Z", datetime(2026, 1, 25, 13, 52, 23, 125177, tzinfo=UTC)),
        ("2026-01-25T13:52:23Z", datetime(2026, 1, 25, 13, 52, 23, tzinfo=UTC)),
        ("2026-01-25T13:52:23.5Z", datetime(2026, 1, 25, 13, 52, 23, 500000, tzinfo=UTC)),
        ("2026-01-25T21:52:23.123456789+08:00", datetime(2026, 1, 25, 13, 52, 23, 123456, tzinfo=UTC)),
        ("2026-01-25T13:52:23", datetime(2026, 1, 25, 13, 52, 23, tzinfo=UTC)),
        (1769349220, datetime(2026, 1, 25, 13, 53, 40, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_rfc3339_times_with_nanoseconds(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize(
    "usage,usd",
    [({"type": "llm", "frozen": 0, "consume": 4500000}, "0.45"), ({"type": "llm", "frozen": 2300000, "consume": 0}, "0")],
)
def test_usage_converts_at_ten_million_units_per_usd(usage, usd):
    update = adapter().parse_status(with_data(meta={"usage": usage}))
    assert update.provider_cost["usd"] == usd


# --- error classification from hand-built answers -------------------------------------------------
@pytest.mark.parametrize(
    "http_status,body,permanent,code",
    [
        (400, {"code": 400, "message": "invalid request: resolution"}, True, "400"),
        (401, {"code": 401, "message": "Invalid API key"}, True, "401"),
        (402, {"code": 402, "message": "insufficient credits"}, True, "402"),
        (403, {"code": 403, "message": "forbidden"}, True, "403"),
        (404, {"code": 404, "message": "task not found"}, True, "404"),
        (429, {"code": 429, "message": "too many requests"}, False, "429"),
        (500, {"code": 500, "message": "internal error"}, False, "500"),
        (502, {"code": 502, "message": "bad gateway"}, False, "502"),
        (503, {"message": "unavailable"}, False, "503"),
        (200, {"code": 400, "message": "failed to create task"}, True, "400"),
        (200, {"code": 401, "message": "unauthorized"}, True, "401"),
        (200, {"code": 500, "message": "server busy"}, False, "500"),
        (200, {"code": 10000, "message": "something odd"}, False, "10000"),
    ],
)
def test_error_answers_are_classified(http_status, body, permanent, code):
    with pytest.raises(ProviderError) as err:
        adapter()._unwrap(answer(http_status, body))
    assert err.value.permanent is permanent
    assert err.value.code == code
    assert err.value.sent == Sent.YES
    assert str(err.value).startswith("PiAPI: ") and body["message"] in str(err.value)


def test_error_message_from_a_nested_error():
    with pytest.raises(ProviderError) as err:
        adapter()._unwrap(answer(400, {"code": 400, "message": "bad", "data": {"error": {"message": "image too big"}}}))
    assert "bad: image too big" in str(err.value)


def test_429_carries_retry_after():
    with pytest.raises(ProviderError) as err:
        adapter()._unwrap(answer(429, {"code": 429, "message": "slow down"}, {"Retry-After": "7"}))
    assert err.value.retry_after == 7.0 and not err.value.permanent


def test_non_json_error_is_classified_by_status():
    with pytest.raises(ProviderError) as err:
        adapter()._unwrap(httpx.Response(502, text="<html>Bad gateway</html>"))
    assert err.value.http_status == 502 and not err.value.permanent
    with pytest.raises(ProviderError) as err:
        adapter()._unwrap(httpx.Response(401, text="unauthorized"))
    assert err.value.permanent


@pytest.mark.parametrize(
    "body",
    [{"code": 200, "message": "success", "data": {"task_id": "t"}}, {"timestamp": 1, "data": {"task_id": "t"}}, {"code": "200", "data": {}}],
)
def test_ok_answers_pass(body):
    assert adapter()._unwrap(answer(200, body)) == body


# --- the protocol over a mock transport: paths, header, parsing -------------------------------------
def mock_http(handler) -> tuple[ProviderHttp, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return ProviderHttp(client, provider="PiAPI"), seen


def test_requests_go_to_the_documented_paths_with_the_api_key_header():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return answer(200, {"code": 200, "message": "success", "data": {"task_id": "abc-1", "status": "pending"}})
        if request.url.path == "/account/info":
            return answer(200, {"code": 200, "data": {"account_name": "x", "equivalent_in_usd": 12.34}})
        return answer(200, {"code": 200, "message": "success", "data": SEED_COMPLETED["data"]})

    async def go():
        http, seen = mock_http(handler)
        async with http.client:
            a = adapter()
            result = await a.submit(http, req(options={"expand_prompt": True}), callback_url="https://h.example/cb", callback_secret="sec")
            update = await a.fetch_status(http, task_id=result.task_id, model="v2.3")
            balance = await a.fetch_balance(http)
        return result, update, balance, seen

    result, update, balance, seen = asyncio.run(go())
    assert result.task_id == "abc-1"
    assert update.state is TaskState.SUCCEEDED
    assert balance == Decimal("12.34")
    post, get, account = seen
    assert str(post.url) == "https://api.piapi.ai/api/v1/task"
    assert json.loads(post.content)["config"]["webhook_config"] == {"endpoint": "https://h.example/cb", "secret": "sec"}
    assert str(get.url) == "https://api.piapi.ai/api/v1/task/abc-1"
    assert str(account.url) == "https://api.piapi.ai/account/info"
    for request in seen:
        assert request.headers["x-api-key"] == PIAPI_KEY
        assert "authorization" not in request.headers


def test_submit_without_a_task_id_is_an_error():
    async def go():
        http, _ = mock_http(lambda r: answer(200, {"code": 200, "message": "success", "data": {}}))
        async with http.client:
            return await adapter().submit(http, req())

    with pytest.raises(ProviderError, match="no data.task_id"):
        asyncio.run(go())


@pytest.mark.parametrize("body,expected", [({"code": 200, "data": {"equivalent_in_usd": "3.5"}}, Decimal("3.5")), ({"code": 200, "data": {"credits": 10}}, None)])
def test_balance_reads_equivalent_in_usd_if_present(body, expected):
    async def go():
        http, _ = mock_http(lambda r: answer(200, body))
        async with http.client:
            return await adapter().fetch_balance(http)

    assert asyncio.run(go()) == expected


# --- validation: every documented rule, with the provider and the rule named ------------------------
@pytest.mark.parametrize(
    "overrides,field,fragment",
    [
        (dict(model="v2.2"), "model", "unknown model"),
        (dict(model="hailuo-2.3"), "model", "unknown model"),
        (dict(mode="text-to-audio"), "mode", "has no mode"),
        (dict(prompt="  "), "prompt", "a prompt is required"),
        (dict(prompt="x" * 2001), "prompt", "limited to 2000 characters"),
        (dict(duration=8), "duration", "takes 6 or 10 seconds"),
        (dict(resolution="720p"), "resolution", "outputs 768p, 1080p only"),
        (dict(duration=10, resolution="1080p"), "duration", "1080p supports only 6 seconds"),
        (dict(model="v2.3-fast", duration=10, resolution="1080p"), "duration", "1080p supports only 6 seconds"),
        (dict(mode="image-to-video"), "image_url", "needs exactly one first-frame image"),
        (dict(image_url="https://example.com/a.png"), "image_url", "takes no image"),
        (dict(mode="image-to-video", image_url="ftp://example.com/a.png"), "image_url", "http(s) URL"),
        (dict(options={"expand_prompt": "yes"}), "expand_prompt", "Expand prompt must be true or false"),
        (dict(options={"service_mode": "private"}), "service_mode", "has no option"),
    ],
)
def test_validation_rules(overrides, field, fragment):
    refused = refusal(adapter(), req(**overrides))
    assert field in {v.field for v in refused.violations}
    for violation in refused.violations:
        assert violation.message.startswith("PiAPI: ")
    assert fragment in str(refused)


def test_the_1080p_rule_names_itself_exactly():
    refused = refusal(adapter(), req(duration=10, resolution="1080p"))
    assert [v.message for v in refused.violations] == ["PiAPI: 1080p supports only 6 seconds"]


def test_prompt_of_exactly_2000_characters_is_accepted():
    adapter().validate(req(prompt="x" * 2000))


@pytest.mark.parametrize("model", ["v2.3", "v2.3-fast"])
@pytest.mark.parametrize(
    "mode,duration,resolution,image",
    [
        ("text-to-video", 6, "768p", ""),
        ("text-to-video", 10, "768p", ""),
        ("text-to-video", 6, "1080p", ""),
        ("image-to-video", 6, "768p", "https://e.com/a.jpg"),
        ("image-to-video", 10, "768p", "https://e.com/a.jpg"),
        ("image-to-video", 6, "1080p", "https://e.com/a.png"),
    ],
)
def test_every_documented_combination_is_accepted(model, mode, duration, resolution, image):
    adapter().validate(
        req(model=model, mode=mode, duration=duration, resolution=resolution, image_url=image, options={"expand_prompt": True})
    )


def test_capabilities_as_declared():
    caps = PiapiAdapter.capabilities
    assert [m.id for m in caps.models] == ["v2.3", "v2.3-fast"]
    assert caps.callbacks and not caps.cancel
    for model in caps.models:
        assert model.prompt_max_chars == 2000
        assert model.image_rules is PIAPI_IMAGE_RULES
        assert [m.id for m in model.modes] == ["text-to-video", "image-to-video"]
        assert model.mode("text-to-video").image == "none" and model.mode("image-to-video").image == "required"
        for mode in model.modes:
            assert mode.combos == ((6, "768p"), (10, "768p"), (6, "1080p"))
            assert mode.option("expand_prompt").kind == "bool"
    assert caps.model("v2.3-fast").notes  # the text-to-video ambiguity is said
    assert PiapiAdapter.default_base_url == "https://api.piapi.ai"


@pytest.mark.parametrize(
    "info,fragment",
    [
        (ImageInfo("gif", 800, 600, 1000), "must be JPG or PNG"),
        (ImageInfo("webp", 800, 600, 1000), "must be JPG or PNG"),
        (ImageInfo("png", 800, 600, 20 * 1024 * 1024 + 1), "at most 20 MB"),
        (ImageInfo("jpeg", 299, 600, 1000), "at least 300 px"),
        (ImageInfo("jpeg", 600, 4097, 1000), "at most 4096 px"),
        (ImageInfo("png", 399, 1000, 1000), "aspect ratio must be between 2:5 and 5:2"),
        (ImageInfo("png", 1000, 399, 1000), "aspect ratio must be between 2:5 and 5:2"),
    ],
)
def test_image_rules_refuse(info, fragment):
    violations = check_image(info, PIAPI_IMAGE_RULES, provider="PiAPI")
    assert violations and all(v.message.startswith("PiAPI: ") for v in violations)
    assert fragment in " ".join(v.message for v in violations)


@pytest.mark.parametrize(
    "info",
    [
        ImageInfo("jpeg", 300, 300, 1000),
        ImageInfo("png", 4096, 4096, 20 * 1024 * 1024),
        ImageInfo("png", 400, 1000, 1000),  # exactly 2:5: "between" keeps the bound
        ImageInfo("jpeg", 1000, 400, 1000),  # exactly 5:2
        ImageInfo("png", 1638, 4095, 1000),
    ],
)
def test_image_rules_accept_the_bounds(info):
    assert check_image(info, PIAPI_IMAGE_RULES, provider="PiAPI") == []


# --- callbacks: shared secret in x-webhook-secret ---------------------------------------------------
def test_verify_callback_compares_the_secret():
    body = json.dumps(SEED_COMPLETED).encode()
    adapter().verify_callback({"x-webhook-secret": "s3cret"}, body, secret="s3cret")
    adapter().verify_callback({"X-Webhook-Secret": "s3cret"}, body, secret="s3cret")
    with pytest.raises(ValueError, match="wrong x-webhook-secret"):
        adapter().verify_callback({"x-webhook-secret": "s3cre"}, body, secret="s3cret")
    with pytest.raises(ValueError, match="wrong x-webhook-secret"):
        adapter().verify_callback({"x-webhook-secret": ""}, body, secret="s3cret")
    with pytest.raises(ValueError, match="no x-webhook-secret"):
        adapter().verify_callback({"content-type": "application/json"}, body, secret="s3cret")


def test_verify_callback_without_our_secret_accepts():
    """PiAPI sends the header only when a secret was configured; the URL token then authenticates."""
    adapter().verify_callback({}, b"{}", secret="")


def test_parse_callback_takes_the_webhook_shape():
    hint = adapter().parse_callback({}, json.dumps(SEED_COMPLETED).encode())
    assert (hint.task_id, hint.provider_state) == ("4d5fe927-66ca-4614-ad53-73430dd1f965", "completed")
    processing = with_data(status="Processing", output={})
    assert adapter().parse_callback({}, json.dumps(processing).encode()).provider_state == "Processing"
    for bad in (b"not json", b"[]", b'{"timestamp": 1}', b'{"timestamp": 1, "data": {"status": "completed"}}'):
        with pytest.raises(ValueError):
            adapter().parse_callback({}, bad)


def test_cadence_is_20_then_10_seconds():
    cadence = adapter().poll_cadence(req())
    assert (cadence.first_delay, cadence.interval) == (20.0, 10.0)


# --- real HTTP against the sandbox ------------------------------------------------------------------


def test_submit_and_poll_to_success_over_http(sandbox):
    a = adapter(sandbox.base_url)
    request = req(options={"expand_prompt": True})
    result = run(kit.submit(a, request))
    assert result.task_id
    sent = [r for r in sandbox.requests("api") if r["method"] == "POST"]
    assert sent[-1]["body"] == a.build_submit_body(request)
    assert {k.lower(): v for k, v in sent[-1]["headers"].items()}["x-api-key"] == PIAPI_KEY
    first = run(kit.status(a, result.task_id))
    assert first.state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED)
    sandbox.configure(generation_seconds=0)
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.SUCCEEDED, update
    assert update.task_id == result.task_id
    assert update.result_urls and update.result_urls[0].startswith(("http://", "https://"))
    assert update.created_at is not None and update.completed_at is not None


def test_cost_is_reported_at_the_documented_price(sandbox):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(duration=10)))
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.SUCCEEDED
    assert update.provider_cost is not None and Decimal(update.provider_cost["usd"]) == Decimal("0.45")


def test_image_to_video_fast_1080p_over_http(sandbox, image_url):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    request = req(model="v2.3-fast", mode="image-to-video", resolution="1080p", image_url=image_url)
    result = run(kit.submit(a, request))
    sent = [r for r in sandbox.requests("api") if r["method"] == "POST"]
    assert sent[-1]["body"]["input"]["image_url"] == image_url and sent[-1]["body"]["input"]["resolution"] == 1080
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.SUCCEEDED, update


@pytest.mark.parametrize("model", ["v2.3", "v2.3-fast"])
def test_text_to_video_is_accepted_for_both_models(sandbox, model):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(model=model)))
    assert kit.poll_until_final(a, result.task_id).state is TaskState.SUCCEEDED


@pytest.mark.parametrize("prompt,code", [("a storm [fail]", ""), ("a storm [fail:10001]", "10001")])
def test_failure_over_http(sandbox, prompt, code):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(prompt=prompt)))
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.FAILED, update
    assert update.fail_code and update.fail_message
    if code:
        assert update.fail_code == code
    assert update.result_urls == ()
    assert update.provider_cost is None or Decimal(update.provider_cost.get("usd", "0")) == 0  # charged on success only


def test_empty_output_as_null_is_tolerated(sandbox):
    sandbox.configure(generation_seconds=1.0, empty_output="null")
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req()))
    first = run(kit.status(a, result.task_id))
    assert first.state in (TaskState.QUEUED, TaskState.RUNNING) and first.result_urls == ()
    sandbox.configure(generation_seconds=0)
    assert kit.poll_until_final(a, result.task_id).state is TaskState.SUCCEEDED


def test_wrong_key_is_permanent_401(sandbox):
    a = PiapiAdapter(api_key="sk-wrong", base_url=sandbox.base_url)
    err = provider_error(kit.submit(a, req()))
    assert err.code == "401" and err.permanent and err.sent == Sent.YES


def test_429_marker_is_transient(sandbox):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt="busy [http:429]")))
    assert err.http_status == 429 and not err.permanent


def test_rate_limit_knob_is_transient(sandbox):
    sandbox.configure(rate_limit_every=1)
    err = provider_error(kit.submit(adapter(sandbox.base_url), req()))
    assert err.http_status == 429 and not err.permanent


@pytest.mark.parametrize("status,permanent", [(402, True), (500, False), (503, False)])
def test_http_markers_are_classified(sandbox, status, permanent):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt=f"x [http:{status}]")))
    assert err.http_status == status and err.permanent is permanent


def test_unknown_task_is_permanent(sandbox):
    err = provider_error(kit.status(adapter(sandbox.base_url), "00000000-0000-0000-0000-000000000000"))
    assert err.code == "404" and err.permanent


def test_read_timeout_means_maybe_sent(sandbox):
    sandbox.configure(hang_seconds=3)

    err = provider_error(kit.submit_hanging(adapter(sandbox.base_url), req(prompt="slow [hang]")))
    assert err.sent == Sent.MAYBE and not err.permanent


@pytest.mark.parametrize("case", ["upper", "title", "lower"])
def test_status_letter_case_knob(sandbox, case):
    sandbox.configure(generation_seconds=0, status_case=case)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req()))
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.SUCCEEDED, update


@pytest.mark.parametrize("field", ["video", "video_url", "download_url"])
def test_video_field_knob(sandbox, field):
    sandbox.configure(generation_seconds=0, video_field=field)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req()))
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.SUCCEEDED, update
    assert update.raw["data"]["output"].get(field) and update.result_urls


def test_balance_over_http(sandbox):
    async def go():
        async with make_submit_client() as client:
            return await adapter(sandbox.base_url).fetch_balance(ProviderHttp(client))

    balance = run(go())
    assert balance is None or isinstance(balance, Decimal)


def test_webhook_delivery_carries_our_secret(sandbox, receiver):
    url, received = receiver
    sandbox.configure(generation_seconds=0.3)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(), callback_url=url, callback_secret="s3cret-per-generation"))
    deadline = time.monotonic() + 10
    final = None
    while final is None and time.monotonic() < deadline:
        for headers, body in list(received):
            hint = a.parse_callback(headers, body)
            if hint.provider_state.lower() in ("completed", "failed"):
                final = (headers, body, hint)
        time.sleep(0.05)
    assert received, "no webhook delivery"
    for headers, body in received:
        a.verify_callback(headers, body, secret="s3cret-per-generation")
        with pytest.raises(ValueError):
            a.verify_callback(headers, body, secret="another-secret")
        assert a.parse_callback(headers, body).task_id == result.task_id
    assert final is not None, [a.parse_callback(h, b) for h, b in received]
    headers, body, hint = final
    update = a.parse_status(json.loads(body))
    assert update.state is TaskState.SUCCEEDED and update.result_urls


def test_duplicate_webhooks_are_each_authentic_hints(sandbox, receiver):
    url, received = receiver
    sandbox.configure(generation_seconds=0, duplicate_webhooks=2)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(), callback_url=url, callback_secret="dup-secret"))
    deadline = time.monotonic() + 10
    while len(received) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(received) >= 3, received
    for headers, body in received:
        a.verify_callback(headers, body, secret="dup-secret")
        assert a.parse_callback(headers, body).task_id == result.task_id
