"""Cost reports: reads over the ledger for finance (reports, statements, reconciliation).

Rules (ARCHITECTURE.md: "reports are computed from entries"):

- **Only ledger entries count**, never generations: a generation's model, mode and
  resolution are read through the entry's ``generation`` for grouping only.
- **Spend** = captures + adjustments (signed) − credits, in USD. Holds and releases are
  *not* spend: a hold reserves money for a video in progress and its release or capture
  settles it. Holds still open at the end of the period are reported separately as
  **outstanding holds** (money that may still be charged).
- **Dating**: an entry belongs to the period that contains its ``created_at`` (when the
  money moved: a capture when the video succeeded, a credit when it was given), read in
  the report's time zone. Budgets date by ``effective_at`` (the hold's time) instead, so a
  video submitted on 31 October and finished on 1 November is October in the budget and
  November in the reports.
- **Counts**: *succeeded* = capture entries; the release entries (every generation whose
  hold was released uncharged) split by the generation's state into *canceled*, *expired*
  and *failed* (the rest: failed, refused at submit, reconciled as failed).
  *Average price* = captured ÷ succeeded.
- Periods are half-open ``[start, end)`` in an IANA zone; time buckets are truncated in
  that zone (``Trunc(..., tzinfo=zone)``), weeks start on Monday.

Who may read: superusers, staff, and users with a ``finance`` membership in any team
(finance sees every team): :func:`can_view_reports`.

The rooms (one concern each; import from here):

- :mod:`~billing.reports.periods`: the one period calculator (report periods and budget periods).
- :mod:`~billing.reports.cost`: the cost report, its query and the parsing of its parameters.
- :mod:`~billing.reports.charts`: the spend-over-time series and the SVG chart's geometry.
- :mod:`~billing.reports.statements`: a team's monthly chargeback statement.
- :mod:`~billing.reports.reconciliation`: captures vs provider-reported cost vs balance change.
- :mod:`~billing.reports.access`: who may read reports; :mod:`~billing.reports.errors`: bad parameters.
"""

from billing.reports.access import can_view_reports
from billing.reports.charts import (
    PALETTE,
    SpendSeries,
    bucket_starts,
    chart_bucket,
    spend_chart,
    spend_over_time,
)
from billing.reports.cost import (
    DIMENSION_LABELS,
    DIMENSIONS,
    MAX_DIMENSIONS,
    METRICS,
    NONE_LABEL,
    NONE_LABELS,
    PROVIDER_ACCOUNT_ID,
    PROVIDER_KIND,
    SPEND_DELTA,
    TIME_DIMENSIONS,
    CostReport,
    Figures,
    GroupRow,
    Outstanding,
    ReportQuery,
    amount_sum,
    cost_report,
    ledger_spend_total,
    outstanding_holds,
    parse_group_by,
    report_entries,
    report_query_from_params,
)
from billing.reports.errors import ReportParamError
from billing.reports.periods import (
    CALENDAR_UNITS,
    PERIOD_KINDS,
    Period,
    add_months,
    calendar_bounds,
    calendar_first_day,
    calendar_next_first_day,
    local_midnight,
    parse_month,
    period_bounds,
    period_resolve,
    time_zone_names,
    zone_for,
)
from billing.reports.reconciliation import RECONCILE_TOLERANCE, ReconciliationRow, reconciliation
from billing.reports.statements import statement_entries, statement_period

__all__ = [
    "CALENDAR_UNITS",
    "DIMENSIONS",
    "DIMENSION_LABELS",
    "MAX_DIMENSIONS",
    "METRICS",
    "NONE_LABEL",
    "NONE_LABELS",
    "PALETTE",
    "PERIOD_KINDS",
    "PROVIDER_ACCOUNT_ID",
    "PROVIDER_KIND",
    "RECONCILE_TOLERANCE",
    "SPEND_DELTA",
    "TIME_DIMENSIONS",
    "CostReport",
    "Figures",
    "GroupRow",
    "Outstanding",
    "Period",
    "ReconciliationRow",
    "ReportParamError",
    "ReportQuery",
    "SpendSeries",
    "add_months",
    "amount_sum",
    "bucket_starts",
    "calendar_bounds",
    "calendar_first_day",
    "calendar_next_first_day",
    "can_view_reports",
    "chart_bucket",
    "cost_report",
    "ledger_spend_total",
    "local_midnight",
    "outstanding_holds",
    "parse_group_by",
    "parse_month",
    "period_bounds",
    "period_resolve",
    "reconciliation",
    "report_entries",
    "report_query_from_params",
    "spend_chart",
    "spend_over_time",
    "statement_entries",
    "statement_period",
    "time_zone_names",
    "zone_for",
]
