"""Reads about generations, scoped to what a user may see."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from uuid import UUID

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from generations.models import Generation, State

#: The gallery's "in progress" filter: every state that is not final yet.
IN_PROGRESS_STATES = (State.PENDING_APPROVAL, State.QUEUED, State.SUBMITTING, State.SUBMITTED, State.RUNNING)


def team_ids_of(user) -> list[int]:
    """The ids of the teams ``user`` belongs to (one query, none when the API's token lookup read them)."""
    if "_team_ids" in getattr(user, "__dict__", {}):
        return list(user.__dict__["_team_ids"])
    return list(user.memberships.values_list("team_id", flat=True))


def teams_of(user) -> tuple[list[int], object]:
    """The ids of ``user``'s teams and their primary team (``User.primary_team``: the first
    membership's), in one query."""
    memberships = list(user.memberships.select_related("team").order_by("id"))
    return [m.team_id for m in memberships], (memberships[0].team if memberships else None)


def generations_visible_to(*, user, team_ids: list[int] | None = None) -> QuerySet[Generation]:
    """Generations ``user`` may see: their own and those of the teams they belong to.

    Another team's generation is simply absent (views answer 404, not 403). Pass
    ``team_ids`` (from :func:`team_ids_of`) when the caller already has them.
    """
    if team_ids is None:
        team_ids = team_ids_of(user)
    return Generation.objects.filter(Q(user=user) | Q(team_id__in=team_ids)).select_related(
        "provider_account", "user"
    )


def generation_for(*, user, generation_id) -> Generation | None:
    """One visible generation, or None."""
    return generations_visible_to(user=user).filter(pk=generation_id).first()


#: The columns the API's answer shows (``generations.api._out``): one generation's hot read loads only these.
API_FIELDS = (
    "id", "user_id", "team_id", "state", "provider_kind", "provider_account_id", "model", "mode", "prompt", "duration",
    "resolution", "image_url", "progress", "quoted_amount", "charged_amount", "provider_task_id", "fail_code",
    "fail_message", "video", "poster", "archive_state", "project_id", "starred", "batch_id", "created_at",
    "completed_at", "hidden_at",
)


@lru_cache(maxsize=1)
def _api_read_parts() -> tuple[str, str, list[str]]:
    """(the columns of :data:`API_FIELDS` over alias ``g``, in the model's field order; the
    subquery of the row's tag names, sorted, as an array; those columns' attnames)."""
    from teamwork.models import Tag

    fields = [f for f in Generation._meta.concrete_fields if f.attname in API_FIELDS]
    through = Tag.generations.through._meta.db_table
    tags = (
        f"ARRAY(SELECT t.name FROM {Tag._meta.db_table} t JOIN {through} tg ON tg.tag_id = t.id "
        "WHERE tg.generation_id = g.id ORDER BY t.name)"
    )
    return ", ".join(f"g.{f.column}" for f in fields), tags, [f.attname for f in fields]


@lru_cache(maxsize=1)
def _api_read_sql() -> tuple[str, list[str]]:
    """The statement and its columns' attnames, in the model's field order (``Model.from_db``'s)."""
    columns, tags, names = _api_read_parts()
    return f"SELECT {columns}, {tags} FROM {Generation._meta.db_table} g WHERE {_visible('%s', '%s')}", names


def _visible(user_id: str, team_ids: str) -> str:
    """The hot reads' WHERE: the generation ``%s`` if it is the user's (``user_id``, an SQL
    expression) or one of their teams' (``team_ids``, an SQL array): :func:`generations_visible_to`'s rule."""
    return f"g.id = %s AND (g.user_id = {user_id} OR g.team_id = ANY({team_ids}))"


def _from_api_row(names: list[str], row) -> Generation:
    from config.hotsql import instance

    generation = instance(Generation, names, row[:-1])
    generation.tag_names = list(row[-1])
    return generation


def generation_for_api(*, user, generation_id) -> Generation | None:
    """One generation ``user`` may see (:func:`generations_visible_to`), loaded with only
    :data:`API_FIELDS` and its tags' names (sorted, in ``generation.tag_names``), or None.

    The API's hot read (issue 16): on PostgreSQL one hand-written statement, prepared after a
    few uses (``config.hotsql``); the user's team ids come from the token lookup. Elsewhere
    :func:`generation_for` and one query for the tags. Any other field of the instance is
    deferred (a read of it would cost a query). The API's ``GET /generations/{id}`` reads the
    same row within the token lookup instead (:func:`generation_joined_read`).
    """
    from config import hotsql

    if not hotsql.available():
        generation = generation_for(user=user, generation_id=generation_id)
        if generation is not None:
            generation.tag_names = [t.name for t in generation.tags.all()]
        return generation
    sql, names = _api_read_sql()
    with hotsql.hot_cursor() as cursor:
        cursor.execute(sql, [generation_id, user.pk, team_ids_of(user)])
        row = cursor.fetchone()
    if row is None:
        return None
    return _from_api_row(names, row)


@lru_cache(maxsize=1)
def _joined_parts() -> tuple[str, str]:
    columns, tags, names = _api_read_parts()
    select = ", ".join(f"j.{name}" for name in [*names, "tag_names"])  # the attnames are the columns here
    lateral = (
        f"SELECT {columns}, {tags} AS tag_names FROM {Generation._meta.db_table} g WHERE {_visible('t.user_id', 'tm.team_ids')}"
    )
    return select, lateral


def generation_joined_read(generation_id: UUID):
    """:func:`generation_for_api`'s read of ``generation_id`` as an ``accounts.selectors.JoinedRead``:
    the token lookup runs it in its own statement (one round trip for an authenticated read
    instead of two, issue 16). :func:`generation_from_joined` turns the values into the same
    instance or None, with the same visibility rule (own or a team's)."""
    from accounts.selectors import JoinedRead

    select, lateral = _joined_parts()
    return JoinedRead(select=select, lateral=lateral, params=(generation_id,), key=("generation", generation_id))


def generation_from_joined(values) -> Generation | None:
    """The generation from :func:`generation_joined_read`'s values, or None (none visible)."""
    _, _, names = _api_read_parts()
    if values[0] is None:  # the lateral found no row: the id (first of API_FIELDS) is NULL
        return None
    return _from_api_row(names, values)


def teammates_of(*, user, team_ids: list[int]):
    """``user`` and everyone who shares a team with them, by email (the gallery's member filter)."""
    from accounts.models import User

    return User.objects.filter(Q(pk=user.pk) | Q(memberships__team_id__in=team_ids)).distinct().order_by("email")


# --- the gallery: filters and keyset pagination -------------------------------------------
@dataclass(frozen=True)
class GalleryFilters:
    """What the gallery is narrowed to. Empty values mean "any"."""

    state: str = ""  # a State value, or "in_progress"
    provider: str = ""  # a provider kind
    model: str = ""
    member: int | None = None  # a user id
    date_from: date | None = None  # inclusive, UTC day
    date_to: date | None = None  # inclusive, UTC day
    q: str = ""  # prompt search
    show_hidden: bool = False  # include generations hidden from the gallery
    project: int | None = None  # a teamwork.Project id (visibility still applies)
    starred: bool = False  # only kept takes
    tag: str = ""  # a tag name of the take's team

    @property
    def active(self) -> bool:
        return bool(self.q) or self.narrowing > 0

    @property
    def narrowing(self) -> int:
        """How many filters other than the prompt search are set."""
        return sum(1 for v in (
            self.state, self.provider, self.model, self.member, self.date_from, self.date_to, self.show_hidden,
            self.project, self.starred, self.tag,
        ) if v)


@dataclass
class GalleryPage:
    """One page of the gallery, newest first, with the cursors of its neighbours.

    Keyset pagination (``created_at``, ``id``): a page costs one indexed query however deep
    it is and however many generations match; there is no COUNT.
    """

    items: list[Generation] = field(default_factory=list)
    newer_cursor: str | None = None  # pass as ``after`` to see the newer page
    older_cursor: str | None = None  # pass as ``before`` to see the older page
    is_first: bool = True


def encode_cursor(generation: Generation) -> str:
    """A URL-safe position: microseconds since the epoch and the id."""
    stamp = generation.created_at.astimezone(UTC)
    micros = (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return f"{micros}.{generation.pk.hex}"


def decode_cursor(value: str | None) -> tuple[datetime, UUID] | None:
    """The (created_at, id) of a cursor; None for a missing or malformed one."""
    if not value:
        return None
    try:
        micros, hex_id = value.split(".", 1)
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
        return at, UUID(hex=hex_id)
    except (ValueError, OverflowError):
        return None


def filter_generations(queryset: QuerySet[Generation], filters: GalleryFilters) -> QuerySet[Generation]:
    """Narrow ``queryset`` to ``filters`` (hidden generations only with ``show_hidden``)."""
    if not filters.show_hidden:
        queryset = queryset.filter(hidden_at__isnull=True)
    if filters.state == "in_progress":
        queryset = queryset.filter(state__in=IN_PROGRESS_STATES)
    elif filters.state:
        queryset = queryset.filter(state=filters.state)
    if filters.provider:
        queryset = queryset.filter(provider_kind=filters.provider)
    if filters.model:
        # A human model name ("Hailuo 2.3") covers every provider's id for it; an id still works.
        from providers.registry import model_families

        queryset = queryset.filter(model__in=model_families().get(filters.model, [filters.model]))
    if filters.member:
        queryset = queryset.filter(user_id=filters.member)
    if filters.date_from:
        queryset = queryset.filter(created_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=UTC))
    if filters.date_to:
        end = datetime.combine(filters.date_to, time.min, tzinfo=UTC) + timedelta(days=1)
        queryset = queryset.filter(created_at__lt=end)
    if filters.project:
        queryset = queryset.filter(project_id=filters.project)
    if filters.starred:
        queryset = queryset.filter(starred=True)
    if filters.tag:
        # A semi-join (the tag of the take's own team), so a take never appears twice.
        from teamwork.models import Tag

        queryset = queryset.filter(Exists(Tag.generations.through.objects.filter(
            generation_id=OuterRef("pk"), tag__name=filters.tag.strip().lower(), tag__team_id=OuterRef("team_id"),
        )))
    if filters.q:
        for word in filters.q.split()[:8]:
            queryset = queryset.filter(prompt__icontains=word)
    return queryset


def gallery_page(
    *, user, filters: GalleryFilters, size: int, before: str | None = None, after: str | None = None,
    team_ids: list[int] | None = None,
) -> GalleryPage:
    """A page of the generations ``user`` may see, narrowed by ``filters``, newest first.

    ``before``: the page just older than that cursor; ``after``: the page just newer; neither:
    the newest page. Exactly one query (plus one for the teams unless ``team_ids`` is given), and
    one for the page's tags (prefetched, names only; none for an empty page).
    """
    from teamwork.models import Tag

    queryset = filter_generations(generations_visible_to(user=user, team_ids=team_ids), filters).prefetch_related(
        Prefetch("tags", queryset=Tag.objects.only("id", "name").order_by("name"))
    )
    older_than = decode_cursor(before)
    newer_than = None if older_than else decode_cursor(after)
    if newer_than:
        at, pk = newer_than
        # The redundant created_at bound lets the database range-scan the created_at index.
        rows = list(
            queryset.filter(created_at__gte=at).filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=pk))
            .order_by("created_at", "id")[: size + 1]
        )
        has_newer = len(rows) > size
        if not has_newer and len(rows) < size:
            # Fewer than a page newer than the cursor (rows were deleted, or the page size
            # changed): that is the top, so show the newest page in full.
            return gallery_page(user=user, filters=filters, size=size, team_ids=team_ids)
        items = list(reversed(rows[:size]))
        return GalleryPage(
            items=items,
            newer_cursor=encode_cursor(items[0]) if has_newer and items else None,
            older_cursor=encode_cursor(items[-1]) if items else before,
            is_first=not has_newer,
        )
    if older_than:
        at, pk = older_than
        queryset = queryset.filter(created_at__lte=at).filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=pk))
    rows = list(queryset.order_by("-created_at", "-id")[: size + 1])
    items = rows[:size]
    return GalleryPage(
        items=items,
        newer_cursor=(encode_cursor(items[0]) if items else before) if older_than else None,
        older_cursor=encode_cursor(items[-1]) if len(rows) > size else None,
        is_first=older_than is None,
    )


#: A per-second price billed for a length the archived video differs from by more than this
#: many seconds is flagged on the reconciliation page (issue 11, "Billed duration checked").
DURATION_TOLERANCE_SECONDS = Decimal("0.5")


@dataclass(frozen=True)
class DurationMismatch:
    """A generation billed per second whose archived video has another length.

    ``billed_seconds`` the duration we were charged for (requested), ``measured_seconds`` the
    archived video's (ffmpeg), ``difference`` measured − billed (s); ``charged`` the captured
    USD; ``at_measured`` what the same per-second price gives for the measured length (USD).
    """

    generation: Generation
    billed_seconds: int
    measured_seconds: Decimal
    difference: Decimal
    unit_price: Decimal
    charged: Decimal
    at_measured: Decimal


def duration_mismatches(*, start: datetime, end: datetime, provider_account_id: int | None = None) -> list[DurationMismatch]:
    """Captures in ``[start, end)`` (by capture time) priced per second (``unit`` ``per_second`` in
    the hold's price-rule snapshot, which the capture carries) whose generation's measured video
    length differs from the billed duration by more than :data:`DURATION_TOLERANCE_SECONDS`.
    Oldest first. Money in USD (``billing.money.money``)."""
    from billing.models import LedgerEntry
    from billing.money import money

    captures = (
        LedgerEntry.objects.filter(
            kind=LedgerEntry.Kind.CAPTURE, created_at__gte=start, created_at__lt=end,
            price_rule__unit="per_second", generation__video_seconds__isnull=False,
        )
        .select_related("generation__provider_account", "generation__user")
        .order_by("created_at", "id")
    )
    if provider_account_id is not None:
        captures = captures.filter(provider_account_id=provider_account_id)
    out = []
    for entry in captures:
        generation = entry.generation
        difference = generation.video_seconds - generation.duration
        if abs(difference) <= DURATION_TOLERANCE_SECONDS:
            continue
        unit_price = Decimal(str(entry.price_rule.get("unit_price", "0")))
        out.append(DurationMismatch(
            generation=generation, billed_seconds=generation.duration, measured_seconds=generation.video_seconds,
            difference=difference, unit_price=unit_price, charged=entry.amount,
            at_measured=money(unit_price * generation.video_seconds),
        ))
    return out
