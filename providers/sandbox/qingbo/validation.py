"""qingbo sandbox: the documented rules of a submit body (``POST /v1/tasks``), checked before a task exists."""

from __future__ import annotations

from typing import Any

from ..common import Refused, is_http_url
from .rules import (
    ACTIONS,
    ASPECT_RATIOS,
    DEFAULT_DURATION,
    DURATIONS,
    MAX_1080P_DURATION,
    MAX_PROMPT_CHARS,
    MODELS,
    _image_kind,
)


def _bad(message: str) -> Refused:
    return Refused(400, message, code="invalid_request")


def validate_submit(body: Any) -> dict[str, Any]:
    """Check a submit body against the documented rules (module docstring); raise 400."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    model = body.get("model")
    if model is None or model == "":
        raise _bad("model is required")
    if not isinstance(model, str) or model not in MODELS:
        raise _bad(f"unknown model {model!r}; available: {', '.join(MODELS)}")
    rule = MODELS[model]

    action = body.get("action")
    if action is None:
        action = "generate"
    if action not in ACTIONS:
        raise _bad(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")

    images: list[tuple[str, str]] = []
    first = None
    image_urls = body.get("image_urls")
    if image_urls is not None:
        if not isinstance(image_urls, list):
            raise _bad("image_urls must be an array holding exactly 1 image URL")
        if len(image_urls) != 1:
            raise _bad(f"image_urls must hold exactly 1 image, got {len(image_urls)}")
        if _image_kind(image_urls[0]) is None:
            raise _bad("image_urls[0] must be an http(s) URL or Base64 image data")
        first = image_urls[0].strip()
        images.append(("image_urls[0]", first))
    last = body.get("last_frame")
    if last is not None:
        if not rule.last_frame:
            raise _bad(f"last_frame (first/last frame mode) is supported by hailuo-02 only, not {model}")
        if first is None:
            raise _bad("last_frame requires image_urls (the first frame)")
        if _image_kind(last) is None:
            raise _bad("last_frame must be an http(s) URL or Base64 image data")
        last = last.strip()
        images.append(("last_frame", last))
    if rule.needs_image and first is None:
        raise _bad(f"{model} is image-to-video: image_urls (1 image) is required")
    if action == "image2video" and first is None:
        raise _bad("action image2video requires image_urls (1 image)")

    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise _bad("prompt must be a string")
    if prompt is None or not prompt.strip():
        if last is None:
            raise _bad("prompt is required and must not be empty")
        prompt = prompt or ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _bad(f"prompt is limited to {MAX_PROMPT_CHARS} characters, got {len(prompt)}")

    duration = body.get("duration")
    if duration is None:
        duration = DEFAULT_DURATION
    if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
        raise _bad(f"duration must be 6 or 10, got {duration!r}")
    if duration not in rule.durations:
        raise _bad(f"{model} supports duration {', '.join(map(str, rule.durations))} only, got {duration}")

    resolution = body.get("resolution")
    if resolution is None:
        resolution = rule.default_resolution
    if not isinstance(resolution, str) or resolution.strip().lower() not in rule.resolutions:
        raise _bad(f"resolution {resolution!r} is not supported by {model}; supported: {', '.join(rule.resolutions)}")
    resolution = resolution.strip().lower()
    if resolution == "1080p" and duration > MAX_1080P_DURATION:
        raise _bad("1080p is available with duration 6 only")

    aspect_ratio = body.get("aspect_ratio")
    if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
        raise _bad(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}, got {aspect_ratio!r}")

    extra = body.get("extra")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise _bad("extra must be an object")
    for name in ("prompt_optimizer", "fast_pretreatment"):
        if extra.get(name) is not None and not isinstance(extra[name], bool):
            raise _bad(f"extra.{name} must be a boolean")
    refs = extra.get("subject_reference")
    if refs is not None:
        if rule.subject_reference == "no":
            raise _bad(f"extra.subject_reference (character reference) is supported by the hailuo-2.3 series and S2V-01, not {model}")
        if not isinstance(refs, list) or not refs:
            raise _bad("extra.subject_reference must be a non-empty array")
        for i, item in enumerate(refs):
            if not isinstance(item, dict):
                raise _bad(f"extra.subject_reference[{i}] must be an object")
            if item.get("type") != "character":
                raise _bad(f'extra.subject_reference[{i}].type must be "character"')
            imgs = item.get("image")
            if not isinstance(imgs, list) or not imgs:
                raise _bad(f"extra.subject_reference[{i}].image must be a non-empty array of image URLs")
            for j, ref in enumerate(imgs):
                if _image_kind(ref) is None:
                    raise _bad(f"extra.subject_reference[{i}].image[{j}] must be an http(s) URL or Base64 image data")
                images.append((f"extra.subject_reference[{i}].image[{j}]", ref.strip()))
    if rule.subject_reference == "required" and not refs:
        raise _bad(f"{model} is character-reference mode: extra.subject_reference is required")

    callback_url = body.get("callback_url")
    if callback_url == "":
        callback_url = None
    if callback_url is not None and not is_http_url(callback_url):
        raise _bad("callback_url must be an http(s) URL")
    events = body.get("callback_events")
    if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)):
        raise _bad("callback_events must be an array of strings")

    return {
        "model": model,
        "action": action,
        "prompt": prompt,
        "duration": duration,
        "resolution": resolution,
        "aspect_ratio": aspect_ratio,
        "images": images,
        "extra": extra,
        "callback_url": callback_url.strip() if callback_url else None,
        "callback_events": events,
    }
