"""First-frame (and other input) images: fetch under limits, identify, check against a provider's rules.

A provider refuses a bad image only after we have paid for nothing but also learned
nothing; checking first gives the member a clear message before any money moves
(issue "Every provider, faithful to its documentation", item 2). Images are fetched with
the SSRF guard (http/https only, public addresses only unless allowed by setting,
redirects re-checked), a size cap and a deadline; Pillow reads only the header.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from fractions import Fraction

from PIL import Image, UnidentifiedImageError

from providers.base import ImageRules, RuleViolation
from providers.download import DownloadFailed, download_public

#: Pillow format name → our format name (the spelling ImageRules.formats uses).
FORMATS = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "MPO": "jpeg"}
FORMAT_LABELS = {"jpeg": "JPG", "png": "PNG", "webp": "WebP", "gif": "GIF", "bmp": "BMP"}
MAX_FETCH_BYTES = 25 * 1024 * 1024
MAX_REDIRECTS = 4


class ImageUnavailable(Exception):
    """The image could not be fetched or read (the message says why, for the member)."""


@dataclass(frozen=True)
class ImageInfo:
    """What we know of an image: ``format`` (our spelling), pixel ``width``/``height``, ``size`` in bytes."""

    format: str
    width: int
    height: int
    size: int


#: The pixel cap when Django settings give none (``HAILUO_IMAGE_MAX_PIXELS``): 40 megapixels.
DEFAULT_MAX_PIXELS = 40_000_000
_DECLARED_PIXELS = re.compile(r"Image size \((\d+) pixels\)")


def max_pixels_setting() -> int:
    """``settings.HAILUO_IMAGE_MAX_PIXELS`` (pixels), or :data:`DEFAULT_MAX_PIXELS` outside Django."""
    try:
        from django.conf import settings

        return int(getattr(settings, "HAILUO_IMAGE_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ImportError:  # pragma: no cover - providers is used inside Django
        return DEFAULT_MAX_PIXELS


def megapixels(pixels: int) -> str:
    """40_000_000 → "40 megapixels"; 10_000_000_000 → "10,000 megapixels"."""
    value = pixels / 1_000_000
    return f"{value:,.0f} megapixels" if value >= 10 or value == int(value) else f"{value:,.1f} megapixels"


def identify(data: bytes, *, max_pixels: int | None = None) -> ImageInfo:
    """Identify image bytes from their header (nothing is decoded).

    ``max_pixels`` (default ``HAILUO_IMAGE_MAX_PIXELS``, 40 megapixels): a larger image,
    and any image Pillow flags as a decompression bomb (e.g. a PNG declaring
    100000×100000), is refused. Raises :class:`ImageUnavailable` (the message names the
    rule) when the bytes are not an image we can read or the image is over the cap.
    """
    cap = max_pixels if max_pixels is not None else max_pixels_setting()
    rule = f"images may have at most {megapixels(cap)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt = FORMATS.get(image.format or "", (image.format or "unknown").lower())
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        declared = _DECLARED_PIXELS.search(str(exc))
        size = f"declares {megapixels(int(declared.group(1)))}" if declared else "declares more pixels than can be read safely"
        raise ImageUnavailable(f"the image {size}: {rule}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageUnavailable("the file is not an image we can read") from exc
    if width * height > cap:
        raise ImageUnavailable(f"the image is {width}×{height} ({megapixels(width * height)}): {rule}")
    return ImageInfo(format=fmt, width=width, height=height, size=len(data))


def fetch_image(url: str, *, allowed_private_hosts=frozenset(), timeout: float = 10.0, max_bytes: int = MAX_FETCH_BYTES) -> bytes:
    """GET ``url`` under the SSRF guard (pinned connections, redirects re-checked:
    :func:`providers.http.open_public_stream`), a size cap and an overall deadline; return the bytes.

    ``allowed_private_hosts``: ``host:port`` entries (``HAILUO_ALLOWED_PRIVATE_HOSTS``).

    One bounded download (:func:`providers.download.download_public`): at most ``MAX_REDIRECTS``
    redirects, each re-checked; ``timeout`` seconds in all. Raises :class:`ImageUnavailable`
    with a member-readable reason.
    """
    buffer = io.BytesIO()
    try:
        download_public(
            url, into=buffer, max_bytes=max_bytes, timeout=timeout, connect_timeout=5.0,
            allowed_private_hosts=allowed_private_hosts, max_redirects=MAX_REDIRECTS,
        )
    except DownloadFailed as exc:
        raise ImageUnavailable(_unavailable_reason(exc, timeout=timeout, max_bytes=max_bytes)) from exc
    return buffer.getvalue()


def _unavailable_reason(exc: DownloadFailed, *, timeout: float, max_bytes: int) -> str:
    """A failed image download in the member's words."""
    if exc.reason == "refused":
        return f"the image URL is refused: {exc.cause}"
    if exc.reason == "status":
        return f"the image URL answered HTTP {exc.status}"
    if exc.reason == "too_large":
        return f"the image is larger than {max_bytes // (1024 * 1024)} MB"
    if exc.reason == "too_slow":
        return f"the image took more than {timeout:g} s to download"
    if exc.reason == "redirects":
        return "the image URL redirects too many times"
    return f"the image could not be downloaded ({exc.cause.__class__.__name__})"


def ratio_label(value: float) -> str:
    """0.4 → "2:5", 2.5 → "5:2"."""
    fraction = Fraction(value).limit_denominator(20)
    return f"{fraction.numerator}:{fraction.denominator}"


def describe_image_rules(rules: ImageRules, *, max_pixels: int | None = None) -> str:
    """``rules`` in words, for the form's hint and the README's provider matrix, e.g.
    "JPEG/PNG, ≤ 20 MB, short side > 300 px, aspect ratio strictly between 2:5 and 5:2".

    ``max_pixels`` (our own cap, :func:`identify`) adds "≤ 40 megapixels" after the size
    (the form passes it; the provider matrix, which states the providers' rules, does not).
    """
    parts = ["/".join(f.upper() for f in rules.formats), f"≤ {rules.max_bytes // (1024 * 1024)} MB"]
    if max_pixels:
        parts.append(f"≤ {megapixels(max_pixels)}")
    if rules.min_short_side_exclusive:
        parts.append(f"short side > {rules.min_short_side_exclusive} px")
    if rules.min_side:
        parts.append(f"sides ≥ {rules.min_side} px")
    if rules.max_side:
        parts.append(f"sides ≤ {rules.max_side} px")
    if rules.aspect_min and rules.aspect_max:
        bounds = f"{ratio_label(rules.aspect_min)} and {ratio_label(rules.aspect_max)}"
        parts.append("aspect ratio " + ("strictly " if rules.aspect_exclusive else "") + f"between {bounds}")
    return ", ".join(parts)


def check_image(info: ImageInfo, rules: ImageRules, *, provider: str, field: str = "image_url") -> list[RuleViolation]:
    """Every rule of ``rules`` that ``info`` breaks, as violations naming the provider and the rule."""
    out: list[RuleViolation] = []
    if rules.formats and info.format not in rules.formats:
        allowed = " or ".join(FORMAT_LABELS.get(f, f.upper()) for f in rules.formats)
        out.append(RuleViolation(field, f"{provider}: the image must be {allowed} (this one is {FORMAT_LABELS.get(info.format, info.format.upper())})"))
    if rules.max_bytes and info.size > rules.max_bytes:
        out.append(RuleViolation(field, f"{provider}: the image must be at most {rules.max_bytes // (1024 * 1024)} MB (this one is {info.size / 1024 / 1024:.1f} MB)"))
    short, long_ = min(info.width, info.height), max(info.width, info.height)
    if rules.min_short_side_exclusive is not None and short <= rules.min_short_side_exclusive:
        out.append(RuleViolation(field, f"{provider}: the image's short side must be over {rules.min_short_side_exclusive} px (this one is {info.width}×{info.height})"))
    if rules.min_side is not None and short < rules.min_side:
        out.append(RuleViolation(field, f"{provider}: the image must be at least {rules.min_side} px on each side (this one is {info.width}×{info.height})"))
    if rules.max_side is not None and long_ > rules.max_side:
        out.append(RuleViolation(field, f"{provider}: the image must be at most {rules.max_side} px on each side (this one is {info.width}×{info.height})"))
    if info.height and (rules.aspect_min is not None or rules.aspect_max is not None):
        ratio = info.width / info.height
        low, high = rules.aspect_min, rules.aspect_max
        if rules.aspect_exclusive:
            bad = (low is not None and ratio <= low) or (high is not None and ratio >= high)
            words = "strictly between"
        else:
            bad = (low is not None and ratio < low) or (high is not None and ratio > high)
            words = "between"
        if bad:
            bounds = " and ".join(ratio_label(x) for x in (low, high) if x is not None)
            out.append(RuleViolation(field, f"{provider}: the image's aspect ratio must be {words} {bounds} (this one is {info.width}×{info.height})"))
    return out
