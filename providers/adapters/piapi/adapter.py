"""PiAPI adapter: Hailuo v2.3 and v2.3-fast through PiAPI's unified task API (``api.piapi.ai``).

Sources: ../shared/seeds/004 (PiAPI "Hailuo / Generate Video": "Pricing", "Model
Requirements", "Input Constraints", "Hailuo v2.3", "Configuration Options", "Important
Notes", the request example and the completed-task example) and providers.md, section
PiAPI (get-task shape, statuses, video fields, webhook, account endpoint).

What the sources do NOT give, and how this adapter reads it (tolerant readings):
- whether ``v2.3-fast`` takes text-to-video: seeds/004 lists ``image_url`` as optional for
  the whole Hailuo page and prices both models at the same tiers, without a per-model mode
  list; both modes are offered for both models (MiniMax's own Fast model needs a first
  frame, so PiAPI may refuse Fast text-to-video: the notes say so).
- the duration/resolution rule is printed under "Hailuo v2.3" only; the v2.3-fast price
  table has the same three tiers (768p 6 s, 768p 10 s, 1080p 6 s), so the same combos apply.
- ``expand_prompt``'s default: not documented; it is sent only when asked.
- the unit of ``meta.usage.consume``: inferred from seeds/004's completed example
  (``consume: 2300000`` for a v2.3 768p 6 s task priced 0.23 USD): 10^-7 USD.
- "Aspect ratio: Must be between 2:5 and 5:2": the bounds themselves are allowed.
- "Size limit: 20MB": read as 20 MiB.
- polling advice: none; we poll 20 s after submit, then every 10 s.
- a body ``code`` outside 400-599 under HTTP 2xx: not documented; a transient error.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from providers.adapters.common import (
    epoch_to_datetime,
    header_value,
    http_error,
    int_or_none,
    read_json,
    to_decimal,
)
from providers.base import (
    USD_BALANCE,
    CallbackHint,
    GenerationRequest,
    ImageRules,
    ModeCapability,
    ModelCapability,
    OptionSpec,
    PollCadence,
    ProviderAdapter,
    ProviderCapabilities,
    SubmitResult,
    TaskState,
    TaskUpdate,
)
from providers.http import ProviderError, ProviderHttp

#: seeds/004 request example: top-level ``model`` and ``task_type`` of every Hailuo task.
PIAPI_MODEL = "hailuo"
PIAPI_TASK_TYPE = "video_generation"

#: seeds/004 "Configuration Options": "Currently only supports 'public' mode (aka. PPU)".
SERVICE_MODE = "public"

#: seeds/004 completed example: ``usage.consume`` 2300000 for a 0.23 USD task → 10^7 units per USD
#: (inferred, not stated).
CONSUME_UNITS_PER_USD = Decimal(10) ** 7

#: seeds/004 "Image Requirements (image_url)" and "Important Notes" 1: JPG or PNG, at most 20 MB,
#: 300 to 4096 px on each side, aspect ratio "between 2:5 and 5:2" (bounds allowed).
PIAPI_IMAGE_RULES = ImageRules(
    formats=("jpeg", "png"),
    max_bytes=20 * 1024 * 1024,
    min_side=300,
    max_side=4096,
    aspect_min=2 / 5,
    aspect_max=5 / 2,
    aspect_exclusive=False,
)

#: seeds/004 "Hailuo v2.3": duration 6 or 10, resolution 768 or 1080, "1080p+10s is not supported";
#: the "Pricing" tables list exactly these three tiers for both models.
COMBOS = ((6, "768p"), (10, "768p"), (6, "1080p"))

#: Our canonical resolution → PiAPI's integer (seeds/004 request example: ``"resolution": 768``).
RESOLUTIONS = {"768p": 768, "1080p": 1080}

#: seeds/004 "Model Requirements": ``expand_prompt`` is an optional field (a boolean in the example).
EXPAND_PROMPT = OptionSpec(
    "expand_prompt", "Expand prompt", "bool",
    help="Let PiAPI expand the prompt before generating (PiAPI's default is not documented).",
)

#: seeds/004 "Model Requirements": prompt required, image_url optional (→ two modes);
#: "Text Prompt": at most 2000 characters.
_MODES = (
    ModeCapability("text-to-video", "Text-to-video", "none", COMBOS, options=(EXPAND_PROMPT,)),
    ModeCapability("image-to-video", "Image-to-video", "required", COMBOS, options=(EXPAND_PROMPT,)),
)

HAILUO_V2_3 = ModelCapability(
    id="v2.3",
    label="Hailuo 2.3",
    modes=_MODES,
    prompt_max_chars=2000,
    image_rules=PIAPI_IMAGE_RULES,
)

HAILUO_V2_3_FAST = ModelCapability(
    id="v2.3-fast",
    label="Hailuo 2.3 Fast",
    modes=_MODES,
    prompt_max_chars=2000,
    image_rules=PIAPI_IMAGE_RULES,
    notes=(
        "PiAPI's page does not say whether v2.3-fast takes text-to-video; both modes are offered. "
        "MiniMax's own Fast model needs a first frame, so PiAPI may refuse Fast text-to-video."
    ),
)

#: providers.md, PiAPI, "Get task": pending, staged, processing, completed, failed (case varies).
STATE_MAP = {
    "pending": TaskState.QUEUED,
    "staged": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}

#: providers.md, PiAPI: the video is at ``output.video`` (v2.3 pages), else ``video_url``, else ``download_url``.
VIDEO_FIELDS = ("video", "video_url", "download_url")

_RFC3339 = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?(?P<zone>Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time (seeds/004 ``meta``: ``2026-01-25T13:52:23.125177638Z``) as aware UTC.

    The fraction is cut to microseconds (``fromisoformat`` takes at most 6 digits on some
    Pythons); no zone is read as UTC; Go's zero time (year 1, an unset ``started_at`` or
    ``ended_at``) is None; a number is read as a Unix timestamp (s or ms).
    """
    if value in (None, "") or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return epoch_to_datetime(value) if value > 0 else None
    match = _RFC3339.match(str(value).strip())
    if not match:
        return None
    text = match["base"].replace(" ", "T")
    if match["frac"]:
        text += "." + match["frac"][:6].ljust(6, "0")
    zone = match["zone"] or "+00:00"
    text += "+00:00" if zone in ("Z", "z") else zone
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.year <= 1:
        return None
    return when.astimezone(UTC)



class PiapiAdapter(ProviderAdapter):
    """PiAPI (``x-api-key: KEY``): ``POST /api/v1/task``, ``GET /api/v1/task/{task_id}``, ``GET /account/info``."""

    kind = "piapi"
    label = "PiAPI"
    #: Poll reads in flight per account: PiAPI documents no rate limit for "Get task"
    #: (providers.md, PiAPI): the base default (see ``ProviderAdapter.poll_concurrency``).
    poll_concurrency = 200
    default_base_url = "https://api.piapi.ai"
    capabilities = ProviderCapabilities(
        models=(HAILUO_V2_3, HAILUO_V2_3_FAST),
        callbacks=True,
        cancel=False,  # seeds/004 lists Cancel Task for Kling, Luma and Midjourney, not for Hailuo.
    )

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key, "Content-Type": "application/json"}

    # -- submit ----------------------------------------------------------------------
    def build_submit_body(self, request: GenerationRequest, *, callback_url: str = "", callback_secret: str = "") -> dict:
        """The JSON body of ``POST /api/v1/task`` (seeds/004 request example and "Model Requirements").

        ``input.model`` is our model id (``v2.3``/``v2.3-fast``); ``resolution`` the integer
        768 or 1080; ``image_url`` only for image-to-video; ``expand_prompt`` only when the
        request sets it. ``config.service_mode`` is always "public" (the only mode, seeds/004
        "Configuration Options"). With a callback URL, ``config.webhook_config`` is
        ``{endpoint, secret}``; PiAPI echoes the secret in ``x-webhook-secret`` (providers.md,
        PiAPI, "Webhook").
        """
        mode = self.capabilities.model(request.model).mode(request.mode)
        payload_input: dict = {"prompt": request.prompt, "model": request.model}
        expand = (request.options or {}).get("expand_prompt")
        if expand is not None:
            payload_input["expand_prompt"] = bool(expand)
        payload_input["duration"] = request.duration
        payload_input["resolution"] = RESOLUTIONS.get(request.resolution, request.resolution)
        if mode.image != "none" and request.image_url:
            payload_input["image_url"] = request.image_url
        config: dict = {"service_mode": SERVICE_MODE}
        if callback_url:
            config["webhook_config"] = {"endpoint": callback_url, "secret": callback_secret or ""}
        return {"model": PIAPI_MODEL, "task_type": PIAPI_TASK_TYPE, "input": payload_input, "config": config}

    async def submit(
        self, http: ProviderHttp, request: GenerationRequest, *, callback_url: str = "", callback_secret: str = ""
    ) -> SubmitResult:
        """Create the task; returns ``data.task_id``. Raises ProviderError (see :meth:`_unwrap`)."""
        body = self.build_submit_body(request, callback_url=callback_url, callback_secret=callback_secret)
        response = await http.request("POST", f"{self.base_url}/api/v1/task", headers=self._headers(), json=body)
        answer = self._unwrap(response)
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        task_id = data.get("task_id") or answer.get("task_id")
        if not task_id:
            raise ProviderError("PiAPI: the submit answer carries no data.task_id", http_status=response.status_code)
        return SubmitResult(task_id=str(task_id), raw=answer)

    def _unwrap(self, response: httpx.Response) -> dict:
        """Return the JSON body of a successful answer; raise ProviderError otherwise.

        An answer is an error when its HTTP status is not 2xx or its body ``code`` is not 200
        (providers.md, PiAPI: ``{code, message, data}``). seeds/004 shows a success body
        without ``code`` (``{timestamp, data}``): a missing ``code`` is not an error.
        Classification: 400/401/402/403/404 permanent, 429/5xx transient (providers.md,
        "What follows for every adapter"); a body code under HTTP 2xx is classified like
        that HTTP status when it is one (400-599), else transient.
        """
        body = read_json(response, "PiAPI")
        body_code = int_or_none(body.get("code"))
        if response.status_code < 400 and (body_code is None or body_code == 200):
            return body
        message = self._error_text(body)
        if response.status_code >= 400:
            status = response.status_code
            raise http_error(response, "PiAPI", message or f"HTTP {status}", str(status), status=status)
        if 400 <= body_code < 600:
            raise http_error(response, "PiAPI", message or f"code {body_code}", str(body_code), status=body_code)
        raise ProviderError(
            f"PiAPI: {message or f'code {body_code}'}", code=str(body_code), http_status=response.status_code
        )

    @staticmethod
    def _error_text(body: Mapping) -> str:
        """The provider's words: ``message``, a string or ``{message}`` ``error``, or ``data.error.message``."""
        parts: list[str] = []
        if body.get("message"):
            parts.append(str(body["message"]))
        error = body.get("error")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        if not error and isinstance(data.get("error"), dict):
            error = data["error"]
        if isinstance(error, dict):
            error = error.get("message") or error.get("raw_message") or ""
        if error and str(error) not in parts:
            parts.append(str(error))
        return ": ".join(parts)

    # -- status ----------------------------------------------------------------------
    async def fetch_status(self, http: ProviderHttp, *, task_id: str, model: str) -> TaskUpdate:
        """``GET /api/v1/task/{task_id}`` parsed into a TaskUpdate (providers.md, PiAPI, "Get task")."""
        response = await http.request(
            "GET", f"{self.base_url}/api/v1/task/{quote(str(task_id), safe='')}", headers=self._headers()
        )
        return self.parse_status(self._unwrap(response))

    def parse_status(self, body: Mapping) -> TaskUpdate:
        """Parse a get-task answer ``{code, message, data}`` or a webhook body ``{timestamp, data}``.

        ``data.status`` in any letter case (providers.md, PiAPI: "case varies"). The video is
        ``output.video``, else ``output.video_url``, else ``output.download_url`` (a string or
        a list of strings); ``completed`` without one is UNKNOWN (polled again, never a
        success we cannot archive). ``error.code`` (0 = none) and ``error.message`` (else
        ``raw_message``) give the failure. ``meta`` times are RFC 3339 with nanoseconds
        (seeds/004 completed example). ``meta.usage`` becomes ``provider_cost = {type,
        frozen, consume, usd}`` with ``usd = consume / 10^7`` as a decimal string (the unit
        is inferred from seeds/004: 2300000 for 0.23 USD; a string, as the cost is stored
        in a JSON field).
        """
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        provider_state = str(data.get("status") or "")
        state = STATE_MAP.get(provider_state.strip().lower(), TaskState.UNKNOWN)
        output = data.get("output") if isinstance(data.get("output"), dict) else {}
        urls: tuple[str, ...] = ()
        for name in VIDEO_FIELDS:
            found = output.get(name)
            if isinstance(found, str):
                found = [found]
            if isinstance(found, list):
                urls = tuple(str(u) for u in found if isinstance(u, str) and u.strip())
            if urls:
                break
        if state is TaskState.SUCCEEDED and not urls:
            state = TaskState.UNKNOWN
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        code = error.get("code")
        fail_code = "" if code in (None, "", 0, "0") or isinstance(code, bool) else str(code)
        fail_message = str(error.get("message") or error.get("raw_message") or "")
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        return TaskUpdate(
            task_id=str(data.get("task_id") or ""),
            state=state,
            provider_state=provider_state,
            result_urls=urls,
            fail_code=fail_code,
            fail_message=fail_message,
            created_at=parse_time(meta.get("created_at")),
            completed_at=parse_time(meta.get("ended_at")),
            provider_cost=self._cost(meta.get("usage")),
            raw=dict(body),
        )

    @staticmethod
    def _cost(usage: Any) -> dict | None:
        """``meta.usage`` → ``{type, frozen, consume, usd}`` (``usd`` a decimal string), or None."""
        if not isinstance(usage, dict) or not usage:
            return None
        cost: dict = {"type": usage.get("type"), "frozen": usage.get("frozen"), "consume": usage.get("consume")}
        consume = to_decimal(usage.get("consume"))
        if consume is not None and consume.is_finite():
            cost["usd"] = format(consume / CONSUME_UNITS_PER_USD, "f")
        return cost

    # -- callbacks ---------------------------------------------------------------------
    def verify_callback(self, headers: Mapping[str, str], body: bytes, *, secret: str) -> None:
        """``x-webhook-secret`` must equal the secret we put in ``webhook_config`` (constant time).

        providers.md, PiAPI, "Webhook": the configured secret comes back verbatim (a shared
        secret, not an HMAC of the body). PiAPI sends the header only "if a secret is
        provided": with no secret of ours there is nothing to compare (the per-generation
        token in the callback URL authenticated the call).
        """
        if not secret:
            return None
        given = header_value(headers, "x-webhook-secret")
        if given is None:
            raise ValueError("PiAPI callback has no x-webhook-secret header")
        if not hmac.compare_digest(str(given).encode("utf-8"), secret.encode("utf-8")):
            raise ValueError("PiAPI callback has a wrong x-webhook-secret")
        return None

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackHint:
        """The webhook body is ``{timestamp, data: <get-task data>}`` (providers.md, PiAPI, "Webhook").

        Deliveries may come for non-final updates and be retried: each is only a hint that
        wakes the poll of its task.
        """
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError("PiAPI callback body is not JSON") from exc
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or not data.get("task_id"):
            raise ValueError("PiAPI callback has no data.task_id")
        return CallbackHint(task_id=str(data["task_id"]), provider_state=str(data.get("status") or ""))

    # -- cadence and account -------------------------------------------------------------
    def poll_cadence(self, request: GenerationRequest) -> PollCadence:
        """Not documented by PiAPI: first poll 20 s after submit, then every 10 s."""
        return PollCadence(first_delay=20.0, interval=10.0)

    #: PiAPI ``equivalent_in_usd`` is USD (providers.md, PiAPI, "Account").
    balance_unit = USD_BALANCE

    async def fetch_balance(self, http: ProviderHttp) -> Decimal | None:
        """``GET /account/info`` → ``data.equivalent_in_usd`` in USD (providers.md, PiAPI, "Account"), if present."""
        response = await http.request("GET", f"{self.base_url}/account/info", headers=self._headers())
        answer = self._unwrap(response)
        data = answer.get("data") if isinstance(answer.get("data"), dict) else answer
        return to_decimal(data.get("equivalent_in_usd"))
