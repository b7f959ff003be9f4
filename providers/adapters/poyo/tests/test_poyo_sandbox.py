"""Tests of the PoYo sandbox over real loopback HTTP (plain pytest, no Django).

Run: ``python -m pytest providers/adapters/poyo/tests/test_poyo_sandbox.py -q``.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from providers.sandbox import KnobError, sandbox_kinds, start_sandbox
from providers.sandbox.poyo import credits_for, credits_to_usd, sign_webhook, sniff_image
from providers.sandbox.testing import WebhookReceiver, headers_and_raw, http_call, wait_for

KEY = "sk-sandbox-poyo"
SUBMIT = "/api/generate/submit"
TASK_ID = re.compile(r"task-unified-(\d+)-[a-z0-9]{8}")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


# ---------------------------------------------------------------- helpers


def http(method, url, body=None, *, key=KEY, headers=None, raw=None, timeout=5.0):
    """Return (status, headers, body bytes) without raising on HTTP errors."""
    auth = None if key is None else {"Authorization": f"Bearer {key}"}
    return http_call(method, url, body, auth=auth, headers=headers, raw=raw, timeout=timeout)


def api(sb, method, path, body=None, **kw):
    code, headers, data = http(method, sb.base_url + path, body, **kw)
    return code, (json.loads(data) if data else None), headers


def submit(sb, prompt="a tiktok dancer on a drone", *, key=KEY, callback_url=None, **inp):
    body = {"model": "hailuo-2.3", "input": {"prompt": prompt, **inp}}
    if callback_url:
        body["callback_url"] = callback_url
    return api(sb, "POST", SUBMIT, body, key=key)


def submit_id(sb, prompt="p", **kw):
    code, body, _ = submit(sb, prompt, **kw)
    assert code == 200, body
    return body["data"]["task_id"]


def status(sb, task_id, key=KEY):
    return api(sb, "GET", f"/api/generate/status/{task_id}", key=key)


def wait_final(sb, task_id, timeout=6.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, body, _ = status(sb, task_id)
        assert code == 200, body
        if body["data"]["status"] in ("finished", "failed"):
            return body["data"]
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not final after {timeout}s")


def user_credits(sb):
    code, body, _ = api(sb, "GET", "/api/user/info")
    assert code == 200, body
    assert body["data"]["email"] == "sandbox@poyo.local"
    return body["data"]["credits"]


def assert_error(code, body, expected, fragment=None, type_=None):
    assert code == expected, body
    assert body["code"] == expected
    assert set(body) == {"code", "error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["type"], str) and body["error"]["type"]
    if fragment:
        assert fragment.lower() in body["error"]["message"].lower(), body
    if type_:
        assert body["error"]["type"] == type_


@pytest.fixture
def sb():
    handle = start_sandbox("poyo", generation_seconds=1, callback_retry_delays=[0.05, 0.1, 0.2], image_fetch_timeout=2)
    try:
        yield handle
    finally:
        handle.stop()


# ---------------------------------------------------------------- basics


def test_registry_handle_and_knobs(sb):
    assert "poyo" in sandbox_kinds()
    assert sb.base_url == sb.origin == f"http://127.0.0.1:{sb.port}"
    knobs = sb.knobs()
    assert knobs["api_keys"] == [KEY]
    assert knobs["duplicate_callbacks"] == 0 and knobs["credits"] is None
    assert knobs["webhook_secret"].startswith("whsec_")
    assert "balance" not in knobs  # PoYo counts credits
    with pytest.raises(KnobError):
        sb.configure(duplicate_callbacks=-1)
    with pytest.raises(KnobError):
        sb.configure(credits=1.5)
    with pytest.raises(KnobError):
        sb.configure(balance=3)


def test_prices():
    assert credits_for("768p", 6) == 35
    assert credits_for("768p", 10) == 70
    assert credits_for("1080p", 6) == 60
    assert str(credits_to_usd(35)) == "0.175"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic " + KEY}],
)
def test_auth_refused(sb, headers):
    for method, path, body in [
        ("POST", SUBMIT, {"model": "hailuo-2.3", "input": {"prompt": "p"}}),
        ("GET", "/api/generate/status/task-unified-1-abcdefgh", None),
        ("GET", "/api/user/info", None),
    ]:
        code, data, _ = api(sb, method, path, body, key=None, headers=headers)
        assert_error(code, data, 401)
    assert sb.tasks() == []


def test_runtime_api_keys(sb):
    sb.configure(api_keys=["k-one", "k-two"])
    assert api(sb, "GET", "/api/user/info", key="k-two")[0] == 200
    assert api(sb, "GET", "/api/user/info")[0] == 401
    code, _, _ = http("POST", sb.origin + "/_sandbox/config", {"api_keys": [KEY]}, key=None)
    assert code == 200
    assert api(sb, "GET", "/api/user/info")[0] == 200


# ---------------------------------------------------------------- validation

IMG = "https://example.com/first.png"


def body(**inp):
    return {"model": "hailuo-2.3", "input": {"prompt": "p", **inp}}


INVALID = [
    ([1, 2], "JSON object"),
    ({"input": {"prompt": "p"}}, "model"),
    ({"model": "hailuo-2-3", "input": {"prompt": "p"}}, "model"),
    ({"model": "hailuo-2.3-fast", "input": {"prompt": "p"}}, "model"),
    ({"model": "hailuo-2.3"}, "input"),
    ({"model": "hailuo-2.3", "input": "p"}, "input"),
    ({"model": "hailuo-2.3", "input": {}}, "prompt"),
    ({"model": "hailuo-2.3", "input": {"prompt": ""}}, "prompt"),
    ({"model": "hailuo-2.3", "input": {"prompt": "   "}}, "prompt"),
    ({"model": "hailuo-2.3", "input": {"prompt": 5}}, "prompt"),
    ({"model": "hailuo-2.3", "input": {"prompt": "x" * 5001}}, "5000"),
    (body(duration=5), "duration"),
    (body(duration="6"), "duration"),
    (body(duration=6.0), "duration"),
    (body(duration=True), "duration"),
    (body(resolution="720p"), "resolution"),
    (body(resolution="1080P"), "resolution"),
    (body(resolution=1080), "resolution"),
    (body(resolution="1080p", duration=10), "1080p only supports duration=6"),
    (body(end_image_url=IMG), "end_image_url is not supported"),
    (body(start_image_url=IMG, end_image_url=IMG), "end_image_url"),
    (body(start_image_url="not a url"), "start_image_url"),
    (body(start_image_url=[IMG]), "start_image_url"),
    (body(prompt_optimizer="yes"), "prompt_optimizer"),
    (body(image_urls=[IMG]), "image_urls"),
    (body(aspect_ratio="16:9"), "aspect_ratio"),
    ({**body(), "callback_url": "ftp://x/y"}, "callback_url"),
    ({**body(), "webhook_url": "https://x/y"}, "webhook_url"),
]


@pytest.mark.parametrize("payload,fragment", INVALID)
def test_validation_rules(sb, payload, fragment):
    code, data, _ = api(sb, "POST", SUBMIT, payload)
    assert_error(code, data, 400, fragment, "invalid_request_error")
    assert sb.tasks() == []


def test_non_json_and_wrong_content_type(sb):
    url = sb.base_url + SUBMIT
    code, _, data = http("POST", url, raw=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(code, json.loads(data), 400, "JSON")
    code, _, data = http("POST", url, raw=json.dumps(body()).encode(), headers={"Content-Type": "text/plain"})
    assert_error(code, json.loads(data), 400, "Content-Type")
    assert sb.tasks() == []


def test_unknown_routes_and_methods(sb):
    assert_error(*api(sb, "GET", "/api/nothing")[:2], 404)
    assert_error(*api(sb, "GET", "/api/generate/status/task-unified-1-abcdefgh")[:2], 404, type_="not_found_error")
    assert_error(*api(sb, "GET", SUBMIT)[:2], 405)
    assert_error(*api(sb, "POST", "/api/user/info", {})[:2], 405)


def test_accepted_variants_and_submit_response(sb):
    t0 = time.time()
    code, data, _ = submit(sb, "x" * 5000, prompt_optimizer=True)
    assert code == 200, data
    assert data["code"] == 200 and set(data["data"]) == {"task_id", "status", "created_time"}
    m = TASK_ID.fullmatch(data["data"]["task_id"])
    assert m and abs(int(m.group(1)) - t0) < 2
    assert data["data"]["status"] == "not_started"
    created = data["data"]["created_time"]
    assert ISO.fullmatch(created)
    assert abs(calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%S")) - t0) < 2  # UTC, no zone
    for inp in [
        {"duration": 10},
        {"resolution": "1080p"},
        {"resolution": "1080p", "duration": 6, "prompt_optimizer": False},
        {"duration": None, "resolution": None, "start_image_url": None, "end_image_url": None},
    ]:
        code, data, _ = submit(sb, "p", **inp)
        assert code == 200, (inp, data)
    code, data, _ = api(sb, "POST", SUBMIT, {**body(), "callback_url": None},
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert code == 200, data
    got = sorted((t["resolution"], t["duration"], t["price_credits"]) for t in sb.tasks())
    assert got == sorted([("768p", 6, 35), ("768p", 10, 70), ("1080p", 6, 60), ("1080p", 6, 60),
                          ("768p", 6, 35), ("768p", 6, 35)])


# ---------------------------------------------------------------- lifecycle


def test_full_state_sequence_and_download(sb):
    t0 = time.time()
    tid = submit_id(sb, "dance [seconds:2]")

    code, first, _ = status(sb, tid)
    assert code == 200 and first["code"] == 200
    d = first["data"]
    assert d["task_id"] == tid and d["status"] == "not_started" and d["progress"] == 0
    assert d["files"] == [] and d["error_message"] is None and d["finished_time"] is None
    assert ISO.fullmatch(d["created_time"]) and d["credits_amount"] == 35

    time.sleep(max(0, t0 + 0.8 - time.time()))
    early = status(sb, tid)[1]["data"]
    time.sleep(max(0, t0 + 1.5 - time.time()))
    late = status(sb, tid)[1]["data"]
    assert early["status"] == late["status"] == "running"
    assert 0 < early["progress"] < late["progress"] < 100
    assert late["files"] == []

    final = wait_final(sb, tid)
    assert final["status"] == "finished" and final["progress"] == 100
    assert final["error_message"] is None and final["credits_amount"] == 35
    assert ISO.fullmatch(final["finished_time"]) and final["created_time"] == d["created_time"]
    assert len(final["files"]) == 1 and final["files"][0]["file_type"] == "video"
    url = final["files"][0]["file_url"]
    assert url.startswith(f"{sb.origin}/files/{tid}.mp4?")

    code, headers, video = http("GET", url, key=None)
    assert code == 200 and headers["Content-Type"] == "video/mp4"
    assert int(headers["Content-Length"]) == len(video) > 1000 and video[4:8] == b"ftyp"
    code, _, part = http("GET", url, key=None, headers={"Range": "bytes=0-7"})
    assert code == 206 and part == video[:8]

    assert status(sb, tid)[1]["data"] == final  # stable once final


def test_task_of_another_key_is_403(sb):
    sb.configure(api_keys=[KEY, "sk-other"])
    tid = submit_id(sb)
    assert_error(*status(sb, tid, key="sk-other")[:2], 403, "another user", "permission_error")
    assert status(sb, tid)[0] == 200


def test_failure_markers_and_fail_rate(sb):
    ids = {
        "fail": submit_id(sb, "bad [fail] [seconds:0.3]"),
        "text": submit_id(sb, "bad [FAIL:Prompt flagged: violence] [seconds:0.3]"),
        "ok": submit_id(sb, "fine [seconds:0.3]"),
    }
    sb.configure(fail_rate=1)
    ids["random"] = submit_id(sb, "[seconds:0.3]")
    res = {k: wait_final(sb, v) for k, v in ids.items()}
    assert res["ok"]["status"] == "finished"
    for k in ("fail", "text", "random"):
        assert res[k]["status"] == "failed", res[k]
        assert res[k]["files"] == [] and res[k]["credits_amount"] == 0
        assert res[k]["progress"] < 100 and ISO.fullmatch(res[k]["finished_time"])
    assert res["fail"]["error_message"] == "Content moderation failed"
    assert res["text"]["error_message"] == "Prompt flagged: violence"
    assert res["random"]["error_message"]


def test_http_markers(sb):
    code, data, headers = submit(sb, "busy [http:429]")
    assert_error(code, data, 429, type_="rate_limit_error")
    assert headers["Retry-After"] == "1"
    assert_error(*submit(sb, "[http:502]")[:2], 502)
    assert_error(*submit(sb, "[HTTP:403]")[:2], 403)
    assert_error(*submit(sb, "[http:500]")[:2], 500)
    assert sb.tasks() == []


def test_seconds_and_hang_markers(sb):
    sb.configure(hang_seconds=2)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("POST", sb.base_url + SUBMIT, body(prompt="slow [hang] [seconds:0.2]"), timeout=0.4)
    tasks = sb.tasks()
    assert len(tasks) == 1 and tasks[0]["generation_seconds"] == 0.2  # created despite the client timeout


def test_rate_limit_and_5xx_every(sb):
    sb.configure(rate_limit_every=3)
    answers = [api(sb, "GET", "/api/user/info") for _ in range(6)]
    assert [a[0] for a in answers] == [200, 200, 429, 200, 200, 429]
    assert answers[2][2]["Retry-After"] == "1"
    assert_error(answers[2][0], answers[2][1], 429)
    sb.configure(rate_limit_every=0, error_5xx_every=2)
    answers = [api(sb, "GET", "/api/user/info") for _ in range(4)]
    assert [a[0] for a in answers] == [200, 502, 200, 502]
    assert_error(answers[1][0], answers[1][1], 502)


def test_request_log_and_reset(sb):
    tid = submit_id(sb)
    log = json.loads(http("GET", sb.origin + "/_sandbox/requests?kind=api", key=None)[2])
    assert log[0]["path"] == SUBMIT and log[0]["task_id"] == tid and log[0]["status"] == 200
    assert http("POST", sb.origin + "/_sandbox/reset", raw=b"", key=None)[0] == 200
    assert sb.tasks() == [] and sb.requests() == []


def test_result_url_expiry_and_signature(sb):
    sb.configure(result_ttl=1)
    final = wait_final(sb, submit_id(sb, "[seconds:0.1]"))
    url = final["files"][0]["file_url"]
    assert http("GET", url, key=None)[0] == 200
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qs(parts.query)
    tampered = f"{sb.origin}{parts.path}?expires={int(q['expires'][0]) + 999}&sig={q['sig'][0]}"
    assert http("GET", tampered, key=None)[0] == 403
    time.sleep(max(0, int(q["expires"][0]) + 0.05 - time.time()))
    assert http("GET", url, key=None)[0::2] == (403, b"expired")


# ---------------------------------------------------------------- callbacks


def Receiver(statuses=()):
    """The shared webhook receiver at ``/hooks/poyo``, keeping each delivery's headers and
    raw body (signatures are over the exact bytes)."""
    return WebhookReceiver(statuses, path="/hooks/poyo", keep=headers_and_raw)


def test_callback_signed_retried_and_duplicated(sb):
    sb.configure(duplicate_callbacks=2, webhook_secret="whsec_test")
    rx = Receiver([500, 204])  # first delivery: 500 then 204 (any 2xx is accepted)
    try:
        t0 = time.time()
        tid = submit_id(sb, "cb [seconds:0.3]", callback_url=rx.url)
        assert wait_for(lambda: len(rx.received) == 4)
        time.sleep(0.3)
        assert len(rx.received) == 4  # 2 attempts of delivery 1, then 2 duplicates

        final = status(sb, tid)[1]
        for headers, raw in rx.received:
            assert headers["content-type"] == "application/json"
            ts = headers["x-webhook-timestamp"]
            assert ts.isdigit() and abs(int(ts) - t0) < 5
            expected = hmac.new(b"whsec_test", ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
            assert headers["x-webhook-signature"] == expected == sign_webhook("whsec_test", ts, raw)
            payload = json.loads(raw)
            assert payload == final  # the status response's shape
            assert payload["data"]["status"] == "finished" and payload["data"]["files"][0]["file_type"] == "video"

        log = sb.requests("callback")
        assert [(e["delivery"], e["attempt"], e["status"]) for e in log] == [(1, 1, 500), (1, 2, 204), (2, 1, 200), (3, 1, 200)]
        assert [e["duplicate"] for e in log] == [False, False, True, True]
        assert all(e["task_id"] == tid for e in log)
        assert sb.tasks()[0]["callback_attempts"][0] == {"delivery": 1, "attempt": 1, "status": 500, "error": None, "ok": False}
    finally:
        rx.close()


def test_callback_on_failure_gives_up_after_retries(sb):
    rx = Receiver([503] * 10)
    try:
        submit_id(sb, "[fail:Upstream error] [seconds:0.2]", callback_url=rx.url)
        assert wait_for(lambda: len(rx.received) == 4)  # 1 + len(callback_retry_delays)
        time.sleep(0.4)
        assert len(rx.received) == 4
        data = json.loads(rx.received[0][1])["data"]
        assert data["status"] == "failed" and data["error_message"] == "Upstream error" and data["credits_amount"] == 0
        assert "x-webhook-signature" in rx.received[0][0]
    finally:
        rx.close()


def test_no_callback_without_callback_url(sb):
    wait_final(sb, submit_id(sb, "[seconds:0.1]"))
    time.sleep(0.1)
    assert sb.requests("callback") == []


# ---------------------------------------------------------------- credits


def test_credits_accounting(sb):
    assert user_credits(sb) == 10_000
    ids = [
        submit_id(sb, "[seconds:0.2]"),  # 768p 6 s: 35
        submit_id(sb, "[seconds:0.2]", duration=10),  # 768p 10 s: 70
        submit_id(sb, "[seconds:0.2]", resolution="1080p"),  # 1080p 6 s: 60
        submit_id(sb, "[fail] [seconds:0.8]", resolution="1080p"),  # failed: free
    ]
    assert user_credits(sb) == 10_000 - 35 - 70 - 60 - 60  # held while running
    finals = [wait_final(sb, tid) for tid in ids]
    assert [f["credits_amount"] for f in finals] == [35, 70, 60, 0]
    assert user_credits(sb) == 10_000 - 165


def test_credits_knob_refuses_with_400(sb):
    sb.configure(credits=100)
    assert user_credits(sb) == 100
    tid = submit_id(sb, "[fail] [seconds:0.8]", duration=10)  # 70 held until it fails
    code, data, _ = submit(sb, "p")  # 35 > 30 left
    assert_error(code, data, 400, "insufficient credits")
    assert len(sb.tasks()) == 1
    wait_final(sb, tid)
    assert user_credits(sb) == 100  # the failed task gave its credits back
    assert submit(sb, "p")[0] == 200
    sb.reset()
    assert user_credits(sb) == 100


# ---------------------------------------------------------------- input image


def test_start_image_checks(sb):
    o = sb.origin
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/img.png"
    cases = {
        "png": (o + "/_sandbox/image.png?w=640&h=360", None),
        "gif": (o + "/_sandbox/image.gif", None),
        "json": (o + "/_sandbox/health", "not a valid image"),
        "missing": (o + "/_sandbox/no-such.png", "HTTP 404"),
        "dead": (dead, "not reachable"),
    }
    ids = {name: submit_id(sb, "[seconds:0.3]", start_image_url=url) for name, (url, _) in cases.items()}
    for name, (_, expected) in cases.items():
        final = wait_final(sb, ids[name])
        if expected is None:
            assert final["status"] == "finished", (name, final)
        else:
            assert final["status"] == "failed", (name, final)
            assert expected in final["error_message"] and final["credits_amount"] == 0


def test_sniff_image():
    assert sniff_image(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_image(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_image(b"GIF89a") == "gif"
    assert sniff_image(b"<html>") is None and sniff_image(b"") is None


# ---------------------------------------------------------------- CLI


def test_cli_flags():
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[4]
    proc = subprocess.Popen(
        [sys.executable, "-m", "providers.sandbox", "poyo", "--port", "0", "--quiet",
         "--api-key", "k-cli", "--credits", "500", "--duplicate-callbacks", "1"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening: http://127.0.0.1:" in line, line
        base_url = line.split("listening: ")[1].strip()
        code, _, data = http("GET", base_url + "/api/user/info", key="k-cli")
        assert code == 200 and json.loads(data)["data"]["credits"] == 500
        assert json.loads(http("GET", base_url + "/_sandbox/config", key=None)[2])["duplicate_callbacks"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
