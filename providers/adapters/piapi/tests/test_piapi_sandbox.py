"""Tests of the PiAPI sandbox over real loopback HTTP (plain pytest, no Django).

Run: ``python -m pytest providers/adapters/piapi/tests/test_piapi_sandbox.py -q``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers.sandbox import KnobError, sandbox_kinds, start_sandbox
from providers.sandbox.common import make_png
from providers.sandbox.piapi import check_image_bytes, image_size, rfc3339_nano
from providers.sandbox.testing import WebhookReceiver, headers_and_json, http_call, wait_for

KEY = "sk-sandbox-piapi"
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
ZERO_TIME = "0001-01-01T00:00:00Z"


# ---------------------------------------------------------------- helpers


def http(method, url, body=None, *, key=KEY, headers=None, raw=None, timeout=5.0):
    """Return (status, headers, body bytes) without raising on HTTP errors."""
    auth = None if key is None else {"x-api-key": key}
    return http_call(method, url, body, auth=auth, headers=headers, raw=raw, timeout=timeout)


def api(sb, method, path, body=None, **kw):
    status, headers, data = http(method, sb.base_url + path, body, **kw)
    return status, (json.loads(data) if data else None), headers


def body_for(prompt="autumn wind", *, config=None, **inp):
    """A create-task body like the page's example, with ``inp`` overriding input fields."""
    data = {
        "model": "hailuo",
        "task_type": "video_generation",
        "input": {"prompt": prompt, "model": "v2.3", "expand_prompt": True, "duration": 6, "resolution": 768, **inp},
        "config": config if config is not None else {"service_mode": "public"},
    }
    return data


def create(sb, prompt="autumn wind", **kw):
    return api(sb, "POST", "/api/v1/task", body_for(prompt, **kw))


def create_id(sb, prompt="autumn wind", **kw):
    code, data, _ = create(sb, prompt, **kw)
    assert code == 200, data
    return data["data"]["task_id"]


def get(sb, task_id):
    return api(sb, "GET", f"/api/v1/task/{urllib.parse.quote(task_id)}")


def wait_final(sb, task_id, timeout=6.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, body, _ = get(sb, task_id)
        assert code == 200, body
        if body["data"]["status"].lower() in ("completed", "failed"):
            return body["data"]
        time.sleep(0.03)
    raise AssertionError(f"task {task_id} not final after {timeout}s")


def account(sb):
    code, body, _ = api(sb, "GET", "/account/info")
    assert code == 200 and body["code"] == 200, body
    return body["data"]


def assert_error(code, body, expected, fragment=None):
    assert code == expected, body
    assert body["code"] == expected
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["data"], dict) and body["data"]["detail"]
    if fragment:
        assert fragment.lower() in body["message"].lower(), body


def _start():
    return start_sandbox("piapi", generation_seconds=1, callback_retry_delays=[0.05, 0.1, 0.2], image_fetch_timeout=2)


@pytest.fixture
def sb():
    handle = _start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def shared_sb():
    """One sandbox for the many refusal cases (they create no task)."""
    handle = _start()
    try:
        yield handle
    finally:
        handle.stop()


# ---------------------------------------------------------------- basics


def test_registry_and_handle(sb):
    assert "piapi" in sandbox_kinds()
    assert sb.base_url == sb.origin == f"http://127.0.0.1:{sb.port}"
    knobs = sb.knobs()
    assert knobs["api_keys"] == [KEY]
    assert (knobs["status_case"], knobs["video_field"], knobs["duplicate_webhooks"]) == ("lower", "video", 0)
    for bad in ({"status_case": "camel"}, {"video_field": "url"}, {"duplicate_webhooks": -1}, {"nope": 1}):
        with pytest.raises(KnobError):
            sb.configure(**bad)


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"x-api-key": ""}, {"Authorization": f"Bearer {KEY}"}],
)
def test_auth_refused(sb, headers):
    tid = str(uuid.uuid4())
    for method, path, body in [
        ("POST", "/api/v1/task", body_for()),
        ("GET", f"/api/v1/task/{tid}", None),
        ("GET", "/account/info", None),
    ]:
        code, data, _ = api(sb, method, path, body, key=None, headers=headers)
        assert_error(code, data, 401, "x-api-key")
    assert sb.tasks() == []


def test_runtime_api_keys(sb):
    sb.configure(api_keys=["k-one", "k-two"])
    assert api(sb, "GET", "/account/info", key="k-two")[0] == 200
    assert api(sb, "GET", "/account/info")[0] == 401
    assert http("POST", sb.origin + "/_sandbox/config", {"api_keys": [KEY]}, key=None)[0] == 200
    assert api(sb, "GET", "/account/info")[0] == 200


# ---------------------------------------------------------------- validation


def _with(path, value):
    """A valid body with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    data = body_for()
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


INVALID = [
    (_with("model", "minimax"), "model"),
    (_with("model", ...), "model"),
    (_with("task_type", "image_generation"), "task_type"),
    (_with("input", ...), "input"),
    (_with("input", "autumn wind"), "input"),
    (_with("input.prompt", ...), "prompt"),
    (_with("input.prompt", ""), "prompt"),
    (_with("input.prompt", "   "), "prompt"),
    (_with("input.prompt", 42), "prompt"),
    (_with("input.prompt", "x" * 2001), "2000"),
    (_with("input.model", ...), "input.model"),
    (_with("input.model", "v2.3-pro"), "input.model"),
    (_with("input.model", "hailuo-2.3"), "input.model"),
    (_with("input.expand_prompt", "yes"), "expand_prompt"),
    (_with("input.expand_prompt", 1), "expand_prompt"),
    (_with("input.duration", 5), "duration"),
    (_with("input.duration", "6"), "duration"),
    (_with("input.duration", 6.0), "duration"),
    (_with("input.duration", True), "duration"),
    (_with("input.resolution", "768p"), "resolution"),
    (_with("input.resolution", "768"), "resolution"),
    (_with("input.resolution", "1080p"), "resolution"),
    (_with("input.resolution", 768.0), "resolution"),
    (_with("input.resolution", 720), "resolution"),
    (body_for(duration=10, resolution=1080), "1080p+10s is not supported"),
    (body_for(model="v2.3-fast", duration=10, resolution=1080), "1080p+10s is not supported"),
    (_with("input.image_url", 7), "image_url"),
    (_with("input.image_url", ["https://example.com/a.png"]), "image_url"),
    (_with("input.image_url", "not a url"), "image_url"),
    (_with("config", "public"), "config"),
    (_with("config.service_mode", "private"), "service_mode"),
    (_with("config.service_mode", ""), "service_mode"),
    (body_for(config={"service_mode": "public", "webhook_config": "https://x.test/h"}), "webhook_config"),
    (body_for(config={"webhook_config": {"endpoint": "ftp://x.test/h"}}), "endpoint"),
    (body_for(config={"webhook_config": {"endpoint": 5}}), "endpoint"),
    (body_for(config={"webhook_config": {"endpoint": "https://x.test/h", "secret": 123}}), "secret"),
    ([1, 2], "object"),
]


@pytest.mark.parametrize("body,fragment", INVALID)
def test_validation_rules(shared_sb, body, fragment):
    sb = shared_sb
    sb.reset()
    code, data, _ = api(sb, "POST", "/api/v1/task", body)
    assert_error(code, data, 400, fragment)
    assert sb.tasks() == []


def test_non_json_and_wrong_content_type(sb):
    url = sb.base_url + "/api/v1/task"
    code, _, data = http("POST", url, raw=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(code, json.loads(data), 400, "JSON")
    code, _, data = http("POST", url, raw=json.dumps(body_for()).encode(), headers={"Content-Type": "text/plain"})
    assert_error(code, json.loads(data), 400, "Content-Type")
    assert sb.tasks() == []


def test_unknown_task_routes_and_methods(sb):
    assert_error(*get(sb, str(uuid.uuid4()))[:2], 404)
    assert_error(*get(sb, "nope")[:2], 404)
    assert_error(*api(sb, "GET", "/api/v1/nothing")[:2], 404)
    code, data, headers = api(sb, "GET", "/api/v1/task")
    assert_error(code, data, 405)
    assert headers["Allow"] == "POST"
    assert_error(*api(sb, "POST", "/account/info", {})[:2], 405)


def test_accepted_variants_and_input_echo(sb):
    """Prompt at the limit, both models, every priced combination, defaults, nulls, extra keys."""
    ok = [
        body_for("x" * 2000),
        body_for(model="v2.3", duration=10, resolution=768),
        body_for(model="v2.3", duration=6, resolution=1080),
        body_for(model="v2.3-fast", duration=6, resolution=768),
        body_for(model="v2.3-fast", duration=10, resolution=768),
        body_for(model="v2.3-fast", duration=6, resolution=1080, expand_prompt=False),
        body_for(config={}),
        body_for(config={"service_mode": "public", "webhook_config": {"endpoint": "", "secret": ""}}),
        {**body_for(), "config": None, "extra": 1},
    ]
    for body in ok:
        code, data, _ = api(sb, "POST", "/api/v1/task", body)
        assert code == 200, (body, data)
        assert data["code"] == 200 and data["message"] == "success"
        task = data["data"]
        assert uuid.UUID(task["task_id"]).version == 4
        assert task["status"] == "pending"
        assert task["config"]["service_mode"] == "public"

    # the bare minimum: defaults are filled in and echoed like the seed's example
    code, data, _ = api(sb, "POST", "/api/v1/task", {
        "model": "hailuo", "task_type": "video_generation",
        "input": {"prompt": "p", "model": "v2.3-fast", "duration": None, "image_url": None},
    })
    assert code == 200, data
    assert data["data"]["input"] == {
        "duration": 6, "expand_prompt": False, "image_url": "", "model": "v2.3-fast", "prompt": "p", "resolution": 768,
    }
    assert data["data"]["config"] == {"service_mode": "public", "webhook_config": {"endpoint": "", "secret": ""}}
    # charset in the Content-Type is fine
    code, data, _ = api(sb, "POST", "/api/v1/task", body_for(),
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert code == 200, data


# ---------------------------------------------------------------- lifecycle


def test_state_sequence_to_completed_and_download(sb):
    t0 = time.time()
    code, data, _ = create(sb, "autumn wind")
    assert code == 200
    created = data["data"]
    tid = created["task_id"]
    assert set(created) == {"task_id", "model", "task_type", "status", "config", "input", "output", "meta",
                            "detail", "logs", "error"}
    assert (created["model"], created["task_type"], created["status"]) == ("hailuo", "video_generation", "pending")
    assert created["output"] == {} and created["detail"] is None and created["logs"] == []
    assert created["error"] == {"code": 0, "raw_message": "", "message": "", "detail": None}
    meta = created["meta"]
    assert TIME_RE.match(meta["created_at"]) and meta["created_at"].endswith("Z")
    assert meta["started_at"] == meta["ended_at"] == ZERO_TIME
    assert meta["usage"] == {"type": "llm", "frozen": 2300000, "consume": 0}
    assert meta["is_using_private_pool"] is False

    seen = []
    while True:
        task = get(sb, tid)[1]["data"]
        if not seen or seen[-1] != task["status"]:
            seen.append(task["status"])
        if task["status"] in ("completed", "failed"):
            break
        assert time.time() - t0 < 5
        time.sleep(0.02)
    assert seen == ["pending", "staged", "processing", "completed"]

    final = task
    assert final["error"]["code"] == 0
    assert final["meta"]["usage"] == {"type": "llm", "frozen": 0, "consume": 2300000}
    for k in ("created_at", "started_at", "ended_at"):
        assert TIME_RE.match(final["meta"][k]), final["meta"]
    assert final["meta"]["created_at"] < final["meta"]["started_at"] < final["meta"]["ended_at"]
    assert list(final["output"]) == ["video"]
    url = final["output"]["video"]
    assert url.startswith(sb.origin + f"/files/{tid}.mp4?")

    code, headers, video = http("GET", url, key=None)
    assert code == 200 and headers["Content-Type"] == "video/mp4"
    assert video[4:8] == b"ftyp" and len(video) > 1000
    code, _, part = http("GET", url, key=None, headers={"Range": "bytes=0-7"})
    assert code == 206 and part == video[:8]
    # the same answer on every later poll
    assert get(sb, tid)[1]["data"] == final


def test_status_case_knob(sb):
    sb.configure(status_case="upper")
    tid = create_id(sb, "[seconds:0.3]")
    assert get(sb, tid)[1]["data"]["status"] == "PENDING"
    assert wait_final(sb, tid)["status"] == "COMPLETED"
    sb.configure(status_case="title")
    assert get(sb, tid)[1]["data"]["status"] == "Completed"
    fid = create_id(sb, "[fail] [seconds:0.3]")
    assert create(sb)[1]["data"]["status"] == "Pending"
    assert wait_final(sb, fid)["status"] == "Failed"


def test_video_field_knob(sb):
    tid = create_id(sb, "[seconds:0.2]")
    assert list(wait_final(sb, tid)["output"]) == ["video"]
    for field in ("video_url", "download_url", "video"):
        sb.configure(video_field=field)
        output = get(sb, tid)[1]["data"]["output"]
        assert list(output) == [field]
        code, _, video = http("GET", output[field], key=None)
        assert code == 200 and video[4:8] == b"ftyp"


def test_empty_output_knob(sb):
    sb.configure(empty_output="null")
    assert create(sb)[1]["data"]["output"] is None
    assert wait_final(sb, create_id(sb, "[fail] [seconds:0.2]"))["output"] is None


def test_usage_consume_prices(sb):
    combos = {
        ("v2.3", 768, 6): 2300000, ("v2.3", 768, 10): 4500000, ("v2.3", 1080, 6): 4600000,
        ("v2.3-fast", 768, 6): 1600000, ("v2.3-fast", 768, 10): 2600000, ("v2.3-fast", 1080, 6): 2600000,
    }
    ids = {c: create_id(sb, "[seconds:0.3]", model=c[0], resolution=c[1], duration=c[2]) for c in combos}
    for combo, units in combos.items():
        running = get(sb, ids[combo])[1]["data"]["meta"]["usage"]
        assert running == {"type": "llm", "frozen": units, "consume": 0}, combo
    for combo, units in combos.items():
        assert wait_final(sb, ids[combo])["meta"]["usage"] == {"type": "llm", "frozen": 0, "consume": units}


# ---------------------------------------------------------------- markers and faults


def test_failure_markers_and_seconds(sb):
    ids = {
        "plain": create_id(sb, "quick [seconds:0.3]"),
        "fail": create_id(sb, "bad [fail] [seconds:0.3]"),
        "numeric": create_id(sb, "bad [FAIL:10001] [seconds:0.3]"),
        "named": create_id(sb, "bad [fail:NSFW] [seconds:0.3]"),
    }
    t0 = time.time()
    res = {name: wait_final(sb, tid, timeout=3) for name, tid in ids.items()}
    assert time.time() - t0 < 1.5
    assert res["plain"]["status"] == "completed"
    for name in ("fail", "numeric", "named"):
        r = res[name]
        assert r["status"] == "failed", r
        assert r["output"] == {}
        assert r["error"]["message"] and r["error"]["raw_message"]
        assert r["meta"]["usage"] == {"type": "llm", "frozen": 0, "consume": 0}
        assert TIME_RE.match(r["meta"]["ended_at"]) and r["meta"]["ended_at"] != ZERO_TIME
    assert res["fail"]["error"]["code"] == 10000
    assert res["numeric"]["error"]["code"] == 10001
    assert res["named"]["error"]["code"] == 10000 and res["named"]["error"]["raw_message"] == "NSFW"


def test_fail_rate(sb):
    sb.configure(fail_rate=1)
    final = wait_final(sb, create_id(sb, "[seconds:0.2]"))
    assert final["status"] == "failed" and final["error"]["code"] == 10000


def test_http_markers(sb):
    code, data, headers = create(sb, "busy [http:429]")
    assert_error(code, data, 429)
    assert headers["Retry-After"] == "1"
    assert_error(*create(sb, "[http:500]")[:2], 500)
    assert_error(*create(sb, "[HTTP:503]")[:2], 503)
    assert sb.tasks() == []


def test_hang_marker(sb):
    sb.configure(hang_seconds=2)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("POST", sb.base_url + "/api/v1/task", body_for("slow [hang]"), timeout=0.4)
    assert len(sb.tasks()) == 1


def test_rate_limit_and_5xx_every(sb):
    sb.configure(rate_limit_every=3)
    answers = [api(sb, "GET", "/account/info") for _ in range(6)]
    assert [a[0] for a in answers] == [200, 200, 429, 200, 200, 429]
    assert answers[2][2]["Retry-After"] == "1"
    assert_error(answers[2][0], answers[2][1], 429)
    sb.configure(rate_limit_every=0, error_5xx_every=2)
    assert [api(sb, "GET", "/account/info")[0] for _ in range(4)] == [200, 503, 200, 503]


def test_latency_and_request_log(sb):
    sb.configure(latency_ms=200)
    t0 = time.time()
    tid = create_id(sb)
    assert time.time() - t0 >= 0.2
    posts = [r for r in sb.requests("api") if r["method"] == "POST"]
    assert posts[0]["path"] == "/api/v1/task" and posts[0]["task_id"] == tid
    assert {k.lower(): v for k, v in posts[0]["headers"].items()}["x-api-key"] == KEY
    sb.reset()
    assert sb.tasks() == [] and sb.requests() == []


# ---------------------------------------------------------------- result URLs


def test_result_url_expiry(sb):
    sb.configure(result_ttl=1)
    url = wait_final(sb, create_id(sb, "[seconds:0.1]"))["output"]["video"]
    assert http("GET", url, key=None)[0] == 200
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qs(parts.query)
    tampered = f"{sb.origin}{parts.path}?expires={int(q['expires'][0]) + 999}&sig={q['sig'][0]}"
    assert http("GET", tampered, key=None)[0] == 403
    time.sleep(max(0, int(q["expires"][0]) + 0.05 - time.time()))
    assert http("GET", url, key=None)[:3:2] == (403, b"expired")


# ---------------------------------------------------------------- balance


def test_account_info_and_charging(sb):
    info = account(sb)
    assert set(info) == {"account_id", "account_name", "credits", "equivalent_in_usd"}
    assert info["equivalent_in_usd"] == 100.0 and info["credits"] == 1_000_000_000
    ok = create_id(sb, "[seconds:0.3]", model="v2.3", resolution=1080)  # 0.46
    bad = create_id(sb, "[fail] [seconds:0.3]")  # 0.23, refunded
    assert account(sb)["equivalent_in_usd"] == pytest.approx(100 - 0.46 - 0.23)  # frozen while running
    wait_final(sb, ok)
    wait_final(sb, bad)
    info = account(sb)
    assert info["equivalent_in_usd"] == pytest.approx(99.54)
    assert info["credits"] == 995_400_000


def test_balance_knob_refuses(sb):
    sb.configure(balance=0.5)
    assert account(sb)["equivalent_in_usd"] == 0.5
    create_id(sb, model="v2.3", duration=10)  # 0.45 fits
    code, data, _ = create(sb, model="v2.3-fast")  # 0.16 > 0.05 left
    assert_error(code, data, 402, "insufficient credits")
    assert len(sb.tasks()) == 1


# ---------------------------------------------------------------- webhooks


def Receiver(statuses=()):
    """The shared webhook receiver at ``/hooks/piapi``, keeping each delivery's headers and
    parsed JSON body."""
    return WebhookReceiver(statuses, path="/hooks/piapi", keep=headers_and_json)


def test_webhook_processing_and_final_with_secret(sb):
    rx = Receiver()
    try:
        config = {"service_mode": "public", "webhook_config": {"endpoint": rx.url, "secret": "s3cr3t value"}}
        tid = create_id(sb, "[seconds:0.6]", config=config)
        assert wait_for(lambda: len(rx.received) == 2)
        time.sleep(0.2)
        assert len(rx.received) == 2
        (h1, p1), (h2, p2) = rx.received
        assert h1["x-webhook-secret"] == h2["x-webhook-secret"] == "s3cr3t value"
        assert h1["content-type"] == "application/json"
        assert set(p1) == {"timestamp", "data"} and isinstance(p1["timestamp"], int)
        assert abs(p1["timestamp"] - time.time()) < 5 and p2["timestamp"] >= p1["timestamp"]
        assert (p1["data"]["task_id"], p1["data"]["status"]) == (tid, "processing")
        assert p1["data"]["output"] == {} and p1["data"]["meta"]["usage"]["frozen"] == 2300000
        assert p2["data"]["status"] == "completed" and p2["data"]["output"]["video"]
        assert p2["data"]["config"]["webhook_config"] == {"endpoint": rx.url, "secret": "s3cr3t value"}
        # the final delivery mirrors the get-task data
        assert get(sb, tid)[1]["data"] == p2["data"]
    finally:
        rx.close()


def test_webhook_retries_and_no_secret_header(sb):
    rx = Receiver([500, 503, 204])  # processing: 2 failures then 2xx; final: 200
    try:
        tid = create_id(sb, "[fail] [seconds:0.3]", config={"webhook_config": {"endpoint": rx.url, "secret": ""}})
        assert wait_for(lambda: len(rx.received) == 4)
        time.sleep(0.3)
        assert [p["data"]["status"] for _, p in rx.received] == ["processing"] * 3 + ["failed"]
        assert all("x-webhook-secret" not in h for h, _ in rx.received)
        assert rx.received[0][1] == rx.received[2][1]  # retries repeat the same body
        attempts = sb.requests("callback")
        assert [(a["attempt"], a["status"], a["ok"]) for a in attempts] == [
            (1, 500, False), (2, 503, False), (3, 204, True), (1, 200, True)]
        assert all(a["task_id"] == tid for a in attempts)
        assert rx.received[-1][1]["data"]["error"]["code"] == 10000
    finally:
        rx.close()


def test_webhook_gives_up_after_retries(sb):
    rx = Receiver([500] * 20)
    try:
        create_id(sb, "[seconds:0.3]", config={"webhook_config": {"endpoint": rx.url}})
        assert wait_for(lambda: len(rx.received) == 8)  # 2 notifications x (1 + 3 retries)
        time.sleep(0.15)
        assert len(rx.received) == 8
        assert [p["data"]["status"] for _, p in rx.received] == ["processing"] * 4 + ["completed"] * 4
    finally:
        rx.close()


def test_duplicate_webhooks(sb):
    sb.configure(duplicate_webhooks=2, status_case="upper")
    rx = Receiver()
    try:
        create_id(sb, "[seconds:0.3]", config={"webhook_config": {"endpoint": rx.url, "secret": "k"}})
        assert wait_for(lambda: len(rx.received) == 6)
        time.sleep(0.2)
        statuses = [p["data"]["status"] for _, p in rx.received]
        assert statuses == ["PROCESSING"] * 3 + ["COMPLETED"] * 3
        assert rx.received[3][1] == rx.received[4][1] == rx.received[5][1]
        assert [a["duplicate"] for a in sb.requests("callback")] == [False, True, True] * 2
    finally:
        rx.close()


def test_instant_task_still_notifies_processing_first(sb):
    rx = Receiver()
    try:
        create_id(sb, "[seconds:0]", config={"webhook_config": {"endpoint": rx.url}})
        assert wait_for(lambda: len(rx.received) == 2)
        assert [p["data"]["status"] for _, p in rx.received] == ["processing", "completed"]
    finally:
        rx.close()


# ---------------------------------------------------------------- input images


class ImageServer:
    """Serves fixed bytes per path (for images the control route cannot make)."""

    def __init__(self, files):
        self.files = files

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                data = files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _png_header(width, height):
    """Just enough of a PNG for the size check (the sandbox reads only IHDR)."""
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"


def _jpeg_header(width, height):
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof2 = b"\xff\xc2" + (17).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof2 + b"\xff\xda\x00\x02"


def test_image_rules(sb):
    big = _png_header(1280, 720) + b"\x00" * (20 * 1024 * 1024)
    srv = ImageServer({
        "/huge.png": big,
        "/wide4097.png": _png_header(4097, 1700),
        "/tall4097.png": _png_header(1700, 4097),
        "/max.png": _png_header(4096, 4096),
        "/photo.jpg": _jpeg_header(1920, 1080),
        "/small.jpg": _jpeg_header(299, 400),
        "/webp.webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    })
    o = sb.origin + "/_sandbox/image.png"
    cases = {
        "ok": (o + "?w=1280&h=720", None),
        "min_sides": (o + "?w=300&h=300", None),
        "ratio_5_2": (o + "?w=1000&h=400", None),  # the bounds are inclusive
        "ratio_2_5": (o + "?w=400&h=1000", None),
        "max_sides": (srv.origin + "/max.png", None),
        "jpeg": (srv.origin + "/photo.jpg", None),
        "narrow_299": (o + "?w=299&h=600", "299px is below"),
        "low_299": (o + "?w=600&h=299", "299px is below"),
        "jpeg_small": (srv.origin + "/small.jpg", "299px is below"),
        "wide_4097": (srv.origin + "/wide4097.png", "4097px is above"),
        "tall_4097": (srv.origin + "/tall4097.png", "4097px is above"),
        "too_wide": (o + "?w=1001&h=400", "aspect ratio"),
        "too_tall": (o + "?w=400&h=1001", "aspect ratio"),
        "gif": (sb.origin + "/_sandbox/image.gif", "JPG and PNG"),
        "webp": (srv.origin + "/webp.webp", "JPG and PNG"),
        "huge": (srv.origin + "/huge.png", "20MB"),
        "missing": (srv.origin + "/nothing.png", "HTTP 404"),
    }
    try:
        ids = {name: create_id(sb, "[seconds:0.3]", image_url=url) for name, (url, _) in cases.items()}
        for name, (url, expected) in cases.items():
            final = wait_final(sb, ids[name])
            assert final["input"]["image_url"] == url
            if expected is None:
                assert final["status"] == "completed", (name, final["error"])
            else:
                assert final["status"] == "failed", (name, final)
                assert final["error"]["code"] == 10000
                assert expected.lower() in final["error"]["message"].lower(), (name, final["error"])
                assert final["meta"]["usage"]["consume"] == 0
    finally:
        srv.close()


def test_image_helpers():
    assert image_size(make_png(320, 640)) == ("png", 320, 640)
    assert image_size(_jpeg_header(1920, 1080)) == ("jpeg", 1920, 1080)
    assert check_image_bytes(_jpeg_header(300, 750))["height"] == 750  # exactly 2:5
    for bad in (b"GIF89a....", b"\xff\xd8\xff\xe0\x00", b"\x89PNG\r\n\x1a\n\x00"):
        with pytest.raises(ValueError):
            check_image_bytes(bad)
    assert rfc3339_nano(1769349143125177638) == "2026-01-25T13:52:23.125177638Z"
    assert rfc3339_nano(1769349143500000000) == "2026-01-25T13:52:23.5Z"
    assert rfc3339_nano(1769349143000000000) == "2026-01-25T13:52:23Z"
    assert rfc3339_nano(None) == ZERO_TIME


# ---------------------------------------------------------------- CLI


def test_cli_serves_piapi():
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[4]
    proc = subprocess.Popen(
        [sys.executable, "-m", "providers.sandbox", "piapi", "--port", "0", "--quiet", "--api-key", "k-cli",
         "--status-case", "upper"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening: http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        base_url = line.split("listening: ")[1].strip()
        code, _, data = http("GET", base_url + "/account/info", key="k-cli")
        assert code == 200 and json.loads(data)["data"]["equivalent_in_usd"] == 100.0
        code, _, data = http("GET", base_url + "/_sandbox/config", key=None)
        assert json.loads(data)["status_case"] == "upper"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
