"""Tests of the qingbo sandbox over real loopback HTTP (plain pytest, no Django).

Run: ``python -m pytest providers/adapters/qingbo/tests/test_qingbo_sandbox.py -q``.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

import pytest

from providers.sandbox import KnobError, sandbox_kinds, start_sandbox
from providers.sandbox.common import make_png
from providers.sandbox.qingbo import price_for, sniff_image
from providers.sandbox.testing import WebhookReceiver, http_call, wait_for

KEY = "sk-sandbox-qingbo"
IMG = "https://example.com/first.jpg"
TASK_ID = re.compile(r"task-wave\d{10}[0-9a-f]{10}")


# ---------------------------------------------------------------- helpers


def http(method, url, body=None, *, key=KEY, headers=None, raw=None, timeout=5.0):
    """Return (status, headers, body bytes) without raising on HTTP errors."""
    auth = None if key is None else {"Authorization": f"Bearer {key}"}
    return http_call(method, url, body, auth=auth, headers=headers, raw=raw, timeout=timeout)


def api(sb, method, path, body=None, **kw):
    status, headers, data = http(method, sb.base_url + path, body, **kw)
    return status, (json.loads(data) if data else None), headers


def submit(sb, prompt="a white cat on a sunny windowsill", model="hailuo-2.3", **fields):
    body = {"model": model, "action": "generate", "prompt": prompt, **fields}
    return api(sb, "POST", "/v1/tasks", body)


def task_id_of(result):
    code, body, _ = result
    assert code == 200, body
    return body["task_id"]


def get(sb, task_id, **kw):
    return api(sb, "GET", f"/v1/tasks/{task_id}", **kw)


def cancel(sb, task_id, **kw):
    return api(sb, "POST", f"/v1/tasks/{task_id}/cancel", raw=b"", **kw)


def wait_status(sb, task_id, statuses=("completed", "failed", "cancelled"), timeout=6.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, body, _ = get(sb, task_id)
        assert code == 200, body
        if body["status"] in statuses:
            return body
        time.sleep(0.03)
    raise AssertionError(f"task {task_id} not in {statuses} after {timeout}s")


def assert_error(code, body, expected_status, fragment=None, error_code=None):
    assert code == expected_status, body
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    if fragment:
        assert fragment.lower() in body["error"]["message"].lower(), body
    if error_code:
        assert body["error"]["code"] == error_code, body


def quota(sb):
    code, _, data = http("GET", sb.origin + "/_sandbox/quota", key=None)
    assert code == 200
    return json.loads(data)


@pytest.fixture
def sb():
    handle = start_sandbox(
        "qingbo", queue_seconds=0.3, generation_seconds=0.5, callback_retry_delays=[0.05, 0.1, 0.2], image_fetch_timeout=2
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def shared_sb():
    """One sandbox for the many validation cases (they create no task)."""
    handle = start_sandbox("qingbo")
    try:
        yield handle
    finally:
        handle.stop()


# ---------------------------------------------------------------- basics


def test_registry_knobs_and_handle(sb):
    assert "qingbo" in sandbox_kinds()
    assert sb.base_url == sb.origin == f"http://127.0.0.1:{sb.port}"
    knobs = sb.knobs()
    assert knobs["api_keys"] == [KEY]
    assert knobs["result_ttl"] == 86400  # "Video links are valid for 24 hours"
    assert (knobs["url_as_list"], knobs["timestamps_in_seconds"], knobs["quota"]) == (True, False, None)
    with pytest.raises(KnobError):
        sb.configure(url_as_list="maybe")
    with pytest.raises(KnobError):
        sb.configure(queue_seconds=-1)
    with pytest.raises(KnobError):
        sb.configure(no_such_knob=1)
    assert sb.configure(url_as_list="false", expires_at_in_seconds="none")["url_as_list"] is False


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic " + KEY}])
def test_auth_refused(sb, headers):
    for method, path, body in [
        ("POST", "/v1/tasks", {"model": "hailuo-2.3", "prompt": "p"}),
        ("GET", "/v1/tasks/task-wave1", None),
        ("POST", "/v1/tasks/task-wave1/cancel", {}),
    ]:
        code, data, _ = api(sb, method, path, body, key=None, headers=headers)
        assert_error(code, data, 401, error_code="invalid_api_key")
    assert sb.tasks() == []


def test_runtime_api_keys_and_tasks_are_per_key(sb):
    sb.configure(api_keys=["k-one", "k-two"])
    tid = task_id_of(api(sb, "POST", "/v1/tasks", {"model": "hailuo-2.3", "prompt": "p"}, key="k-one"))
    assert get(sb, tid, key="k-one")[0] == 200
    assert_error(*get(sb, tid, key="k-two")[:2], 404, error_code="not_found")  # another account's task
    assert_error(*cancel(sb, tid, key="k-two")[:2], 404)
    assert get(sb, tid)[0] == 401  # the default key is no longer accepted
    code, _, _ = http("POST", sb.origin + "/_sandbox/config", {"api_keys": [KEY]}, key=None)
    assert code == 200
    assert submit(sb)[0] == 200


# ---------------------------------------------------------------- validation

INVALID = [
    # (body, message fragment) -- seed 003 tables + newer Hailuo page
    ({"prompt": "p"}, "model is required"),
    ({"model": "hailuo-9", "prompt": "p"}, "unknown model"),
    ({"model": "Hailuo-2.3", "prompt": "p"}, "unknown model"),
    ({"model": "hailuo-2.3", "action": "edit", "prompt": "p"}, "action"),
    ({"model": "hailuo-2.3"}, "prompt is required"),
    ({"model": "hailuo-2.3", "prompt": "  "}, "prompt is required"),
    ({"model": "hailuo-2.3", "prompt": 7}, "prompt must be a string"),
    ({"model": "minimax-hailuo-2.3", "prompt": "x" * 2001}, "2000"),
    ({"model": "hailuo-2.3", "prompt": "p", "duration": 5}, "6 or 10"),
    ({"model": "hailuo-2.3", "prompt": "p", "duration": "6"}, "6 or 10"),
    ({"model": "hailuo-2.3", "prompt": "p", "duration": True}, "6 or 10"),
    ({"model": "hailuo-2.3", "prompt": "p", "duration": 6.5}, "6 or 10"),
    ({"model": "T2V-01-Director", "prompt": "p", "duration": 10}, "duration 6 only"),
    ({"model": "I2V-01-Director", "prompt": "p", "image_urls": [IMG], "duration": 10}, "duration 6 only"),
    ({"model": "S2V-01", "prompt": "p", "duration": 10,
      "extra": {"subject_reference": [{"type": "character", "image": [IMG]}]}}, "duration 6 only"),
    ({"model": "hailuo-2.3", "prompt": "p", "resolution": "1080p", "duration": 10}, "1080p"),
    ({"model": "minimax-hailuo-2.3-fast", "prompt": "p", "resolution": "1080p", "duration": 10}, "1080p"),
    ({"model": "hailuo-2.3", "prompt": "p", "resolution": "4k"}, "resolution"),
    ({"model": "hailuo-2.3", "prompt": "p", "resolution": "720p"}, "resolution"),
    ({"model": "hailuo-2.3", "prompt": "p", "resolution": 768}, "resolution"),
    ({"model": "T2V-01-Director", "prompt": "p", "resolution": "1080p"}, "resolution"),
    ({"model": "minimax-hailuo-2.3", "prompt": "p", "aspect_ratio": "4:3"}, "aspect_ratio"),
    ({"model": "hailuo-2.3", "prompt": "p", "image_urls": IMG}, "image_urls"),
    ({"model": "hailuo-2.3", "prompt": "p", "image_urls": []}, "exactly 1"),
    ({"model": "hailuo-2.3", "prompt": "p", "image_urls": [IMG, IMG]}, "exactly 1"),
    ({"model": "hailuo-2.3", "prompt": "p", "image_urls": ["not a url"]}, "image_urls[0]"),
    ({"model": "hailuo-2.3", "prompt": "p", "image_urls": ["ftp://example.com/a.jpg"]}, "image_urls[0]"),
    ({"model": "hailuo-2.3", "prompt": "p", "image_urls": ["this is not a url at all"]}, "image_urls[0]"),
    ({"model": "hailuo-2.3", "prompt": "p", "image_urls": ["data:image/png;base64,%%%"]}, "image_urls[0]"),
    ({"model": "I2V-01-Director", "prompt": "p"}, "image_urls"),
    ({"model": "minimax-hailuo-2.3", "action": "image2video", "prompt": "p"}, "image2video requires image_urls"),
    ({"model": "hailuo-2.3", "prompt": "p", "image_urls": [IMG], "last_frame": IMG}, "hailuo-02 only"),
    ({"model": "hailuo-02", "prompt": "p", "last_frame": IMG}, "requires image_urls"),
    ({"model": "hailuo-02", "prompt": "p", "image_urls": [IMG], "last_frame": "nope"}, "last_frame"),
    ({"model": "hailuo-02", "image_urls": [IMG]}, "prompt is required"),  # plain image-to-video needs a prompt
    ({"model": "hailuo-2.3", "prompt": "p", "extra": "x"}, "extra must be an object"),
    ({"model": "hailuo-2.3", "prompt": "p", "extra": {"prompt_optimizer": "yes"}}, "prompt_optimizer"),
    ({"model": "hailuo-2.3", "prompt": "p", "extra": {"fast_pretreatment": 1}}, "fast_pretreatment"),
    ({"model": "S2V-01", "prompt": "p"}, "subject_reference is required"),
    ({"model": "hailuo-02", "prompt": "p", "extra": {"subject_reference": [{"type": "character", "image": [IMG]}]}},
     "subject_reference"),
    ({"model": "T2V-01-Director", "prompt": "p", "extra": {"subject_reference": [{"type": "character", "image": [IMG]}]}},
     "subject_reference"),
    ({"model": "hailuo-2.3", "prompt": "p", "extra": {"subject_reference": []}}, "non-empty"),
    ({"model": "hailuo-2.3", "prompt": "p", "extra": {"subject_reference": [{"type": "face", "image": [IMG]}]}},
     '"character"'),
    ({"model": "hailuo-2.3", "prompt": "p", "extra": {"subject_reference": [{"type": "character", "image": IMG}]}},
     "image must be"),
    ({"model": "hailuo-2.3", "prompt": "p", "extra": {"subject_reference": [{"type": "character", "image": ["x"]}]}},
     "image[0]"),
    ({"model": "hailuo-2.3", "prompt": "p", "callback_url": "ftp://x/y"}, "callback_url"),
    ({"model": "hailuo-2.3", "prompt": "p", "callback_events": "completed"}, "callback_events"),
    ([1, 2], "JSON object"),
]


@pytest.mark.parametrize("body,fragment", INVALID)
def test_validation_rules(shared_sb, body, fragment):
    code, data, _ = api(shared_sb, "POST", "/v1/tasks", body)
    assert_error(code, data, 400, fragment, "invalid_request")
    assert shared_sb.tasks() == []


def test_non_json_wrong_content_type_and_routes(sb):
    url = sb.base_url + "/v1/tasks"
    code, _, data = http("POST", url, raw=b"{oops", headers={"Content-Type": "application/json"})
    assert_error(code, json.loads(data), 400, "JSON")
    code, _, data = http("POST", url, raw=json.dumps({"model": "hailuo-2.3", "prompt": "p"}).encode(),
                         headers={"Content-Type": "text/plain"})
    assert_error(code, json.loads(data), 400, "Content-Type")
    assert_error(*get(sb, "task-wave0000000000deadbeef00")[:2], 404, error_code="not_found")
    assert_error(*cancel(sb, "task-wave0000000000deadbeef00")[:2], 404)
    assert_error(*api(sb, "GET", "/v1/tasks")[:2], 405)
    assert_error(*api(sb, "GET", "/v1/tasks/x/cancel")[:2], 405)
    assert_error(*api(sb, "GET", "/v2/elsewhere")[:2], 404)
    assert sb.tasks() == []


def test_accepted_variants(sb):
    png = sb.origin + "/_sandbox/image.png?w=640&h=360"
    char = {"subject_reference": [{"type": "character", "image": [png]}]}
    ok = [
        {"model": "hailuo-2.3", "prompt": "p"},  # defaults: generate, 6 s, 768p
        {"model": "hailuo-2.3", "prompt": "p", "duration": 6, "resolution": "1080p"},
        {"model": "hailuo-2.3", "prompt": "p", "duration": 10, "resolution": "768P"},
        {"model": "hailuo-2.3", "prompt": "p", "extra": {"prompt_optimizer": False, "fast_pretreatment": True, "x": 1}},
        {"model": "hailuo-2.3", "prompt": "p", "extra": char},
        {"model": "hailuo-2.3-fast", "prompt": "p", "image_urls": [png], "duration": 10},
        {"model": "hailuo-2.3-fast", "prompt": "p", "extra": char},
        {"model": "hailuo-02", "prompt": "p", "resolution": "1080p"},
        {"model": "hailuo-02", "image_urls": [png], "last_frame": png},  # first/last frame: prompt optional
        {"model": "T2V-01-Director", "prompt": "[Pan left] p"},
        {"model": "T2V-01-Director", "prompt": "p", "image_urls": [png]},  # "Image-to-video: All"
        {"model": "I2V-01-Director", "prompt": "p", "image_urls": [png], "resolution": "720p"},
        {"model": "S2V-01", "prompt": "p", "extra": char},
        {"model": "minimax-hailuo-2.3", "prompt": "x" * 2000, "resolution": "1080p", "aspect_ratio": "16:9"},
        {"model": "minimax-hailuo-2.3", "action": "image2video", "prompt": "p", "image_urls": [png], "aspect_ratio": "9:16"},
        {"model": "minimax-hailuo-2.3-fast", "prompt": "p", "duration": 10, "aspect_ratio": "1:1",
         "callback_url": "http://127.0.0.1:9/hook", "callback_events": ["completed"]},
    ]
    for body in ok:
        code, data, _ = api(sb, "POST", "/v1/tasks", body)
        assert code == 200, (body, data)
        assert TASK_ID.fullmatch(data["task_id"]), data
        assert data["model"] == body["model"]
        assert data["action"] == body.get("action", "generate")
    code, data, _ = api(sb, "POST", "/v1/tasks", {"model": "hailuo-2.3", "prompt": "p"},
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert code == 200
    tasks = {t["task_id"]: t for t in sb.tasks()}
    first = tasks[sorted(tasks, key=lambda k: tasks[k]["created"])[0]]
    assert (first["duration"], first["resolution"]) == (6, "768p")
    s2v = [t for t in tasks.values() if t["model"] == "S2V-01"][0]
    assert s2v["resolution"] == "720p"  # the table's default for S2V-01


# ---------------------------------------------------------------- lifecycle


def test_submit_poll_complete_and_download(sb):
    t0 = time.time()
    code, data, _ = submit(sb, resolution="1080p", duration=6)
    assert code == 200
    assert set(data) == {"task_id", "model", "action", "status", "created_at", "progress"}
    assert (data["model"], data["action"], data["status"], data["progress"]) == ("hailuo-2.3", "generate", "queued", 0)
    assert abs(data["created_at"] / 1000 - t0) < 2  # Unix milliseconds
    tid = data["task_id"]
    assert TASK_ID.fullmatch(tid)

    code, body, _ = get(sb, tid)
    assert code == 200
    assert body["status"] == "queued" and body["progress"] == 0
    assert body["created_at"] == data["created_at"]
    assert body["urls"] == {"get": f"{sb.base_url}/v1/tasks/{tid}", "cancel": f"{sb.base_url}/v1/tasks/{tid}/cancel"}
    for absent in ("completed_at", "result", "error", "start_time"):
        assert absent not in body

    body = wait_status(sb, tid, ("processing",))
    assert 1 <= body["progress"] <= 99 and body["start_time"] >= body["created_at"]
    assert "completed_at" not in body and "result" not in body

    final = wait_status(sb, tid)
    assert final["status"] == "completed" and final["progress"] == 100
    assert "error" not in final
    assert 0.7 <= (final["completed_at"] - final["created_at"]) / 1000 <= 1.5
    (video,) = final["result"]["videos"]
    assert isinstance(video["url"], list) and len(video["url"]) == 1  # default: "always an array"
    url = video["url"][0]
    assert f"/files/{tid}.mp4?" in url
    assert abs(video["expires_at"] - (final["completed_at"] + 86400 * 1000)) <= 1000

    code, headers, mp4 = http("GET", url, key=None)
    assert code == 200 and headers["Content-Type"] == "video/mp4"
    assert mp4[4:8] == b"ftyp" and int(headers["Content-Length"]) == len(mp4)
    code, headers, part = http("GET", url, key=None, headers={"Range": "bytes=0-7"})
    assert code == 206 and part == mp4[:8]
    assert get(sb, tid)[1] == final  # stable once final


def test_url_shapes_and_timestamp_units(sb):
    tid = task_id_of(submit(sb, "[queue:0] [seconds:0.1]"))
    final = wait_status(sb, tid)
    url = final["result"]["videos"][0]["url"][0]

    sb.configure(url_as_list=False)
    as_string = get(sb, tid)[1]
    assert as_string["result"]["videos"][0]["url"] == url

    sb.configure(timestamps_in_seconds=True)
    secs = get(sb, tid)[1]
    for name in ("created_at", "start_time", "completed_at"):
        assert secs[name] == final[name] // 1000, name
        assert secs[name] < 10**10 < final[name]
    assert secs["result"]["videos"][0]["expires_at"] * 1000 == final["result"]["videos"][0]["expires_at"]
    code, data, _ = submit(sb)
    assert code == 200 and data["created_at"] < 10**10  # the submit answer follows the knob too

    sb.configure(expires_at_in_seconds=False)  # mixed: seconds, but expires_at in ms
    mixed = get(sb, tid)[1]
    assert mixed["created_at"] < 10**10 < mixed["result"]["videos"][0]["expires_at"]
    sb.configure(timestamps_in_seconds=False, expires_at_in_seconds=True)
    mixed = get(sb, tid)[1]
    assert mixed["result"]["videos"][0]["expires_at"] < 10**10 < mixed["created_at"]


def test_cancel_while_queued_and_refusals(sb):
    sb.configure(quota=5)
    tid = task_id_of(submit(sb, "[queue:5]", model="minimax-hailuo-2.3", duration=10))  # 0.5185 USD
    assert quota(sb)["remaining"] == pytest.approx(5 - 0.5185)
    code, data, _ = cancel(sb, tid)
    assert code == 200
    assert data == {"task_id": tid, "status": "cancelled", "refunded": True, "refunded_quota": 259250}
    assert quota(sb)["remaining"] == pytest.approx(5)
    body = get(sb, tid)[1]
    assert body["status"] == "cancelled" and body["progress"] == 0
    assert body["completed_at"] >= body["created_at"]
    assert "result" not in body and "error" not in body and "start_time" not in body
    assert_error(*cancel(sb, tid)[:2], 400, "already cancelled", "task_not_cancellable")
    time.sleep(0.1)
    assert get(sb, tid)[1]["status"] == "cancelled"  # stays cancelled

    tid = task_id_of(submit(sb, "[queue:0] [seconds:5]"))
    wait_status(sb, tid, ("processing",))
    assert_error(*cancel(sb, tid)[:2], 400, "only queued tasks can be cancelled", "task_not_cancellable")

    tid = task_id_of(submit(sb, "[queue:0] [seconds:0]"))
    wait_status(sb, tid)
    assert_error(*cancel(sb, tid)[:2], 400, "completed")


# ---------------------------------------------------------------- failures and faults


def test_failure_markers_and_fail_rate(sb):
    ids = {
        "fail": task_id_of(submit(sb, "bad [fail] [queue:0.05] [seconds:0.1]")),
        "code": task_id_of(submit(sb, "nsfw [FAIL:sensitive_content] [queue:0.05] [seconds:0.1]")),
    }
    sb.configure(fail_rate=1)
    ids["rate"] = task_id_of(submit(sb, "[queue:0.05] [seconds:0.1]"))
    results = {name: wait_status(sb, tid) for name, tid in ids.items()}
    for name, body in results.items():
        assert body["status"] == "failed", name
        assert body["progress"] == 0 and "result" not in body and body["completed_at"] >= body["created_at"]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert results["fail"]["error"]["code"] == "task_failed"
    assert results["code"]["error"]["code"] == "sensitive_content"
    assert results["rate"]["error"]["code"] == "task_failed"


def test_http_markers(sb):
    code, data, headers = submit(sb, "busy [http:429]")
    assert_error(code, data, 429, error_code="rate_limit_exceeded")
    assert headers["Retry-After"] == "1"
    assert_error(*submit(sb, "[http:500]")[:2], 500, error_code="internal_error")
    assert_error(*submit(sb, "[HTTP:402]")[:2], 402, error_code="insufficient_quota")
    assert sb.tasks() == []


def test_rate_limit_and_5xx_every(sb):
    tid = task_id_of(submit(sb))
    sb.configure(rate_limit_every=3)
    results = [get(sb, tid) for _ in range(6)]
    assert [r[0] for r in results] == [200, 200, 429, 200, 200, 429]
    assert results[2][2]["Retry-After"] == "1"
    assert_error(results[2][0], results[2][1], 429, error_code="rate_limit_exceeded")
    sb.configure(rate_limit_every=0, error_5xx_every=2)
    results = [get(sb, tid) for _ in range(4)]
    assert [r[0] for r in results] == [200, 503, 200, 503]
    assert_error(results[1][0], results[1][1], 503, error_code="service_unavailable")


def test_hang_marker(sb):
    sb.configure(hang_seconds=2)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("POST", sb.base_url + "/v1/tasks", {"model": "hailuo-2.3", "prompt": "slow [hang]"}, timeout=0.4)
    assert len(sb.tasks()) == 1  # created although the answer never came in time


def test_result_url_expiry_and_signature(sb):
    sb.configure(result_ttl=1)
    tid = task_id_of(submit(sb, "[queue:0] [seconds:0.1]"))
    video = wait_status(sb, tid)["result"]["videos"][0]
    url = video["url"][0]
    parts = urllib.parse.urlsplit(url)
    expires = int(urllib.parse.parse_qs(parts.query)["expires"][0])
    assert video["expires_at"] == expires * 1000
    assert http("GET", url, key=None)[0] == 200
    assert http("GET", f"{sb.origin}{parts.path}", key=None)[0] == 403  # unsigned
    time.sleep(max(0, expires + 0.05 - time.time()))
    assert http("GET", url, key=None)[:3:2] == (403, b"expired")


# ---------------------------------------------------------------- input images


def test_image_checks(sb):
    o = sb.origin
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/img.png"
    png_b64 = base64.b64encode(make_png(32, 32)).decode()
    cases = {
        "png": ({"image_urls": [o + "/_sandbox/image.png?w=640&h=360"]}, None),
        "gif": ({"image_urls": [o + "/_sandbox/image.gif"]}, None),
        "data_url": ({"image_urls": ["data:image/png;base64," + png_b64]}, None),
        "bare_base64": ({"image_urls": [png_b64]}, None),
        "missing": ({"image_urls": [o + "/_sandbox/no-such.png"]}, "404"),
        "unreachable": ({"image_urls": [dead]}, "cannot fetch"),
        "not_image": ({"image_urls": [o + "/_sandbox/health"]}, "not an image"),
        "b64_not_image": ({"image_urls": [base64.b64encode(b"hello, this is text").decode()]}, "not an image"),
        "bad_last": ({"image_urls": [o + "/_sandbox/image.png"], "last_frame": o + "/_sandbox/health"}, "last_frame"),
        "bad_char": ({"extra": {"subject_reference": [{"type": "character", "image": [dead]}]}}, "subject_reference"),
    }
    ids = {}
    for name, (fields, _) in cases.items():
        model = "hailuo-02" if "last_frame" in fields else "hailuo-2.3"
        ids[name] = task_id_of(submit(sb, "[queue:0.05] [seconds:0.1]", model=model, **fields))
    for name, (_, expected) in cases.items():
        body = wait_status(sb, ids[name])
        if expected is None:
            assert body["status"] == "completed", (name, body)
        else:
            assert body["status"] == "failed", (name, body)
            assert body["error"]["code"] == "task_failed"
            assert expected in body["error"]["message"], (name, body)


def test_sniff_image():
    assert sniff_image(make_png(2, 2)) == "png"
    assert sniff_image(b"\xff\xd8\xff\xe0....") == "jpeg"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_image(b"GIF89a......") == "gif"
    assert sniff_image(b"<html></html>") is None


# ---------------------------------------------------------------- callbacks


def Receiver(statuses):
    """The shared webhook receiver (``providers.sandbox.testing.WebhookReceiver``) at ``/hooks/qingbo``."""
    return WebhookReceiver(statuses, path="/hooks/qingbo")


def test_callback_on_completion_with_retries(sb):
    rx = Receiver([500, 404, 202])
    try:
        tid = task_id_of(submit(sb, "cb [queue:0.05] [seconds:0.1]", callback_url=rx.url))
        assert wait_for(lambda: len(sb.requests("callback")) == 3)
        attempts = sb.requests("callback")
        assert [a["status"] for a in attempts] == [500, 404, 202]  # any 2xx ends the retries
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        assert all(a["task_id"] == tid and a["url"] == rx.url for a in attempts)
        ctype, payload = rx.received[-1]
        assert ctype == "application/json"
        assert payload == get(sb, tid)[1]  # the task object, as GET shows it
        assert payload["status"] == "completed" and payload["result"]["videos"]
        time.sleep(0.3)
        assert len(rx.received) == 3
    finally:
        rx.close()


def test_callback_on_failure_and_cancel_and_give_up(sb):
    rx = Receiver([500] * 10)
    try:
        failed = task_id_of(submit(sb, "[fail] [queue:0.05] [seconds:0.05]", callback_url=rx.url))
        assert wait_for(lambda: len(sb.requests("callback")) == 4)  # 1 + 3 retries, then it gives up
        time.sleep(0.3)
        assert len(rx.received) == 4
        assert rx.received[0][1]["task_id"] == failed and rx.received[0][1]["status"] == "failed"
        rx.statuses = []
        queued = task_id_of(submit(sb, "[queue:5]", callback_url=rx.url))
        assert cancel(sb, queued)[0] == 200
        assert wait_for(lambda: len(rx.received) == 5)
        assert rx.received[-1][1]["task_id"] == queued and rx.received[-1][1]["status"] == "cancelled"
    finally:
        rx.close()


def test_callback_events_filter(sb):
    rx = Receiver([])
    try:
        skipped = task_id_of(submit(sb, "[queue:0] [seconds:0.05]", callback_url=rx.url, callback_events=["failed"]))
        sent = task_id_of(submit(sb, "[fail] [queue:0] [seconds:0.05]", callback_url=rx.url, callback_events=["task.failed"]))
        wait_status(sb, skipped)
        assert wait_for(lambda: len(rx.received) == 1)
        time.sleep(0.2)
        assert [p["task_id"] for _, p in rx.received] == [sent]
    finally:
        rx.close()


# ---------------------------------------------------------------- quota


def test_prices():
    D = Decimal
    assert price_for("minimax-hailuo-2.3", "768p", 6) == D("0.31110")
    assert price_for("hailuo-2.3", "1080p", 6) == D("0.4590")
    assert price_for("minimax-hailuo-2.3-fast", "768p", 10) == D("0.26350")
    assert price_for("hailuo-2.3-fast", "1080p", 6) == D("0.27030")
    assert price_for("hailuo-02", "768p", 10) == D("0.50")  # undocumented: 0.05 USD/s


def test_quota_402_and_refunds(sb):
    assert quota(sb) == {"quota": None, "remaining": None, "spent": 0.0}  # unlimited by default
    sb.configure(quota=1.0)
    big = task_id_of(submit(sb, "[queue:5]", model="minimax-hailuo-2.3", duration=10))  # 0.5185
    task_id_of(submit(sb, "[queue:0] [seconds:0.05]", model="minimax-hailuo-2.3"))  # 0.3111
    assert quota(sb)["remaining"] == pytest.approx(1 - 0.5185 - 0.3111)
    code, data, _ = submit(sb, model="minimax-hailuo-2.3")  # 0.3111 > 0.1704 left
    assert_error(code, data, 402, "insufficient balance", "insufficient_quota")
    assert len(sb.tasks()) == 2
    assert cancel(sb, big)[0] == 200  # refunded
    assert quota(sb)["remaining"] == pytest.approx(1 - 0.3111)
    failed = task_id_of(submit(sb, "[fail] [queue:0] [seconds:0.05]", model="minimax-hailuo-2.3"))
    wait_status(sb, failed)
    assert quota(sb)["remaining"] == pytest.approx(1 - 0.3111)  # failures are refunded (assumed)
    assert sb.configure(balance=2)["quota"] == 2  # alias
    assert quota(sb)["remaining"] == 2
    sb.reset()
    assert quota(sb) == {"quota": 2.0, "remaining": 2.0, "spent": 0.0}
    assert sb.tasks() == [] and sb.requests() == []


# ---------------------------------------------------------------- CLI


def test_cli_bool_knobs_and_clean_exit():
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[4]
    proc = subprocess.Popen(
        [sys.executable, "-m", "providers.sandbox", "qingbo", "--port", "0", "--quiet",
         "--url-as-list", "false", "--timestamps-in-seconds", "true", "--quota", "3", "--api-key", "k-cli"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening: http://127.0.0.1:" in line, line
        base_url = line.split("listening: ")[1].strip()
        code, _, data = http("GET", base_url + "/_sandbox/config", key=None)
        knobs = json.loads(data)
        assert (knobs["url_as_list"], knobs["timestamps_in_seconds"], knobs["quota"]) == (False, True, 3.0)
        code, _, data = http("POST", base_url + "/v1/tasks", {"model": "hailuo-2.3", "prompt": "p"}, key="k-cli")
        assert code == 200 and json.loads(data)["created_at"] < 10**10
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
