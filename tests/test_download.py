"""The one bounded public download (providers.download.download_public), over real loopback HTTP.

Used by the archive (result videos) and the image check (input images); each caller words
the failure for its reader, so this tests the reasons, and the image wording end to end.
"""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers.download import DownloadFailed, download_public
from providers.images import ImageUnavailable, fetch_image

LOOPBACK = {"127.0.0.1:*"}  # host:port entries (providers.http.parse_allowed_private_hosts)


class _Handler(BaseHTTPRequestHandler):
    """``/bytes/N``: N bytes with a Content-Length; ``/chunked/N``: N bytes without one;
    ``/lie/N``: declares N bytes, sends 10; ``/to?url=U``: 302 to U; ``/loop``: 302 to itself;
    ``/slow``: 20 bytes, one every 0.1 s; ``/missing``: 404."""

    def do_GET(self):  # noqa: N802 (http.server's spelling)
        path, _, query = self.path.partition("?")
        if path.startswith("/bytes/"):
            body = b"x" * int(path.rsplit("/", 1)[1])
            self._answer(200, body, {"Content-Length": str(len(body))})
        elif path.startswith("/lie/"):
            self.send_response(200)
            self.send_header("Content-Length", path.rsplit("/", 1)[1])
            self.end_headers()
            self.wfile.write(b"x" * 10)
        elif path.startswith("/chunked/"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = int(path.rsplit("/", 1)[1])
            while left:
                part = min(left, 4096)
                self.wfile.write(f"{part:x}\r\n".encode() + b"x" * part + b"\r\n")
                left -= part
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b"1\r\nx\r\n")
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/to":
            self._answer(302, b"", {"Location": query.removeprefix("url="), "Content-Length": "0"})
        elif path == "/loop":
            self._answer(302, b"", {"Location": "/loop", "Content-Length": "0"})
        else:
            self._answer(404, b"no", {"Content-Length": "2"})

    def _answer(self, status, body, headers):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.protocol_version = "HTTP/1.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _get(url, **limits):
    buffer = io.BytesIO()
    options = {"max_bytes": 1000, "timeout": 10.0, "allowed_private_hosts": LOOPBACK} | limits
    size = download_public(url, into=buffer, **options)
    return size, buffer.getvalue()


def test_streams_the_body_into_the_file_and_counts_it(origin):
    assert _get(f"{origin}/bytes/1000") == (1000, b"x" * 1000)
    assert _get(f"{origin}/chunked/1000") == (1000, b"x" * 1000)
    assert _get(f"{origin}/to?url={origin}/bytes/5") == (5, b"xxxxx")  # a redirect is followed


@pytest.mark.parametrize(
    "path,reason,size",
    [
        ("/bytes/1001", "too_large", 1001),  # refused from the declared length, before reading
        ("/lie/5000", "too_large", 5000),
        ("/chunked/5000", "too_large", None),  # no declared length: cut at the cap
        ("/missing", "status", None),
        ("/loop", "redirects", None),
    ],
)
def test_limits(origin, path, reason, size):
    with pytest.raises(DownloadFailed) as failed:
        _get(origin + path)
    assert failed.value.reason == reason and failed.value.size == size
    if reason == "status":
        assert failed.value.status == 404


def test_the_deadline_covers_the_whole_download(origin):
    """Every read answers well within its own timeout, but the whole takes over the deadline."""
    started = time.monotonic()
    with pytest.raises(DownloadFailed) as failed:
        _get(f"{origin}/slow", timeout=0.5)
    assert failed.value.reason == "too_slow" and time.monotonic() - started < 1.5
    with pytest.raises(ImageUnavailable, match="^the image took more than 0.5 s to download$"):
        fetch_image(f"{origin}/slow", allowed_private_hosts=LOOPBACK, timeout=0.5)


def test_every_redirect_hop_is_checked_by_the_ssrf_guard(origin):
    """The first host is allowed by setting; the hop it redirects to (localhost) is not."""
    port = origin.rsplit(":", 1)[1]
    with pytest.raises(DownloadFailed) as failed:
        _get(f"{origin}/to?url=http://localhost:{port}/bytes/5")
    assert failed.value.reason == "refused" and "non-public address" in str(failed.value.cause)
    with pytest.raises(DownloadFailed) as failed:
        _get(f"{origin}/to?url=file:///etc/passwd")
    assert failed.value.reason == "refused" and "only http and https" in str(failed.value.cause)


def test_a_dead_host_is_a_transport_failure():
    with pytest.raises(DownloadFailed) as failed:
        _get("http://127.0.0.1:9/x")
    assert failed.value.reason == "transport" and failed.value.cause is not None


def test_the_image_fetch_words_each_reason_for_the_member(origin):
    one_mb = 1024 * 1024
    cases = [
        (f"{origin}/bytes/{one_mb + 1}", "the image is larger than 1 MB"),
        (f"{origin}/chunked/{one_mb + 1}", "the image is larger than 1 MB"),
        (f"{origin}/missing", "the image URL answered HTTP 404"),
        (f"{origin}/loop", "the image URL redirects too many times"),
        ("http://127.0.0.1:9/x.png", "the image could not be downloaded (ConnectError)"),
    ]
    for url, message in cases:
        with pytest.raises(ImageUnavailable) as failed:
            fetch_image(url, allowed_private_hosts=LOOPBACK, max_bytes=one_mb)
        assert str(failed.value) == message
    port = origin.rsplit(":", 1)[1]
    with pytest.raises(ImageUnavailable, match="^the image URL is refused: the host 'localhost' resolves to a non-public"):
        fetch_image(f"{origin}/to?url=http://localhost:{port}/bytes/5", allowed_private_hosts=LOOPBACK)
