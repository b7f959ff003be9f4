"""APIXO adapter: Hailuo 2.3 and Hailuo 2.3 Fast through ``api.apixo.ai/api/v1``.

Sources: ../shared/seeds/001 (APIXO "Hailuo 2.3": capability table, request body,
parameters, validation notes, status fields, billing, latency and polling, errors),
../shared/seeds/002 (APIXO "hailuo-2-3-fast": image-only modes, image rules, fail codes)
and providers.md, section APIXO.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal

from providers.adapters.common import http_error, ms_to_datetime, read_json, to_decimal
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
    RequestRefused,
    RuleViolation,
    SubmitResult,
    TaskState,
    TaskUpdate,
)
from providers.http import ProviderError, ProviderHttp

#: seeds/001 "Request body" note and seeds/002 "Image" list: JPG/JPEG/PNG, aspect strictly
#: between 2:5 and 5:2, short side strictly over 300 px, at most 20 MB.
APIXO_IMAGE_RULES = ImageRules(
    formats=("jpeg", "png"),
    max_bytes=20 * 1024 * 1024,
    min_short_side_exclusive=300,
    aspect_min=2 / 5,
    aspect_max=5 / 2,
    aspect_exclusive=True,
)

_STANDARD = ((6, "768p"), (10, "768p"))

#: seeds/001 "Parameters" table: standard modes 768p with duration 6 or 10 (required);
#: pro modes fixed 5 s 1080p, duration ignored.
HAILUO_2_3 = ModelCapability(
    id="hailuo-2-3",
    label="Hailuo 2.3",
    modes=(
        ModeCapability("standard-text-to-video", "Standard text-to-video", "none", _STANDARD),
        ModeCapability("standard-image-to-video", "Standard image-to-video", "required", _STANDARD),
        ModeCapability("pro-text-to-video", "Pro text-to-video", "none", ((5, "1080p"),), duration_sent=False),
        ModeCapability("pro-image-to-video", "Pro image-to-video", "required", ((5, "1080p"),), duration_sent=False),
    ),
    image_rules=APIXO_IMAGE_RULES,
)

#: seeds/002: image-to-video only; standard 768p 6 or 10 s (required), pro 1080p fixed 6 s.
HAILUO_2_3_FAST = ModelCapability(
    id="hailuo-2-3-fast",
    label="Hailuo 2.3 Fast",
    modes=(
        ModeCapability("standard-image-to-video", "Standard image-to-video", "required", _STANDARD),
        ModeCapability("pro-image-to-video", "Pro image-to-video", "required", ((6, "1080p"),), duration_sent=False),
    ),
    image_rules=APIXO_IMAGE_RULES,
    notes="Image-to-video only: text modes are refused with 'Invalid mode type'.",
)

#: seeds/001 "Status response fields" + seeds/002: pending, processing, success, failed.
STATE_MAP = {
    "pending": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}

ROUTING_STRATEGIES = ("auto", "value", "official")

#: seeds/002 "Request Body": ``provider`` routing strategy auto (default), value or official.
ROUTING_OPTION = OptionSpec(
    "provider", "Routing strategy", "choice", ROUTING_STRATEGIES, default="auto",
    help="APIXO route: auto (default), value (cheapest) or official.",
)


class ApixoAdapter(ProviderAdapter):
    """APIXO (``Authorization: Bearer KEY``): ``POST /generateTask/{model}``, ``GET /statusTask/{model}?taskId=``.

    Account options: ``provider`` routing strategy (auto, value, official; seeds/002
    "Request Body"), overridable per request through ``request.options["provider"]``.
    """

    kind = "apixo"
    label = "APIXO"
    #: Poll reads in flight per account: seeds/001 "Rate limits" gives no number ("can vary by
    #: account, API key, and route"; 429 → back off), seeds/002 "subject to workspace and
    #: provider limits": the base default (see ``ProviderAdapter.poll_concurrency``).
    poll_concurrency = 200
    default_base_url = "https://api.apixo.ai/api/v1"
    capabilities = ProviderCapabilities(
        models=(HAILUO_2_3, HAILUO_2_3_FAST),
        callbacks=True,
        cancel=False,
        account_options=(ROUTING_OPTION,),
    )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    def validate(self, request: GenerationRequest) -> None:
        """Capability rules (the request's options included) plus the account's default routing strategy."""
        violations = self.check_capabilities(request)
        strategy = str(self.options.get("provider") or "")
        if strategy and strategy not in ROUTING_STRATEGIES:
            violations.append(
                RuleViolation("provider", f"APIXO: routing strategy must be auto, value or official, not {strategy!r}")
            )
        if violations:
            raise RequestRefused(violations)

    def _routing(self, request: GenerationRequest) -> str:
        return str(request.options.get("provider") or self.options.get("provider") or "")

    def build_submit_body(self, request: GenerationRequest, *, callback_url: str = "") -> dict:
        """The JSON body of ``POST /generateTask/{model}`` (seeds/001 "Request body", "Parameters").

        ``duration`` is sent only for standard modes (pro ignores it). Callback mode
        (``request_type: callback``) is used when a callback URL is given and is HTTPS, as
        APIXO requires a public HTTPS URL, or when the account points at a non-default base
        URL (a sandbox or a proxy, which accepts plain http on loopback).
        """
        mode = self.capabilities.model(request.model).mode(request.mode)
        payload_input: dict = {"mode": request.mode, "prompt": request.prompt}
        if mode.image != "none" and request.image_url:
            payload_input["image_urls"] = [request.image_url]
        if mode.duration_sent:
            payload_input["duration"] = request.duration
        body: dict = {"request_type": "async", "input": payload_input}
        use_callback = bool(callback_url) and (
            callback_url.startswith("https://") or self.base_url != self.default_base_url
        )
        if use_callback:
            body["request_type"] = "callback"
            body["callback_url"] = callback_url
        strategy = self._routing(request)
        if strategy:
            body["provider"] = strategy
        return body

    async def submit(
        self, http: ProviderHttp, request: GenerationRequest, *, callback_url: str = "", callback_secret: str = ""
    ) -> SubmitResult:
        """Submit; returns the ``data.taskId``. Raises ProviderError (seeds/001 "HTTP errors")."""
        body = self.build_submit_body(request, callback_url=callback_url)
        response = await http.request(
            "POST", f"{self.base_url}/generateTask/{request.model}", headers=self._headers(), json=body
        )
        data = self._unwrap(response)
        task_id = (data.get("data") or {}).get("taskId") if isinstance(data.get("data"), dict) else None
        if not task_id:
            raise ProviderError("APIXO: the submit answer carries no data.taskId", http_status=response.status_code)
        return SubmitResult(task_id=str(task_id), raw=data)

    def _unwrap(self, response) -> dict:
        """Return the JSON body of a ``code: 200`` answer; raise ProviderError otherwise.

        Error body ``{code, message, data: {error}}`` (providers.md, APIXO); a body code
        other than 200 under HTTP 200 is classified like that HTTP status.
        """
        body = read_json(response, "APIXO")
        body_code = body.get("code")
        if response.status_code >= 400 or (isinstance(body_code, int) and body_code != 200):
            detail = body.get("data") if isinstance(body.get("data"), dict) else {}
            message = str(body.get("message") or "")
            error = str((detail or {}).get("error") or "")
            text = f"{message}: {error}" if message and error and error != message else (message or error)
            status = response.status_code if response.status_code >= 400 else int(body_code)
            raise http_error(response, "APIXO", text or f"HTTP {status}", str(status), status=status)
        return body

    async def fetch_status(self, http: ProviderHttp, *, task_id: str, model: str) -> TaskUpdate:
        """``GET /statusTask/{model}?taskId=`` parsed into a TaskUpdate (seeds/001 "Poll for result")."""
        response = await http.request(
            "GET", f"{self.base_url}/statusTask/{model}", headers=self._headers(), params={"taskId": task_id}
        )
        return self.parse_status(self._unwrap(response))

    def parse_status(self, body: Mapping) -> TaskUpdate:
        """Parse a status answer or a callback payload (same shape: ``{code, message, data}``).

        ``resultJson`` is a JSON string holding ``{resultUrls: [...]}`` (seeds/001 "Parse
        resultJson"); an object is tolerated too. Times are Unix milliseconds.
        """
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        provider_state = str(data.get("state") or "")
        state = STATE_MAP.get(provider_state.lower(), TaskState.UNKNOWN)
        urls: tuple[str, ...] = ()
        raw_result = data.get("resultJson")
        if raw_result:
            parsed = raw_result
            if isinstance(raw_result, str):
                try:
                    parsed = json.loads(raw_result)
                except json.JSONDecodeError:
                    parsed = {}
            if isinstance(parsed, dict):
                found = parsed.get("resultUrls") or []
                if isinstance(found, str):
                    found = [found]
                urls = tuple(str(u) for u in found if u)
        if state is TaskState.SUCCEEDED and not urls:
            # Success without a video is not a success we can archive: poll again.
            state = TaskState.UNKNOWN
        return TaskUpdate(
            task_id=str(data.get("taskId") or ""),
            state=state,
            provider_state=provider_state,
            result_urls=urls,
            fail_code=str(data.get("failCode") or ""),
            fail_message=str(data.get("failMsg") or ""),
            created_at=ms_to_datetime(data.get("createTime")),
            completed_at=ms_to_datetime(data.get("completeTime")),
            raw=dict(body),
        )

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackHint:
        """The callback is the status answer's shape (seeds/001 "Webhook callback mode"); no signature is documented."""
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError("APIXO callback body is not JSON") from exc
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or not data.get("taskId"):
            raise ValueError("APIXO callback has no data.taskId")
        return CallbackHint(task_id=str(data["taskId"]), provider_state=str(data.get("state") or ""))

    def poll_cadence(self, request: GenerationRequest) -> PollCadence:
        """seeds/001 "Latency and polling": first poll 30 s (pro: 45-60 s) after creation, then every 10-15 s."""
        if request.mode.startswith("pro-"):
            return PollCadence(first_delay=50.0, interval=12.5)
        return PollCadence(first_delay=30.0, interval=12.5)

    #: APIXO ``current-balance`` answers USD (providers.md, APIXO).
    balance_unit = USD_BALANCE

    async def fetch_balance(self, http: ProviderHttp) -> Decimal | None:
        """``GET /apikeys/current-balance`` → ``{code: 200, data: 74.87}`` in USD (providers.md, APIXO)."""
        response = await http.request("GET", f"{self.base_url}/apikeys/current-balance", headers=self._headers())
        return to_decimal(self._unwrap(response).get("data"))
