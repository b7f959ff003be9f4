"""Finance pages under /reports/: the cost report (HTMX filters, SVG chart), exports,
team statements and reconciliation. Only :func:`billing.reports.can_view_reports` users
(superuser, staff, finance role) get in; anyone else logged in gets 403."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from billing import exports
from billing.reports import (
    DIMENSION_LABELS,
    PERIOD_KINDS,
    TIME_DIMENSIONS,
    ReportParamError,
    ReportQuery,
    can_view_reports,
    cost_report,
    period_resolve,
    reconciliation,
    report_query_from_params,
    spend_chart,
    spend_over_time,
    statement_period,
    time_zone_names,
)

PERIOD_LABELS = {
    "this_month": "This month", "last_month": "Last month", "this_quarter": "This quarter",
    "month": "A month…", "custom": "Custom dates…",
}


def finance_required(view):
    """Log in first; then only users who may see reports (else 403)."""

    @wraps(view)
    @login_required
    def wrapped(request, *args, **kwargs):
        if not can_view_reports(request.user):
            raise PermissionDenied("Reports need the finance role.")
        return view(request, *args, **kwargs)

    return wrapped


def _default_tz(user) -> str:
    team = user.primary_team
    return team.time_zone if team and team.time_zone else "UTC"


def _form_and_query(request) -> tuple[dict, ReportQuery | None]:
    """The filter form's context and the query its GET parameters describe; on bad parameters
    the query is None and ``context["errors"]`` maps each field to its messages (answer 422)."""
    context = _form_context(request, request.GET)
    try:
        return context, report_query_from_params(request.GET, default_tz=_default_tz(request.user))
    except ReportParamError as exc:
        context["errors"] = exc.fields
        return context, None


def _form_context(request, params) -> dict:
    from accounts.models import Team
    from providers.models import ProviderAccount
    from providers.registry import kind_choices

    group_by = [g for g in (params.get("group_by") or "").split(",") if g]
    group = params.get("group") or next((g for g in group_by if g not in TIME_DIMENSIONS), "" if group_by else "provider")
    time = params.get("time") or next((g for g in group_by if g in TIME_DIMENSIONS), "")
    return {
        "params": params,
        "form": {
            "period": params.get("period") or "this_month", "month": params.get("month") or "",
            "from": params.get("from") or "", "to": params.get("to") or "",
            "tz": params.get("tz") or _default_tz(request.user), "group": group, "time": time,
            "team_id": params.get("team_id") or "", "provider": params.get("provider") or "",
            "provider_account_id": params.get("provider_account_id") or "",
        },
        "period_choices": [(k, PERIOD_LABELS[k]) for k in PERIOD_KINDS],
        "group_choices": [(d, DIMENSION_LABELS[d]) for d in DIMENSION_LABELS if d not in TIME_DIMENSIONS],
        "time_choices": [(d, f"by {d}") for d in TIME_DIMENSIONS],
        "teams": Team.objects.order_by("name"),
        "kinds": kind_choices(),
        "accounts": ProviderAccount.objects.order_by("kind", "label"),
        "time_zones": time_zone_names(),
    }


def _export_links(query) -> dict:
    base = query.filter_params()
    links = {}
    for ext in ("csv", "xlsx"):
        for rows in ("entries", "groups"):
            links[f"{rows}_{ext}"] = f"{reverse('reports:export', args=[ext])}?{urlencode({**base, 'rows': rows})}"
    return links


@finance_required
@require_GET
def index(request):
    """The cost report. GET parameters: see :func:`billing.reports.report_query_from_params`;
    the web form sends ``group`` and ``time`` instead of ``group_by``. HTMX requests get
    only the ``#report`` fragment. Bad parameters: the form with errors, status 422."""
    context, query = _form_and_query(request)
    if query is not None:
        report = cost_report(query)
        bucket, starts, series = spend_over_time(query)
        from accounts.models import Team

        context.update(
            query=query, report=report, chart=spend_chart(bucket, starts, series, query.period.zone),
            links=_export_links(query), dimensions=[DIMENSION_LABELS[d] for d in query.group_by],
            statement_month=query.period.start.strftime("%Y-%m"),
            statement_teams=Team.objects.order_by("name") if query.team_id is None else Team.objects.filter(pk=query.team_id),
        )
    template = "billing/partials/report.html" if request.htmx else "billing/reports.html"
    return render(request, template, context, status=422 if "errors" in context else 200)


@finance_required
@require_GET
def export(request, ext: str):
    """``/reports/export.csv`` or ``.xlsx`` with the report's parameters and ``rows=entries`` (one
    row per ledger entry, default) or ``rows=groups`` (one per group). 400 for bad parameters;
    413 when an XLSX would pass Excel's row limit."""
    try:
        query = report_query_from_params(request.GET, default_tz=_default_tz(request.user))
    except ReportParamError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    try:
        return exports.export_response(query, rows=request.GET.get("rows") or "entries", ext=ext)
    except ValueError as exc:
        raise Http404("unknown export") from exc
    except exports.ExportTooLarge as exc:
        return HttpResponse(str(exc), status=413, content_type="text/plain; charset=utf-8")


@finance_required
@require_GET
def statement(request, team_id: int, month: str, ext: str):
    """``/reports/statements/<team>/<YYYY-MM>.csv|.xlsx``: a team's monthly chargeback statement,
    the month aligned to the team's time zone (``?tz=`` overrides)."""
    from accounts.models import Team

    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        raise Http404("no such team")
    try:
        period = statement_period(team=team, month=month, tz=request.GET.get("tz") or None)
    except ReportParamError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    if ext == "csv":
        return exports.statement_csv_response(team=team, period=period)
    return exports.statement_xlsx_response(team=team, period=period)


@finance_required
@require_GET
def reconciliation_page(request):
    """Per provider account: captured vs provider-reported cost vs balance change, differences highlighted;
    then the generations still in needs_reconciliation (age, amount at risk: all of them, whatever
    the period) and the per-second charges whose archived video has another length (issue 11)."""
    from generations.selectors import duration_mismatches
    from generations.services import reconciliation_open

    context, query = _form_and_query(request)
    if query is not None:
        account_id = query.provider_account_id
        context.update(query=query, rows=reconciliation(period=query.period, provider_account_id=account_id))
        open_rows = [r for r in reconciliation_open() if account_id is None or r.provider_account_id == account_id]
        context.update(
            open_reconciliations=open_rows,
            open_at_risk=sum((r.at_risk for r in open_rows), start=Decimal(0)),
            duration_flags=duration_mismatches(start=query.period.start, end=query.period.end, provider_account_id=account_id),
        )
    template = "billing/partials/reconciliation.html" if request.htmx else "billing/reconciliation.html"
    return render(request, template, context, status=422 if "errors" in context else 200)


@finance_required
@require_POST
def snapshot_now(request):
    """Take a balance snapshot of every enabled provider account now, then back to reconciliation."""
    from billing.balances import balance_snapshots_take_all

    result = balance_snapshots_take_all()
    messages.info(
        request, f"Balance snapshots: {result['taken']} taken, {result['skipped']} skipped (no balance endpoint or unreachable)."
    )
    back = reverse("reports:reconciliation")
    query = request.POST.get("next_query", "")
    return redirect(f"{back}?{query}" if query else back)



# --- a member's own spending ------------------------------------------------------------------
@login_required
@require_GET
def my_spending(request):
    """"My spending": the logged-in member's own ledger for one month (``?month=YYYY-MM``,
    default this month) in their team's time zone: spend by day and by model, and the total.

    Figures come from :func:`billing.reports.cost_report` filtered to the user (every team),
    so the total is the ledger's own sum for the month (USD, shown exactly, to the cent or
    finer), and the day rows and the model rows each add up to it. No finance role needed:
    a member sees only their own entries. A bad month answers 422 with the message."""
    from providers.registry import ADAPTERS, model_label

    tz = _default_tz(request.user)
    month = (request.GET.get("month") or "").strip()
    status, error = 200, ""
    try:
        period = period_resolve("month" if month else "this_month", tz=tz, month=month or None)
    except ReportParamError as exc:
        status, error = 422, " ".join(m for ms in exc.fields.values() for m in ms)
        period = period_resolve("this_month", tz=tz)
    by_day = cost_report(ReportQuery(period=period, group_by=("day",), user_id=request.user.pk))
    by_model = cost_report(ReportQuery(period=period, group_by=("provider", "model"), user_id=request.user.pk))
    models = []
    for g in by_model.groups:
        kind, model = g.key["provider"], g.key["model"]
        provider = ADAPTERS[kind].label if kind in ADAPTERS else g.labels["provider"]
        name = model_label(kind, model) if kind and model else g.labels["model"]
        models.append({"name": name, "model_id": model or "", "provider": provider, "figures": g.figures})
    models.sort(key=lambda m: (-m["figures"].spend, m["name"], m["provider"]))
    first = period.start.astimezone(period.zone).date()
    previous = (first.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    following = (first.replace(day=28) + timedelta(days=4)).strftime("%Y-%m")
    return render(request, "billing/my_spending.html", {
        "period": period, "month": first.strftime("%Y-%m"), "error": error,
        "days": by_day.groups, "models": models, "totals": by_day.totals,
        "previous": previous, "following": following,
    }, status=status)
