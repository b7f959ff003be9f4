"""Quote and create: validate a request against the provider's rules, price it, check the
input images, and write the generation with its hold (record before send), idempotently.

The row and its hold commit before the provider is called; the submit is enqueued on commit
(ARCHITECTURE.md, "The lifecycle" and "Money").
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from approvals import services as approvals  # imported as a module: approvals imports us back
from billing import services as billing_services
from billing.config_cache import provider_account
from billing.pricing import NoPriceRule, Quote, quote
from billing.selectors import price_rules_for
from config import hotsql
from generations.models import Generation, InputImage, State
from generations.services.lifecycle import GenerationRefused, _event, _log
from providers.base import GenerationRequest, RequestRefused, RuleViolation
from providers.images import ImageInfo, ImageUnavailable, check_image, fetch_image, identify
from providers.models import ProviderAccount


@dataclass
class CreateParams:
    """What a member asks for (form or API), before validation."""

    provider_account_id: int
    model: str
    mode: str
    prompt: str
    duration: int
    resolution: str
    image_url: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    #: A ``teamwork.Project`` id; the caller checks it is one of the member's teams' (the
    #: studio and the API resolve it with ``teamwork.selectors.project_for``).
    project_id: int | None = None

    def to_request(self) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            mode=self.mode,
            prompt=self.prompt,
            duration=int(self.duration),
            resolution=self.resolution,
            image_url=self.image_url or "",
            options=dict(self.options),
        )


# --- quote and create ---------------------------------------------------------------------
def generation_quote(*, params: CreateParams, account: ProviderAccount | None = None) -> Quote:
    """Validate ``params`` against the provider's rules and price them. No writes.

    Raises :class:`GenerationRefused` (``validation_error``, ``no_price_rule``,
    ``provider_unavailable``).
    """
    if account is None:
        account = ProviderAccount.objects.filter(pk=params.provider_account_id).first()
    if account is None or not account.enabled:
        raise GenerationRefused(
            "provider_unavailable", "This provider account does not exist or is disabled.", {"provider_account": ["Unavailable."]}
        )
    adapter_cls = account.adapter_cls
    adapter = adapter_cls(api_key="", base_url=account.base_url, options=account.options)
    request = params.to_request()
    try:
        adapter.validate(request)
    except RequestRefused as refused:
        fields: dict[str, list[str]] = defaultdict(list)
        for violation in refused.violations:
            fields[violation.field].append(violation.message)
        raise GenerationRefused("validation_error", str(refused), dict(fields)) from refused
    image_violations = check_request_images(adapter_cls=adapter_cls, request=request)
    if image_violations:
        fields = defaultdict(list)
        for violation in image_violations:
            fields[violation.field].append(violation.message)
        raise GenerationRefused("validation_error", "; ".join(v.message for v in image_violations), dict(fields))
    facts = adapter.billing_facts(request)
    try:
        return quote(facts=facts, rules=price_rules_for(provider_kind=facts.provider_kind, model=facts.model), at=timezone.now())
    except NoPriceRule as exc:
        raise GenerationRefused("no_price_rule", str(exc), {"model": [str(exc)]}) from exc


# --- input images ------------------------------------------------------------------------
_UPLOAD_PATH = re.compile(r"/u/(?P<id>[0-9a-f-]{36})\.(?P<ext>[a-z0-9]+)$")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def input_image_create(*, user, uploaded_file) -> InputImage:
    """Store an uploaded image after reading its format and dimensions.

    Raises :class:`GenerationRefused` (``validation_error`` on field ``image_file``) when it
    is too large, not an image, or uploads cannot be offered to providers because
    ``HAILUO_PUBLIC_BASE_URL`` is not set.
    """
    if not settings.HAILUO_PUBLIC_BASE_URL:
        message = "Uploads need HAILUO_PUBLIC_BASE_URL (providers fetch images by URL): give an image URL instead."
        raise GenerationRefused("validation_error", message, {"image_file": [message]})
    data = uploaded_file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        message = f"The image is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
        raise GenerationRefused("validation_error", message, {"image_file": [message]})
    try:
        info = identify(data)
    except ImageUnavailable as exc:
        raise GenerationRefused("validation_error", str(exc), {"image_file": [f"The upload: {exc}."]}) from exc
    image = InputImage(user=user, format=info.format, width=info.width, height=info.height, size=info.size)
    image.file.save(f"{image.pk}.{info.format}", ContentFile(data), save=False)
    image.save()
    return image


def input_image_url(image: InputImage) -> str:
    """The public URL providers fetch an uploaded image from."""
    return settings.HAILUO_PUBLIC_BASE_URL + reverse("input_image", kwargs={"image_id": image.pk, "ext": image.format})


def _image_info(url: str) -> ImageInfo:
    """Our own upload is looked up; any other URL is fetched under limits and identified."""
    base = settings.HAILUO_PUBLIC_BASE_URL
    if base and url.startswith(base + "/"):
        match = _UPLOAD_PATH.search(url[len(base):])
        image = InputImage.objects.filter(pk=match.group("id")).first() if match else None
        if image is not None:
            return ImageInfo(format=image.format, width=image.width, height=image.height, size=image.size)
    data = fetch_image(url, allowed_private_hosts=set(settings.HAILUO_ALLOWED_PRIVATE_HOSTS))
    return identify(data)


def check_request_images(*, adapter_cls, request: GenerationRequest) -> list[RuleViolation]:
    """Check every image of ``request`` (first frame and image options) against the model's image rules.

    Images are fetched under limits (``providers.images.fetch_image``); an unreachable or
    unreadable image is refused too, since the provider could not read it either.
    """
    model = adapter_cls.capabilities.model(request.model)
    mode = model.mode(request.mode) if model else None
    if model is None or mode is None:
        return []
    targets = [("image_url", request.image_url)] if request.image_url else []
    for spec in mode.options:
        value = (request.options or {}).get(spec.name)
        if spec.kind == "image_url" and value:
            targets.append((spec.name, str(value)))
    out: list[RuleViolation] = []
    for field_name, url in targets:
        try:
            info = _image_info(url)
        except ImageUnavailable as exc:
            out.append(RuleViolation(field_name, f"{adapter_cls.label}: {exc}"))
            continue
        if model.image_rules is not None:
            out.extend(check_image(info, model.image_rules, provider=adapter_cls.label, field=field_name))
    return out


def generation_create(
    *, user, params: CreateParams, idempotency_key: str | None = None, team=None, fingerprint: str = ""
) -> Generation:
    """Validate, quote, check budgets, write the generation and its hold, and enqueue the submit.

    With an ``idempotency_key`` already used by this user, returns that generation (marked
    ``replayed``) when the request matches and raises ``idempotency_conflict`` when it differs:
    "matches" is the same ``fingerprint`` (the API's SHA-256 of the whole body, stored with the
    generation) when both have one, else the same parameters, ``options`` included. Raises
    :class:`GenerationRefused` for anything refused; nothing is written then.

    ``team``: the team the generation is booked to (a ``Team`` or its id; default: the user's
    primary team). It must be one of the user's teams, else ``team_forbidden`` (403). Every
    budget layer of that team applies (``billing.services.ledger_hold``).
    """
    team = _booked_team(user, team)
    if idempotency_key:
        existing = Generation.objects.filter(user=user, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_or_conflict(existing, params, fingerprint)
    account = provider_account(params.provider_account_id)  # per-process copy, dropped on any change
    priced = generation_quote(params=params, account=account)
    try:
        with transaction.atomic():
            generation = generation_write(
                user=user, team=team, account=account, params=params, priced=priced,
                idempotency_key=idempotency_key or None, request_fingerprint=fingerprint if idempotency_key else "",
            )
            warnings = generation.warnings
    except billing_services.BudgetExceeded as exc:
        raise GenerationRefused("budget_exceeded", str(exc), {"__all__": [str(exc)]}) from exc
    except billing_services.BudgetNotAllowed as exc:
        raise GenerationRefused("budget_not_allowed", str(exc), {"__all__": [str(exc)]}) from exc
    except Exception as exc:  # an idempotency race: the unique constraint caught a twin
        from django.db import IntegrityError

        if isinstance(exc, IntegrityError) and idempotency_key:
            existing = Generation.objects.filter(user=user, idempotency_key=idempotency_key).first()
            if existing is not None:
                return _same_or_conflict(existing, params, fingerprint)
        raise
    generation.warnings = warnings
    return generation


def generation_write(*, user, team, account: ProviderAccount, params: CreateParams, priced: Quote, **fields) -> Generation:
    """The in-transaction part of a create: write the row (``fields`` add columns, e.g.
    ``idempotency_key``, ``batch``), its queued event and its hold, and enqueue the submit on commit (or, when the team's
    approval rule matches, leave it waiting in ``pending_approval``: ``approvals.services``).

    The caller owns the ``transaction.atomic()`` (:func:`generation_create` for one,
    ``services.batch.batch_create`` for many in one transaction: all held or none) and has
    validated and priced ``params`` (``priced``: :func:`generation_quote`). Sets
    ``generation.warnings`` (soft budgets exceeded). Raises billing's ``BudgetExceeded`` /
    ``BudgetNotAllowed`` (README "Money": the budget layers, checked under row locks).
    """
    generation = hotsql.create(  # one prepared INSERT (issue 16); the ORM's create off PostgreSQL
        Generation,
        user=user,
        team=team,
        provider_account=account,
        provider_kind=account.kind,
        model=params.model,
        mode=params.mode,
        prompt=params.prompt,
        duration=int(params.duration),
        resolution=params.resolution,
        image_url=params.image_url or "",
        options=dict(params.options),
        project_id=params.project_id,
        quoted_amount=priced.amount,
        price_rule=priced.snapshot,
        **fields,
    )
    _event(generation.pk, State.QUEUED, f"Quoted {priced.display}; hold placed")
    _, warnings = billing_services.ledger_hold(generation=generation, quote=priced)
    for warning in warnings:
        _event(generation.pk, "", warning)
    approvals.approval_or_submit(generation)  # the team's approval rule: wait for a team admin, or enqueue the submit on commit
    _log(generation.pk, "created", generation=generation, model=generation.model, amount=str(priced.amount))
    generation.warnings = warnings
    return generation


def _booked_team(user, team):
    """The team to book to: ``team`` (Team or id) when ``user`` belongs to it, else the primary team."""
    if team is None or team == "":
        return user.primary_team
    from accounts.models import Team

    team_id = getattr(team, "pk", team)
    found = Team.objects.filter(pk=team_id, memberships__user=user).first() if str(team_id).isdigit() else None
    if found is None:
        message = "You can book a generation only to a team you belong to."
        raise GenerationRefused("team_forbidden", message, {"team": [message]}, status=403)
    return found


def _same_or_conflict(existing: Generation, params: CreateParams, fingerprint: str = "") -> Generation:
    if fingerprint and existing.request_fingerprint:
        same = fingerprint == existing.request_fingerprint
    else:
        same = (
            existing.options == dict(params.options) and existing.provider_account_id == params.provider_account_id
            and existing.model == params.model
            and existing.mode == params.mode
            and existing.prompt == params.prompt
            and existing.duration == int(params.duration)
            and existing.resolution == params.resolution
            and existing.image_url == (params.image_url or "")
        )
    if not same:
        raise GenerationRefused(
            "idempotency_conflict", "This idempotency key was already used with different parameters."
        )
    existing.replayed = True
    return existing
