"""Tests of the MiniMax sandbox over real loopback HTTP (plain pytest, no Django).

Run: ``python -m pytest providers/adapters/minimax/tests/test_minimax_sandbox.py -q``.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers.sandbox import KnobError, sandbox_kinds, start_sandbox
from providers.sandbox import minimax as mm
from providers.sandbox.common import make_png
from providers.sandbox.testing import http_call, wait_for

KEY = "sk-sandbox-minimax"
STD = "MiniMax-Hailuo-2.3"
FAST = "MiniMax-Hailuo-2.3-Fast"


# ---------------------------------------------------------------- helpers


def http(method, url, body=None, *, key=KEY, headers=None, raw=None, timeout=5.0):
    """Return (status, headers, body bytes) without raising on HTTP errors."""
    auth = None if key is None else {"Authorization": f"Bearer {key}"}
    return http_call(method, url, body, auth=auth, headers=headers, raw=raw, timeout=timeout)


def api(sb, method, path, body=None, **kw):
    status, headers, data = http(method, sb.base_url + path, body, **kw)
    return status, (json.loads(data) if data else None), headers


def submit(sb, **body):
    body.setdefault("model", STD)
    return api(sb, "POST", "/v1/video_generation", body)


def new_task(sb, prompt="a sunrise over a skyline", **body):
    code, data, _ = submit(sb, prompt=prompt, **body)
    assert code == 200 and data["base_resp"] == {"status_code": 0, "status_msg": "success"}, data
    return data["task_id"]


def query(sb, task_id, **kw):
    code, data, _ = api(sb, "GET", f"/v1/query/video_generation?task_id={urllib.parse.quote(task_id)}", **kw)
    assert code == 200
    return data


def retrieve(sb, file_id, **kw):
    code, data, _ = api(sb, "GET", f"/v1/files/retrieve?file_id={urllib.parse.quote(str(file_id))}", **kw)
    assert code == 200
    return data


def wait_final(sb, task_id, timeout=6.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        body = query(sb, task_id)
        if body.get("status") in ("Success", "Fail"):
            return body
        time.sleep(0.03)
    raise AssertionError(f"task {task_id} not final after {timeout}s")


def assert_code(body, code, fragment=None):
    assert body["base_resp"]["status_code"] == code, body
    msg = body["base_resp"]["status_msg"]
    assert isinstance(msg, str) and msg
    if fragment:
        assert fragment.lower() in msg.lower(), body


def data_url(raw, mime="image/png"):
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def png_url(w=1280, h=720):
    return data_url(make_png(w, h))


def jpeg_header(width, height):
    app0 = b"\xff\xe0" + (16).to_bytes(2, "big") + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = (b"\xff\xc0" + (17).to_bytes(2, "big") + b"\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xda\x00\x02"


def webp_vp8x(width, height):
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + (4 + 8 + len(payload)).to_bytes(4, "little") + b"WEBP" + b"VP8X" + len(payload).to_bytes(4, "little") + payload


@pytest.fixture
def sb():
    handle = start_sandbox("minimax", generation_seconds=1, callback_retry_delays=[0.05, 0.1, 0.2],
                           challenge_timeout=0.5, image_fetch_timeout=2)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def shared_sb():
    """One sandbox for the many stateless validation cases (reset before each)."""
    handle = start_sandbox("minimax", generation_seconds=1)
    try:
        yield handle
    finally:
        handle.stop()


# ---------------------------------------------------------------- basics


def test_registry_and_handle(sb):
    assert "minimax" in sandbox_kinds()
    assert sb.base_url == sb.origin == f"http://127.0.0.1:{sb.port}"
    with pytest.raises(KnobError):
        sb.configure(no_such_knob=1)
    with pytest.raises(KnobError):
        sb.configure(callback_status_style="upper")
    with pytest.raises(KnobError):
        sb.configure(invalid_key_code=401)
    knobs = sb.knobs()
    assert knobs["api_keys"] == [KEY] and knobs["challenge_timeout"] == 0.5 and knobs["rate_limit_http"] is False


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                                     {"Authorization": "Basic " + KEY}, {"Authorization": "Bearer "}])
def test_auth_refused_with_1004_on_http_200(sb, headers):
    for method, path, body in [
        ("POST", "/v1/video_generation", {"model": STD, "prompt": "p"}),
        ("GET", "/v1/query/video_generation?task_id=1", None),
        ("GET", "/v1/files/retrieve?file_id=1", None),
    ]:
        code, data, _ = api(sb, method, path, body, key=None, headers=headers)
        assert code == 200
        assert_code(data, 1004)
        if not headers.get("Authorization", "").strip():
            assert "Authorization" in data["base_resp"]["status_msg"]
    assert sb.tasks() == []


def test_submit_errors_carry_empty_task_id_and_invalid_key_code_knob(sb):
    code, data, _ = api(sb, "POST", "/v1/video_generation", {"model": STD, "prompt": "p"}, key="nope")
    assert code == 200 and data["task_id"] == ""
    assert_code(data, 1004, "invalid api key")
    sb.configure(invalid_key_code=2049)
    _, data, _ = api(sb, "GET", "/v1/query/video_generation?task_id=1", key="nope")
    assert_code(data, 2049, "invalid api key")
    _, data, _ = api(sb, "GET", "/v1/query/video_generation?task_id=1", key=None)  # missing: still 1004
    assert_code(data, 1004)


def test_runtime_api_keys(sb):
    sb.configure(api_keys=["k-one", "k-two"])
    assert_code(submit_with_key(sb, "k-two"), 0)
    assert_code(submit_with_key(sb, KEY), 1004)
    assert http("POST", sb.origin + "/_sandbox/config", {"api_keys": [KEY]}, key=None)[0] == 200
    assert_code(submit_with_key(sb, KEY), 0)


def submit_with_key(sb, key):
    return api(sb, "POST", "/v1/video_generation", {"model": STD, "prompt": "p"}, key=key)[1]


# ---------------------------------------------------------------- validation

INVALID = [
    # (body, fragment of status_msg after "invalid params, ")
    ({"prompt": "p"}, "model is required"),
    ({"model": "", "prompt": "p"}, "model is required"),
    ({"model": "MiniMax-Hailuo-02", "prompt": "p"}, "model must be one of"),
    ({"model": "minimax-hailuo-2.3", "prompt": "p"}, "model must be one of"),
    ({"model": 23, "prompt": "p"}, "model must be one of"),
    ({"model": STD}, "prompt is required"),
    ({"model": STD, "prompt": ""}, "prompt is required"),
    ({"model": STD, "prompt": "   "}, "prompt is required"),
    ({"model": STD, "prompt": 5}, "prompt must be a string"),
    ({"model": STD, "prompt": "x" * 2001}, "at most 2000"),
    ({"model": FAST, "prompt": "p"}, "image-to-video only"),
    ({"model": FAST, "prompt": "p", "first_frame_image": ""}, "first_frame_image"),
    ({"model": STD, "prompt": "p", "first_frame_image": ["https://x/y.png"]}, "first_frame_image"),
    ({"model": STD, "prompt": "p", "first_frame_image": "not a url"}, "http(s) URL or a base64 data URL"),
    ({"model": STD, "prompt": "p", "first_frame_image": "ftp://example.com/a.png"}, "http(s) URL"),
    ({"model": STD, "prompt": "p", "first_frame_image": "iVBORw0KGgoAAAANSUhEUg"}, "http(s) URL"),
    ({"model": STD, "prompt": "p", "first_frame_image": "data:image/gif;base64,R0lGODlh"}, "data URL"),
    ({"model": STD, "prompt": "p", "first_frame_image": "data:image/png,rawbytes"}, "data URL"),
    ({"model": STD, "prompt": "p", "duration": 5}, "duration must be 6 or 10"),
    ({"model": STD, "prompt": "p", "duration": "6"}, "duration must be 6 or 10"),
    ({"model": STD, "prompt": "p", "duration": 6.0}, "duration must be 6 or 10"),
    ({"model": STD, "prompt": "p", "duration": True}, "duration must be 6 or 10"),
    ({"model": STD, "prompt": "p", "resolution": "768p"}, "resolution must be 768P or 1080P"),
    ({"model": STD, "prompt": "p", "resolution": "720P"}, "resolution must be 768P or 1080P"),
    ({"model": STD, "prompt": "p", "resolution": 1080}, "resolution must be 768P or 1080P"),
    ({"model": STD, "prompt": "p", "resolution": "1080P", "duration": 10}, "1080P supports only duration 6"),
    ({"model": STD, "prompt": "p", "duration": 10, "resolution": "1080P"}, "1080P supports only duration 6"),
    ({"model": STD, "prompt": "p", "prompt_optimizer": "yes"}, "prompt_optimizer must be a boolean"),
    ({"model": STD, "prompt": "p", "fast_pretreatment": 1}, "fast_pretreatment must be a boolean"),
    ({"model": STD, "prompt": "p", "aigc_watermark": "false"}, "aigc_watermark must be a boolean"),
    ({"model": STD, "prompt": "p", "callback_url": "ftp://x/y"}, "callback_url"),
    ({"model": STD, "prompt": "p", "callback_url": ""}, "callback_url"),
    ({"model": STD, "prompt": "p", "callback_url": 5}, "callback_url"),
    ({"model": STD, "prompt": "p", "last_frame_image": "https://x/y.png"}, "last_frame_image is not supported"),
    ({"model": STD, "prompt": "p", "subject_reference": [{"type": "character", "image": ["https://x/y.png"]}]},
     "subject_reference is not supported"),
    ([1, 2], "JSON object"),
]


@pytest.mark.parametrize("body,fragment", INVALID)
def test_validation_rules(shared_sb, body, fragment):
    sb = shared_sb
    sb.reset()
    code, data, _ = api(sb, "POST", "/v1/video_generation", body)
    assert code == 200
    assert data["task_id"] == ""
    assert_code(data, 2013, "invalid params, ")
    assert fragment.lower() in data["base_resp"]["status_msg"].lower(), data
    assert sb.tasks() == []


def test_non_json_wrong_content_type_and_routes(sb):
    url = sb.base_url + "/v1/video_generation"
    code, _, data = http("POST", url, raw=b"{not json", headers={"Content-Type": "application/json"})
    assert code == 200
    assert_code(json.loads(data), 2013, "not valid JSON")
    code, _, data = http("POST", url, raw=json.dumps({"model": STD, "prompt": "p"}).encode(),
                         headers={"Content-Type": "text/plain"})
    assert_code(json.loads(data), 2013, "Content-Type")
    assert sb.tasks() == []
    code, data, _ = api(sb, "GET", "/v1/nothing/here")
    assert code == 404 and "base_resp" in data
    code, data, headers = api(sb, "GET", "/v1/video_generation")
    assert code == 405 and headers["Allow"] == "POST"
    code, data, _ = api(sb, "POST", "/v1/query/video_generation", {})
    assert code == 405


def test_accepted_variants_defaults_and_prices(sb):
    ok = [
        dict(prompt="t2v defaults"),
        dict(prompt="x" * 2000, duration=10),
        dict(prompt="hd", resolution="1080P", duration=6, prompt_optimizer=False, fast_pretreatment=True,
             aigc_watermark=True),
        dict(first_frame_image=png_url()),  # image-to-video without a prompt
        dict(model=FAST, prompt="fast i2v", first_frame_image=png_url(), duration=10),
        dict(model=FAST, first_frame_image=png_url(), resolution="1080P", duration=None, resolution_x=1),
    ]
    ids = []
    for body in ok:
        code, data, _ = submit(sb, **body)
        assert code == 200, data
        assert_code(data, 0, "success")
        assert data["task_id"].isdigit() and len(data["task_id"]) >= 15
        ids.append(data["task_id"])
    # a charset parameter in the Content-Type is fine
    code, _, data = http("POST", sb.base_url + "/v1/video_generation", raw=json.dumps({"model": STD, "prompt": "p"}).encode(),
                         headers={"Content-Type": "application/json; charset=utf-8"})
    assert_code(json.loads(data), 0)
    tasks = {t["task_id"]: t for t in sb.tasks()}
    got = [(tasks[i]["model"], tasks[i]["resolution"], tasks[i]["duration"], tasks[i]["price"]) for i in ids]
    assert got == [
        (STD, "768P", 6, 0.28), (STD, "768P", 10, 0.56), (STD, "1080P", 6, 0.49),
        (STD, "768P", 6, 0.28), (FAST, "768P", 10, 0.32), (FAST, "1080P", 6, 0.33),
    ]
    assert tasks[ids[0]]["options"] == {"prompt_optimizer": True, "fast_pretreatment": False, "aigc_watermark": False}
    assert tasks[ids[2]]["options"] == {"prompt_optimizer": False, "fast_pretreatment": True, "aigc_watermark": True}
    assert tasks[ids[3]]["first_frame_image"].startswith("data:image/png;base64,") and "chars)" in tasks[ids[3]]["first_frame_image"]
    assert mm.price_of(FAST, "768P", 6) == mm.PRICES[(FAST, "768P", 6)]


# ---------------------------------------------------------------- images


def test_image_rules_by_url_and_data_url(sb, monkeypatch):
    o = sb.origin
    good = [
        o + "/_sandbox/image.png?w=1280&h=720",
        o + "/_sandbox/image.png?w=1000&h=400",  # exactly 5:2 is accepted
        o + "/_sandbox/image.png?w=400&h=1000",  # exactly 2:5
        png_url(301, 301),
        data_url(jpeg_header(1920, 1080), "image/jpeg"),
        data_url(webp_vp8x(1080, 1920), "image/webp"),
    ]
    for image in good:
        code, data, _ = submit(sb, model=FAST, prompt="p", first_frame_image=image)
        assert_code(data, 0)
    bad = [
        (o + "/_sandbox/image.png?w=300&h=600", "short side must be greater than 300px"),
        (o + "/_sandbox/image.png?w=1001&h=400", "aspect ratio must be between 2:5 and 5:2"),
        (o + "/_sandbox/image.png?w=400&h=1001", "aspect ratio"),
        (o + "/_sandbox/image.gif", "JPG, JPEG, PNG or WebP"),
        (o + "/_sandbox/no-such-image.png", "could not be downloaded"),
        (png_url(1280, 300), "short side"),
        ("data:image/png;base64,@@@not-base64@@@", "not valid base64"),
        (data_url(b"just some text"), "JPG, JPEG, PNG or WebP"),
    ]
    for image, fragment in bad:
        code, data, _ = submit(sb, model=FAST, prompt="p", first_frame_image=image)
        assert code == 200
        assert_code(data, 2013, fragment)
    monkeypatch.setattr(mm.server, "MAX_IMAGE_BYTES", 1000)  # the image check lives in minimax/server.py
    _, data, _ = submit(sb, model=FAST, prompt="p", first_frame_image=png_url(1280, 720))
    assert_code(data, 2013, "smaller than 20MB")
    assert len(sb.tasks()) == len(good)
    # with the image check off, any well-formed URL is taken without fetching it
    sb.configure(check_images=False)
    _, data, _ = submit(sb, model=FAST, first_frame_image="https://unreachable.invalid/frame.jpg")
    assert_code(data, 0)


def test_image_header_parsing_and_output_dimensions():
    assert mm.image_size(make_png(640, 360)) == ("png", 640, 360)
    assert mm.image_size(jpeg_header(1920, 1080)) == ("jpeg", 1920, 1080)
    assert mm.image_size(webp_vp8x(777, 555)) == ("webp", 777, 555)
    vp8l = b"RIFF\x00\x00\x00\x00WEBPVP8L\x05\x00\x00\x00\x2f" + ((1279) | (719 << 14)).to_bytes(4, "little")
    assert mm.image_size(vp8l) == ("webp", 1280, 720)
    vp8 = b"RIFF\x00\x00\x00\x00WEBPVP8 \x00\x00\x00\x00" + b"\x00\x00\x00\x9d\x01\x2a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little")
    assert mm.image_size(vp8) == ("webp", 640, 480)
    with pytest.raises(ValueError):
        mm.image_size(b"GIF89a....")
    with pytest.raises(ValueError):
        mm.image_size(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert mm.output_dimensions("768P", None) == (1366, 768)
    assert mm.output_dimensions("1080P", None) == (1920, 1080)
    assert mm.output_dimensions("768P", (720, 1280)) == (768, 1366)
    assert mm.output_dimensions("1080P", (1000, 1000)) == (1080, 1080)


def test_video_dimensions_follow_the_first_frame(sb):
    tid = new_task(sb, prompt="[seconds:0.2]", model=FAST, first_frame_image=png_url(720, 1280))
    final = wait_final(sb, tid)
    assert (final["video_width"], final["video_height"]) == (768, 1366)


# ---------------------------------------------------------------- lifecycle


def test_states_success_retrieve_and_download(sb):
    tid = new_task(sb, prompt="a cat [seconds:1.5]")
    t0 = time.time()
    seen = []
    while time.time() - t0 < 5:
        body = query(sb, tid)
        assert body["task_id"] == tid
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in ("Success", "Fail"):
            break
        assert set(body) == {"task_id", "status", "base_resp"}, body  # no file_id before Success
        assert_code(body, 0)
        time.sleep(0.03)
    assert seen == ["Preparing", "Queueing", "Processing", "Success"]
    assert 1.3 <= time.time() - t0 <= 2.5
    assert set(body) == {"task_id", "status", "file_id", "video_width", "video_height", "base_resp"}
    assert body["base_resp"] == {"status_code": 0, "status_msg": "success"}
    assert isinstance(body["file_id"], str) and body["file_id"].isdigit()
    assert (body["video_width"], body["video_height"]) == (1366, 768)
    assert sb.tasks()[0]["history"] == ["Preparing", "Queueing", "Processing", "Success"]
    assert query(sb, tid) == body  # the same final answer on every poll

    info = retrieve(sb, body["file_id"])
    assert_code(info, 0, "success")
    f = info["file"]
    assert f["file_id"] == int(body["file_id"])
    assert f["purpose"] == "video_generation" and f["filename"].endswith(".mp4")
    assert abs(f["created_at"] - time.time()) < 5 and isinstance(f["created_at"], int)
    url = f["download_url"]
    assert url.startswith(sb.origin + f"/files/{body['file_id']}.mp4?")

    code, headers, video = http("GET", url, key=None)
    assert code == 200 and headers["Content-Type"] == "video/mp4"
    assert video[4:8] == b"ftyp" and len(video) == f["bytes"]
    code, headers, part = http("GET", url, key=None, headers={"Range": "bytes=0-7"})
    assert code == 206 and part == video[:8] and headers["Content-Range"] == f"bytes 0-7/{len(video)}"

    sb.configure(file_id_as_string=True)
    assert retrieve(sb, body["file_id"])["file"]["file_id"] == body["file_id"]


def test_query_and_retrieve_errors(sb):
    tid = new_task(sb, prompt="[seconds:0.1]")
    fid = wait_final(sb, tid)["file_id"]
    assert_code(query(sb, ""), 2013, "task_id is required")
    assert_code(api(sb, "GET", "/v1/query/video_generation")[1], 2013, "task_id is required")
    assert_code(query(sb, "123456789012345678"), 2013, "invalid task_id")
    assert_code(retrieve(sb, ""), 2013, "file_id is required")
    assert_code(retrieve(sb, "abc"), 2013, "file_id must be an integer")
    assert_code(retrieve(sb, "999999999999999"), 2013, "not found")
    # "Only tasks created under the current account can be queried"
    sb.configure(api_keys=[KEY, "other-account"])
    assert_code(query(sb, tid, key="other-account"), 2013, "invalid task_id")
    assert_code(retrieve(sb, fid, key="other-account"), 2013, "not found")
    assert_code(query(sb, tid), 0)


# ---------------------------------------------------------------- markers


def test_failure_markers_and_fail_rate(sb):
    ids = {
        "plain": new_task(sb, prompt="ok [seconds:0.3]"),
        "fail": new_task(sb, prompt="bad [fail] [seconds:0.3]"),
        "input": new_task(sb, prompt="[FAIL:1026] [seconds:0.5]"),
        "internal": new_task(sb, prompt="[fail:1000] [seconds:0.3]"),
    }
    sb.configure(fail_rate=1)
    ids["random"] = new_task(sb, prompt="[seconds:0.3]")
    results = {name: wait_final(sb, tid) for name, tid in ids.items()}
    assert results["plain"]["status"] == "Success"
    for name, code, msg in [("fail", 1027, "output new_sensitive"), ("input", 1026, "input new_sensitive"),
                            ("internal", 1000, "unknown error"), ("random", 1027, "output new_sensitive")]:
        body = results[name]
        assert body["status"] == "Fail", body
        assert body["base_resp"] == {"status_code": code, "status_msg": msg}
        assert "file_id" not in body
    history = {t["task_id"]: t["history"] for t in sb.tasks()}
    assert history[ids["input"]] == ["Preparing", "Fail"]  # the input check fails early
    assert history[ids["fail"]] == ["Preparing", "Queueing", "Processing", "Fail"]
    charged = {t["task_id"]: t["charged"] for t in sb.tasks()}
    assert charged[ids["plain"]] and not any(charged[ids[n]] for n in ("fail", "input", "internal", "random"))


def test_error_and_http_markers_create_no_task(sb):
    for code in (1002, 1008, 1026, 1039, 2013):
        status, data, _ = submit(sb, prompt=f"x [error:{code}]")
        assert status == 200 and data["task_id"] == ""
        assert_code(data, code, mm.STATUS_MESSAGES[code])
    status, data, headers = submit(sb, prompt="busy [http:429]")
    assert status == 429 and headers["Retry-After"] == "1"
    assert_code(data, 1002)
    status, data, _ = submit(sb, prompt="[HTTP:502]")
    assert status == 502
    assert_code(data, 1000)
    status, data, _ = submit(sb, prompt="[http:401]")
    assert status == 401
    assert_code(data, 1004)
    assert sb.tasks() == []


def test_hang_marker_triggers_client_timeout(sb):
    sb.configure(hang_seconds=2)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        http("POST", sb.base_url + "/v1/video_generation", {"model": STD, "prompt": "slow [hang]"}, timeout=0.4)
    assert len(sb.tasks()) == 1
    posts = [r for r in sb.requests("api") if r["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["body"]["prompt"] == "slow [hang]"


# ---------------------------------------------------------------- fault knobs


def test_rate_limit_as_base_resp_then_as_http_429_and_5xx(sb):
    sb.configure(rate_limit_every=3)
    answers = [api(sb, "GET", "/v1/query/video_generation?task_id=1") for _ in range(6)]
    assert [a[0] for a in answers] == [200] * 6
    assert [a[1]["base_resp"]["status_code"] for a in answers] == [2013, 2013, 1002, 2013, 2013, 1002]
    assert answers[2][1]["base_resp"]["status_msg"] == "rate limit"

    sb.configure(rate_limit_http=True)
    answers = [api(sb, "GET", "/v1/query/video_generation?task_id=1") for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert answers[2][2]["Retry-After"] == "1"
    assert_code(answers[2][1], 1002)

    sb.configure(rate_limit_every=0, error_5xx_every=2)
    answers = [api(sb, "GET", "/v1/query/video_generation?task_id=1") for _ in range(4)]
    assert [a[0] for a in answers] == [200, 503, 200, 503]
    assert_code(answers[1][1], 1000)


def test_latency(sb):
    sb.configure(latency_ms=200)
    t0 = time.time()
    query(sb, "1")
    assert time.time() - t0 >= 0.2


def test_request_log_and_reset(sb):
    tid = new_task(sb)
    query(sb, tid)
    log = json.loads(http("GET", sb.origin + "/_sandbox/requests?kind=api", key=None)[2])
    assert [(r["method"], r["path"]) for r in log] == [("POST", "/v1/video_generation"), ("GET", "/v1/query/video_generation")]
    assert log[0]["task_id"] == tid and log[0]["status"] == 200 and log[1]["query"] == {"task_id": tid}
    assert len(json.loads(http("GET", sb.origin + "/_sandbox/tasks", key=None)[2])) == 1
    assert http("POST", sb.origin + "/_sandbox/reset", raw=b"", key=None)[0] == 200
    assert sb.tasks() == [] and sb.requests() == []


# ---------------------------------------------------------------- expiry


def test_download_url_expiry_signature_and_fresh_url(sb):
    sb.configure(result_ttl=1)
    fid = wait_final(sb, new_task(sb, prompt="[seconds:0.1]"))["file_id"]
    url = retrieve(sb, fid)["file"]["download_url"]
    assert http("GET", url, key=None)[0] == 200
    parts = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qs(parts.query)
    tampered = f"{parts.scheme}://{parts.netloc}{parts.path}?expires={int(q['expires'][0]) + 999}&sig={q['sig'][0]}"
    assert http("GET", tampered, key=None)[0] == 403
    assert http("GET", f"{sb.origin}{parts.path}", key=None)[0] == 403

    time.sleep(max(0, int(q["expires"][0]) + 0.05 - time.time()))
    assert http("GET", url, key=None)[:3:2] == (403, b"expired")
    fresh = retrieve(sb, fid)["file"]["download_url"]  # each retrieve signs a new URL
    code, _, video = http("GET", fresh, key=None)
    assert code == 200 and video[4:8] == b"ftyp"


# ---------------------------------------------------------------- balance


def test_balance_refuses_with_1008_and_charges_successes_only(sb):
    assert sb.server.balance() is None  # unlimited by default
    sb.configure(balance=0.6)
    first = new_task(sb, prompt="[seconds:0.3]")  # 0.28 reserved
    new_task(sb, prompt="[fail] [seconds:0.3]")  # 0.28 reserved; fails, so free
    _, data, _ = submit(sb, prompt="one too many")  # 0.28 > 0.04 left
    assert data["task_id"] == ""
    assert_code(data, 1008, "insufficient balance")
    assert len(sb.tasks()) == 2
    wait_final(sb, first)
    assert wait_for(lambda: all(t["status"] in ("Success", "Fail") for t in sb.tasks()))
    assert sb.server.balance() == pytest.approx(0.32)
    assert sb.server.spent() == pytest.approx(0.28)
    _, data, _ = submit(sb, model=FAST, first_frame_image=png_url(), resolution="1080P")  # 0.33 > 0.32
    assert_code(data, 1008)
    _, data, _ = submit(sb, model=FAST, first_frame_image=png_url())  # 0.19 fits
    assert_code(data, 0)
    sb.reset()
    assert sb.server.balance() == pytest.approx(0.6)


# ---------------------------------------------------------------- callbacks


class Receiver:
    """A tiny callback receiver: answers the challenge as told, records pushes."""

    def __init__(self, challenge="echo", push_statuses=()):
        self.challenge = challenge  # echo | wrong | slow | http500
        self.push_statuses = list(push_statuses)
        self.challenges, self.pushes = [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if "challenge" in body:
                    outer.challenges.append(body)
                    if outer.challenge == "slow":
                        time.sleep(1.0)
                    code = 500 if outer.challenge == "http500" else 200
                    token = body["challenge"] if outer.challenge != "wrong" else "something-else"
                    answer = json.dumps({"challenge": token}).encode()
                else:
                    outer.pushes.append(body)
                    code = outer.push_statuses.pop(0) if outer.push_statuses else 200
                    answer = b'{"status":"success"}'
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/minimax"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def statuses(self):
        return [p["status"] for p in self.pushes]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kw):
        rx = Receiver(**kw)
        made.append(rx)
        return rx

    yield make
    for rx in made:
        rx.close()


def test_challenge_then_documented_lowercase_pushes(sb, receiver):
    rx = receiver()
    tid = new_task(sb, prompt="cb [seconds:0.6]", callback_url=rx.url)
    assert wait_for(lambda: len(rx.pushes) == 2)
    time.sleep(0.2)
    assert len(rx.challenges) == 1 and set(rx.challenges[0]) == {"challenge"}
    assert rx.statuses() == ["processing", "success"]
    final = rx.pushes[-1]
    assert final["task_id"] == tid and final["base_resp"] == {"status_code": 0, "status_msg": "success"}
    assert final["file_id"] == query(sb, tid)["file_id"]
    assert "file_id" not in rx.pushes[0]
    task = sb.tasks()[0]
    assert task["callback_state"] == "verified" and task["challenge"]["ok"]
    log = sb.requests("callback")
    assert log[0]["challenge"] is True and log[0]["ok"] and log[0]["echoed"] == rx.challenges[0]["challenge"]
    assert [e["push_status"] for e in log[1:]] == ["processing", "success"]


def test_query_style_pushes_every_status_and_failure(sb, receiver):
    sb.configure(callback_status_style="query")
    rx = receiver()
    tid = new_task(sb, prompt="[seconds:0.5]", callback_url=rx.url)
    rx_fail = receiver()
    fid = new_task(sb, prompt="[fail] [seconds:0.3]", callback_url=rx_fail.url)
    assert wait_for(lambda: len(rx.pushes) == 4 and len(rx_fail.pushes) == 4)
    assert rx.statuses() == ["Preparing", "Queueing", "Processing", "Success"]
    assert rx.pushes[-1] == query(sb, tid)  # identical to the query answer
    assert rx_fail.statuses() == ["Preparing", "Queueing", "Processing", "Fail"]
    assert rx_fail.pushes[-1]["task_id"] == fid
    assert rx_fail.pushes[-1]["base_resp"] == {"status_code": 1027, "status_msg": "output new_sensitive"}


def test_failed_push_in_lower_style_and_retries(sb, receiver):
    rx = receiver(push_statuses=[200, 500, 503, 200])
    new_task(sb, prompt="[fail:1026] [seconds:0.3]", callback_url=rx.url)
    assert wait_for(lambda: len(rx.pushes) == 4)
    time.sleep(0.3)
    assert rx.statuses() == ["processing", "failed", "failed", "failed"]
    assert rx.pushes[-1]["base_resp"]["status_code"] == 1026
    pushes = sb.tasks()[0]["pushes"]
    assert [(p["push"], p["attempt"], p["http_status"]) for p in pushes] == [
        ("processing", 1, 200), ("failed", 1, 500), ("failed", 2, 503), ("failed", 3, 200)]


@pytest.mark.parametrize("mode", ["wrong", "slow", "http500"])
def test_failed_challenge_creates_the_task_but_pushes_nothing(sb, receiver, mode):
    rx = receiver(challenge=mode)
    tid = new_task(sb, prompt="[seconds:0.3]", callback_url=rx.url)
    assert wait_final(sb, tid)["status"] == "Success"
    assert wait_for(lambda: sb.tasks()[0]["callback_state"] == "rejected", timeout=3)
    time.sleep(0.3)
    assert len(rx.challenges) == 1 and rx.pushes == []
    entries = sb.requests("callback")
    assert len(entries) == 1 and entries[0]["challenge"] and not entries[0]["ok"] and entries[0]["error"]


def test_unreachable_callback_url_is_logged(sb):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    tid = new_task(sb, prompt="[seconds:0.1]", callback_url=dead)
    assert wait_for(lambda: len(sb.requests("callback")) == 1)
    entry = sb.requests("callback")[0]
    assert entry["status"] is None and entry["error"] and entry["task_id"] == tid
    assert wait_final(sb, tid)["status"] == "Success"


# ---------------------------------------------------------------- CLI


def test_cli_serves_and_exits_cleanly_on_sigterm():
    import signal
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[4]
    proc = subprocess.Popen(
        [sys.executable, "-m", "providers.sandbox", "minimax", "--port", "0", "--quiet",
         "--api-key", "k-cli", "--rate-limit-http", "true", "--challenge-timeout", "2"],
        cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening: http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        base_url = line.split("listening: ")[1].strip()
        code, _, data = http("POST", base_url + "/v1/video_generation", {"model": STD, "prompt": "p"}, key="k-cli")
        assert code == 200 and json.loads(data)["base_resp"]["status_code"] == 0
        knobs = json.loads(http("GET", base_url + "/_sandbox/config", key=None)[2])
        assert knobs["rate_limit_http"] is True and knobs["challenge_timeout"] == 2.0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
