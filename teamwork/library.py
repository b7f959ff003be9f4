"""The prompt library: a team's templates with placeholders, and a member's prompt history.

A template's prompt may hold placeholders ``{name}`` (a letter or ``_``, then letters, digits or
``_``; at most 40 characters), filled in at use by :func:`render_prompt`; ``{{`` and ``}}`` are
literal braces, and any other brace is kept as written. Visibility is the gallery's: a member
sees their teams' templates; another team's template is absent (callers answer 404).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import Count, Max, OuterRef, QuerySet, Subquery
from django.utils import timezone

from config.errors import DomainError
from generations.selectors import team_ids_of
from teamwork.models import PromptTemplate

#: ``{{``, ``}}`` or a placeholder ``{name}`` (group 1: the name).
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]{0,39})\}")
#: Longest value of one placeholder (characters); the filled prompt still meets the model's limit at create.
VALUE_MAX = 1000
#: How many distinct prompts the history shows.
HISTORY_SIZE = 20


def _invalid(code: str, message: str, fields: dict[str, list[str]]) -> DomainError:
    return DomainError(code, message, fields, status=422)


def placeholders(prompt: str) -> list[str]:
    """The placeholder names of ``prompt`` in order of first appearance, each once:
    ``"{product} on {place}, {product}"`` → ``["product", "place"]``; ``"{{product}}"`` → ``[]``."""
    names: list[str] = []
    for match in _TOKEN.finditer(prompt or ""):
        name = match.group(1)
        if name and name not in names:
            names.append(name)
    return names


def render_prompt(prompt: str, values: dict) -> str:
    """``prompt`` with every ``{name}`` replaced by ``values[name]`` (stripped) and ``{{``/``}}``
    turned into ``{``/``}``. A value is inserted as written (braces in it are not read again).

    Raises ``DomainError`` 422: ``placeholder_missing`` (a placeholder without a non-empty
    value; ``fields`` ``values.<name>``), ``placeholder_unknown`` (a value for a name the prompt
    does not have), ``validation_error`` (a value that is not text or is over
    :data:`VALUE_MAX` characters). The message names the placeholders."""
    values = dict(values or {})
    names = placeholders(prompt)
    unknown = [k for k in values if k not in names]
    if unknown:
        raise _invalid(
            "placeholder_unknown", f"This template has no placeholder {', '.join('{' + str(k) + '}' for k in unknown)}.",
            {f"values.{k}": ["Not a placeholder of this template."] for k in unknown},
        )
    bad = [k for k, v in values.items() if not isinstance(v, str | int | float) or isinstance(v, bool) or len(str(v)) > VALUE_MAX]
    if bad:
        raise _invalid(
            "validation_error", f"A value is text of at most {VALUE_MAX:,} characters: {', '.join(bad)}.",
            {f"values.{k}": [f"Text of at most {VALUE_MAX:,} characters."] for k in bad},
        )
    filled = {k: str(v).strip() for k, v in values.items()}
    missing = [n for n in names if not filled.get(n)]
    if missing:
        raise _invalid(
            "placeholder_missing", f"Fill in the placeholder{'s' if len(missing) > 1 else ''} "
            f"{', '.join('{' + n + '}' for n in missing)}.",
            {f"values.{n}": [f"Fill in {{{n}}}."] for n in missing},
        )

    def replace(match: re.Match) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return filled[match.group(1)]

    return _TOKEN.sub(replace, prompt)


# --- templates: reads -----------------------------------------------------------------------
def templates_visible_to(*, user, team_ids: list[int] | None = None) -> QuerySet[PromptTemplate]:
    """The templates of ``user``'s teams, by name."""
    if team_ids is None:
        team_ids = team_ids_of(user)
    return PromptTemplate.objects.filter(team_id__in=team_ids).select_related("team", "created_by", "provider_account")


def template_for(*, user, template_id) -> PromptTemplate | None:
    """One template of ``user``'s teams, or None (another team's, or no such template)."""
    try:
        template_id = int(template_id)
    except (TypeError, ValueError):
        return None
    return templates_visible_to(user=user).filter(pk=template_id).first()


def may_edit(*, user, template: PromptTemplate) -> bool:
    """Its author, an admin of its team, or staff may edit or delete a template; every member
    of the team may use it."""
    from accounts.models import Membership

    if user.is_staff or template.created_by_id == user.pk:
        return True
    return Membership.objects.filter(user=user, team_id=template.team_id, role=Membership.Role.TEAM_ADMIN).exists()


# --- templates: writes ----------------------------------------------------------------------
@dataclass
class TemplateSettings:
    """A template's settings, as a create request has them: ``provider_account_id``, ``model``,
    ``mode``, ``duration`` (s), ``resolution``, ``options`` (provider options), ``image_url``."""

    provider_account_id: int | None
    model: str
    mode: str
    duration: int
    resolution: str
    options: dict = field(default_factory=dict)
    image_url: str = ""


def check_settings(s: TemplateSettings):
    """Check ``s`` against the account's capabilities (``providers.base`` capabilities: model,
    mode, a (duration, resolution) pair the mode documents, option names the member may set).
    Returns the ``ProviderAccount``. Raises ``DomainError`` 422 ``validation_error`` naming the field."""
    from providers.models import ProviderAccount

    account = ProviderAccount.objects.filter(pk=s.provider_account_id, enabled=True).first() if s.provider_account_id else None
    if account is None:
        raise _invalid("validation_error", "No such enabled provider account.", {"provider_account_id": ["Not an enabled account."]})
    caps = account.adapter_cls.capabilities
    model = caps.model(s.model or "")
    if model is None:
        raise _invalid("validation_error", f"{account.adapter_cls.label} has no model {s.model!r}.", {"model": ["Unknown model."]})
    mode = model.mode(s.mode or "")
    if mode is None:
        raise _invalid("validation_error", f"{model.label} has no mode {s.mode!r}.", {"mode": ["Unknown mode."]})
    if (s.duration, s.resolution) not in set(mode.combos):
        raise _invalid(
            "validation_error", f"{mode.label} does not offer {s.duration} s at {s.resolution}.",
            {"duration": ["Not offered at this resolution."], "resolution": ["Not offered with this duration."]},
        )
    if not isinstance(s.options, dict):
        raise _invalid("validation_error", "Options are an object.", {"options": ["An object."]})
    allowed = {spec.name for spec in account.adapter_cls.member_options(mode, account.options or {})}
    unknown = sorted(set(s.options) - allowed)
    if unknown:
        raise _invalid("validation_error", f"Unknown options: {', '.join(unknown)}.", {"options": [f"Allowed: {', '.join(sorted(allowed)) or 'none'}."]})
    if s.image_url and not re.match(r"^https?://", s.image_url):
        raise _invalid("validation_error", "The first-frame image is an http(s) URL.", {"image_url": ["An http(s) URL."]})
    return account


def _check_text(name: str, prompt: str) -> tuple[str, str]:
    name = " ".join((name or "").split())
    if not name or len(name) > 120:
        raise _invalid("validation_error", "A template needs a name of 1 to 120 characters.", {"name": ["1 to 120 characters."]})
    if not (prompt or "").strip():
        raise _invalid("validation_error", "A template needs a prompt.", {"prompt": ["Write the prompt, with {placeholders} if you like."]})
    if len(prompt) > 10_000:
        raise _invalid("validation_error", "A prompt has at most 10,000 characters.", {"prompt": ["At most 10,000 characters."]})
    return name, prompt


def _save(template: PromptTemplate) -> PromptTemplate:
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        raise DomainError(
            "template_exists", f"The team already has a template named {template.name!r}.", {"name": ["Already used."]}, status=409,
        ) from None
    return template


def template_create(*, user, team, name: str, prompt: str, settings: TemplateSettings) -> PromptTemplate:
    """A new template of ``team`` (a team of ``user``: the caller checks). Raises ``DomainError``
    422 ``validation_error`` (see :func:`check_settings`) or 409 ``template_exists``."""
    name, prompt = _check_text(name, prompt)
    check_settings(settings)
    return _save(PromptTemplate(
        team=team, created_by=user, name=name, prompt=prompt, provider_account_id=settings.provider_account_id,
        model=settings.model, mode=settings.mode, duration=settings.duration, resolution=settings.resolution,
        options=settings.options or {}, image_url=settings.image_url or "",
    ))


def template_update(*, template: PromptTemplate, name: str | None = None, prompt: str | None = None,
                    settings: TemplateSettings | None = None) -> PromptTemplate:
    """Change a template's name, prompt and/or settings (``None``: unchanged); same checks and
    errors as :func:`template_create`."""
    template.name, template.prompt = _check_text(template.name if name is None else name, template.prompt if prompt is None else prompt)
    if settings is not None:
        check_settings(settings)
        template.provider_account_id = settings.provider_account_id
        template.model, template.mode, template.duration = settings.model, settings.mode, settings.duration
        template.resolution, template.options, template.image_url = settings.resolution, settings.options or {}, settings.image_url or ""
    template.updated_at = timezone.now()
    return _save(template)


def settings_of(obj) -> TemplateSettings:
    """The settings of a template or a generation (both have the same field names)."""
    return TemplateSettings(
        provider_account_id=obj.provider_account_id, model=obj.model, mode=obj.mode, duration=obj.duration,
        resolution=obj.resolution, options=dict(obj.options or {}), image_url=obj.image_url or "",
    )


def template_request(template: PromptTemplate, values: dict) -> dict:
    """The create request a template gives with ``values`` filled in: the body of ``POST
    /api/v1/generations`` (``provider_account_id``, ``model``, ``mode``, ``prompt``, ``duration``,
    ``resolution``, ``image_url``, ``options``). Raises as :func:`render_prompt`."""
    return {
        "provider_account_id": template.provider_account_id, "model": template.model, "mode": template.mode,
        "prompt": render_prompt(template.prompt, values), "duration": template.duration,
        "resolution": template.resolution, "image_url": template.image_url, "options": dict(template.options or {}),
    }


# --- prompt history -------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryItem:
    """One distinct prompt of a member: how often they used it (``count``), when last
    (``last_at``, UTC) and the generation that used it last (its settings: ``last``)."""

    prompt: str
    count: int
    last_at: object
    last: object


def prompt_history(*, user, limit: int = HISTORY_SIZE) -> list[HistoryItem]:
    """``user``'s own distinct non-empty prompts, most recently used first, at most ``limit``.
    Two queries whatever the number of generations and prompts: the groups (with the id of
    each group's newest generation, a correlated subquery), then those generations."""
    from generations.models import Generation

    mine = Generation.objects.filter(user=user).exclude(prompt="")
    newest = mine.filter(prompt=OuterRef("prompt")).order_by("-created_at", "-id").values("id")[:1]
    groups = list(
        mine.order_by().values("prompt").annotate(count=Count("id"), last_at=Max("created_at"), last_id=Subquery(newest))
        .order_by("-last_at")[:limit]
    )
    last = {g.pk: g for g in Generation.objects.filter(pk__in=[row["last_id"] for row in groups]).select_related("provider_account")}
    return [HistoryItem(prompt=r["prompt"], count=r["count"], last_at=r["last_at"], last=last[r["last_id"]]) for r in groups]
