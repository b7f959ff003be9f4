"""PoYo adapter: Hailuo 2.3 through ``api.poyo.ai``'s unified generate API.

Sources: ../shared/seeds/000 (PoYo "Submit Hailuo 2.3 Task": request example, response
example, "Optional Parameters", "Notes", the callback note) and providers.md, section
PoYo (status endpoint, statuses, files, error body, callback headers, account endpoint,
credits price).

What the sources do NOT give, and how this adapter reads it (NOT FOUND → tolerant reading):
- image rules for ``start_image_url``: none declared (no ``ImageRules``); PoYo judges.
- the callback signing algorithm: ``x-webhook-signature`` is not checked; only the
  ``x-webhook-timestamp`` window is (PoYo's own examples reject deliveries older than 300 s).
- polling advice: none; we poll 20 s after submit, then every 10 s.
- the shape of ``GET /api/user/info``: a numeric ``data.credits`` or ``data.balance`` is read.
- the zone of ``created_time``: the ISO string has none; it is read as UTC.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from providers.adapters.common import (
    epoch_to_datetime,
    header_value,
    http_error,
    int_or_none,
    progress_percent,
    read_json,
    to_decimal,
)
from providers.base import (
    BalanceUnit,
    CallbackHint,
    GenerationRequest,
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

#: providers.md, PoYo, "Price": 1 credit = 0.005 USD.
USD_PER_CREDIT = Decimal("0.005")

#: providers.md, PoYo, "Callback": PoYo's own examples reject deliveries older than 300 s.
CALLBACK_MAX_SKEW_SECONDS = 300

#: seeds/000 "Optional Parameters" (duration 6 or 10, resolution 768p or 1080p) and "Notes"
#: ("1080p only supports duration=6").
COMBOS = ((6, "768p"), (10, "768p"), (6, "1080p"))

#: seeds/000 "Optional Parameters": ``prompt_optimizer`` is an optional boolean switch
#: (its default is NOT FOUND, so nothing is sent unless asked).
PROMPT_OPTIMIZER = OptionSpec(
    "prompt_optimizer", "Prompt optimizer", "bool", help="Let PoYo rewrite the prompt before generating."
)

#: seeds/000 "Hailuo 2.3": one model, "Text-to-video with optional start_image_url"; PoYo has no
#: mode field, so our two modes differ only by the presence of ``input.start_image_url``.
#: Prompt limit 5000 characters (providers.md, PoYo: PoYo's capability catalogue).
#: "end_image_url is not supported" (seeds/000 "Notes"): no last-frame option.
HAILUO_2_3 = ModelCapability(
    id="hailuo-2.3",
    label="Hailuo 2.3",
    modes=(
        ModeCapability("text-to-video", "Text-to-video", "none", COMBOS, options=(PROMPT_OPTIMIZER,)),
        ModeCapability("image-to-video", "Image-to-video", "required", COMBOS, options=(PROMPT_OPTIMIZER,)),
    ),
    prompt_max_chars=5000,
    image_rules=None,  # NOT FOUND: PoYo documents no first-frame image rules.
    notes="No end frame (end_image_url is not supported). First-frame image rules are not documented.",
)

#: providers.md, PoYo, "Status": not_started, running, finished (final), failed (final).
STATE_MAP = {
    "not_started": TaskState.QUEUED,
    "running": TaskState.RUNNING,
    "finished": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}



def parse_time(value: Any) -> datetime | None:
    """An ISO time without zone (read as UTC), with a zone (kept), or a Unix timestamp; else None.

    providers.md, PoYo, "Response": ``created_time`` is an ISO string without zone.
    """
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return epoch_to_datetime(value)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return epoch_to_datetime(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)



class PoyoAdapter(ProviderAdapter):
    """PoYo (``Authorization: Bearer KEY``): ``POST /api/generate/submit``, ``GET /api/generate/status/{task_id}``."""

    kind = "poyo"
    label = "PoYo"
    #: Poll reads in flight per account: PoYo documents a 429 but no rate (providers.md,
    #: PoYo, "Errors"): the base default (see ``ProviderAdapter.poll_concurrency``).
    poll_concurrency = 200
    default_base_url = "https://api.poyo.ai"
    capabilities = ProviderCapabilities(models=(HAILUO_2_3,), callbacks=True, cancel=False)
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    # -- submit ------------------------------------------------------------------------
    def build_submit_body(self, request: GenerationRequest, *, callback_url: str = "") -> dict:
        """The JSON body of ``POST /api/generate/submit`` (seeds/000, the curl example and "Body").

        ``{model, callback_url?, input: {prompt, duration, resolution, start_image_url?,
        prompt_optimizer?}}``; duration and resolution are always sent (PoYo's defaults are 6
        and 768p, seeds/000 "Optional Parameters"), the resolution in PoYo's own lower-case
        spelling ("768p", "1080p"), which is ours.
        """
        payload_input: dict = {
            "prompt": request.prompt,
            "duration": request.duration,
            "resolution": request.resolution.lower(),
        }
        if request.mode == "image-to-video" and request.image_url:
            payload_input["start_image_url"] = request.image_url
        optimizer = (request.options or {}).get("prompt_optimizer")
        if optimizer is not None:
            payload_input["prompt_optimizer"] = bool(optimizer)
        body: dict = {"model": request.model}
        if callback_url:
            body["callback_url"] = callback_url
        body["input"] = payload_input
        return body

    async def submit(
        self, http: ProviderHttp, request: GenerationRequest, *, callback_url: str = "", callback_secret: str = ""
    ) -> SubmitResult:
        """Submit; returns ``data.task_id`` (seeds/000, "Response"). Raises ProviderError."""
        body = self.build_submit_body(request, callback_url=callback_url)
        response = await http.request("POST", f"{self.base_url}/api/generate/submit", headers=self._headers(), json=body)
        answer = self.read_answer(response)
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        task_id = data.get("task_id")
        if not task_id:
            raise ProviderError("PoYo: the submit answer carries no data.task_id", http_status=response.status_code)
        return SubmitResult(task_id=str(task_id), raw=answer)

    def read_answer(self, response: httpx.Response) -> dict:
        """The JSON body of a successful answer; raise ProviderError for an error answer.

        providers.md, PoYo, "Errors": a non-2xx HTTP status, or a body ``code`` other than
        200, is an error; the body is ``{code, error: {message, type}}``. A body code under
        HTTP 200 is classified like that HTTP status: 400/401/403/404 permanent, 429 and 5xx
        transient (``providers.http.classify_status``).
        """
        body = read_json(response, "PoYo")
        body_code = int_or_none(body.get("code"))
        if response.status_code < 400 and (body_code is None or body_code == 200):
            return body
        status = response.status_code if response.status_code >= 400 else body_code
        error = body.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            error_type = str(error.get("type") or "")
        else:
            message = str(error or body.get("message") or "")
            error_type = ""
        text = message or f"HTTP {status}"
        if error_type and error_type not in text:
            text = f"{text} ({error_type})"
        raise http_error(response, "PoYo", text, error_type or str(status), status=status)

    # -- status ------------------------------------------------------------------------
    async def fetch_status(self, http: ProviderHttp, *, task_id: str, model: str) -> TaskUpdate:
        """``GET /api/generate/status/{task_id}`` parsed into a TaskUpdate (providers.md, PoYo, "Status")."""
        response = await http.request("GET", f"{self.base_url}/api/generate/status/{task_id}", headers=self._headers())
        return self.parse_status(self.read_answer(response))

    def parse_status(self, body: Mapping) -> TaskUpdate:
        """Parse a status answer or a callback payload (same shape, providers.md, PoYo, "Callback").

        ``data: {task_id, status, progress, files: [{file_url, file_type}], created_time,
        error_message, credits_amount?, finished_time?}``. The video is the ``files[]`` entry
        with ``file_type == "video"``; ``finished`` without one is UNKNOWN (polled again,
        never a success we cannot archive). ``credits_amount`` (the official SDK's type)
        becomes ``provider_cost = {"credits": n, "usd": "<n × 0.005>"}``.
        """
        data = body.get("data") if isinstance(body.get("data"), dict) else body
        provider_state = str(data.get("status") or "")
        state = STATE_MAP.get(provider_state.lower(), TaskState.UNKNOWN)
        files = data.get("files") if isinstance(data.get("files"), list) else []
        urls = tuple(
            str(f["file_url"])
            for f in files
            if isinstance(f, dict) and str(f.get("file_type") or "").lower() == "video" and f.get("file_url")
        )
        if state is TaskState.SUCCEEDED and not urls:
            state = TaskState.UNKNOWN
        cost = None
        credits = to_decimal(data.get("credits_amount"))
        if credits is not None and credits.is_finite():
            cost = {"credits": _plain(credits), "usd": str(credits * USD_PER_CREDIT)}
        return TaskUpdate(
            task_id=str(data.get("task_id") or ""),
            state=state,
            provider_state=provider_state,
            progress=progress_percent(data.get("progress")),
            result_urls=urls,
            fail_message=str(data.get("error_message") or "") if state is TaskState.FAILED else "",
            created_at=parse_time(data.get("created_time")),
            completed_at=parse_time(data.get("finished_time")),
            provider_cost=cost,
            raw=dict(body),
        )

    # -- callbacks ---------------------------------------------------------------------
    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackHint:
        """The callback has the status answer's shape (providers.md, PoYo, "Callback"): ``data.task_id``, ``data.status``."""
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError("PoYo callback body is not JSON") from exc
        if not isinstance(payload, dict):
            raise ValueError("PoYo callback body is not a JSON object")
        data = payload.get("data") if isinstance(payload.get("data"), dict) else payload
        if not data.get("task_id"):
            raise ValueError("PoYo callback has no data.task_id")
        return CallbackHint(task_id=str(data["task_id"]), provider_state=str(data.get("status") or ""))

    def verify_callback(
        self, headers: Mapping[str, str], body: bytes, *, secret: str, now: float | None = None
    ) -> None:
        """Refuse a delivery whose ``x-webhook-timestamp`` is more than 300 s away from now.

        providers.md, PoYo, "Callback": PoYo's own examples reject deliveries older than
        300 s. The timestamp is read in seconds or milliseconds. The signature algorithm
        behind ``x-webhook-signature`` is NOT FOUND, so it is not checked: the callback stays
        a hint confirmed by re-reading the status with our key. No timestamp: accepted (the
        per-generation URL token already authenticated the delivery).
        """
        raw = header_value(headers, "x-webhook-timestamp")
        if raw is None or str(raw).strip() == "":
            return None
        when = epoch_to_datetime(str(raw).strip())
        if when is None:
            raise ValueError(f"PoYo callback timestamp {raw!r} is not a Unix time")
        current = time.time() if now is None else now
        skew = abs(current - when.timestamp())
        if skew > CALLBACK_MAX_SKEW_SECONDS:
            raise ValueError(
                f"PoYo callback timestamp is {skew:.0f} s away from now (more than {CALLBACK_MAX_SKEW_SECONDS} s)"
            )
        return None

    # -- facts ---------------------------------------------------------------------------
    def poll_cadence(self, request: GenerationRequest) -> PollCadence:
        """PoYo gives no polling advice (NOT FOUND): first poll 20 s after submit, then every 10 s."""
        return PollCadence(first_delay=20.0, interval=10.0)

    #: ``user/info`` answers PoYo credits; providers.md, PoYo, "Price": 1 credit = 0.005 USD.
    balance_unit = BalanceUnit("credits", USD_PER_CREDIT)

    async def fetch_balance(self, http: ProviderHttp) -> Decimal | None:
        """``GET /api/user/info`` (providers.md, PoYo, "Account"; its shape is NOT FOUND).

        Reads a numeric ``data.credits`` or ``data.balance`` (PoYo credits) if present, else None.
        """
        response = await http.request("GET", f"{self.base_url}/api/user/info", headers=self._headers())
        answer = self.read_answer(response)
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        for key in ("credits", "balance"):
            value = to_decimal(data.get(key))
            if value is not None and value.is_finite():
                return value
        return None



def _plain(value: Decimal) -> int | str:
    """A credit count as an int when whole (35), else its exact text ("35.5")."""
    return int(value) if value == value.to_integral_value() else str(value)
