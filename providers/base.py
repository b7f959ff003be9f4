"""The adapter contract: what every provider adapter offers, and the shapes it speaks.

An adapter turns our canonical :class:`GenerationRequest` into the provider's request and
the provider's answers into :class:`TaskUpdate` values. It never touches the database or
the ledger (ARCHITECTURE.md, "The adapter contract"). Network I/O goes through the
:class:`providers.http.ProviderHttp` seam it is given.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from providers.http import ProviderHttp


class TaskState(enum.StrEnum):
    """Our view of a provider task's state (a subset of the generation lifecycle)."""

    QUEUED = "queued"  # accepted by the provider, not started
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"  # an undocumented state: logged, polled again, never success

    @property
    def is_final(self) -> bool:
        return self in {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED}


@dataclass(frozen=True)
class ImageRules:
    """What a provider accepts as a first-frame image.

    ``min_short_side_exclusive``: the short side must be strictly greater than this (px).
    ``aspect_min``/``aspect_max``: width/height bounds; ``aspect_exclusive`` says whether
    the bounds themselves are refused.
    """

    formats: tuple[str, ...] = ("jpeg", "png")
    max_bytes: int = 20 * 1024 * 1024
    min_short_side_exclusive: int | None = None
    min_side: int | None = None
    max_side: int | None = None
    aspect_min: float | None = None
    aspect_max: float | None = None
    aspect_exclusive: bool = True


@dataclass(frozen=True)
class OptionSpec:
    """A provider-specific request option, shown as a form field and checked by ``validate``.

    ``kind``: "bool" (checkbox), "choice" (one of ``choices``), "image_url" (an extra image,
    e.g. a last frame or a character reference, checked like the first frame) or "text".
    ``default`` is what the provider assumes when the option is absent; ``None`` = not sent.
    """

    name: str
    label: str
    kind: str
    choices: tuple[str, ...] = ()
    default: Any = None
    help: str = ""
    required: bool = False


@dataclass(frozen=True)
class ModeCapability:
    """One way of generating with a model.

    ``combos`` lists the allowed (duration seconds, resolution) pairs, resolution in our
    canonical spelling ("768p", "1080p", "720p"); ``image`` is "none", "required" or
    "optional"; ``duration_sent`` says whether the duration is part of the request
    (APIXO pro modes ignore it).
    """

    id: str
    label: str
    image: str  # "none" | "required" | "optional"
    combos: tuple[tuple[int, str], ...]
    duration_sent: bool = True
    options: tuple[OptionSpec, ...] = ()

    def option(self, name: str) -> OptionSpec | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def durations(self) -> tuple[int, ...]:
        return tuple(sorted({d for d, _ in self.combos}))

    @property
    def resolutions(self) -> tuple[str, ...]:
        return tuple(sorted({r for _, r in self.combos}, key=lambda r: int(r.rstrip("p"))))

    def allows(self, duration: int, resolution: str) -> bool:
        return (duration, resolution) in self.combos


@dataclass(frozen=True)
class ModelCapability:
    """A provider model: its modes, prompt limit and image rules."""

    id: str
    label: str
    modes: tuple[ModeCapability, ...]
    prompt_max_chars: int | None = None
    image_rules: ImageRules | None = None
    notes: str = ""

    def mode(self, mode_id: str) -> ModeCapability | None:
        return next((m for m in self.modes if m.id == mode_id), None)


@dataclass(frozen=True)
class ProviderCapabilities:
    """Everything a provider offers, as data (read by the form, the API and the README)."""

    models: tuple[ModelCapability, ...]
    callbacks: bool = False
    cancel: bool = False
    #: The provider states (its own spelling, as stored in ``Generation.provider_state``) in
    #: which its documented cancel applies; empty = any in-flight state. "" stands for "not
    #: polled yet" (just accepted).
    cancel_states: tuple[str, ...] = ()
    #: Options an admin may set on the provider account as defaults (a request may override).
    account_options: tuple[OptionSpec, ...] = ()

    def model(self, model_id: str) -> ModelCapability | None:
        return next((m for m in self.models if m.id == model_id), None)


@dataclass(frozen=True)
class GenerationRequest:
    """Our canonical request, the same for every provider.

    ``duration`` in seconds of output, ``resolution`` in canonical spelling ("768p"),
    ``image_url`` an http(s) URL of the first frame, ``options`` provider-specific
    switches (e.g. APIXO's routing strategy ``provider``).
    """

    model: str
    mode: str
    prompt: str
    duration: int
    resolution: str
    image_url: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleViolation:
    """One refused rule: the request ``field`` it concerns and a message naming provider and rule."""

    field: str
    message: str


class RequestRefused(Exception):
    """Raised by ``validate()``: the provider would refuse this request. Carries every violation."""

    def __init__(self, violations: list[RuleViolation]):
        self.violations = violations
        super().__init__("; ".join(v.message for v in violations))


@dataclass(frozen=True)
class BalanceUnit:
    """The unit an adapter's :meth:`ProviderAdapter.fetch_balance` answers in, and what one is worth.

    ``name``: "USD", "credits", … ("units" when the provider documents none);
    ``usd_per_unit``: the USD value of one unit as the provider documents it (``Decimal(1)``
    for USD), None when it documents no conversion.
    """

    name: str
    usd_per_unit: Decimal | None = None

    def usd(self, amount: Decimal) -> Decimal | None:
        """``amount`` (in this unit) in USD, unrounded; None without a documented conversion."""
        return None if self.usd_per_unit is None else amount * self.usd_per_unit


#: A balance in US dollars (APIXO ``current-balance``, PiAPI ``equivalent_in_usd``).
USD_BALANCE = BalanceUnit("USD", Decimal(1))


@dataclass(frozen=True)
class SubmitResult:
    """What a successful submit returns: the provider's task id and its raw answer."""

    task_id: str
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskUpdate:
    """A provider's answer about one task, in our terms.

    ``progress`` 0-100 when the provider reports it; ``result_urls`` the (expiring) video
    URLs on success; ``fail_code``/``fail_message`` the provider's own; times are aware
    UTC datetimes (provider millisecond timestamps are converted by the adapter);
    ``provider_cost`` the provider-reported cost in its own unit, if any.
    """

    task_id: str
    state: TaskState
    provider_state: str
    progress: int | None = None
    result_urls: tuple[str, ...] = ()
    fail_code: str = ""
    fail_message: str = ""
    created_at: datetime | None = None
    completed_at: datetime | None = None
    provider_cost: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallbackHint:
    """What a callback tells us before we confirm with the status endpoint."""

    task_id: str
    provider_state: str = ""


@dataclass(frozen=True)
class BillingFacts:
    """The facts a price is computed from: what the provider will bill for."""

    provider_kind: str
    model: str
    mode: str
    seconds: int
    resolution: str


@dataclass(frozen=True)
class PollCadence:
    """When to poll: ``first_delay`` after submit, then every ``interval`` (seconds, before jitter)."""

    first_delay: float
    interval: float


class ProviderAdapter(abc.ABC):
    """Base class of every provider adapter.

    Subclasses set the class attributes and implement the abstract methods. Instances are
    cheap; make one per use with the account's key, base URL and options.
    """

    kind: ClassVar[str]
    label: ClassVar[str]
    default_base_url: ClassVar[str]
    capabilities: ClassVar[ProviderCapabilities]
    #: Status reads the poll sweep keeps in flight per account of this provider unless
    #: ``HAILUO_POLL_CONCURRENCY_PER_ACCOUNT`` overrides it (README, "Poll concurrency per
    #: provider"). No provider documents a number (providers.md; APIXO: "rate limits and
    #: concurrency can vary by account, API key, and route ... if you receive 429, slow
    #: down"), so the default is what the goal needs with a margin: 10,000 tasks at a 15 s
    #: cadence are 667 reads/s, 134 in flight at 200 ms a read; 200 leaves 1.5x. An HTTP 429
    #: pauses the whole account for its Retry-After (``lifecycle._pause_account``).
    poll_concurrency: ClassVar[int] = 200

    def __init_subclass__(cls, **kwargs):
        """Instrument the provider calls (submit, fetch_status, cancel, fetch_balance) for the metrics.

        Each call labels its HTTP requests with its operation and counts its
        ``ProviderError`` exceptions by class (``config.metrics.provider_operation``).
        """
        super().__init_subclass__(**kwargs)
        from config.metrics import OPERATIONS, provider_operation

        for name, operation in OPERATIONS.items():
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_hailuo_instrumented", False):
                setattr(cls, name, provider_operation(method, operation))

    def __init__(self, *, api_key: str, base_url: str = "", options: Mapping[str, Any] | None = None):
        self.api_key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.options = dict(options or {})

    # -- what the studio offers --------------------------------------------------------
    @classmethod
    def member_options(cls, mode: ModeCapability, account_options: Mapping[str, Any] | None = None) -> tuple[OptionSpec, ...]:
        """The options a member is shown for ``mode`` given the account's options: the ones
        that change the video. Account-level settings (``capabilities.account_options``) are
        an admin's, never shown; adapters drop options that have no effect under the
        account's settings (qingbo's ``aspect_ratio`` without its "minimax" model naming)."""
        return tuple(mode.options)

    @classmethod
    def can_cancel_in(cls, provider_state: str) -> bool:
        """Whether the provider's documented cancel applies to a task in ``provider_state``
        (its own state string, "" before the first poll): ``capabilities.cancel`` and, when
        ``capabilities.cancel_states`` is set, the state is one of them."""
        caps = cls.capabilities
        if not caps.cancel:
            return False
        return not caps.cancel_states or (provider_state or "").lower() in caps.cancel_states

    # -- validation ------------------------------------------------------------------
    def validate(self, request: GenerationRequest) -> None:
        """Raise :class:`RequestRefused` listing every rule of the provider the request breaks.

        The default checks model, mode, duration/resolution pair, image presence and the
        prompt limit against ``capabilities``; adapters extend it with their own rules.
        """
        violations = self.check_capabilities(request)
        if violations:
            raise RequestRefused(violations)

    def check_capabilities(self, request: GenerationRequest) -> list[RuleViolation]:
        """Return the violations of the declarative capability rules (no I/O)."""
        out: list[RuleViolation] = []
        name = self.label
        model = self.capabilities.model(request.model)
        if model is None:
            known = ", ".join(m.id for m in self.capabilities.models)
            return [RuleViolation("model", f"{name}: unknown model {request.model!r} (offered: {known})")]
        mode = model.mode(request.mode)
        if mode is None:
            known = ", ".join(m.id for m in model.modes)
            return [RuleViolation("mode", f"{name}: {model.id} has no mode {request.mode!r} (offered: {known})")]
        prompt = request.prompt or ""
        if not prompt.strip():
            out.append(RuleViolation("prompt", f"{name}: a prompt is required"))
        elif model.prompt_max_chars and len(prompt) > model.prompt_max_chars:
            out.append(
                RuleViolation(
                    "prompt",
                    f"{name}: the prompt is limited to {model.prompt_max_chars} characters "
                    f"(this one has {len(prompt)})",
                )
            )
        if request.duration not in mode.durations:
            allowed = " or ".join(str(d) for d in mode.durations)
            out.append(RuleViolation("duration", f"{name}: {mode.label} takes {allowed} seconds"))
        elif request.resolution not in mode.resolutions:
            allowed = ", ".join(mode.resolutions)
            out.append(RuleViolation("resolution", f"{name}: {mode.label} outputs {allowed} only"))
        elif not mode.allows(request.duration, request.resolution):
            ok = sorted(d for d, r in mode.combos if r == request.resolution)
            out.append(
                RuleViolation(
                    "duration",
                    f"{name}: {request.resolution} supports only {' or '.join(map(str, ok))} seconds",
                )
            )
        if mode.image == "required" and not request.image_url:
            out.append(RuleViolation("image_url", f"{name}: {mode.label} needs exactly one first-frame image"))
        if mode.image == "none" and request.image_url:
            out.append(RuleViolation("image_url", f"{name}: {mode.label} takes no image"))
        if request.image_url and not request.image_url.lower().startswith(("http://", "https://")):
            out.append(RuleViolation("image_url", f"{name}: the image must be an http(s) URL"))
        out.extend(self.check_options(request, mode))
        return out

    def check_options(self, request: GenerationRequest, mode: ModeCapability) -> list[RuleViolation]:
        """Refuse options the mode does not offer and values of the wrong kind."""
        out: list[RuleViolation] = []
        known = {o.name: o for o in (*mode.options, *self.capabilities.account_options)}
        for key, value in (request.options or {}).items():
            spec = known.get(key)
            if spec is None:
                out.append(RuleViolation(key, f"{self.label}: {mode.label} has no option {key!r}"))
                continue
            if value in (None, ""):
                if spec.required:
                    out.append(RuleViolation(key, f"{self.label}: {spec.label} is required"))
                continue
            if spec.kind == "bool" and not isinstance(value, bool):
                out.append(RuleViolation(key, f"{self.label}: {spec.label} must be true or false"))
            elif spec.kind == "choice" and value not in spec.choices:
                out.append(RuleViolation(key, f"{self.label}: {spec.label} must be one of {', '.join(spec.choices)}"))
            elif spec.kind == "image_url" and not str(value).lower().startswith(("http://", "https://")):
                out.append(RuleViolation(key, f"{self.label}: {spec.label} must be an http(s) URL"))
        for spec in mode.options:
            if spec.required and (request.options or {}).get(spec.name) in (None, ""):
                out.append(RuleViolation(spec.name, f"{self.label}: {spec.label} is required for {mode.label}"))
        return out

    # -- facts -----------------------------------------------------------------------
    def billing_facts(self, request: GenerationRequest) -> BillingFacts:
        """The facts the provider bills on. Default: the request's model, mode, duration, resolution."""
        return BillingFacts(self.kind, request.model, request.mode, request.duration, request.resolution)

    def poll_cadence(self, request: GenerationRequest) -> PollCadence:
        """Default cadence: first poll after 30 s, then every 12 s (override per provider docs)."""
        return PollCadence(first_delay=30.0, interval=12.0)

    # -- protocol --------------------------------------------------------------------
    @abc.abstractmethod
    async def submit(
        self, http: ProviderHttp, request: GenerationRequest, *, callback_url: str = "", callback_secret: str = ""
    ) -> SubmitResult:
        """Create the task at the provider. Raises :class:`providers.http.ProviderError`.

        ``callback_url`` (may be empty: poll only) is unique per generation and carries its
        own token; ``callback_secret`` is a random secret for providers that echo one back in
        their callbacks (PiAPI's ``webhook_config.secret``).
        """

    @abc.abstractmethod
    async def fetch_status(self, http: ProviderHttp, *, task_id: str, model: str) -> TaskUpdate:
        """Read a task's state from the provider. Raises :class:`providers.http.ProviderError`."""

    @abc.abstractmethod
    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> CallbackHint:
        """Extract the task id from a callback. Raises ``ValueError`` on a malformed body."""

    def verify_callback(self, headers: Mapping[str, str], body: bytes, *, secret: str) -> None:
        """Authenticate a callback as far as the provider allows; raise ``ValueError`` if it fails.

        The default accepts (the per-generation token in the URL already authenticated it).
        """
        return None

    def callback_challenge(self, headers: Mapping[str, str], body: bytes) -> dict | None:
        """An immediate answer some providers require (MiniMax's ``challenge`` echo), else None."""
        return None

    async def cancel(self, http: ProviderHttp, *, task_id: str, model: str) -> None:
        """Cancel a task at the provider (only when ``capabilities.cancel``). Raises ProviderError."""
        raise NotImplementedError(f"{self.label} documents no cancel")

    #: The unit :meth:`fetch_balance` answers in and its documented USD value (override per provider).
    balance_unit: ClassVar[BalanceUnit] = BalanceUnit("units")

    async def fetch_balance(self, http: ProviderHttp) -> Decimal | None:
        """Return the account balance in :attr:`balance_unit`, or None when the provider documents none.

        Callers convert with ``balance_unit.usd(amount)`` (see :meth:`balance_in_usd`); they
        never read a provider's own constants. Raises :class:`providers.http.ProviderError`.
        """
        return None

    @classmethod
    def balance_in_usd(cls, amount: Decimal) -> Decimal | None:
        """A balance (or a change of balance) in :attr:`balance_unit`, in USD; None without a documented conversion."""
        return cls.balance_unit.usd(amount)
