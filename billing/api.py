"""REST endpoints for finance (/api/v1/reports/...): cost reports, CSV/XLSX exports, statements, reconciliation.

Bearer-token auth like the rest of the API (``request.auth`` is the user); only users who
may see reports (superuser, staff, a finance membership) get in, others get
``403 {"code": "forbidden"}``. Bad parameters: ``422 {"code": "invalid_request", "fields": {...}}``.
Amounts are decimal strings in USD with six places; times ISO 8601 with offset.
"""

from __future__ import annotations

from datetime import date, datetime

from ninja import Field, Query, Router, Schema
from ninja.responses import Status

from billing import exports
from billing.reports import (
    DIMENSIONS,
    PERIOD_KINDS,
    ReportParamError,
    can_view_reports,
    cost_report,
    reconciliation,
    report_query_from_params,
    statement_period,
)
from config.errors import DomainError, ErrorOut, Forbidden, NotFound

router = Router(tags=["reports"])

_PERIOD_HELP = f"One of {', '.join(PERIOD_KINDS)}. `month` needs `month=YYYY-MM`; `custom` needs `from` and `to`."
_GROUP_HELP = f"Comma-separated, at most 3 of {', '.join(DIMENSIONS)} (one time dimension at most)."


class PeriodOut(Schema):
    kind: str
    label: str
    slug: str = Field(description="As used in export file names, e.g. 2026-11")
    tz: str = Field(description="IANA zone the period and time buckets are aligned to")
    start: datetime = Field(description="Inclusive")
    end: datetime = Field(description="Exclusive")


class FiguresOut(Schema):
    spend_usd: str = Field(description="captures + adjustments − credits")
    captured_usd: str
    adjustments_usd: str
    credits_usd: str
    held_usd: str = Field(description="Holds written in the period (not spend)")
    released_usd: str = Field(description="Releases written in the period (not spend)")
    succeeded: int = Field(description="Capture entries")
    failed: int = Field(description="Release entries of generations that failed (not canceled or expired)")
    canceled: int = Field(description="Release entries of canceled generations, and of requests a team admin rejected")
    expired: int = Field(description="Release entries of expired generations")
    entries: int
    average_price_usd: str | None = Field(description="captured ÷ succeeded; null without successes")


class GroupOut(Schema):
    key: dict[str, bool | int | str | None] = Field(description="Per dimension: an id, a value (kept: true/false), or a time bucket's start (ISO 8601)")
    labels: dict[str, str]
    figures: FiguresOut


class OutstandingOut(Schema):
    amount_usd: str
    count: int
    as_of: datetime


class CostReportOut(Schema):
    period: PeriodOut
    group_by: list[str]
    filters: dict[str, str]
    totals: FiguresOut
    outstanding_holds: OutstandingOut = Field(description="Holds open at the period's end (not spend)")
    groups: list[GroupOut]


class SnapshotOut(Schema):
    balance: str = Field(description="In the provider's unit")
    unit: str = Field(description="USD, or credits (PoYo)")
    taken_at: datetime


class ReconciliationAccountOut(Schema):
    provider_account_id: int
    provider: str
    label: str
    captured_usd: str = Field(description="Our captures in the period")
    captured_count: int
    reported_usd: str | None = Field(description="Provider-reported cost of the generations settled in the period; null if none")
    reported_credits: str | None = Field(description="PoYo: the same in credits")
    reported_count: int = Field(description="Settled generations with a provider-reported cost")
    unreported_count: int = Field(description="Captures without one")
    captured_on_reported_usd: str = Field(description="Our captures of the reported generations")
    cost_difference_usd: str | None = Field(description="captured_on_reported − reported (negative: the provider charged more)")
    opening_snapshot: SnapshotOut | None
    closing_snapshot: SnapshotOut | None
    balance_unit: str
    balance_drop: str | None = Field(description="opening − closing balance, provider unit")
    balance_drop_usd: str | None
    captured_between_snapshots_usd: str | None
    balance_difference_usd: str | None = Field(description="captured between snapshots − balance drop")
    flagged: bool = Field(description="A difference of a cent or more")


class ReconciliationOut(Schema):
    period: PeriodOut
    accounts: list[ReconciliationAccountOut]


def _require_reports(request) -> None:
    """Raise ``Forbidden`` unless the caller may see reports (finance, staff, superuser)."""
    if not can_view_reports(request.auth):
        raise Forbidden("Reports need the finance role (or staff).")


def _params(**values) -> dict[str, str]:
    out = {}
    for name, value in values.items():
        if value is None or value == "":
            continue
        out[name] = value.isoformat() if isinstance(value, date) else str(value)
    return out


def _period_out(p) -> dict:
    return {"kind": p.kind, "label": p.label, "slug": p.slug, "tz": p.tz, "start": p.start, "end": p.end}


def _key_value(value):
    return value.isoformat() if isinstance(value, datetime) else value


class PeriodParams(Schema):
    """The period of a report (query string)."""

    period: str = Field("this_month", description=_PERIOD_HELP)
    tz: str = Field("UTC", description="IANA time zone the period and time buckets align to, e.g. Europe/Paris")
    date_from: date | None = Field(None, alias="from", description="Custom period: first day (YYYY-MM-DD)")
    date_to: date | None = Field(None, alias="to", description="Custom period: last day, included (YYYY-MM-DD)")
    month: str | None = Field(None, description="YYYY-MM, with period=month")
    provider_account_id: int | None = None

    def as_params(self) -> dict[str, str]:
        return _params(**{"from": self.date_from, "to": self.date_to}, **self.model_dump(exclude={"date_from", "date_to"}))


class ReportParams(PeriodParams):
    """A report's period, grouping and filters (query string)."""

    group_by: str = Field("provider", description=_GROUP_HELP)
    team_id: int | None = None
    user_id: int | None = None
    provider: str | None = Field(None, description="A provider kind, e.g. apixo")


class ExportParams(ReportParams):
    """A report export: which rows."""

    rows: str = Field("entries", description="entries: one row per ledger entry; groups: one row per group of group_by")


class StatementParams(Schema):
    month: str = Field(..., description="YYYY-MM")
    tz: str | None = Field(None, description="Default: the team's time zone")


@router.get(
    "/reports/costs", response={200: CostReportOut, 403: ErrorOut, 422: ErrorOut},
    summary="Cost report: totals and groups for a period (finance)",
)
def costs(request, params: Query[ReportParams]):
    """Spend = captures + adjustments − credits (USD), entries dated by ``created_at`` in ``tz``.

    One group per distinct combination of ``group_by``; time buckets (day, week, month)
    are truncated in ``tz`` and keyed by their start. The groups' figures sum to ``totals``.
    Holds open at the period's end are ``outstanding_holds`` (not spend).
    """
    _require_reports(request)
    query = report_query_from_params(params.as_params())  # ReportParamError: 422 via config.api
    report = cost_report(query)
    filters = {k: v for k, v in query.filter_params().items() if k in ("team_id", "user_id", "provider", "provider_account_id")}
    return Status(200, {
        "period": _period_out(query.period),
        "group_by": list(query.group_by),
        "filters": filters,
        "totals": report.totals.as_dict(),
        "outstanding_holds": {
            "amount_usd": f"{report.outstanding.amount:.6f}", "count": report.outstanding.count, "as_of": report.outstanding.as_of,
        },
        "groups": [
            {"key": {d: _key_value(v) for d, v in g.key.items()}, "labels": g.labels, "figures": g.figures.as_dict()}
            for g in report.groups
        ],
    })


def _export(request, ext: str, params: ExportParams):
    _require_reports(request)
    query = report_query_from_params(params.as_params())  # ReportParamError: 422 via config.api
    if params.rows not in ("entries", "groups"):
        raise ReportParamError({"rows": ["Use entries or groups."]})
    try:
        return exports.export_response(query, rows=params.rows, ext=ext)
    except exports.ExportTooLarge as exc:
        raise DomainError("export_too_large", str(exc), status=413) from exc


@router.get(
    "/reports/costs.csv", response={403: ErrorOut, 422: ErrorOut},
    summary="Cost report as CSV, streamed (finance)",
    openapi_extra={"responses": {200: {"description": "UTF-8 CSV with a header row", "content": {"text/csv": {}}}}},
)
def costs_csv(request, params: Query[ExportParams]):
    """Columns: ``billing.exports.ENTRY_COLUMNS`` (rows=entries: one row per ledger entry, every
    kind; its ``spend_usd`` column sums to the report's spend) or ``group_columns`` (rows=groups).
    Times ISO 8601 with offset in ``tz``; amounts USD with six places. Streamed in constant memory."""
    return _export(request, "csv", params)


@router.get(
    "/reports/costs.xlsx", response={403: ErrorOut, 413: ErrorOut, 422: ErrorOut},
    summary="Cost report as an Excel workbook (finance)",
    openapi_extra={"responses": {200: {"description": "XLSX", "content": {exports.XLSX_TYPE: {}}}}},
)
def costs_xlsx(request, params: Query[ExportParams]):
    """Typed cells (times converted to ``tz``, Excel has no zones), a totals row; 413
    ``export_too_large`` past Excel's row limit (use the CSV)."""
    return _export(request, "xlsx", params)


@router.get(
    "/reports/reconciliation", response={200: ReconciliationOut, 403: ErrorOut, 422: ErrorOut},
    summary="Captured vs provider-reported cost vs balance change, per provider account (finance)",
)
def reconciliation_report(request, params: Query[PeriodParams]):
    """Per account: ``captured_usd``, ``reported_usd`` (PiAPI/PoYo per-task cost), ``cost_difference_usd``,
    opening/closing balance snapshots, ``balance_drop_usd``, ``captured_between_snapshots_usd``,
    ``balance_difference_usd`` and ``flagged`` (a difference of a cent or more)."""
    _require_reports(request)
    query = report_query_from_params(params.as_params())  # ReportParamError: 422 via config.api
    rows = reconciliation(period=query.period, provider_account_id=query.provider_account_id)
    return Status(200, {"period": _period_out(query.period), "accounts": [r.as_dict() for r in rows]})


def _statement(request, team_id: int, params: StatementParams, ext: str):
    from accounts.models import Team

    _require_reports(request)
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        raise NotFound("No such team.")
    period = statement_period(team=team, month=params.month, tz=params.tz)
    if ext == "csv":
        return exports.statement_csv_response(team=team, period=period)
    return exports.statement_xlsx_response(team=team, period=period)


@router.get(
    "/reports/statements/{team_id}.csv", response={403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="A team's monthly statement as CSV (finance)",
    openapi_extra={"responses": {200: {"description": "UTF-8 CSV", "content": {"text/csv": {}}}}},
)
def statement_csv(request, team_id: int, params: Query[StatementParams]):
    """One row per spend entry (captures, adjustments, credits) of the team in that month
    (aligned to the team's time zone unless ``tz``); ``amount_usd`` is signed (credits negative)."""
    return _statement(request, team_id, params, "csv")


@router.get(
    "/reports/statements/{team_id}.xlsx", response={403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="A team's monthly statement as an Excel workbook (finance)",
    openapi_extra={"responses": {200: {"description": "XLSX", "content": {exports.XLSX_TYPE: {}}}}},
)
def statement_xlsx(request, team_id: int, params: Query[StatementParams]):
    """Sheets "Statement" (one line per spend entry and a total) and "By member"."""
    return _statement(request, team_id, params, "xlsx")
