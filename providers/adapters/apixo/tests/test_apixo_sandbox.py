"""Tests of the APIXO sandbox over real loopback HTTP (plain pytest, no Django).

Run: ``python -m pytest providers/adapters/apixo/tests/test_apixo_sandbox.py -q``.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from providers.sandbox import KnobError, sandbox_kinds, start_sandbox
from providers.sandbox.apixo import image_dimensions, inspect_image_bytes
from providers.sandbox.testing import WebhookReceiver, http_call, wait_for

KEY = "sk-sandbox-apixo"
T2V = "standard-text-to-video"


# ---------------------------------------------------------------- helpers


def http(method, url, body=None, *, key=KEY, headers=None, raw=None, timeout=5.0):
    """Return (status, headers, body bytes) without raising on HTTP errors."""
    auth = None if key is None else {"Authorization": f"Bearer {key}"}
    return http_call(method, url, body, auth=auth, headers=headers, raw=raw, timeout=timeout)


def api(sb, method, path, body=None, **kw):
    status, headers, data = http(method, sb.base_url + path, body, **kw)
    return status, (json.loads(data) if data else None), headers


def submit(sb, inp, model="hailuo-2-3", **extra):
    return api(sb, "POST", f"/generateTask/{model}", {"request_type": "async", **extra, "input": inp})


def status(sb, task_id, model="hailuo-2-3"):
    return api(sb, "GET", f"/statusTask/{model}?taskId={urllib.parse.quote(task_id)}")


def t2v(prompt="a sunrise over a skyline", duration=6):
    return {"mode": T2V, "prompt": prompt, "duration": duration}


def wait_final(sb, task_id, model="hailuo-2-3", timeout=6.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, body, _ = status(sb, task_id, model)
        assert code == 200, body
        if body["data"]["state"] in ("success", "failed"):
            return body["data"]
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not final after {timeout}s")


def balance(sb):
    code, body, _ = api(sb, "GET", "/apikeys/current-balance")
    assert code == 200
    return body["data"]


def assert_error(code, body, expected_code, message_part=None):
    assert code == expected_code, body
    assert body["code"] == expected_code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["data"]["error"], str) and body["data"]["error"]
    if message_part:
        text = (body["message"] + " " + body["data"]["error"]).lower()
        assert message_part.lower() in text, body


@pytest.fixture
def sb():
    handle = start_sandbox("apixo", generation_seconds=1, callback_retry_delays=[0.05, 0.1, 0.2], image_fetch_timeout=2)
    try:
        yield handle
    finally:
        handle.stop()


# ---------------------------------------------------------------- basics


def test_registry_and_handle(sb):
    assert "apixo" in sandbox_kinds()
    assert sb.base_url == f"http://127.0.0.1:{sb.port}/api/v1"
    assert sb.origin == f"http://127.0.0.1:{sb.port}"
    with pytest.raises(KnobError):
        sb.configure(no_such_knob=1)
    with pytest.raises(KeyError):
        start_sandbox("nope")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": "Basic " + KEY}],
)
def test_auth_refused(sb, headers):
    for method, path, body in [
        ("POST", "/generateTask/hailuo-2-3", {"input": t2v()}),
        ("GET", "/statusTask/hailuo-2-3?taskId=task_1", None),
        ("GET", "/apikeys/current-balance", None),
    ]:
        code, data, _ = api(sb, method, path, body, key=None, headers=headers)
        assert_error(code, data, 401)
    assert sb.tasks() == []


def test_runtime_api_keys(sb):
    sb.configure(api_keys=["k-one", "k-two"])
    assert api(sb, "GET", "/apikeys/current-balance", key="k-two")[0] == 200
    assert api(sb, "GET", "/apikeys/current-balance")[0] == 401
    # and through the HTTP control route, no auth needed
    code, _, _ = http("POST", sb.origin + "/_sandbox/config", {"api_keys": [KEY]}, key=None)
    assert code == 200
    assert api(sb, "GET", "/apikeys/current-balance")[0] == 200


# ---------------------------------------------------------------- validation

IMG = "https://example.com/input.jpg"

INVALID = [
    # (model, body, expected message fragment) -- "Validation notes" table
    ("hailuo-2-3", {"request_type": "async"}, "input"),
    ("hailuo-2-3", {"input": "x"}, "input"),
    ("hailuo-2-3", {"input": {"mode": T2V, "duration": 6}}, "prompt"),
    ("hailuo-2-3", {"input": {"mode": T2V, "prompt": "", "duration": 6}}, "prompt"),
    ("hailuo-2-3", {"input": {"mode": T2V, "prompt": "   ", "duration": 6}}, "prompt"),
    ("hailuo-2-3", {"input": {"mode": T2V, "prompt": 5, "duration": 6}}, "prompt"),
    ("hailuo-2-3", {"input": {"prompt": "p", "duration": 6}}, "Invalid mode type"),
    ("hailuo-2-3", {"input": {"mode": "ultra-text-to-video", "prompt": "p", "duration": 6}}, "Invalid mode type"),
    ("hailuo-2-3-fast", {"input": {"mode": T2V, "prompt": "p", "duration": 6}}, "Invalid mode type"),
    ("hailuo-2-3-fast", {"input": {"mode": "pro-text-to-video", "prompt": "p"}}, "Invalid mode type"),
    ("hailuo-2-3", {"input": {"mode": "standard-image-to-video", "prompt": "p", "duration": 6}}, "image_urls"),
    ("hailuo-2-3", {"input": {"mode": "pro-image-to-video", "prompt": "p", "image_urls": []}}, "exactly 1"),
    ("hailuo-2-3", {"input": {"mode": "pro-image-to-video", "prompt": "p", "image_urls": [IMG, IMG]}}, "exactly 1"),
    ("hailuo-2-3", {"input": {"mode": "pro-image-to-video", "prompt": "p", "image_urls": IMG}}, "image_urls"),
    ("hailuo-2-3", {"input": {"mode": "pro-image-to-video", "prompt": "p", "image_urls": ["not a url"]}}, "image"),
    ("hailuo-2-3-fast", {"input": {"mode": "standard-image-to-video", "prompt": "p", "image_urls": [IMG]}}, "duration"),
    ("hailuo-2-3", {"input": {"mode": T2V, "prompt": "p"}}, "duration"),
    ("hailuo-2-3", {"input": {"mode": T2V, "prompt": "p", "duration": 5}}, "6 or 10"),
    ("hailuo-2-3", {"input": {"mode": T2V, "prompt": "p", "duration": "6"}}, "6 or 10"),
    ("hailuo-2-3", {"input": {"mode": T2V, "prompt": "p", "duration": 6.5}}, "6 or 10"),
    ("hailuo-2-3", {"input": {"mode": T2V, "prompt": "p", "duration": True}}, "6 or 10"),
    ("hailuo-2-3", {"request_type": "sync", "input": t2v()}, "request_type"),
    ("hailuo-2-3", {"request_type": "callback", "input": t2v()}, "callback_url"),
    ("hailuo-2-3", {"request_type": "callback", "callback_url": "ftp://x/y", "input": t2v()}, "callback_url"),
    ("hailuo-2-3", {"provider": "cheapest", "input": t2v()}, "provider"),
    ("hailuo-2-3", [1, 2], "object"),
]


@pytest.mark.parametrize("model,body,fragment", INVALID)
def test_validation_rules(sb, model, body, fragment):
    code, data, _ = api(sb, "POST", f"/generateTask/{model}", body)
    assert_error(code, data, 400, fragment)
    assert sb.tasks() == []


def test_non_json_and_wrong_content_type(sb):
    url = sb.base_url + "/generateTask/hailuo-2-3"
    code, _, data = http("POST", url, raw=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(code, json.loads(data), 400, "JSON")
    code, _, data = http("POST", url, raw=json.dumps({"input": t2v()}).encode(), headers={"Content-Type": "text/plain"})
    assert_error(code, json.loads(data), 400, "Content-Type")
    assert sb.tasks() == []


def test_unknown_model_and_paths(sb):
    code, data, _ = submit(sb, t2v(), model="hailuo-9")
    assert_error(code, data, 404)
    assert_error(*api(sb, "GET", "/statusTask/hailuo-9?taskId=x")[:2], 404)
    assert_error(*api(sb, "GET", "/nothing/here")[:2], 404)
    assert_error(*api(sb, "GET", "/generateTask/hailuo-2-3")[:2], 405)


def test_accepted_variants(sb):
    """Pro modes ignore duration; provider routing values; fast image modes; charset in Content-Type."""
    img = sb.origin + "/_sandbox/image.png?w=1280&h=720"
    ok = [
        ("hailuo-2-3", {"mode": "pro-text-to-video", "prompt": "p", "duration": 7}, {}),
        ("hailuo-2-3", {"mode": "pro-text-to-video", "prompt": "p", "duration": "whatever"}, {"provider": "value"}),
        ("hailuo-2-3", t2v(duration=10), {"provider": "official"}),
        ("hailuo-2-3", {"mode": "pro-image-to-video", "prompt": "p", "image_urls": [img]}, {"provider": "auto"}),
        ("hailuo-2-3-fast", {"mode": "standard-image-to-video", "prompt": "p", "image_urls": [img], "duration": 10}, {}),
        ("hailuo-2-3-fast", {"mode": "pro-image-to-video", "prompt": "p", "image_urls": [img]}, {}),
    ]
    for model, inp, extra in ok:
        code, data, _ = submit(sb, inp, model=model, **extra)
        assert code == 200, data
        assert data["code"] == 200 and data["message"] == "success"
        assert data["data"]["taskId"].startswith("task_")
    # request_type defaults to async when absent
    code, data, _ = api(sb, "POST", "/generateTask/hailuo-2-3", {"input": t2v()},
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert code == 200, data
    tasks = {t["mode"]: t for t in sb.tasks() if t["model"] == "hailuo-2-3-fast"}
    assert tasks["pro-image-to-video"]["output_seconds"] == 6
    assert tasks["standard-image-to-video"]["output_seconds"] == 10


# ---------------------------------------------------------------- lifecycle


def test_submit_poll_success_and_download(sb):
    code, data, _ = submit(sb, t2v())
    assert code == 200
    task_id = data["data"]["taskId"]
    t0 = time.time()

    code, body, _ = status(sb, task_id)
    assert code == 200 and body["code"] == 200 and body["message"] == "success"
    assert body["data"] == {"taskId": task_id, "state": "pending", "createTime": body["data"]["createTime"]}
    assert abs(body["data"]["createTime"] / 1000 - t0) < 2

    time.sleep(max(0, t0 + 0.7 - time.time()))
    assert status(sb, task_id)[1]["data"]["state"] == "processing"

    final = wait_final(sb, task_id)
    assert final["state"] == "success"
    assert isinstance(final["resultJson"], str)
    urls = json.loads(final["resultJson"])["resultUrls"]
    assert len(urls) == 1 and f"/files/{task_id}.mp4?" in urls[0]
    assert "failCode" not in final and "failMsg" not in final
    assert final["costTime"] == final["completeTime"] - final["createTime"]
    assert 900 <= final["costTime"] <= 1500

    code, headers, video = http("GET", urls[0], key=None)
    assert code == 200
    assert headers["Content-Type"] == "video/mp4"
    assert int(headers["Content-Length"]) == len(video) > 1000
    assert video[4:8] == b"ftyp"

    code, headers, part = http("GET", urls[0], key=None, headers={"Range": "bytes=0-7"})
    assert code == 206 and part == video[:8]
    assert headers["Content-Range"] == f"bytes 0-7/{len(video)}"
    code, headers, part = http("GET", urls[0], key=None, headers={"Range": "bytes=-4"})
    assert code == 206 and part == video[-4:]
    code, headers, _ = http("GET", urls[0], key=None, headers={"Range": f"bytes={len(video)}-"})
    assert code == 416

    # the same final answer on every poll
    assert status(sb, task_id)[1]["data"] == final


def test_status_errors(sb):
    task_id = submit(sb, t2v())[1]["data"]["taskId"]
    assert_error(*status(sb, "task_doesnotexist")[:2], 404)
    fast_id = task_id  # a hailuo-2-3 task asked for under the fast model
    assert_error(*status(sb, fast_id, model="hailuo-2-3-fast")[:2], 404)
    assert_error(*api(sb, "GET", "/statusTask/hailuo-2-3")[:2], 400, "taskId")


def test_seconds_marker_and_failure_markers(sb):
    jobs = {
        "plain": submit(sb, t2v("quick [seconds:0.3]")),
        "fail": submit(sb, t2v("bad [fail] [seconds:0.3]")),
        "code": submit(sb, t2v("nsfw [FAIL:NSFW] [seconds:0.3]")),
        "custom": submit(sb, t2v("weird [fail:SomethingNew] [seconds:0.3]")),
    }
    ids = {name: r[1]["data"]["taskId"] for name, r in jobs.items()}
    results = {name: wait_final(sb, tid, timeout=3) for name, tid in ids.items()}
    assert results["plain"]["state"] == "success"
    assert results["plain"]["costTime"] < 800
    assert results["fail"]["state"] == "failed"
    assert results["fail"]["failCode"] == "PromptInvalid"
    assert results["fail"]["failMsg"] == "Prompt is invalid or rejected by provider"
    assert "resultJson" not in results["fail"]
    assert results["fail"]["completeTime"] >= results["fail"]["createTime"]
    assert results["code"]["failCode"] == "NSFW" and results["code"]["failMsg"]
    assert results["custom"]["failCode"] == "SomethingNew" and "SomethingNew" in results["custom"]["failMsg"]


def test_fail_rate(sb):
    sb.configure(fail_rate=1)
    before = balance(sb)
    tid = submit(sb, t2v("[seconds:0.2]"))[1]["data"]["taskId"]
    final = wait_final(sb, tid)
    assert (final["state"], final["failCode"]) == ("failed", "GENERATION_FAILED")
    assert balance(sb) == before  # failures are not charged


def test_http_markers(sb):
    code, data, headers = submit(sb, t2v("busy [http:429]"))
    assert_error(code, data, 429)
    assert headers["Retry-After"] == "1"
    code, data, _ = submit(sb, t2v("[http:502]"))
    assert_error(code, data, 502)
    code, data, _ = submit(sb, t2v("[HTTP:403]"))
    assert_error(code, data, 403)
    assert sb.tasks() == []


def test_hang_marker_triggers_client_timeout(sb):
    sb.configure(hang_seconds=2)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("POST", sb.base_url + "/generateTask/hailuo-2-3", {"input": t2v("slow [hang]")}, timeout=0.5)
    # the task was accepted even though the answer never came in time
    assert len(sb.tasks()) == 1
    submits = [r for r in sb.requests("api") if r["method"] == "POST"]
    assert len(submits) == 1 and submits[0]["body"]["input"]["prompt"] == "slow [hang]"


# ---------------------------------------------------------------- fault knobs


def test_rate_limit_and_5xx_every(sb):
    sb.configure(rate_limit_every=3)
    codes = [api(sb, "GET", "/apikeys/current-balance") for _ in range(6)]
    assert [c[0] for c in codes] == [200, 200, 429, 200, 200, 429]
    assert codes[2][2]["Retry-After"] == "1"
    assert_error(codes[2][0], codes[2][1], 429)

    sb.configure(rate_limit_every=0, error_5xx_every=2)
    codes = [api(sb, "GET", "/apikeys/current-balance")[0] for _ in range(4)]
    assert codes == [200, 503, 200, 503]


def test_latency(sb):
    sb.configure(latency_ms=300)
    t0 = time.time()
    assert api(sb, "GET", "/apikeys/current-balance")[0] == 200
    assert time.time() - t0 >= 0.3


def test_request_log_and_reset(sb):
    submit(sb, t2v())
    submit(sb, t2v())
    api(sb, "GET", "/apikeys/current-balance")
    code, _, data = http("GET", sb.origin + "/_sandbox/requests", key=None)
    log = json.loads(data)
    posts = [r for r in log if r["method"] == "POST" and r["path"] == "/api/v1/generateTask/hailuo-2-3"]
    assert len(posts) == 2
    assert posts[0]["body"]["input"]["mode"] == T2V and posts[0]["status"] == 200
    assert posts[0]["task_id"].startswith("task_") and isinstance(posts[0]["time"], float)
    code, _, data = http("GET", sb.origin + "/_sandbox/tasks", key=None)
    assert len(json.loads(data)) == 2
    code, _, data = http("POST", sb.origin + "/_sandbox/config", {"bogus": 1}, key=None)
    assert code == 400
    assert http("POST", sb.origin + "/_sandbox/reset", raw=b"", key=None)[0] == 200
    assert sb.tasks() == [] and sb.requests() == []


# ---------------------------------------------------------------- result URLs


def test_result_url_expiry_and_signature(sb):
    sb.configure(result_ttl=1)
    tid = submit(sb, t2v("[seconds:0.2]"))[1]["data"]["taskId"]
    url = json.loads(wait_final(sb, tid)["resultJson"])["resultUrls"][0]
    assert http("GET", url, key=None)[0] == 200

    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qs(parts.query)
    tampered = f"{parts.scheme}://{parts.netloc}{parts.path}?expires={int(q['expires'][0]) + 999}&sig={q['sig'][0]}"
    assert http("GET", tampered, key=None)[0] == 403
    assert http("GET", f"{sb.origin}{parts.path}", key=None)[0] == 403

    time.sleep(max(0, int(q["expires"][0]) + 0.05 - time.time()))
    code, _, body = http("GET", url, key=None)
    assert (code, body) == (403, b"expired")


# ---------------------------------------------------------------- callbacks


def Receiver(statuses):
    """The shared webhook receiver (``providers.sandbox.testing.WebhookReceiver``) at ``/hooks/apixo``."""
    return WebhookReceiver(statuses, path="/hooks/apixo")


def test_callback_delivery_with_retries(sb):
    rx = Receiver([500, 503, 200])
    try:
        code, data, _ = submit(sb, t2v("cb [seconds:0.3]"), request_type="callback", callback_url=rx.url)
        assert code == 200
        tid = data["data"]["taskId"]
        assert wait_for(lambda: len(sb.requests("callback")) == 3)
        attempts = sb.requests("callback")
        assert [a["status"] for a in attempts] == [500, 503, 200]
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        assert all(a["task_id"] == tid and a["url"] == rx.url for a in attempts)
        ctype, payload = rx.received[-1]
        assert ctype == "application/json"
        assert payload["code"] == 200 and payload["message"] == "success"
        assert payload["data"]["taskId"] == tid and payload["data"]["state"] == "success"
        assert json.loads(payload["data"]["resultJson"])["resultUrls"]
        # the callback mirrors the status response
        assert status(sb, tid)[1] == payload
        time.sleep(0.4)
        assert len(rx.received) == 3  # no more deliveries after a 200
    finally:
        rx.close()


def test_callback_gives_up_after_three_retries(sb):
    rx = Receiver([500] * 10)
    try:
        submit(sb, t2v("[fail] [seconds:0.2]"), request_type="callback", callback_url=rx.url)
        assert wait_for(lambda: len(sb.requests("callback")) == 4)
        time.sleep(0.5)
        assert len(rx.received) == 4
        assert rx.received[0][1]["data"]["state"] == "failed"
        assert rx.received[0][1]["data"]["failCode"] == "PromptInvalid"
        assert sb.tasks()[0]["callback_attempts"][-1] == {"attempt": 4, "status": 500, "error": None, "ok": False}
    finally:
        rx.close()


def test_callback_unreachable_receiver_is_logged(sb):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    submit(sb, t2v("[seconds:0.1]"), request_type="callback", callback_url=dead)
    assert wait_for(lambda: len(sb.requests("callback")) == 4)
    assert all(a["status"] is None and a["error"] for a in sb.requests("callback"))


# ---------------------------------------------------------------- balance


def test_balance_charged_on_success_by_documented_price(sb):
    assert balance(sb) == 74.87
    ids = [
        submit(sb, t2v("[seconds:0.2]", duration=6))[1]["data"]["taskId"],  # 6 * 0.056 = 0.336
        submit(sb, t2v("[seconds:0.2]", duration=10))[1]["data"]["taskId"],  # 10 * 0.056 = 0.56
        submit(sb, {"mode": "pro-text-to-video", "prompt": "[seconds:0.2]", "duration": 10})[1]["data"]["taskId"],  # 0.49
        submit(sb, t2v("[fail] [seconds:0.2]"))[1]["data"]["taskId"],  # failed: free
    ]
    for tid in ids:
        wait_final(sb, tid)
    assert balance(sb) == pytest.approx(74.87 - 0.336 - 0.56 - 0.49, abs=1e-9)
    assert isinstance(balance(sb), float)


def test_balance_knob_refuses_with_402(sb):
    sb.configure(balance=0.5)
    assert balance(sb) == 0.5
    code, data, _ = submit(sb, {"mode": "pro-text-to-video", "prompt": "p"})  # 0.49 fits
    assert code == 200
    code, data, _ = submit(sb, t2v(duration=6))  # 0.336 > 0.01 left after the in-flight pro task
    assert_error(code, data, 402)
    assert len(sb.tasks()) == 1


# ---------------------------------------------------------------- input images


def test_image_checks(sb):
    o = sb.origin
    cases = {
        "ok": (o + "/_sandbox/image.png?w=1280&h=720", None),
        "small": (o + "/_sandbox/image.png?w=300&h=600", "InvalidImageSize"),
        "wide": (o + "/_sandbox/image.png?w=1000&h=400", "InvalidImageSize"),  # exactly 5:2
        "tall": (o + "/_sandbox/image.png?w=400&h=1001", "InvalidImageSize"),
        "gif": (o + "/_sandbox/image.gif", "ImageFormatIncorrect"),
        "missing": (o + "/_sandbox/no-such-image.png", "INVALID_IMAGE_URL"),
    }
    ids = {}
    for name, (url, _) in cases.items():
        inp = {"mode": "pro-image-to-video", "prompt": "[seconds:0.3]", "image_urls": [url]}
        code, data, _ = submit(sb, inp, model="hailuo-2-3-fast")
        assert code == 200, data
        ids[name] = data["data"]["taskId"]
    for name, (_, expected) in cases.items():
        final = wait_final(sb, ids[name], model="hailuo-2-3-fast")
        if expected is None:
            assert final["state"] == "success", final
        else:
            assert (final["state"], final["failCode"]) == ("failed", expected), (name, final)
            assert final["failMsg"]


def _jpeg_header(width, height):
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big") + b"\x03" + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + b"\xff\xff" + sof0 + b"\xff\xda\x00\x02"


def test_image_header_parsing():
    assert image_dimensions(_jpeg_header(1920, 1080)) == ("jpeg", 1920, 1080)
    assert inspect_image_bytes(_jpeg_header(1920, 1080))[0] is None
    assert inspect_image_bytes(_jpeg_header(301, 752))[0] is None  # 752/301 < 2.5
    assert inspect_image_bytes(_jpeg_header(301, 753))[0] == "InvalidImageSize"  # > 5:2
    assert inspect_image_bytes(_jpeg_header(300, 400))[0] == "InvalidImageSize"  # short side not > 300
    assert inspect_image_bytes(b"\xff\xd8\xff\xe0\x00")[0] == "ImageFormatIncorrect"
    assert inspect_image_bytes(b"GIF89a....")[0] == "ImageFormatIncorrect"
    assert inspect_image_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4)[0] == "ImageFormatIncorrect"


# ---------------------------------------------------------------- CLI


def test_cli_serves_and_exits_cleanly_on_sigterm():
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[4]
    proc = subprocess.Popen(
        [sys.executable, "-m", "providers.sandbox", "apixo", "--port", "0", "--quiet",
         "--generation-seconds", "6", "--api-key", "k-cli"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening: http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        base_url = line.split("listening: ")[1].strip()
        assert base_url.endswith("/api/v1")
        code, _, data = http("GET", base_url + "/apikeys/current-balance", key="k-cli")
        assert code == 200 and json.loads(data) == {"code": 200, "data": 74.87}
        code, _, data = http("GET", base_url.removesuffix("/api/v1") + "/_sandbox/config", key=None)
        assert json.loads(data)["generation_seconds"] == 6.0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
