"""Images: a tiny PNG maker, format sniffing and sizes, and fetching an image by URL with a cap.

Part of :mod:`providers.sandbox.common` (standard library only: no Django)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass

# --------------------------------------------------------------------------
# Tiny PNG generator (for demo / test input images)
# --------------------------------------------------------------------------


def make_png(width: int, height: int, rgb: tuple[int, int, int] = (70, 130, 180)) -> bytes:
    """Return a valid solid-colour RGB PNG of the given size."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    comp = zlib.compressobj(9)
    row = b"\x00" + bytes(rgb) * width
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


_GIF_1x1 = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")



MAX_IMAGE_BYTES = 20 * 1024 * 1024  # the 20 MB limit APIXO, PiAPI and MiniMax document; a fetch cap elsewhere


def sniff_image(data: bytes) -> str | None:
    """Return ``png``/``jpeg``/``gif``/``webp``/``bmp`` from the magic bytes of ``data``, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM") and len(data) >= 26:
        return "bmp"
    return None


def image_size(data: bytes) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` of PNG, JPEG or WebP bytes (own header parsing, no Pillow).

    PNG: the IHDR chunk after the signature.  JPEG: the first SOFn segment.
    WebP: the VP8, VP8L or VP8X header.  Raises ``ValueError("format")`` for
    any other format and ``ValueError("corrupt")`` for a header that cannot be read.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("corrupt")
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    raise ValueError("format")


def _jpeg_size(data: bytes) -> tuple[str, int, int]:
    frame_markers = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise ValueError("corrupt")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            continue
        if marker in (0xD9, 0xDA) or pos + 2 > end:  # end of image / start of scan before any SOF
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise ValueError("corrupt")
        if marker in frame_markers:
            if pos + 7 > end:
                break
            return "jpeg", int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 3:pos + 5], "big")
        pos += length
    raise ValueError("corrupt")


def _webp_size(data: bytes) -> tuple[str, int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return "webp", int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return "webp", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ValueError("corrupt")


@dataclass
class FetchedImage:
    """The outcome of :func:`fetch_image`.

    ``data`` is None when the fetch failed: ``http_status`` then holds a
    non-2xx status (``error`` None), or ``error`` names the exception
    (``"TypeName: message"``, ``error_type`` its type name), or ``declared_bytes``
    holds a ``Content-Length`` over the limit (the body is not read).
    """

    data: bytes | None = None
    http_status: int | None = None
    content_type: str | None = None
    declared_bytes: int | None = None
    error: str | None = None
    error_type: str | None = None


def fetch_image(url: str, timeout: float, user_agent: str, *, max_bytes: int = MAX_IMAGE_BYTES,
                trust_length: bool = False) -> FetchedImage:
    """GET ``url`` and read at most ``max_bytes + 1`` bytes of it (stdlib only, never raises).

    With ``trust_length``, a declared ``Content-Length`` over ``max_bytes`` stops
    before the body is read.
    """
    out = FetchedImage()
    try:
        req = urllib.request.Request(url, headers={"User-Agent": user_agent})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
            out.http_status = resp.status
            out.content_type = resp.headers.get("Content-Type")
            declared = resp.headers.get("Content-Length")
            if trust_length and declared and declared.isdigit() and int(declared) > max_bytes:
                out.declared_bytes = int(declared)
                return out
            out.data = resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        out.http_status = exc.code
        exc.close()
    except Exception as exc:  # refused, timeout, DNS, bad URL...
        out.error, out.error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
    return out
