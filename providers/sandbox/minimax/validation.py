"""MiniMax sandbox: the documented rules of a submit body ("Video Generation"), checked before a task exists."""

from __future__ import annotations

from typing import Any

from ..common import is_http_url
from .rules import (
    _DATA_URL,
    DEFAULT_DURATION,
    DEFAULT_RESOLUTION,
    DURATIONS,
    IMAGE_MIME_TYPES,
    MAX_PROMPT_CHARS,
    MODELS,
    RESOLUTIONS,
    _invalid,
)


def validate_submit(body: Any) -> dict[str, Any]:
    """The documented rules for MiniMax-Hailuo-2.3 / -Fast; 2013 "invalid params, <rule>" on a refusal."""
    if not isinstance(body, dict):
        raise _invalid("request body must be a JSON object")
    model = body.get("model")
    if model is None or model == "":
        raise _invalid("model is required")
    if not isinstance(model, str) or model not in MODELS:
        raise _invalid(f"model must be one of {', '.join(MODELS)} (got {model!r})")

    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise _invalid("prompt must be a string")
    prompt = prompt or ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _invalid(f"prompt must be at most {MAX_PROMPT_CHARS} characters (got {len(prompt)})")

    image = body.get("first_frame_image")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise _invalid("first_frame_image must be a non-empty string (an http(s) URL or a data URL)")
        image = image.strip()
        if image.startswith("data:"):
            m = _DATA_URL.fullmatch(image)
            if not m or m.group(1).lower() not in IMAGE_MIME_TYPES:
                raise _invalid("first_frame_image data URL must look like data:image/jpeg;base64,... "
                               "(JPG, JPEG, PNG or WebP)")
        elif not is_http_url(image):
            raise _invalid("first_frame_image must be a public http(s) URL or a base64 data URL")
    if MODELS[model] and image is None:
        raise _invalid(f"{model} is image-to-video only: first_frame_image is required")
    if image is None and not prompt.strip():
        raise _invalid("prompt is required when first_frame_image is absent (text-to-video)")

    for unsupported, only in (("last_frame_image", "MiniMax-Hailuo-02"), ("subject_reference", "S2V-01")):
        if body.get(unsupported) is not None:
            raise _invalid(f"{unsupported} is not supported by {model} (only {only})")

    duration = body.get("duration", DEFAULT_DURATION)
    if duration is None:
        duration = DEFAULT_DURATION
    if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
        raise _invalid(f"duration must be 6 or 10 (got {duration!r})")
    resolution = body.get("resolution", DEFAULT_RESOLUTION)
    if resolution is None:
        resolution = DEFAULT_RESOLUTION
    if not isinstance(resolution, str) or resolution not in RESOLUTIONS:
        raise _invalid(f"resolution must be 768P or 1080P (got {resolution!r})")
    if resolution == "1080P" and duration != 6:
        raise _invalid("1080P supports only duration 6 (10 s videos are 768P only)")

    options: dict[str, Any] = {}
    for flag, default in (("prompt_optimizer", True), ("fast_pretreatment", False), ("aigc_watermark", False)):
        value = body.get(flag)
        if value is not None and not isinstance(value, bool):
            raise _invalid(f"{flag} must be a boolean (got {value!r})")
        options[flag] = default if value is None else value

    callback_url = body.get("callback_url")
    if callback_url is not None:
        if not isinstance(callback_url, str) or not is_http_url(callback_url):
            raise _invalid("callback_url must be an http(s) URL")
        callback_url = callback_url.strip()
    return {"model": model, "prompt": prompt, "image": image, "duration": duration, "resolution": resolution,
            "options": options, "callback_url": callback_url}
