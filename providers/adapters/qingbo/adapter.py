"""qingbo adapter: the Hailuo family through qingbo's unified task API (``POST /v1/tasks``).

Sources: ../shared/seeds/003 (qingbo "Hailuo": the curl example and its response, "Available
Models", "Common Parameters", "Model-Specific Parameters", "Generation Modes", "Response")
and providers.md, section qingbo (status endpoint, statuses, result URLs as a string or a
list, timestamps in seconds or milliseconds, ``urls: {get, cancel}``, cancel, callback,
the newer ``minimax-hailuo-2.3`` names, ``aspect_ratio``, prices). qingbo's public pages
were read too: "Query Task Status", "Cancel Task", "Task System", "Request & Response"
(error body ``{error: {message, code}}`` for ``/v1/tasks``; 400, 401, 402, 404, 429, 500) and
the newer "Hailuo Series" page (``minimax-hailuo-2.3``/``-fast``: T2V and I2V, 768p/1080p,
6/10 s, 1080p only at 6 s, ``aspect_ratio`` 16:9/9:16/1:1, prompt ≤ 2000 characters).

What the sources do NOT give, and how this adapter reads it (NOT FOUND → tolerant reading):
- image rules: none declared (qingbo judges).
- the prompt limit of the models other than the 2.3 series: the 2000 characters of the newer
  page are applied to every model (``extra`` is "passed through to Hailuo", and the maker's
  API limits every prompt to 2000 characters: providers.md, MiniMax).
- resolutions of the models whose tab is not on the seed page: only the "Default
  Resolution" of the "Available Models" table is offered (hailuo-02 768p, the Director and
  S2V-01 models their one resolution); hailuo-2.3-fast also gets 1080p, which the newer
  "Hailuo Series" page and qingbo's price list give it (providers.md, qingbo, "Price").
- the callback payload and signature: ``parse_callback`` reads ``task_id`` at the top or
  under ``data``; nothing is verified beyond the per-generation URL token; the outcome is
  always confirmed by re-reading the status endpoint.
- the HTTP status of a refused cancel (task no longer queued): any non-2xx answer, or a 2xx
  answer whose ``status`` is not ``cancelled``, is a permanent ProviderError.
- a balance endpoint: none (``fetch_balance`` returns None).
- polling: qingbo's "Query Task Status" page suggests polling every 2-5 s, which is meant
  for one interactive client; for many long video tasks we poll 20 s after submit, then
  every 10 s (slower is always allowed, and keeps us far from 429).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from providers.adapters.common import epoch_to_datetime, http_error, progress_percent, read_json
from providers.adapters.qingbo.capabilities import (  # noqa: F401  (re-exported: tests and callers read them here)
    HAILUO_02,
    HAILUO_2_3,
    HAILUO_2_3_FAST,
    I2V_01_DIRECTOR,
    MINIMAX_NAMES,
    MODE_RULES,
    MODEL_NAMING,
    MODEL_NAMINGS,
    PROMPT_OPTIMIZER,
    S2V_01,
    STATE_MAP,
    T2V_01_DIRECTOR,
)
from providers.base import (
    CallbackHint,
    GenerationRequest,
    PollCadence,
    ProviderAdapter,
    ProviderCapabilities,
    RequestRefused,
    RuleViolation,
    SubmitResult,
    TaskState,
    TaskUpdate,
)
from providers.http import ProviderError, ProviderHttp, Sent

logger = logging.getLogger(__name__)

LABEL = "qingbo"


class QingboAdapter(ProviderAdapter):
    """qingbo (``Authorization: Bearer KEY``): ``POST /v1/tasks``, ``GET /v1/tasks/{task_id}``,
    ``POST /v1/tasks/{task_id}/cancel``.

    Account options: ``model_naming`` ("seed", the default, sends ``hailuo-2.3``;
    "minimax" sends ``minimax-hailuo-2.3`` and unlocks ``aspect_ratio``), overridable per
    request through ``request.options["model_naming"]``.
    """

    kind = "qingbo"
    label = LABEL
    #: Poll reads in flight per account: qingbo documents no rate limit (providers.md,
    #: qingbo): the base default (see ``ProviderAdapter.poll_concurrency``).
    poll_concurrency = 200
    default_base_url = "https://qingbo.dev"
    capabilities = ProviderCapabilities(
        models=(HAILUO_2_3, HAILUO_2_3_FAST, HAILUO_02, T2V_01_DIRECTOR, I2V_01_DIRECTOR, S2V_01),
        callbacks=True,
        cancel=True,
        # providers.md, qingbo "Cancel Task": only a queued task can be cancelled ("" = just
        # accepted, not polled yet: the submit answer's status is queued).
        cancel_states=("", "queued"),
        account_options=(MODEL_NAMING,),
    )

    @classmethod
    def member_options(cls, mode, account_options=None):
        """Drop ``aspect_ratio`` unless the account's model naming is "minimax" (the only API
        it is documented with, providers.md qingbo): elsewhere it would be refused."""
        naming = str((account_options or {}).get("model_naming") or "seed")
        return tuple(o for o in mode.options if o.name != "aspect_ratio" or naming == "minimax")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    def _task_url(self, task_id: str, suffix: str = "") -> str:
        return f"{self.base_url}/v1/tasks/{quote(str(task_id), safe='')}{suffix}"

    # -- validation ------------------------------------------------------------------
    def naming(self, request: GenerationRequest | None = None) -> str:
        """The effective model naming: the request's, else the account's, else "seed"."""
        options = request.options if request is not None else {}
        return str((options or {}).get("model_naming") or self.options.get("model_naming") or "seed")

    def validate(self, request: GenerationRequest) -> None:
        """Capability rules (seeds/003 tables), the account's model naming, and ``aspect_ratio``'s naming rule."""
        violations = self.check_capabilities(request)
        model = self.capabilities.model(request.model)
        if model is not None and model.mode(request.mode) is None and request.mode in MODE_RULES:
            offered = ", ".join(m.id for m in model.modes)
            violations = [
                RuleViolation("mode", f"{LABEL}: {MODE_RULES[request.mode]} ({model.id} offers: {offered})")
            ]
        account_naming = self.options.get("model_naming")
        if account_naming not in (None, "") and account_naming not in MODEL_NAMINGS:
            violations.append(
                RuleViolation("model_naming", f"{LABEL}: model naming must be seed or minimax, not {account_naming!r}")
            )
        if (request.options or {}).get("aspect_ratio") not in (None, "") and self.naming(request) != "minimax":
            violations.append(
                RuleViolation(
                    "aspect_ratio",
                    f"{LABEL}: aspect_ratio is documented only with the minimax-hailuo-2.3 model names "
                    "(set the account's model naming to minimax)",
                )
            )
        if violations:
            raise RequestRefused(violations)

    # -- submit ------------------------------------------------------------------------
    def wire_model(self, request: GenerationRequest) -> str:
        """The model id sent: ours, or its ``minimax-`` name under model naming "minimax" (providers.md, qingbo)."""
        if self.naming(request) == "minimax":
            return MINIMAX_NAMES.get(request.model, request.model)
        return request.model

    def build_submit_body(self, request: GenerationRequest, *, callback_url: str = "") -> dict:
        """The JSON body of ``POST /v1/tasks`` (seeds/003, the curl example and "Common Parameters").

        ``{model, action: "generate", prompt, duration, resolution, image_urls?, last_frame?,
        aspect_ratio?, callback_url?, extra?}``. Duration and resolution are always sent (the
        resolution lower-case, as in the example's "1080p"). ``image_urls`` carries the one
        first frame of image-to-video and first-last-frame; ``last_frame`` the hailuo-02 last
        frame; ``extra`` holds ``prompt_optimizer``/``fast_pretreatment`` when the request sets
        them and ``subject_reference: [{type: "character", image: [url]}]`` for character
        reference (seeds/003 "Model-Specific Parameters"). ``callback_events`` is not sent
        (its values are NOT FOUND; the callback fires on final states by default).
        """
        model = self.capabilities.model(request.model)
        mode = model.mode(request.mode) if model else None
        options = dict(request.options or {})
        body: dict[str, Any] = {
            "model": self.wire_model(request),
            "action": "generate",
            "prompt": request.prompt,
            "duration": request.duration,
            "resolution": request.resolution.lower(),
        }
        if request.image_url and (mode is None or mode.image != "none"):
            body["image_urls"] = [request.image_url]
        if request.mode == "first-last-frame" and options.get("last_frame"):
            body["last_frame"] = str(options["last_frame"])
        if options.get("aspect_ratio"):
            body["aspect_ratio"] = str(options["aspect_ratio"])
        if callback_url:
            body["callback_url"] = callback_url
        extra: dict[str, Any] = {}
        for name in ("prompt_optimizer", "fast_pretreatment"):
            if options.get(name) is not None and options.get(name) != "":
                extra[name] = bool(options[name])
        if request.mode == "subject-reference" and options.get("subject_image"):
            extra["subject_reference"] = [{"type": "character", "image": [str(options["subject_image"])]}]
        if extra:
            body["extra"] = extra
        return body

    async def submit(
        self, http: ProviderHttp, request: GenerationRequest, *, callback_url: str = "", callback_secret: str = ""
    ) -> SubmitResult:
        """Submit; returns ``task_id`` (seeds/003 "Response": ``{task_id, model, action, status: queued,
        created_at, progress}``). Raises ProviderError."""
        body = self.build_submit_body(request, callback_url=callback_url)
        response = await http.request("POST", f"{self.base_url}/v1/tasks", headers=self._headers(), json=body)
        answer = self.read_answer(response)
        task = _task_object(answer)
        task_id = task.get("task_id")
        if not task_id:
            raise ProviderError(f"{LABEL}: the submit answer carries no task_id", http_status=response.status_code)
        return SubmitResult(task_id=str(task_id), raw=answer)

    def read_answer(self, response: httpx.Response) -> dict:
        """The JSON body of a 2xx answer; raise ProviderError for an error answer.

        qingbo "Request & Response": ``/v1/tasks`` errors are ``{error: {message, code}}``; the
        shape is read tolerantly (``error`` as a string, top-level ``message`` or ``detail``,
        a body that is not JSON). Classification by HTTP status (providers.md, "What follows"):
        400/401/402/403/404 permanent, 429 (with its Retry-After) and 5xx transient.
        """
        if response.status_code < 400:
            return read_json(response, LABEL)
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        message, code = _error_text(body)
        if not message and response.content and body is None:
            message = f"HTTP {response.status_code}: {response.text[:200]!r}"
        raise http_error(response, LABEL, message or f"HTTP {response.status_code}", code)

    # -- status ------------------------------------------------------------------------
    async def fetch_status(self, http: ProviderHttp, *, task_id: str, model: str) -> TaskUpdate:
        """``GET /v1/tasks/{task_id}`` parsed into a TaskUpdate (qingbo "Query Task Status").

        The path is built from the base URL, not from the answer's ``urls.get``: we have the
        task id, and a provider-given absolute URL on another host must never get our key.
        """
        response = await http.request("GET", self._task_url(task_id), headers=self._headers())
        return self.parse_status(self.read_answer(response))

    def parse_status(self, body: Mapping) -> TaskUpdate:
        """Parse a task object (status answer, or a callback payload if it has that shape).

        ``{task_id, status, action, model, progress, created_at, completed_at?, error?: {message,
        code}, result?: {videos: [{url, expires_at}]}, urls: {get, cancel}}`` (providers.md,
        qingbo). ``url`` may be a string or a list of strings (both are documented); times may
        be seconds or milliseconds (``epoch_to_datetime``). ``completed`` without a video is
        UNKNOWN (polled again); an undocumented status is UNKNOWN and logged.
        """
        task = _task_object(body)
        provider_state = str(task.get("status") or "")
        state = STATE_MAP.get(provider_state.strip().lower(), TaskState.UNKNOWN)
        urls = video_urls(task.get("result"))
        if state is TaskState.SUCCEEDED and not urls:
            logger.warning("qingbo: task %s is completed without a video URL; polling again", task.get("task_id"))
            state = TaskState.UNKNOWN
        elif state is TaskState.UNKNOWN:
            logger.warning("qingbo: task %s has an undocumented status %r", task.get("task_id"), provider_state)
        fail_message, fail_code = _error_text({"error": task.get("error")}) if task.get("error") else ("", "")
        return TaskUpdate(
            task_id=str(task.get("task_id") or ""),
            state=state,
            provider_state=provider_state,
            progress=progress_percent(task.get("progress")),
            result_urls=urls,
            fail_code=fail_code,
            fail_message=fail_message,
            created_at=epoch_to_datetime(task.get("created_at")),
            completed_at=epoch_to_datetime(task.get("completed_at")),
            raw=dict(body),
        )

    def task_links(self, body: Mapping) -> dict[str, str]:
        """The task's ``urls: {get, cancel}`` as absolute URLs, only those on our base URL's origin.

        qingbo's pages show absolute links (``https://www.qingbo.dev/v1/tasks/...``); relative
        ones (``/v1/tasks/...``) are resolved against the base URL. A link to another origin
        is dropped: our bearer key is never sent anywhere but the configured base URL. The
        adapter itself builds its paths from the task id; this is for display and diagnosis.
        """
        task = _task_object(body)
        links = task.get("urls") if isinstance(task.get("urls"), dict) else {}
        base = urlsplit(self.base_url)
        out: dict[str, str] = {}
        for name in ("get", "cancel"):
            value = links.get(name)
            if not isinstance(value, str) or not value.strip():
                continue
            absolute = urljoin(self.base_url + "/", value.strip())
            parts = urlsplit(absolute)
            # qingbo.dev and www.qingbo.dev are the same service (providers.md, qingbo).
            if parts.scheme == base.scheme and _bare(parts.netloc) == _bare(base.netloc):
                out[name] = absolute
        return out

    # -- cancel --------------------------------------------------------------------------
    async def cancel(self, http: ProviderHttp, *, task_id: str, model: str) -> None:
        """``POST /v1/tasks/{task_id}/cancel`` (qingbo "Cancel Task"): only a queued task can be cancelled.

        Answer ``{task_id, status: "cancelled", refunded, refunded_quota}``. A refusal (any
        error status, its code NOT FOUND; or a 2xx whose ``status`` is not ``cancelled``, or
        that carries an ``error``) is a permanent ProviderError: the task has started and
        will run to its end. 429 and 5xx stay transient.
        """
        response = await http.request("POST", self._task_url(task_id, "/cancel"), headers=self._headers())
        answer = self.read_answer(response)  # a 4xx refusal is permanent (classify_status), 429/5xx transient
        task = _task_object(answer)
        status = str(task.get("status") or "").strip().lower()
        if task.get("error") or (status and STATE_MAP.get(status) is not TaskState.CANCELED):
            message, code = _error_text({"error": task.get("error")}) if task.get("error") else ("", "")
            raise ProviderError(
                f"{LABEL}: only queued tasks can be cancelled (task {task_id} is {status or 'not cancelled'})"
                + (f": {message}" if message else ""),
                code=code or "not_cancellable",
                http_status=response.status_code,
                permanent=True,
                sent=Sent.YES,
            )

    # -- callbacks -----------------------------------------------------------------------
    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackHint:
        """The task id of a callback (payload NOT FOUND: ``task_id`` at the top or under ``data``).

        qingbo "Task System": the result is pushed to ``callback_url`` when the task
        finishes; no signature is documented. It is only a hint: the poll re-reads the status.
        """
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError("qingbo callback body is not JSON") from exc
        if not isinstance(payload, dict):
            raise ValueError("qingbo callback body is not a JSON object")
        task = _task_object(payload)
        if not task.get("task_id"):
            raise ValueError("qingbo callback has no task_id")
        return CallbackHint(task_id=str(task["task_id"]), provider_state=str(task.get("status") or ""))

    # -- facts ---------------------------------------------------------------------------
    def poll_cadence(self, request: GenerationRequest) -> PollCadence:
        """First poll 20 s after submit, then every 10 s (qingbo's 2-5 s advice is for one client; see the module doc)."""
        return PollCadence(first_delay=20.0, interval=10.0)


# --- helpers -----------------------------------------------------------------------------------
def _task_object(body: Any) -> Mapping:
    """The task object: the body itself, or its ``data`` object when the task sits there."""
    if not isinstance(body, Mapping):
        return {}
    data = body.get("data")
    if "task_id" not in body and isinstance(data, Mapping):
        return data
    return body


def _bare(netloc: str) -> str:
    return netloc.lower().removeprefix("www.")


def video_urls(result: Any) -> tuple[str, ...]:
    """``result.videos[].url`` flattened: each ``url`` a string or a list of strings (providers.md, qingbo)."""
    if not isinstance(result, Mapping):
        return ()
    videos = result.get("videos")
    if isinstance(videos, Mapping | str):
        videos = [videos]
    if not isinstance(videos, list):
        return ()
    out: list[str] = []
    for item in videos:
        url = item.get("url") if isinstance(item, Mapping) else item
        for value in url if isinstance(url, list) else [url]:
            if isinstance(value, str) and value.strip() and value.strip() not in out:
                out.append(value.strip())
    return tuple(out)


def _error_text(body: Any) -> tuple[str, str]:
    """(message, code) from an error body: ``error.message``/``error.code``, ``error`` as text,
    ``message``, ``detail`` (FastAPI-like: text or a list of ``{msg}``), ``code``."""
    if not isinstance(body, Mapping):
        return "", ""
    message, code = "", ""
    error = body.get("error")
    if isinstance(error, Mapping):
        message = str(error.get("message") or error.get("msg") or "")
        code = str(error.get("code") or error.get("type") or "")
    elif isinstance(error, str):
        message = error
    if not message and isinstance(body.get("message"), str):
        message = body["message"]
    detail = body.get("detail")
    if not message and detail:
        if isinstance(detail, list):
            message = "; ".join(str(d.get("msg") if isinstance(d, Mapping) else d) for d in detail)
        else:
            message = str(detail)
    if not code and body.get("code") not in (None, "") and not isinstance(body.get("code"), bool):
        code = str(body["code"])
    return message, code
