"""MiniMax adapter: Hailuo 2.3 and Hailuo 2.3 Fast from the model's maker, ``api.minimax.io``.

MiniMax is not in the seeds. Sources: providers.md, section MiniMax, and MiniMax's public
documentation (platform.minimax.io/docs):
- "Video Generation" API reference (``POST /v1/video_generation``: model, prompt up to
  2000 characters, duration, resolution, prompt_optimizer default true, fast_pretreatment
  default false, first_frame_image, callback_url and its challenge);
- "Query Video Generation Task" (``GET /v1/query/video_generation``: task_id, status,
  file_id, video_width, video_height, base_resp);
- "Retrieve/Download file" (``GET /v1/files/retrieve``: ``file.download_url``);
- "Error Codes" (base_resp.status_code: 1000 unknown error, 1001 request timeout, 1002
  rate limit, 1004 not authorized, 1008 insufficient balance, 1024 internal error, 1026
  sensitive input, 1027 sensitive output, 1033 system error, 2013 invalid parameters);
- the "Video Generation" guide (create → poll task status → retrieve file; its example
  polls every 10 s).

Not documented, and how this adapter reads it: no balance endpoint (``fetch_balance``
returns None); no callback signature (the per-generation URL token authenticates it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

import httpx

from providers.adapters.common import epoch_to_datetime, http_error, int_or_none, read_json
from providers.base import (
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
from providers.http import ProviderError, ProviderHttp, Sent, parse_retry_after

#: API reference "Video Generation", ``first_frame_image``: JPG, JPEG, PNG or WebP, under 20 MB,
#: short side over 300 px, aspect ratio between 2:5 and 5:2 (the bounds' inclusion is not
#: stated: they are accepted, MiniMax judges).
MINIMAX_IMAGE_RULES = ImageRules(
    formats=("jpeg", "png", "webp"),
    max_bytes=20 * 1024 * 1024,
    min_short_side_exclusive=300,
    aspect_min=2 / 5,
    aspect_max=5 / 2,
    aspect_exclusive=False,
)

#: providers.md, MiniMax: duration 6 or 10, resolution 768P or 1080P, 1080P with 6 s only
#: (API reference "Video Generation", the duration/resolution table).
COMBOS = ((6, "768p"), (10, "768p"), (6, "1080p"))

#: API reference "Video Generation": ``prompt_optimizer`` (default true) and
#: ``fast_pretreatment`` (shortens the optimisation, default false).
OPTIONS = (
    OptionSpec("prompt_optimizer", "Prompt optimizer", "bool", default=True, help="Let MiniMax rewrite the prompt (default on)."),
    OptionSpec(
        "fast_pretreatment", "Fast pretreatment", "bool", default=False,
        help="Shorten the prompt optimisation (default off).",
    ),
)

HAILUO_2_3 = ModelCapability(
    id="MiniMax-Hailuo-2.3",
    label="Hailuo 2.3",
    modes=(
        ModeCapability("text-to-video", "Text-to-video", "none", COMBOS, options=OPTIONS),
        ModeCapability("image-to-video", "Image-to-video", "required", COMBOS, options=OPTIONS),
    ),
    prompt_max_chars=2000,
    image_rules=MINIMAX_IMAGE_RULES,
)

#: providers.md, MiniMax: the Fast model needs ``first_frame_image`` (image-to-video only).
HAILUO_2_3_FAST = ModelCapability(
    id="MiniMax-Hailuo-2.3-Fast",
    label="Hailuo 2.3 Fast",
    modes=(ModeCapability("image-to-video", "Image-to-video", "required", COMBOS, options=OPTIONS),),
    prompt_max_chars=2000,
    image_rules=MINIMAX_IMAGE_RULES,
    notes="Image-to-video only: a first-frame image is required.",
)

#: Query statuses (providers.md: Preparing, Queueing, Processing, Success, Fail) and the
#: callback's lower-case spelling (API reference, ``callback_url``: processing, success,
#: failed). Compared case-insensitively.
STATE_MAP = {
    "preparing": TaskState.QUEUED,
    "queueing": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "fail": TaskState.FAILED,
    "failed": TaskState.FAILED,
}

#: "Error Codes": base_resp.status_code → (permanent, meaning). 1002 and the server-side
#: codes say "retry later"; the others need a fix (key, balance, content, parameters).
#: An undocumented non-zero code is permanent (never retried blindly).
ERROR_CODES: dict[int, tuple[bool, str]] = {
    1000: (False, "unknown error"),
    1001: (False, "request timeout"),
    1002: (False, "rate limit"),
    1004: (True, "not authorized (check the API key)"),
    1008: (True, "insufficient balance"),
    1024: (False, "internal error"),
    1026: (True, "the input involves sensitive content"),
    1027: (True, "the output involves sensitive content"),
    1033: (False, "system error"),
    2013: (True, "invalid parameters"),
}



def base_resp(body: Mapping) -> tuple[int, str]:
    """``(status_code, status_msg)`` of an answer's ``base_resp`` (``(0, "")`` when absent)."""
    resp = body.get("base_resp") if isinstance(body.get("base_resp"), dict) else {}
    return int_or_none(resp.get("status_code")) or 0, str(resp.get("status_msg") or "")



class MiniMaxAdapter(ProviderAdapter):
    """MiniMax (``Authorization: Bearer KEY``): ``POST /v1/video_generation``, ``GET /v1/query/video_generation``,
    ``GET /v1/files/retrieve``. China accounts use base URL ``https://api.minimaxi.com``."""

    kind = "minimax"
    label = "MiniMax"
    #: Poll reads in flight per account: MiniMax documents a rate-limit code (1002) but no
    #: rate in providers.md, and a success costs two reads (query + file retrieve): the base
    #: default (see ``ProviderAdapter.poll_concurrency``); a 1002 answer is polled again later.
    poll_concurrency = 200
    default_base_url = "https://api.minimax.io"
    capabilities = ProviderCapabilities(models=(HAILUO_2_3, HAILUO_2_3_FAST), callbacks=True, cancel=False)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    # -- submit ------------------------------------------------------------------------
    def build_submit_body(self, request: GenerationRequest, *, callback_url: str = "") -> dict:
        """The JSON body of ``POST /v1/video_generation`` (providers.md, MiniMax; API reference).

        ``{model, prompt, duration, resolution: "768P"|"1080P", first_frame_image?,
        prompt_optimizer?, fast_pretreatment?, callback_url?}``. Options are sent only when
        the request sets them (MiniMax's defaults apply otherwise).

        ``callback_url``: MiniMax first POSTs a ``challenge`` that must be echoed within 3 s.
        With the real API it is sent only when HTTPS (a public deployment that can answer);
        with another base URL (a sandbox or a proxy) it is sent as given. Our precaution,
        not a documented rule: a plain-http development URL would never pass the challenge.
        """
        body: dict = {
            "model": request.model,
            "prompt": request.prompt,
            "duration": request.duration,
            "resolution": request.resolution.upper(),
        }
        if request.mode == "image-to-video" and request.image_url:
            body["first_frame_image"] = request.image_url
        options = request.options or {}
        for name in ("prompt_optimizer", "fast_pretreatment"):
            if options.get(name) is not None:
                body[name] = bool(options[name])
        if callback_url and (callback_url.startswith("https://") or self.base_url != self.default_base_url):
            body["callback_url"] = callback_url
        return body

    async def submit(
        self, http: ProviderHttp, request: GenerationRequest, *, callback_url: str = "", callback_secret: str = ""
    ) -> SubmitResult:
        """Submit; returns ``task_id`` (``{task_id, base_resp}``). Raises ProviderError (``base_resp`` ≠ 0 too)."""
        body = self.build_submit_body(request, callback_url=callback_url)
        response = await http.request("POST", f"{self.base_url}/v1/video_generation", headers=self._headers(), json=body)
        answer = self.read_answer(response)
        task_id = answer.get("task_id")
        if not task_id:
            raise ProviderError("MiniMax: the submit answer carries no task_id", http_status=response.status_code)
        return SubmitResult(task_id=str(task_id), raw=answer)

    def read_answer(self, response: httpx.Response) -> dict:
        """The JSON body of a successful answer; raise ProviderError for an error answer.

        "Error Codes": ``base_resp.status_code`` other than 0 is an error even under HTTP 200,
        classified by :data:`ERROR_CODES` (1002 transient with the Retry-After if any; 1004,
        1008, 1026, 1027, 2013 permanent; 1000/1001/1024/1033 transient; others permanent).
        A non-2xx answer without a known code is classified by its HTTP status.
        """
        body = read_json(response, "MiniMax")
        code, message = base_resp(body)
        if response.status_code < 400 and code == 0:
            return body
        raise self.error_for(response, code, message)

    def error_for(self, response: httpx.Response, code: int, message: str) -> ProviderError:
        """The ProviderError for a ``base_resp`` code (0: none) on ``response``."""
        if code in ERROR_CODES:
            permanent, meaning = ERROR_CODES[code]
            text = message if message and message.lower() != meaning else meaning
            return ProviderError(
                f"MiniMax: {text} ({code})",
                code=str(code),
                http_status=response.status_code,
                permanent=permanent,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                sent=Sent.YES,
            )
        if response.status_code >= 400:
            text = f"{message} ({code})" if message and code else (message or f"HTTP {response.status_code}")
            return http_error(response, "MiniMax", text, str(code) if code else "")
        return ProviderError(
            f"MiniMax: {message or 'error'} ({code})",
            code=str(code),
            http_status=response.status_code,
            permanent=True,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            sent=Sent.YES,
        )

    # -- status ------------------------------------------------------------------------
    async def fetch_status(self, http: ProviderHttp, *, task_id: str, model: str) -> TaskUpdate:
        """Query the task; on ``Success`` also retrieve its file for the download URL.

        ``GET /v1/query/video_generation?task_id=`` ("Query Video Generation Task"), then on
        success ``GET /v1/files/retrieve?file_id=`` ("Retrieve file") → ``file.download_url``.
        A ``Fail`` answer is a FAILED update carrying its ``base_resp`` code and message, not
        an error of the query itself.
        """
        response = await http.request(
            "GET", f"{self.base_url}/v1/query/video_generation", headers=self._headers(), params={"task_id": task_id}
        )
        body = read_json(response, "MiniMax")
        status = str(body.get("status") or "").lower()
        if response.status_code < 400 and STATE_MAP.get(status) is TaskState.FAILED:
            return self.parse_status(body)
        code, message = base_resp(body)
        if response.status_code >= 400 or code != 0:
            raise self.error_for(response, code, message)
        file_info = None
        if STATE_MAP.get(status) is TaskState.SUCCEEDED and body.get("file_id"):
            retrieved = await http.request(
                "GET", f"{self.base_url}/v1/files/retrieve", headers=self._headers(),
                params={"file_id": str(body["file_id"])},
            )
            answer = self.read_answer(retrieved)
            file_info = answer.get("file") if isinstance(answer.get("file"), dict) else {}
        update = self.parse_status(body, file=file_info)
        return update if update.task_id else replace(update, task_id=task_id)

    def parse_status(self, body: Mapping, *, file: Mapping | None = None) -> TaskUpdate:
        """Parse a query answer (or a callback push, same shape) plus, on success, the retrieved file.

        ``Success`` needs ``file.download_url`` (from ``/v1/files/retrieve``) to be SUCCEEDED;
        without it the update is UNKNOWN (polled again). ``Fail``: FAILED with
        ``base_resp.status_code``/``status_msg`` as the provider's code and message; a ``Fail``
        whose ``status_code`` is 0 (the query itself succeeded, ``status_msg`` "success") gets
        code "fail" and a message saying MiniMax gave no error code.
        ``completed_at`` is the file's ``created_at`` (Unix seconds) when known.
        """
        provider_state = str(body.get("status") or "")
        state = STATE_MAP.get(provider_state.lower(), TaskState.UNKNOWN)
        url = str((file or {}).get("download_url") or "")
        urls = (url,) if url else ()
        if state is TaskState.SUCCEEDED and not urls:
            state = TaskState.UNKNOWN
        fail_code, fail_message = "", ""
        if state is TaskState.FAILED:
            code, message = base_resp(body)
            if code:
                fail_code = str(code)
                fail_message = message or (ERROR_CODES[code][1] if code in ERROR_CODES else "")
            else:
                # status_code 0 is "success" ("Error Codes"): its status_msg is about the query,
                # not the task, so it is no failure message.
                fail_code = "fail"
                fail_message = "MiniMax reported the task as failed without an error code."
        raw = dict(body)
        if file is not None:
            raw["file"] = dict(file)
        return TaskUpdate(
            task_id=str(body.get("task_id") or ""),
            state=state,
            provider_state=provider_state,
            result_urls=urls,
            fail_code=fail_code,
            fail_message=fail_message,
            completed_at=epoch_to_datetime((file or {}).get("created_at")) if urls else None,
            raw=raw,
        )

    # -- callbacks ---------------------------------------------------------------------
    def callback_challenge(self, headers: Mapping[str, str], body: bytes) -> dict | None:
        """``{"challenge": value}`` when the body is MiniMax's URL check, else None.

        API reference, ``callback_url``: MiniMax first POSTs a body with a ``challenge``
        field; the server must return the same value within 3 s.
        """
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            return None
        if isinstance(payload, dict) and payload.get("challenge") is not None:
            return {"challenge": payload["challenge"]}
        return None

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackHint:
        """A status push: the query answer's shape, ``{task_id, status, file_id?, base_resp}``.

        No signature is documented: the per-generation URL token authenticates the push and
        the outcome is confirmed by querying with our key.
        """
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError("MiniMax callback body is not JSON") from exc
        if not isinstance(payload, dict) or not payload.get("task_id"):
            raise ValueError("MiniMax callback has no task_id")
        return CallbackHint(task_id=str(payload["task_id"]), provider_state=str(payload.get("status") or ""))

    # -- facts ---------------------------------------------------------------------------
    def poll_cadence(self, request: GenerationRequest) -> PollCadence:
        """The "Video Generation" guide's example queries the task every 10 s: first poll 15 s after submit, then every 10 s."""
        return PollCadence(first_delay=15.0, interval=10.0)
