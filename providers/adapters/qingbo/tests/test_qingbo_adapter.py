"""qingbo adapter: contract tests from the documented payloads (seeds/003, providers.md "qingbo"),
every validation rule, error classification, cancel, callbacks, and real HTTP against the
qingbo sandbox."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import httpx
import pytest

from providers.adapters.conftest import AdapterKit, answer, closed_port, provider_error, refusal, run
from providers.adapters.qingbo import QingboAdapter
from providers.base import GenerationRequest, TaskState
from providers.http import ProviderError, ProviderHttp, Sent, Timeouts, make_submit_client

CAT = "一只白猫慵懒地躺在阳光下的窗台上"

kit = AdapterKit(QingboAdapter, model="hailuo-2.3", mode="text-to-video", prompt=CAT, duration=6, resolution="1080p")
req, adapter = kit.req, kit.adapter
QINGBO_KEY = kit.key

SEED_TASK_ID = "task-wave1775285160b950328499"
#: seeds/003 "Response": the documented submit answer.
SEED_ANSWER = {
    "task_id": SEED_TASK_ID,
    "model": "hailuo-2.3",
    "action": "generate",
    "status": "queued",
    "created_at": 1775285160040,
    "progress": 0,
}
SEED_CREATED = datetime(2026, 4, 4, 6, 46, 0, 40000, tzinfo=UTC)


# --- request bodies, exactly as documented (seeds/003) -------------------------------------------
def test_submit_body_matches_the_seed_example():
    """seeds/003, the curl example: model, action, prompt, duration 6, resolution "1080p"; nothing else."""
    assert adapter().build_submit_body(req()) == {
        "model": "hailuo-2.3",
        "action": "generate",
        "prompt": CAT,
        "duration": 6,
        "resolution": "1080p",
    }


def test_submit_posts_the_seed_body_and_reads_the_seed_answer():
    seen = {}

    def handler(request: httpx.Request):
        seen.update(method=request.method, url=str(request.url), auth=request.headers["authorization"],
                    body=json.loads(request.content))
        return answer(200, SEED_ANSWER)

    result = run(kit.mocked(handler)(lambda http: adapter().submit(http, req())))
    assert result.task_id == SEED_TASK_ID and result.raw == SEED_ANSWER
    assert seen == {
        "method": "POST",
        "url": "https://qingbo.dev/v1/tasks",
        "auth": f"Bearer {QINGBO_KEY}",
        "body": {"model": "hailuo-2.3", "action": "generate", "prompt": CAT, "duration": 6, "resolution": "1080p"},
    }


def test_the_seed_answer_parses_as_queued_with_its_millisecond_time():
    update = adapter().parse_status(SEED_ANSWER)
    assert update.state is TaskState.QUEUED and update.task_id == SEED_TASK_ID
    assert update.progress == 0 and update.created_at == SEED_CREATED


def test_submit_answer_without_task_id_is_an_error():
    with pytest.raises(ProviderError, match="no task_id"):
        run(kit.mocked(lambda r: answer(200, {"status": "queued"}))(lambda http: adapter().submit(http, req())))


def test_character_reference_body_matches_the_documented_extra():
    """seeds/003 "Model-Specific Parameters": extra.subject_reference = [{type: character, image: [url]}]."""
    body = adapter().build_submit_body(
        req(mode="subject-reference", resolution="768p", options={"subject_image": "https://example.com/character.jpg"})
    )
    assert body["extra"] == {
        "subject_reference": [{"type": "character", "image": ["https://example.com/character.jpg"]}]
    }
    assert "image_urls" not in body and body["model"] == "hailuo-2.3"


def test_image_to_video_sends_one_image_url_and_the_extra_switches():
    body = adapter().build_submit_body(
        req(mode="image-to-video", duration=10, resolution="768p", image_url="https://example.com/first.png",
            options={"prompt_optimizer": False, "fast_pretreatment": True}),
        callback_url="https://studio.example.com/hooks/qingbo/abc",
    )
    assert body == {
        "model": "hailuo-2.3",
        "action": "generate",
        "prompt": CAT,
        "duration": 10,
        "resolution": "768p",
        "image_urls": ["https://example.com/first.png"],
        "callback_url": "https://studio.example.com/hooks/qingbo/abc",
        "extra": {"prompt_optimizer": False, "fast_pretreatment": True},
    }


def test_first_last_frame_sends_image_urls_and_last_frame():
    """seeds/003 "Common Parameters": last_frame requires image_urls; hailuo-02 only."""
    body = adapter().build_submit_body(
        req(model="hailuo-02", mode="first-last-frame", duration=10, resolution="768p",
            image_url="https://example.com/first.png", options={"last_frame": "https://example.com/last.png"})
    )
    assert body["image_urls"] == ["https://example.com/first.png"]
    assert body["last_frame"] == "https://example.com/last.png"
    assert body["model"] == "hailuo-02" and "extra" not in body


def test_director_and_s2v_models_send_their_resolution_lower_case():
    body = adapter().build_submit_body(
        req(model="I2V-01-Director", mode="image-to-video", resolution="720p", image_url="https://e.com/a.jpg")
    )
    assert (body["model"], body["resolution"], body["duration"]) == ("I2V-01-Director", "720p", 6)


@pytest.mark.parametrize(
    "model,sent",
    [("hailuo-2.3", "minimax-hailuo-2.3"), ("hailuo-2.3-fast", "minimax-hailuo-2.3-fast"), ("hailuo-02", "hailuo-02")],
)
def test_minimax_naming_renames_the_2_3_series_only(model, sent):
    resolution = "768p"
    body = adapter(model_naming="minimax").build_submit_body(req(model=model, resolution=resolution))
    assert body["model"] == sent
    assert adapter(model_naming="seed").build_submit_body(req(model=model, resolution=resolution))["model"] == model


def test_aspect_ratio_is_sent_top_level_with_minimax_naming():
    a = adapter(model_naming="minimax")
    request = req(options={"aspect_ratio": "9:16"})
    a.validate(request)
    body = a.build_submit_body(request)
    assert body["aspect_ratio"] == "9:16" and body["model"] == "minimax-hailuo-2.3" and "extra" not in body


def test_request_naming_overrides_the_account():
    a = adapter(model_naming="seed")
    request = req(options={"model_naming": "minimax", "aspect_ratio": "1:1"})
    a.validate(request)
    body = a.build_submit_body(request)
    assert body["model"] == "minimax-hailuo-2.3" and "model_naming" not in body and "model_naming" not in body.get("extra", {})


def test_billing_facts_use_our_model_id_whatever_the_naming():
    facts = adapter(model_naming="minimax").billing_facts(req())
    assert (facts.provider_kind, facts.model, facts.mode, facts.seconds, facts.resolution) == (
        "qingbo", "hailuo-2.3", "text-to-video", 6, "1080p",
    )


# --- status parsing (providers.md, qingbo; qingbo "Query Task Status") ------------------------------
def task(**kw) -> dict:
    body = {
        "task_id": SEED_TASK_ID,
        "status": "processing",
        "action": "generate",
        "model": "hailuo-2.3",
        "progress": 40,
        "created_at": 1775285160040,
        "urls": {
            "get": f"https://www.qingbo.dev/v1/tasks/{SEED_TASK_ID}",
            "cancel": f"https://www.qingbo.dev/v1/tasks/{SEED_TASK_ID}/cancel",
        },
    }
    body.update(kw)
    return body


COMPLETED_STRING = task(
    status="completed", progress=100, completed_at=1775285230000,
    result={"videos": [{"url": "https://cdn.qingbo.dev/v/1.mp4", "expires_at": 1775371630}]},
)
COMPLETED_LIST = task(
    status="completed", progress=100, completed_at=1775285230,
    result={"images": [], "videos": [{"url": ["https://cdn.qingbo.dev/v/1.mp4"], "expires_at": 1775371630040}]},
)
FAILED = task(
    status="failed", progress=0, completed_at=1775285170040,
    error={"message": "content moderation rejected the prompt", "code": "task_failed"},
)


@pytest.mark.parametrize(
    "status,expected",
    [
        ("queued", TaskState.QUEUED),
        ("processing", TaskState.RUNNING),
        ("failed", TaskState.FAILED),
        ("cancelled", TaskState.CANCELED),
        ("canceled", TaskState.CANCELED),
        ("COMPLETED", TaskState.UNKNOWN),  # completed without a video: polled again
        ("paused", TaskState.UNKNOWN),
        ("", TaskState.UNKNOWN),
    ],
)
def test_every_documented_state_and_unknown_ones(status, expected):
    update = adapter().parse_status(task(status=status))
    assert update.state is expected and update.provider_state == status


@pytest.mark.parametrize("body", [COMPLETED_STRING, COMPLETED_LIST], ids=["url-string", "url-list"])
def test_completed_reads_the_video_url_as_a_string_or_a_list(body):
    update = adapter().parse_status(body)
    assert update.state is TaskState.SUCCEEDED
    assert update.result_urls == ("https://cdn.qingbo.dev/v/1.mp4",)
    assert update.progress == 100 and update.task_id == SEED_TASK_ID


def test_timestamps_in_seconds_and_milliseconds_give_the_same_instant():
    in_ms = adapter().parse_status(COMPLETED_STRING)
    in_s = adapter().parse_status(task(created_at=1775285160, completed_at=1775285230, status="completed",
                                       result=COMPLETED_STRING["result"]))
    assert in_ms.created_at == SEED_CREATED
    assert in_s.created_at == SEED_CREATED.replace(microsecond=0)
    assert in_ms.completed_at == in_s.completed_at == datetime(2026, 4, 4, 6, 47, 10, tzinfo=UTC)
    assert adapter().parse_status(COMPLETED_LIST).completed_at == in_s.completed_at


def test_several_videos_and_several_urls_are_all_kept_once():
    body = task(status="completed", result={"videos": [
        {"url": ["https://a/1.mp4", "https://a/2.mp4"]}, {"url": "https://a/1.mp4"}, {"url": ""}, {"expires_at": 1},
    ]})
    assert adapter().parse_status(body).result_urls == ("https://a/1.mp4", "https://a/2.mp4")


def test_failed_keeps_the_error_code_and_message():
    update = adapter().parse_status(FAILED)
    assert update.state is TaskState.FAILED
    assert (update.fail_code, update.fail_message) == ("task_failed", "content moderation rejected the prompt")
    assert update.completed_at == datetime(2026, 4, 4, 6, 46, 10, 40000, tzinfo=UTC)


def test_failed_with_a_text_error_or_none():
    assert adapter().parse_status(task(status="failed", error="boom")).fail_message == "boom"
    update = adapter().parse_status(task(status="failed"))
    assert update.state is TaskState.FAILED and update.fail_message == "" and update.fail_code == ""


def test_progress_is_clamped_and_garbage_ignored():
    assert adapter().parse_status(task(progress=140)).progress == 100
    assert adapter().parse_status(task(progress="x")).progress is None
    assert adapter().parse_status(task(progress=None)).progress is None


def test_a_task_wrapped_in_data_is_read_too():
    update = adapter().parse_status({"data": COMPLETED_LIST})
    assert update.state is TaskState.SUCCEEDED and update.task_id == SEED_TASK_ID


def test_task_links_absolute_as_documented():
    links = adapter().task_links(task())
    assert links == {
        "get": f"https://www.qingbo.dev/v1/tasks/{SEED_TASK_ID}",
        "cancel": f"https://www.qingbo.dev/v1/tasks/{SEED_TASK_ID}/cancel",
    }
    assert adapter("https://www.qingbo.dev").task_links(task()) == links


def test_task_links_relative_are_resolved_against_the_base_url():
    body = task(urls={"get": f"/v1/tasks/{SEED_TASK_ID}", "cancel": f"/v1/tasks/{SEED_TASK_ID}/cancel"})
    assert adapter("http://127.0.0.1:8803").task_links(body) == {
        "get": f"http://127.0.0.1:8803/v1/tasks/{SEED_TASK_ID}",
        "cancel": f"http://127.0.0.1:8803/v1/tasks/{SEED_TASK_ID}/cancel",
    }
    # parsing a status never depends on the shape of the links
    assert adapter().parse_status(body).state is TaskState.RUNNING


def test_task_links_to_another_origin_are_dropped():
    body = task(urls={"get": "https://evil.example/v1/tasks/x", "cancel": 42})
    assert adapter().task_links(body) == {}
    assert adapter().task_links(task(urls=None)) == {}


def test_fetch_status_reads_the_documented_path():
    seen = {}

    def handler(request: httpx.Request):
        seen.update(method=request.method, url=str(request.url), auth=request.headers["authorization"])
        return answer(200, COMPLETED_LIST)

    update = run(kit.mocked(handler)(lambda http: adapter().fetch_status(http, task_id=SEED_TASK_ID, model="hailuo-2.3")))
    assert update.state is TaskState.SUCCEEDED
    assert seen == {"method": "GET", "url": f"https://qingbo.dev/v1/tasks/{SEED_TASK_ID}", "auth": f"Bearer {QINGBO_KEY}"}


# --- errors: non-2xx → ProviderError; {error: {message, code}} read tolerantly ---------------------
@pytest.mark.parametrize(
    "http_status,body,permanent,code,text",
    [
        (400, {"error": {"message": "Invalid request parameters", "code": "invalid_request"}}, True, "invalid_request", "Invalid request parameters"),
        (401, {"error": {"message": "Authentication failed", "code": "invalid_api_key"}}, True, "invalid_api_key", "Authentication failed"),
        (402, {"error": {"message": "Insufficient balance", "code": "insufficient_quota"}}, True, "insufficient_quota", "Insufficient balance"),
        (403, {"message": "forbidden"}, True, "403", "forbidden"),
        (404, {"detail": "Task not found"}, True, "404", "Task not found"),
        (422, {"detail": [{"msg": "field required"}, {"msg": "bad duration"}]}, True, "422", "field required; bad duration"),
        (429, {"error": {"message": "Rate limit exceeded", "code": "rate_limit"}}, False, "rate_limit", "Rate limit exceeded"),
        (500, {"error": "Internal server error"}, False, "500", "Internal server error"),
        (503, {}, False, "503", "HTTP 503"),
    ],
)
def test_error_answers_are_classified(http_status, body, permanent, code, text):
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(http_status, body))
    e = err.value
    assert (e.permanent, e.code, e.http_status, e.sent) == (permanent, code, http_status, Sent.YES)
    assert e.message.startswith("qingbo: ") and text in e.message


def test_429_carries_retry_after():
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(answer(429, {"error": {"message": "slow down", "code": "rate_limit"}}, {"Retry-After": "7"}))
    assert err.value.retry_after == 7.0 and not err.value.permanent


def test_non_json_error_is_classified_by_status():
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(httpx.Response(502, text="<html>bad gateway</html>"))
    assert err.value.http_status == 502 and not err.value.permanent and "bad gateway" in err.value.message
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(httpx.Response(401, text="unauthorized"))
    assert err.value.permanent


def test_non_json_success_is_a_transient_error():
    with pytest.raises(ProviderError) as err:
        adapter().read_answer(httpx.Response(200, text="<html>maintenance</html>"))
    assert not err.value.permanent


def test_ok_answer_passes_even_with_a_failed_task_error():
    assert adapter().read_answer(answer(200, FAILED)) == FAILED


# --- cancel (qingbo "Cancel Task": only queued tasks) -----------------------------------------------
def test_cancel_posts_to_the_documented_path():
    seen = {}

    def handler(request: httpx.Request):
        seen.update(method=request.method, url=str(request.url))
        return answer(200, {"task_id": SEED_TASK_ID, "status": "cancelled", "refunded": True, "refunded_quota": 50000})

    assert run(kit.mocked(handler)(lambda http: adapter().cancel(http, task_id=SEED_TASK_ID, model="hailuo-2.3"))) is None
    assert seen == {"method": "POST", "url": f"https://qingbo.dev/v1/tasks/{SEED_TASK_ID}/cancel"}


@pytest.mark.parametrize(
    "http_status,body",
    [
        (400, {"error": {"message": "only queued tasks can be cancelled", "code": "task_not_cancellable"}}),
        (409, {"error": {"message": "task is processing", "code": "conflict"}}),
        (200, {"task_id": SEED_TASK_ID, "status": "processing"}),
        (200, {"task_id": SEED_TASK_ID, "status": "completed"}),
        (200, {"task_id": SEED_TASK_ID, "error": {"message": "cannot cancel", "code": "task_not_cancellable"}}),
    ],
)
def test_a_refused_cancel_is_permanent(http_status, body):
    with pytest.raises(ProviderError) as err:
        run(kit.mocked(lambda r: answer(http_status, body))(
            lambda http: adapter().cancel(http, task_id=SEED_TASK_ID, model="hailuo-2.3")))
    assert err.value.permanent and err.value.message.startswith("qingbo: ")


@pytest.mark.parametrize("http_status", [429, 500, 503])
def test_a_cancel_that_hit_a_busy_provider_is_transient(http_status):
    with pytest.raises(ProviderError) as err:
        run(kit.mocked(lambda r: answer(http_status, {"error": {"message": "busy"}}))(
            lambda http: adapter().cancel(http, task_id=SEED_TASK_ID, model="hailuo-2.3")))
    assert not err.value.permanent


# --- validation: every rule, with the provider and the rule named ----------------------------------
IMG = "https://example.com/a.png"


@pytest.mark.parametrize(
    "overrides,account,field,fragment",
    [
        (dict(model="hailuo-9"), {}, "model", "unknown model"),
        (dict(model="minimax-hailuo-2.3"), {}, "model", "unknown model"),
        (dict(mode="pro-text-to-video"), {}, "mode", "has no mode"),
        (dict(mode="first-last-frame", image_url=IMG, options={"last_frame": IMG}), {}, "mode", "first and last frame is offered by hailuo-02 only"),
        (dict(model="hailuo-02", mode="subject-reference", resolution="768p", options={"subject_image": IMG}), {}, "mode", "character reference is offered by the hailuo-2.3 series and S2V-01 only"),
        (dict(model="T2V-01-Director", mode="image-to-video", resolution="768p", image_url=IMG), {}, "mode", "has no mode"),
        (dict(model="I2V-01-Director", mode="text-to-video", resolution="720p"), {}, "mode", "has no mode"),
        (dict(model="S2V-01", mode="text-to-video", resolution="720p"), {}, "mode", "has no mode"),
        (dict(prompt="   "), {}, "prompt", "a prompt is required"),
        (dict(prompt="x" * 2001), {}, "prompt", "limited to 2000 characters"),
        (dict(duration=5), {}, "duration", "takes 6 or 10 seconds"),
        (dict(duration=10), {}, "duration", "1080p supports only 6 seconds"),
        (dict(resolution="720p"), {}, "resolution", "768p, 1080p only"),
        (dict(resolution="4k"), {}, "resolution", "768p, 1080p only"),
        (dict(model="hailuo-02", resolution="1080p"), {}, "resolution", "768p only"),
        (dict(model="T2V-01-Director", duration=10, resolution="768p"), {}, "duration", "takes 6 seconds"),
        (dict(model="S2V-01", mode="subject-reference", resolution="768p", options={"subject_image": IMG}), {}, "resolution", "720p only"),
        (dict(mode="image-to-video"), {}, "image_url", "needs exactly one first-frame image"),
        (dict(image_url=IMG), {}, "image_url", "takes no image"),
        (dict(mode="subject-reference", image_url=IMG, options={"subject_image": IMG}), {}, "image_url", "takes no image"),
        (dict(mode="image-to-video", image_url="ftp://example.com/a.png"), {}, "image_url", "http(s) URL"),
        (dict(model="hailuo-02", mode="first-last-frame", resolution="768p", image_url=IMG), {}, "last_frame", "Last frame is required"),
        (dict(model="hailuo-02", mode="first-last-frame", resolution="768p", image_url=IMG, options={"last_frame": "file:///etc/passwd"}), {}, "last_frame", "Last frame must be an http(s) URL"),
        (dict(model="hailuo-02", mode="image-to-video", resolution="768p", image_url=IMG, options={"last_frame": IMG}), {}, "last_frame", "has no option 'last_frame'"),
        (dict(mode="subject-reference"), {}, "subject_image", "Character image is required"),
        (dict(mode="subject-reference", options={"subject_image": "character.jpg"}), {}, "subject_image", "Character image must be an http(s) URL"),
        (dict(options={"prompt_optimizer": "yes"}), {}, "prompt_optimizer", "Prompt optimizer must be true or false"),
        (dict(options={"fast_pretreatment": 1}), {}, "fast_pretreatment", "Fast pretreatment must be true or false"),
        (dict(model="T2V-01-Director", resolution="768p", options={"fast_pretreatment": True}), {}, "fast_pretreatment", "has no option"),
        (dict(options={"aspect_ratio": "9:16"}), {}, "aspect_ratio", "aspect_ratio is documented only with the minimax-hailuo-2.3 model names"),
        (dict(options={"aspect_ratio": "4:3"}), {"model_naming": "minimax"}, "aspect_ratio", "Aspect ratio must be one of 16:9, 9:16, 1:1"),
        (dict(model="hailuo-02", resolution="768p", options={"aspect_ratio": "16:9"}), {"model_naming": "minimax"}, "aspect_ratio", "has no option"),
        (dict(options={"model_naming": "qwave"}), {}, "model_naming", "Model naming must be one of seed, minimax"),
        (dict(), {"model_naming": "qwave"}, "model_naming", "model naming must be seed or minimax"),
        (dict(options={"callback_events": ["completed"]}), {}, "callback_events", "has no option"),
    ],
)
def test_validation_rules(overrides, account, field, fragment):
    refused = refusal(adapter(**account), req(**overrides))
    assert field in {v.field for v in refused.violations}
    messages = [v.message for v in refused.violations]
    assert all(m.startswith("qingbo: ") for m in messages), messages
    assert any(fragment in m for m in messages), messages


def test_the_1080p_rule_names_itself_exactly():
    refused = refusal(adapter(), req(duration=10))
    assert [v.message for v in refused.violations] == ["qingbo: 1080p supports only 6 seconds"]


def _every_offered_request():
    for model in QingboAdapter.capabilities.models:
        for mode in model.modes:
            for duration, resolution in mode.combos:
                options = {o.name: "https://example.com/ref.png" for o in mode.options if o.required}
                image = "https://example.com/first.png" if mode.image == "required" else ""
                yield pytest.param(
                    GenerationRequest(model.id, mode.id, CAT, duration, resolution, image, options),
                    id=f"{model.id}-{mode.id}-{duration}-{resolution}",
                )


@pytest.mark.parametrize("request_", list(_every_offered_request()))
def test_every_offered_combination_is_accepted(request_):
    adapter().validate(request_)


def test_the_offered_combinations_are_the_documented_ones():
    caps = QingboAdapter.capabilities
    table = {
        (m.id, mode.id): tuple(sorted(mode.combos)) for m in caps.models for mode in m.modes
    }
    two_three = ((6, "1080p"), (6, "768p"), (10, "768p"))
    assert table == {
        ("hailuo-2.3", "text-to-video"): two_three,
        ("hailuo-2.3", "image-to-video"): two_three,
        ("hailuo-2.3", "subject-reference"): two_three,
        ("hailuo-2.3-fast", "text-to-video"): two_three,
        ("hailuo-2.3-fast", "image-to-video"): two_three,
        ("hailuo-2.3-fast", "subject-reference"): two_three,
        ("hailuo-02", "text-to-video"): ((6, "768p"), (10, "768p")),
        ("hailuo-02", "image-to-video"): ((6, "768p"), (10, "768p")),
        ("hailuo-02", "first-last-frame"): ((6, "768p"), (10, "768p")),
        ("T2V-01-Director", "text-to-video"): ((6, "768p"),),
        ("I2V-01-Director", "image-to-video"): ((6, "720p"),),
        ("S2V-01", "subject-reference"): ((6, "720p"),),
    }
    assert caps.cancel and caps.callbacks
    assert [o.name for o in caps.account_options] == ["model_naming"]
    assert caps.account_options[0].choices == ("seed", "minimax") and caps.account_options[0].default == "seed"
    assert all(m.image_rules is None and m.prompt_max_chars == 2000 for m in caps.models)
    flf = caps.model("hailuo-02").mode("first-last-frame")
    assert flf.image == "required" and flf.option("last_frame").kind == "image_url" and flf.option("last_frame").required
    subject = caps.model("S2V-01").mode("subject-reference")
    assert subject.image == "none" and subject.option("subject_image").required
    assert caps.model("hailuo-2.3").mode("text-to-video").option("prompt_optimizer").default is True


# --- callbacks (payload NOT FOUND: a hint) ---------------------------------------------------------
def test_parse_callback_reads_task_id_at_the_top_or_under_data():
    hint = adapter().parse_callback({}, json.dumps(COMPLETED_LIST).encode())
    assert (hint.task_id, hint.provider_state) == (SEED_TASK_ID, "completed")
    hint = adapter().parse_callback({}, json.dumps({"event": "task.completed", "data": {"task_id": "t-1", "status": "failed"}}).encode())
    assert (hint.task_id, hint.provider_state) == ("t-1", "failed")
    assert adapter().parse_callback({}, b'{"task_id": "t-2"}').provider_state == ""


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"status": "completed"}', b'{"data": {}}', b"\xff\xfe"])
def test_parse_callback_refuses_bodies_without_a_task_id(body):
    with pytest.raises(ValueError):
        adapter().parse_callback({}, body)


def test_callbacks_are_not_verified_beyond_the_url_token():
    assert adapter().verify_callback({}, b"{}", secret="s") is None
    assert adapter().callback_challenge({}, b"{}") is None


def test_cadence_is_20_then_10_seconds():
    cadence = adapter().poll_cadence(req())
    assert (cadence.first_delay, cadence.interval) == (20.0, 10.0)


def test_kind_label_and_base_url():
    assert (QingboAdapter.kind, QingboAdapter.label, QingboAdapter.default_base_url) == ("qingbo", "qingbo", "https://qingbo.dev")
    assert adapter("https://www.qingbo.dev/").base_url == "https://www.qingbo.dev"


# --- real HTTP against the sandbox ----------------------------------------------------------------


async def _cancel(a, task_id):
    async with make_submit_client() as client:
        return await a.cancel(ProviderHttp(client, timeouts=Timeouts(read=3)), task_id=task_id, model="hailuo-2.3")


def _last_post(sandbox):
    return [r for r in sandbox.requests("api") if r["method"] == "POST"][-1]


def test_submit_and_poll_to_success_over_http(sandbox):
    a = adapter(sandbox.base_url)
    result = run(kit.submit(a, req()))
    assert result.task_id
    posted = _last_post(sandbox)
    assert posted["path"] == "/v1/tasks" and posted["body"] == a.build_submit_body(req())
    assert posted["headers"]["Authorization"] == f"Bearer {QINGBO_KEY}"
    first = run(kit.status(a, result.task_id))
    assert first.state in (TaskState.QUEUED, TaskState.RUNNING)
    assert first.created_at is not None and abs(first.created_at.timestamp() - time.time()) < 60
    update = kit.poll_until_final(a, result.task_id)
    assert update.state is TaskState.SUCCEEDED, update
    assert update.task_id == result.task_id and update.progress == 100
    assert update.result_urls and update.result_urls[0].startswith(sandbox.origin)
    assert update.completed_at is not None and update.completed_at >= update.created_at
    links = a.task_links(update.raw)
    assert links.get("get", "").endswith(f"/v1/tasks/{result.task_id}")


@pytest.mark.parametrize("as_list", [True, False], ids=["url-list", "url-string"])
def test_both_result_url_shapes_over_http(sandbox, as_list):
    sandbox.configure(url_as_list=as_list, generation_seconds=0, queue_seconds=0)
    a = adapter(sandbox.base_url)
    update = kit.poll_until_final(a, run(kit.submit(a, req())).task_id)
    assert update.state is TaskState.SUCCEEDED
    assert isinstance(update.raw["result"]["videos"][0]["url"], list) is as_list
    assert len(update.result_urls) == 1 and update.result_urls[0].startswith("http")


def test_timestamps_in_seconds_over_http(sandbox):
    sandbox.configure(timestamps_in_seconds=True, generation_seconds=0, queue_seconds=0)
    a = adapter(sandbox.base_url)
    update = kit.poll_until_final(a, run(kit.submit(a, req())).task_id)
    assert update.raw["created_at"] < 1e11
    assert abs(update.created_at.timestamp() - time.time()) < 60
    assert update.completed_at is not None and abs(update.completed_at.timestamp() - time.time()) < 60


def test_failure_over_http(sandbox):
    sandbox.configure(generation_seconds=0, queue_seconds=0)
    a = adapter(sandbox.base_url)
    update = kit.poll_until_final(a, run(kit.submit(a, req(prompt="a cat [fail]"))).task_id)
    assert update.state is TaskState.FAILED and update.fail_message


def test_failure_with_a_code_over_http(sandbox):
    sandbox.configure(generation_seconds=0, queue_seconds=0)
    a = adapter(sandbox.base_url)
    update = kit.poll_until_final(a, run(kit.submit(a, req(prompt="a cat [fail:content_policy]"))).task_id)
    assert update.state is TaskState.FAILED and update.fail_code == "content_policy"


def test_cancel_while_queued_over_http(sandbox):
    sandbox.configure(queue_seconds=30)
    a = adapter(sandbox.base_url)
    task_id = run(kit.submit(a, req())).task_id
    assert run(kit.status(a, task_id)).state is TaskState.QUEUED
    run(_cancel(a, task_id))
    assert _last_post(sandbox)["path"] == f"/v1/tasks/{task_id}/cancel"
    assert run(kit.status(a, task_id)).state is TaskState.CANCELED
    with pytest.raises(ProviderError) as err:  # already cancelled: refused
        run(_cancel(a, task_id))
    assert err.value.permanent


def test_cancel_while_processing_is_refused_over_http(sandbox):
    sandbox.configure(queue_seconds=0, generation_seconds=30)
    a = adapter(sandbox.base_url)
    task_id = run(kit.submit(a, req())).task_id
    deadline = time.monotonic() + 5
    while run(kit.status(a, task_id)).state is not TaskState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    err = provider_error(_cancel(a, task_id))
    assert err.permanent and err.sent == Sent.YES
    assert run(kit.status(a, task_id)).state is TaskState.RUNNING


def test_image_modes_over_http(sandbox, image_url):
    sandbox.configure(generation_seconds=0, queue_seconds=0)
    a = adapter(sandbox.base_url)
    cases = [
        req(mode="image-to-video", image_url=image_url),
        req(model="hailuo-02", mode="first-last-frame", resolution="768p", image_url=image_url,
            options={"last_frame": image_url}),
        req(mode="subject-reference", resolution="768p", options={"subject_image": image_url}),
        req(model="S2V-01", mode="subject-reference", resolution="720p", options={"subject_image": image_url}),
        req(model="I2V-01-Director", mode="image-to-video", resolution="720p", image_url=image_url),
    ]
    for request in cases:
        task_id = run(kit.submit(a, request)).task_id
        assert _last_post(sandbox)["body"] == a.build_submit_body(request)
        update = kit.poll_until_final(a, task_id)
        assert update.state is TaskState.SUCCEEDED, (request, update)


def test_minimax_naming_and_aspect_ratio_over_http(sandbox):
    sandbox.configure(generation_seconds=0, queue_seconds=0)
    a = adapter(sandbox.base_url, model_naming="minimax")
    request = req(model="hailuo-2.3-fast", resolution="768p", options={"aspect_ratio": "9:16"})
    a.validate(request)
    task_id = run(kit.submit(a, request)).task_id
    body = _last_post(sandbox)["body"]
    assert body["model"] == "minimax-hailuo-2.3-fast" and body["aspect_ratio"] == "9:16"
    assert kit.poll_until_final(a, task_id).state is TaskState.SUCCEEDED


def test_every_offered_combination_is_accepted_by_the_sandbox(sandbox, image_url):
    """Cross-check of the capability table against the independently written sandbox."""
    a = adapter(sandbox.base_url)
    for param in _every_offered_request():
        request = param.values[0]
        options = {k: image_url for k in request.options}
        request = GenerationRequest(request.model, request.mode, request.prompt, request.duration,
                                    request.resolution, image_url if request.image_url else "", options)
        assert run(kit.submit(a, request)).task_id, request


def test_callback_reaches_us_and_parses(sandbox, receiver):
    url, received = receiver
    sandbox.configure(generation_seconds=0, queue_seconds=0)
    a = adapter(sandbox.base_url)
    task_id = run(kit.submit(a, req(), callback_url=url)).task_id
    assert _last_post(sandbox)["body"]["callback_url"] == url
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
        run(kit.status(a, task_id))  # a sandbox may advance its tasks on reads
    assert received, "no callback arrived"
    hint = a.parse_callback({}, received[0][1])
    assert hint.task_id == task_id


def test_wrong_key_is_permanent_401(sandbox):
    a = adapter(sandbox.base_url, api_key="sk-wrong")
    err = provider_error(kit.submit(a, req()))
    assert err.http_status == 401 and err.permanent and err.sent == Sent.YES
    assert err.message.startswith("qingbo: ")


def test_429_is_transient(sandbox):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt="busy [http:429]")))
    assert err.http_status == 429 and not err.permanent


def test_rate_limit_every_n_requests_is_transient(sandbox):
    sandbox.configure(rate_limit_every=1)
    err = provider_error(kit.submit(adapter(sandbox.base_url), req()))
    assert err.http_status == 429 and not err.permanent


@pytest.mark.parametrize("status,permanent", [(400, True), (402, True), (404, True), (500, False), (503, False)])
def test_http_markers_are_classified(sandbox, status, permanent):
    err = provider_error(kit.submit(adapter(sandbox.base_url), req(prompt=f"x [http:{status}]")))
    assert err.http_status == status and err.permanent is permanent


def test_unknown_task_is_permanent_404(sandbox):
    err = provider_error(kit.status(adapter(sandbox.base_url), "task-does-not-exist"))
    assert err.http_status == 404 and err.permanent


def test_read_timeout_means_maybe_sent(sandbox):
    sandbox.configure(hang_seconds=3)

    err = provider_error(kit.submit_hanging(adapter(sandbox.base_url), req(prompt="slow [hang]")))
    assert err.sent == Sent.MAYBE and not err.permanent


def test_connection_refused_means_not_sent():
    port = closed_port()
    err = provider_error(kit.submit(adapter(f"http://127.0.0.1:{port}"), req()))
    assert err.sent == Sent.NO
