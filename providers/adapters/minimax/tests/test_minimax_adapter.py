"""MiniMax adapter: contract tests from MiniMax's documented payloads (API reference "Video
Generation", "Query Video Generation Task", "Retrieve file", "Error Codes"; providers.md
"MiniMax"), every validation rule, base_resp classification, the callback challenge, and
real HTTP against the MiniMax sandbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

from providers.adapters.conftest import AdapterKit, answer, closed_port, provider_error, refusal, run
from providers.adapters.minimax import MiniMaxAdapter
from providers.base import TaskState
from providers.http import ProviderError, ProviderHttp, Sent

MOUSE = "A mouse runs toward the camera, smiling and blinking."

kit = AdapterKit(MiniMaxAdapter, model="MiniMax-Hailuo-2.3", mode="text-to-video", prompt=MOUSE, duration=6, resolution="768p")
req, adapter = kit.req, kit.adapter
MINIMAX_KEY = kit.key

FIRST_FRAME = "https://cdn.hailuoai.com/prod/2024-09-18-16/user/multi_chat_file/9c0b5c14-ee88-4a5b-b503-4f626f018639.jpeg"
OK = {"status_code": 0, "status_msg": "success"}


# --- request bodies (API reference "Video Generation"; the guide's image-to-video example) --------
def test_image_to_video_body_matches_the_documented_example():
    body = adapter().build_submit_body(
        req(mode="image-to-video", resolution="1080p", image_url=FIRST_FRAME)
    )
    assert body == {
        "model": "MiniMax-Hailuo-2.3",
        "prompt": MOUSE,
        "duration": 6,
        "resolution": "1080P",
        "first_frame_image": FIRST_FRAME,
    }


def test_fast_text_options_and_callback():
    body = adapter().build_submit_body(
        req(
            model="MiniMax-Hailuo-2.3-Fast", mode="image-to-video", duration=10, image_url=FIRST_FRAME,
            options={"prompt_optimizer": False, "fast_pretreatment": True},
        ),
        callback_url="https://studio.example.com/hooks/minimax/abc",
    )
    assert body == {
        "model": "MiniMax-Hailuo-2.3-Fast",
        "prompt": MOUSE,
        "duration": 10,
        "resolution": "768P",
        "first_frame_image": FIRST_FRAME,
        "prompt_optimizer": False,
        "fast_pretreatment": True,
        "callback_url": "https://studio.example.com/hooks/minimax/abc",
    }


def test_plain_http_callback_is_only_sent_to_a_non_default_base_url():
    """The challenge must be answered within 3 s: a plain-http dev URL is not given to the real API."""
    assert "callback_url" not in adapter().build_submit_body(req(), callback_url="http://127.0.0.1:8000/hooks/x")
    body = adapter("http://127.0.0.1:9999").build_submit_body(req(), callback_url="http://127.0.0.1:8000/hooks/x")
    assert body["callback_url"] == "http://127.0.0.1:8000/hooks/x"


def test_submit_reads_the_documented_answer():
    documented = {"task_id": "106916112212032", "base_resp": OK}
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization"), json.loads(request.content)))
        return httpx.Response(200, json=documented)

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await adapter().submit(ProviderHttp(client), req())

    result = asyncio.run(go())
    assert result.task_id == "106916112212032"
    assert seen == [("POST", "/v1/video_generation", f"Bearer {MINIMAX_KEY}", adapter().build_submit_body(req()))]


def test_submit_with_base_resp_error_under_http_200_raises():
    async def go():
        transport = httpx.MockTransport(
            lambda request: httpx.Response(200, json={"task_id": "", "base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}})
        )
        async with httpx.AsyncClient(transport=transport) as client:
            return await adapter().submit(ProviderHttp(client), req())

    with pytest.raises(ProviderError) as err:
        asyncio.run(go())
    assert err.value.code == "1008" and err.value.permanent and err.value.http_status == 200


# --- status: query then retrieve (documented answers) --------------------------------------------
QUERY_SUCCESS = {
    "task_id": "176843862716480",
    "status": "Success",
    "file_id": "176844028768320",
    "video_width": 1920,
    "video_height": 1080,
    "base_resp": OK,
}
RETRIEVE = {
    "file": {
        "file_id": 176844028768320,
        "bytes": 0,
        "created_at": 1700469398,
        "filename": "output_aigc.mp4",
        "purpose": "video_generation",
        "download_url": "https://video-product.cdn.minimax.io/inference_output/video/output.mp4",
    },
    "base_resp": OK,
}


def _fetch(routes):
    """fetch_status over a MockTransport answering each path with ``routes[path]``; returns (update, seen)."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, dict(request.url.params)))
        status, body = routes[request.url.path]
        return httpx.Response(status, json=body)

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await adapter().fetch_status(ProviderHttp(client), task_id="176843862716480", model="MiniMax-Hailuo-2.3")

    return asyncio.run(go()), seen


def test_success_retrieves_the_file_for_its_download_url():
    update, seen = _fetch({"/v1/query/video_generation": (200, QUERY_SUCCESS), "/v1/files/retrieve": (200, RETRIEVE)})
    assert seen == [
        ("/v1/query/video_generation", {"task_id": "176843862716480"}),
        ("/v1/files/retrieve", {"file_id": "176844028768320"}),
    ]
    assert update.state is TaskState.SUCCEEDED
    assert update.result_urls == ("https://video-product.cdn.minimax.io/inference_output/video/output.mp4",)
    assert update.completed_at == datetime(2023, 11, 20, 8, 36, 38, tzinfo=UTC)
    assert update.task_id == "176843862716480"


def test_processing_does_not_retrieve():
    update, seen = _fetch({"/v1/query/video_generation": (200, {"task_id": "176843862716480", "status": "Processing", "base_resp": OK})})
    assert update.state is TaskState.RUNNING and len(seen) == 1


def test_fail_is_a_failed_update_with_the_base_resp_code():
    body = {"task_id": "176843862716480", "status": "Fail", "base_resp": {"status_code": 1027, "status_msg": "output new_sensitive"}}
    update, _ = _fetch({"/v1/query/video_generation": (200, body)})
    assert update.state is TaskState.FAILED
    assert (update.fail_code, update.fail_message) == ("1027", "output new_sensitive")


def test_query_error_raises():
    body = {"task_id": "", "base_resp": {"status_code": 2013, "status_msg": "invalid params, task not found"}}
    with pytest.raises(ProviderError) as err:
        _fetch({"/v1/query/video_generation": (200, body)})
    assert err.value.code == "2013" and err.value.permanent


def test_retrieve_error_raises():
    bad = {"file": None, "base_resp": {"status_code": 1004, "status_msg": "not authorized"}}
    with pytest.raises(ProviderError) as err:
        _fetch({"/v1/query/video_generation": (200, QUERY_SUCCESS), "/v1/files/retrieve": (200, bad)})
    assert err.value.code == "1004" and err.value.permanent


@pytest.mark.parametrize(
    "status,expected",
    [
        ("Preparing", TaskState.QUEUED),
        ("Queueing", TaskState.QUEUED),
        ("Processing", TaskState.RUNNING),
        ("Fail", TaskState.FAILED),
        ("processing", TaskState.RUNNING),  # the callback's spelling
        ("failed", TaskState.FAILED),  # the callback's spelling
        ("Success", TaskState.UNKNOWN),  # no download URL yet: poll again, never a success
        ("Cancelled", TaskState.UNKNOWN),
    ],
)
def test_every_documented_state_and_unknown_ones(status, expected):
    update = adapter().parse_status({"task_id": "t", "status": status, "base_resp": OK})
    assert update.state is expected


def test_success_with_a_retrieved_file_is_a_success():
    update = adapter().parse_status(QUERY_SUCCESS, file=RETRIEVE["file"])
    assert update.state is TaskState.SUCCEEDED and update.raw["file"]["filename"] == "output_aigc.mp4"


def test_success_without_file_id_is_unknown_and_does_not_retrieve():
    update, seen = _fetch({"/v1/query/video_generation": (200, {"task_id": "t", "status": "Success", "base_resp": OK})})
    assert update.state is TaskState.UNKNOWN and len(seen) == 1


# --- errors: base_resp codes ("Error Codes") and HTTP statuses ------------------------------------
@pytest.mark.parametrize(
    "code,permanent",
    [
        (1000, False), (1001, False), (1002, False), (1024, False), (1033, False),
        (1004, True), (1008, True), (1026, True), (1027, True), (2013, True),
        (1039, True), (9999, True),  # undocumented here: permanent, never retried blindly
    ],
)
def test_base_resp_codes_are_classified(code, permanent):
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(200, {"base_resp": {"status_code": code, "status_msg": "msg"}}))
    e = err.value
    assert e.permanent is permanent and e.code == str(code) and e.http_status == 200 and e.sent == Sent.YES
    assert e.message.startswith("MiniMax: ")


def test_rate_limit_keeps_retry_after():
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(200, {"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}, {"Retry-After": "5"}))
    assert not err.value.permanent and err.value.retry_after == 5.0


@pytest.mark.parametrize("status,permanent", [(400, True), (401, True), (404, True), (429, False), (500, False), (503, False)])
def test_http_errors_without_base_resp_follow_the_status(status, permanent):
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(status, {"error": "something"}))
    assert err.value.http_status == status and err.value.permanent is permanent


def test_known_code_wins_over_http_status():
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(429, {"base_resp": {"status_code": 1002, "status_msg": "rate limit"}}))
    assert err.value.code == "1002" and not err.value.permanent
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(401, {"base_resp": {"status_code": 1004, "status_msg": "not authorized"}}))
    assert err.value.code == "1004" and err.value.permanent


def test_non_json_answer():
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(httpx.Response(502, text="bad gateway"))
    assert err.value.http_status == 502 and not err.value.permanent


# --- validation: every documented rule, with the provider and the rule named ---------------------
@pytest.mark.parametrize(
    "overrides,field,fragment",
    [
        (dict(model="MiniMax-Hailuo-02"), "model", "unknown model"),
        (dict(model="MiniMax-Hailuo-2.3-Fast"), "mode", "has no mode 'text-to-video'"),
        (dict(prompt=""), "prompt", "a prompt is required"),
        (dict(prompt="x" * 2001), "prompt", "limited to 2000 characters"),
        (dict(duration=5), "duration", "takes 6 or 10 seconds"),
        (dict(resolution="512p"), "resolution", "768p, 1080p only"),
        (dict(duration=10, resolution="1080p"), "duration", "1080p supports only 6 seconds"),
        (dict(mode="image-to-video"), "image_url", "needs exactly one first-frame image"),
        (dict(model="MiniMax-Hailuo-2.3-Fast", mode="image-to-video"), "image_url", "needs exactly one first-frame image"),
        (dict(image_url=FIRST_FRAME), "image_url", "takes no image"),
        (dict(mode="image-to-video", image_url="data:image/png;base64,AAAA"), "image_url", "http(s) URL"),
        (dict(options={"prompt_optimizer": 1}), "prompt_optimizer", "Prompt optimizer must be true or false"),
        (dict(options={"fast_pretreatment": "no"}), "fast_pretreatment", "Fast pretreatment must be true or false"),
        (dict(options={"aigc_watermark": True}), "aigc_watermark", "has no option"),
    ],
)
def test_validation_rules(overrides, field, fragment):
    refused = refusal(adapter(), req(**overrides))
    assert field in {v.field for v in refused.violations}
    messages = [v.message for v in refused.violations]
    assert all(m.startswith("MiniMax: ") for m in messages)
    assert any(fragment in m for m in messages), messages


def test_the_1080p_rule_names_itself_exactly():
    refused = refusal(adapter(), req(duration=10, resolution="1080p"))
    assert [v.message for v in refused.violations] == ["MiniMax: 1080p supports only 6 seconds"]


@pytest.mark.parametrize(
    "model,mode,duration,resolution,image",
    [
        ("MiniMax-Hailuo-2.3", "text-to-video", 6, "768p", ""),
        ("MiniMax-Hailuo-2.3", "text-to-video", 10, "768p", ""),
        ("MiniMax-Hailuo-2.3", "text-to-video", 6, "1080p", ""),
        ("MiniMax-Hailuo-2.3", "image-to-video", 10, "768p", FIRST_FRAME),
        ("MiniMax-Hailuo-2.3", "image-to-video", 6, "1080p", FIRST_FRAME),
        ("MiniMax-Hailuo-2.3-Fast", "image-to-video", 6, "768p", FIRST_FRAME),
        ("MiniMax-Hailuo-2.3-Fast", "image-to-video", 10, "768p", FIRST_FRAME),
        ("MiniMax-Hailuo-2.3-Fast", "image-to-video", 6, "1080p", FIRST_FRAME),
    ],
)
def test_every_documented_combination_is_accepted(model, mode, duration, resolution, image):
    adapter().validate(
        req(model=model, mode=mode, duration=duration, resolution=resolution, image_url=image,
            options={"prompt_optimizer": True, "fast_pretreatment": False})
    )


def test_image_rules_are_declared():
    rules = MiniMaxAdapter.capabilities.model("MiniMax-Hailuo-2.3-Fast").image_rules
    assert rules.formats == ("jpeg", "png", "webp") and rules.min_short_side_exclusive == 300
    assert (rules.aspect_min, rules.aspect_max) == (0.4, 2.5)


# --- callbacks: the challenge echo, then status pushes -------------------------------------------
def test_challenge_is_echoed():
    body = json.dumps({"challenge": "1a3cs1j-601a-118y-ch52-o48911eabc3u"}).encode()
    assert adapter().callback_challenge({}, body) == {"challenge": "1a3cs1j-601a-118y-ch52-o48911eabc3u"}


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"task_id": "1", "status": "success"}', b'{"challenge": null}'])
def test_other_bodies_are_not_challenges(body):
    assert adapter().callback_challenge({}, body) is None


def test_parse_callback_reads_task_id_and_status():
    push = {"task_id": "115334141465231360", "status": "success", "file_id": "205258526306433", "base_resp": OK}
    hint = adapter().parse_callback({}, json.dumps(push).encode())
    assert (hint.task_id, hint.provider_state) == ("115334141465231360", "success")
    hint = adapter().parse_callback({}, json.dumps({"task_id": 115334141465231360, "status": "failed"}).encode())
    assert hint.task_id == "115334141465231360"
    with pytest.raises(ValueError):
        adapter().parse_callback({}, b"<html>")
    with pytest.raises(ValueError):
        adapter().parse_callback({}, b'{"status": "success"}')


def test_cadence_and_no_balance():
    cadence = adapter().poll_cadence(req())
    assert (cadence.first_delay, cadence.interval) == (15.0, 10.0)
    assert asyncio.run(adapter().fetch_balance(None)) is None


# --- real HTTP against the sandbox ----------------------------------------------------------------


def test_submit_and_poll_to_success_over_http(sandbox):
    a = adapter(sandbox.base_url)
    request = req(options={"prompt_optimizer": True})
    result = run(kit.submit(a, request))
    assert result.task_id
    sent = [r for r in sandbox.requests("api") if r["method"] == "POST"]
    assert sent[-1]["body"] == a.build_submit_body(request)
    first = run(kit.status(a, result.task_id))
    assert first.state in (TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED)
    sandbox.configure(generation_seconds=0)
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.SUCCEEDED, update
    assert update.result_urls and update.result_urls[0].startswith(("http://", "https://"))


def test_fast_image_to_video_over_http(sandbox, image_url):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    request = req(model="MiniMax-Hailuo-2.3-Fast", mode="image-to-video", image_url=image_url)
    result = run(kit.submit(a, request))
    assert kit.poll_until_final(a, result.task_id, "MiniMax-Hailuo-2.3-Fast").state is TaskState.SUCCEEDED


def test_failure_over_http(sandbox):
    sandbox.configure(generation_seconds=0)
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req(prompt="a mouse [fail:1027]")))
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.FAILED
    assert update.fail_code == "1027"


def test_wrong_key_is_permanent(sandbox):
    a = MiniMaxAdapter(api_key="sk-wrong", base_url=sandbox.base_url)
    err = provider_error(kit.submit(a, req()))
    assert err.permanent and err.sent == Sent.YES
    assert err.code in ("1004", "401")


def test_429_is_transient(sandbox):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt="busy [http:429]")))
    assert not err.permanent


def test_rate_limit_knob_is_transient(sandbox):
    sandbox.configure(rate_limit_every=1)
    err = provider_error(kit.submit(adapter(sandbox.base_url), req()))
    assert err.code in ("1002", "429") and not err.permanent


def test_connection_refused_means_not_sent():
    port = closed_port()
    err = provider_error(kit.submit(adapter(f"http://127.0.0.1:{port}"), req()))
    assert err.sent == Sent.NO
