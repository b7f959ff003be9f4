"""CSV and XLSX exports of cost reports and team statements.

CSV: UTF-8 (no BOM), a header row, RFC 4180 quoting and CRLF line ends, ISO 8601
timestamps with their UTC offset in the report's zone, amounts as Decimal USD with exactly
six places (``0.336000``), empty cells for absent values. Entry exports are streamed: the
rows come from ``QuerySet.iterator(chunk_size=EXPORT_CHUNK)`` (a server-side cursor on
PostgreSQL) and are written out in ~64 KB pieces, so memory does not grow with the rows.

XLSX (openpyxl, write-only mode: rows are streamed to a temporary file, then zipped):
typed cells — times as Excel datetimes, amounts and counts as numbers with a number
format — and a totals row. Excel cannot store time zones: times are converted to the
report's zone and the sheet's first row says which zone.

An export's totals equal the report page's (:func:`billing.reports.cost_report`) to the
cent: both sum the same entries (the CSV's ``spend_usd`` column, the page's spend).
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal

from django.db.models import F
from django.db.models.functions import Coalesce
from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.text import slugify

from billing.models import LedgerEntry
from billing.money import ZERO, money
from billing.reports import (
    DIMENSION_LABELS,
    TIME_DIMENSIONS,
    CostReport,
    Period,
    ReportQuery,
    cost_report,
    report_entries,
    statement_entries,
)

EXPORT_CHUNK = 2000
_FLUSH_BYTES = 64 * 1024
#: Excel's row limit is 1,048,576; leave room for the title, header and totals rows.
XLSX_MAX_ROWS = 1_048_000

USD_FORMAT = "#,##0.000000"
COUNT_FORMAT = "0"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"

CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Kind = LedgerEntry.Kind


class ExportTooLarge(Exception):
    """An XLSX export would pass Excel's row limit; ``rows`` is how many it needs. Use the CSV."""

    def __init__(self, rows: int):
        self.rows = rows
        super().__init__(f"{rows:,} rows do not fit in one Excel sheet (at most {XLSX_MAX_ROWS:,}): export CSV instead.")


# --- file names ---------------------------------------------------------------------------------
def costs_filename(query: ReportQuery, ext: str, *, rows: str = "entries") -> str:
    """``hailuo-costs-2026-11.csv`` (entries) or ``hailuo-costs-2026-11-by-team-month.xlsx`` (groups)."""
    suffix = "" if rows == "entries" else "-by-" + "-".join(query.group_by).replace("_", "-")
    return f"hailuo-costs-{query.period.slug}{suffix}.{ext}"


def statement_filename(team, period: Period, ext: str) -> str:
    """``hailuo-statement-studio-a-2026-11.csv``."""
    return f"hailuo-statement-{slugify(team.name) or team.pk}-{period.slug}.{ext}"


# --- entry rows ------------------------------------------------------------------------------------
ENTRY_COLUMNS = (
    "entry_id", "created_at", "effective_at", "kind", "amount_usd", "spend_usd", "team_id", "team", "user_id",
    "member", "provider", "provider_account_id", "provider_account", "generation_id", "model", "mode", "resolution",
    "duration_s", "generation_state", "reason",
)
_ENTRY_FIELDS = (
    "id", "created_at", "effective_at", "kind", "amount", "team_id", "team__name", "user_id", "user__email", "r_provider",
    "r_account", "r_account_label", "generation_id", "generation__model", "generation__mode", "generation__resolution",
    "generation__duration", "generation__state", "reason",
)
#: The columns of ENTRY_COLUMNS that hold USD amounts, times, counts.
_ENTRY_MONEY = {"amount_usd", "spend_usd"}
_ENTRY_TIMES = {"created_at", "effective_at"}
_ENTRY_INTS = {"entry_id", "team_id", "user_id", "provider_account_id", "duration_s"}
_ENTRY_CSV_TYPES = {
    "money_cols": [ENTRY_COLUMNS.index(c) for c in ("amount_usd", "spend_usd")],
    "time_cols": [ENTRY_COLUMNS.index(c) for c in ("created_at", "effective_at")],
}


def spend_of(kind: str, amount: Decimal) -> Decimal:
    """An entry's contribution to spend, USD: capture and adjustment ``+amount``, credit ``−amount``, else 0."""
    if kind in (Kind.CAPTURE, Kind.ADJUSTMENT):
        return amount
    if kind == Kind.CREDIT:
        return -amount
    return ZERO


def entry_rows(entries, zone) -> Iterator[list]:
    """Typed rows (in :data:`ENTRY_COLUMNS` order) of ``entries`` (a :func:`report_entries` queryset).

    Times are aware datetimes in ``zone``; amounts Decimal USD; ids ints; the generation id
    a string; absent values None. Streams with ``iterator(chunk_size=EXPORT_CHUNK)``.
    """
    values = entries.annotate(
        r_account_label=Coalesce(F("provider_account__label"), F("generation__provider_account__label"))
    ).values_list(*_ENTRY_FIELDS)
    for (pk, created, effective, kind, amount, team_id, team, user_id, email, provider, account_id, account,
         generation_id, model, mode, resolution, duration, state, reason) in values.iterator(chunk_size=EXPORT_CHUNK):
        yield [
            pk, created.astimezone(zone), effective.astimezone(zone), kind, amount, spend_of(kind, amount), team_id, team,
            user_id, email, provider, account_id, account, str(generation_id) if generation_id else None, model, mode,
            resolution, duration, state, reason or None,
        ]


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:.6f}"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def csv_chunks(
    header: Iterable[str], rows: Iterable[list], *, money_cols: Iterable[int] | None = None,
    time_cols: Iterable[int] | None = None,
) -> Iterator[bytes]:
    """UTF-8 CSV bytes: ``header`` then each row, in pieces of about 64 KB.

    Cells: Decimal → six places, datetime → ISO 8601 (with offset when aware), None → empty.
    Given ``money_cols`` and ``time_cols`` (column indexes), only those cells are converted
    (the fast path for big exports: ints and strings go to the csv module as they are);
    otherwise every cell is inspected.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    fast = money_cols is not None or time_cols is not None
    money_at, time_at = tuple(money_cols or ()), tuple(time_cols or ())
    for row in rows:
        if fast:
            for i in money_at:
                if row[i] is not None:
                    row[i] = f"{row[i]:.6f}"
            for i in time_at:
                if row[i] is not None:
                    row[i] = row[i].isoformat()
            writer.writerow(row)
        else:
            writer.writerow([_csv_cell(v) for v in row])
        if buffer.tell() >= _FLUSH_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _streaming(chunks: Iterator[bytes], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=CSV_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def entries_csv_response(query: ReportQuery) -> StreamingHttpResponse:
    """Streamed CSV, one row per ledger entry of the report (every kind; ``spend_usd`` sums to the spend)."""
    rows = entry_rows(report_entries(query), query.period.zone)
    return _streaming(csv_chunks(ENTRY_COLUMNS, rows, **_ENTRY_CSV_TYPES), costs_filename(query, "csv"))


# --- group rows -------------------------------------------------------------------------------------
FIGURE_COLUMNS = (
    "spend_usd", "captured_usd", "adjustments_usd", "credits_usd", "held_usd", "released_usd",
    "succeeded", "failed", "entries", "average_price_usd",
)
_ID_DIMENSIONS = {"team", "member", "provider_account", "project"}


def group_columns(group_by: tuple[str, ...]) -> list[str]:
    """Header of a per-group export: per dimension an id column (team, member, account, project) or a
    ``<bucket>_start`` column (time), then its label, then :data:`FIGURE_COLUMNS`."""
    cols = []
    for d in group_by:
        if d in _ID_DIMENSIONS:
            cols.append(f"{d}_id")
        elif d in TIME_DIMENSIONS:
            cols.append(f"{d}_start")
        cols.append(d)
    return cols + list(FIGURE_COLUMNS)


def _figure_values(f) -> list:
    return [f.spend, f.captured, f.adjustments, f.credits, f.held, f.released, f.succeeded, f.failed, f.entries,
            f.average_price]


def group_rows(report: CostReport) -> Iterator[list]:
    """Typed rows (in :func:`group_columns` order) of a computed report's groups."""
    zone = report.period.zone
    for g in report.groups:
        row = []
        for d in report.query.group_by:
            value = g.key[d]
            if d in TIME_DIMENSIONS:
                row.append(value.astimezone(zone) if value is not None else None)
            elif d in _ID_DIMENSIONS:
                row.append(value)
            elif d == "kept":  # "Starred" / "Not starred" / "(not a generation)"
                row.append(g.labels[d])
                continue
            else:  # provider kind, model, mode, resolution: the raw value (empty when absent)
                row.append(value or None)
                continue
            row.append(g.labels[d])
        yield row + _figure_values(g.figures)


def groups_csv_response(report: CostReport) -> StreamingHttpResponse:
    """CSV, one row per group of ``report`` (no totals row: every row is data)."""
    return _streaming(
        csv_chunks(group_columns(report.query.group_by), group_rows(report)),
        costs_filename(report.query, "csv", rows="groups"),
    )


# --- XLSX -------------------------------------------------------------------------------------------
def _workbook():
    from openpyxl import Workbook

    return Workbook(write_only=True)


def _xlsx_cell(sheet, value, *, bold: bool = False, number_format: str | None = None):
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    if isinstance(value, datetime):
        value = value.replace(tzinfo=None)  # already in the report's zone; Excel has no zones
        number_format = number_format or DATETIME_FORMAT
    cell = WriteOnlyCell(sheet, value=value)
    if number_format:
        cell.number_format = number_format
    if bold:
        cell.font = Font(bold=True)
    return cell


class _RowWriter:
    """Fast data rows for write-only sheets: cells of formatted columns share one prepared style;
    the other values (text, ints, None) are appended as they are (General format)."""

    def __init__(self, sheet, formats: list[str | None]):
        self.sheet = sheet
        self.styles = {}
        for i, fmt in enumerate(formats):
            if fmt and fmt != COUNT_FORMAT:  # ints read fine in General format
                self.styles[i] = _xlsx_cell(sheet, 0, number_format=fmt)._style

    def __call__(self, row: list) -> list:
        from openpyxl.cell import WriteOnlyCell

        out = list(row)
        for i, style in self.styles.items():
            value = out[i]
            if value is None:
                continue
            if isinstance(value, datetime):
                value = value.replace(tzinfo=None)  # already in the report's zone; Excel has no zones
            cell = WriteOnlyCell(self.sheet, value=value)
            cell._style = style
            out[i] = cell
        return out


def _typed_row(sheet, row, formats: list[str | None], *, bold: bool = False) -> list:
    return [_xlsx_cell(sheet, v, bold=bold, number_format=fmt if v is not None else None) for v, fmt in zip(row, formats, strict=False)]


def _zone_note(period: Period) -> str:
    offset = period.start.strftime("%z")
    return (f"Times are in {period.tz} (UTC{offset[:3]}:{offset[3:]} at the start of the period; "
            "Excel cannot store time zones). Amounts in USD.")


def _title_rows(sheet, title: str, period: Period) -> None:
    sheet.append([_xlsx_cell(sheet, title, bold=True)])
    sheet.append([_xlsx_cell(sheet, f"Period: {period.label} ({period.start.isoformat()} to {period.end.isoformat()}, end excluded)")])
    sheet.append([_xlsx_cell(sheet, _zone_note(period))])
    sheet.append([])


def _xlsx_response(workbook, filename: str) -> FileResponse:
    handle = tempfile.TemporaryFile()
    workbook.save(handle)
    handle.seek(0)
    response = FileResponse(handle, as_attachment=True, filename=filename, content_type=XLSX_TYPE)
    response["Cache-Control"] = "no-store"
    return response


def _entry_formats() -> list[str | None]:
    out = []
    for c in ENTRY_COLUMNS:
        if c in _ENTRY_MONEY:
            out.append(USD_FORMAT)
        elif c in _ENTRY_TIMES:
            out.append(DATETIME_FORMAT)
        elif c in _ENTRY_INTS:
            out.append(COUNT_FORMAT)
        else:
            out.append(None)
    return out


def entries_workbook(query: ReportQuery):
    """An openpyxl write-only workbook: sheet "Entries", one row per ledger entry, then a totals row.

    Layout: three title rows (report, period, zone note), a blank row, the header
    (:data:`ENTRY_COLUMNS`), the entries, and a ``Total`` row: the number of entries and
    the sum of ``spend_usd`` (an exact Decimal sum written as a value, so it reads back
    without a spreadsheet recalculating). Raises :class:`ExportTooLarge` beyond :data:`XLSX_MAX_ROWS`.
    """
    entries = report_entries(query)
    count = entries.count()
    if count > XLSX_MAX_ROWS:
        raise ExportTooLarge(count)
    workbook = _workbook()
    sheet = workbook.create_sheet("Entries")
    _title_rows(sheet, f"Hailuo Studio costs: ledger entries, {query.period.label}", query.period)
    sheet.append([_xlsx_cell(sheet, c, bold=True) for c in ENTRY_COLUMNS])
    formats = _entry_formats()
    spend_index = ENTRY_COLUMNS.index("spend_usd")
    total = ZERO
    rows = 0
    write = _RowWriter(sheet, formats)
    for row in entry_rows(entries, query.period.zone):
        total += row[spend_index]
        rows += 1
        sheet.append(write(row))
    totals = [None] * len(ENTRY_COLUMNS)
    totals[0], totals[3], totals[spend_index] = "Total", f"{rows} entries", money(total)
    sheet.append(_typed_row(sheet, totals, formats, bold=True))
    return workbook


def entries_xlsx_response(query: ReportQuery) -> FileResponse:
    """XLSX download of :func:`entries_workbook`; raises :class:`ExportTooLarge`."""
    return _xlsx_response(entries_workbook(query), costs_filename(query, "xlsx"))


def _group_formats(group_by: tuple[str, ...]) -> list[str | None]:
    out: list[str | None] = []
    for d in group_by:
        if d in _ID_DIMENSIONS:
            out.append(COUNT_FORMAT)
        elif d in TIME_DIMENSIONS:
            out.append("yyyy-mm-dd")
        out.append(None)
    money_cols = {"spend_usd", "captured_usd", "adjustments_usd", "credits_usd", "held_usd", "released_usd", "average_price_usd"}
    return out + [USD_FORMAT if c in money_cols else COUNT_FORMAT for c in FIGURE_COLUMNS]


def groups_workbook(report: CostReport):
    """An openpyxl write-only workbook: sheet "Report", one row per group, a totals row, outstanding holds.

    Layout: three title rows, a blank row, the header (:func:`group_columns`, with
    ``<bucket>_start`` as an Excel date in the report's zone), the groups, a ``Total`` row
    (the report's totals, whose ``average_price_usd`` is captured ÷ succeeded), a blank
    row and an ``Outstanding holds`` row (amount and count as of the period's end).
    """
    query = report.query
    workbook = _workbook()
    sheet = workbook.create_sheet("Report")
    dims = ", ".join(DIMENSION_LABELS[d].lower() for d in query.group_by)
    _title_rows(sheet, f"Hailuo Studio costs by {dims}, {report.period.label}", report.period)
    columns = group_columns(query.group_by)
    sheet.append([_xlsx_cell(sheet, c, bold=True) for c in columns])
    formats = _group_formats(query.group_by)
    for row in group_rows(report):
        sheet.append(_typed_row(sheet, row, formats))
    lead = len(columns) - len(FIGURE_COLUMNS)
    totals = ["Total"] + [None] * (lead - 1) + _figure_values(report.totals)
    sheet.append(_typed_row(sheet, totals, formats, bold=True))
    sheet.append([])
    o = report.outstanding
    sheet.append([
        _xlsx_cell(sheet, f"Outstanding holds at {o.as_of.astimezone(report.period.zone):%Y-%m-%d %H:%M} (not spend)"),
        _xlsx_cell(sheet, o.amount, number_format=USD_FORMAT), _xlsx_cell(sheet, o.count, number_format=COUNT_FORMAT),
    ])
    return workbook


def groups_xlsx_response(report: CostReport) -> FileResponse:
    """XLSX download of :func:`groups_workbook`."""
    return _xlsx_response(groups_workbook(report), costs_filename(report.query, "xlsx", rows="groups"))


# --- team statements ----------------------------------------------------------------------------
STATEMENT_COLUMNS = (
    "date", "entry_id", "kind", "member", "description", "provider", "provider_account", "generation_id",
    "model", "mode", "resolution", "duration_s", "amount_usd",
)


def _description(kind, model, mode, resolution, duration, reason) -> str:
    if kind == Kind.CAPTURE:
        return " · ".join(str(x) for x in (model, mode, resolution, f"{duration} s" if duration else None) if x)
    return reason or kind


def statement_rows(*, team, period: Period) -> Iterator[list]:
    """Typed rows (in :data:`STATEMENT_COLUMNS` order) of a team's spend entries in ``period``.

    ``amount_usd`` is the signed spend (credits negative); ``date`` an aware datetime in the period's zone.
    """
    zone = period.zone
    for row in entry_rows(statement_entries(team_id=team.pk, period=period), zone):
        (pk, created, _eff, kind, _amount, spend, _tid, _team, _uid, email, provider, _aid, account, generation_id,
         model, mode, resolution, duration, _state, reason) = row
        yield [created, pk, kind, email, _description(kind, model, mode, resolution, duration, reason), provider, account,
               generation_id, model, mode, resolution, duration, spend]


def statement_csv_response(*, team, period: Period) -> StreamingHttpResponse:
    """Streamed CSV statement of ``team`` for ``period`` (one row per spend entry, no totals row)."""
    types = {"money_cols": [len(STATEMENT_COLUMNS) - 1], "time_cols": [0]}
    return _streaming(csv_chunks(STATEMENT_COLUMNS, statement_rows(team=team, period=period), **types),
                      statement_filename(team, period, "csv"))


def statement_workbook(*, team, period: Period, generated_at: datetime | None = None):
    """Statement XLSX: sheet "Statement" (one row per spend entry and a total) and sheet
    "By member" (member, succeeded videos, spend, and a total). Amounts USD, times in the period's zone."""
    zone = period.zone
    workbook = _workbook()
    sheet = workbook.create_sheet("Statement")
    _title_rows(sheet, f"Hailuo Studio statement: {team.name}, {period.label}", period)
    generated = (generated_at or timezone.now()).astimezone(zone)
    sheet.append([_xlsx_cell(sheet, "Generated"), _xlsx_cell(sheet, generated)])
    sheet.append([])
    sheet.append([_xlsx_cell(sheet, c, bold=True) for c in STATEMENT_COLUMNS])
    formats: list[str | None] = [DATETIME_FORMAT, COUNT_FORMAT] + [None] * 9 + [COUNT_FORMAT, USD_FORMAT]
    total = ZERO
    per_member: dict[str, list] = {}
    write = _RowWriter(sheet, formats)
    for row in statement_rows(team=team, period=period):
        sheet.append(write(row))
        total += row[-1]
        bucket = per_member.setdefault(row[3] or "", [0, ZERO])
        bucket[0] += 1 if row[2] == Kind.CAPTURE else 0
        bucket[1] += row[-1]
    totals: list = ["Total"] + [None] * (len(STATEMENT_COLUMNS) - 2) + [money(total)]
    sheet.append(_typed_row(sheet, totals, formats, bold=True))
    members = workbook.create_sheet("By member")
    _title_rows(members, f"{team.name}, {period.label}: spend by member", period)
    members.append([_xlsx_cell(members, c, bold=True) for c in ("member", "succeeded", "spend_usd")])
    for email, (count, spend) in sorted(per_member.items()):
        members.append([_xlsx_cell(members, email), _xlsx_cell(members, count, number_format=COUNT_FORMAT),
                        _xlsx_cell(members, money(spend), number_format=USD_FORMAT)])
    members.append([_xlsx_cell(members, "Total", bold=True),
                    _xlsx_cell(members, sum(c for c, _ in per_member.values()), bold=True, number_format=COUNT_FORMAT),
                    _xlsx_cell(members, money(total), bold=True, number_format=USD_FORMAT)])
    return workbook


def statement_xlsx_response(*, team, period: Period) -> FileResponse:
    """XLSX download of :func:`statement_workbook`."""
    return _xlsx_response(statement_workbook(team=team, period=period), statement_filename(team, period, "xlsx"))


def export_response(query: ReportQuery, *, rows: str, ext: str):
    """The export of ``query``, shared by ``/reports/export.<ext>`` and the REST API.

    ``rows``: ``"entries"`` (one row per ledger entry) or ``"groups"`` (one per group of the
    report); ``ext``: ``"csv"`` (streamed) or ``"xlsx"``. Raises ``ValueError`` for another
    ``rows`` or ``ext``, and :class:`ExportTooLarge` when an XLSX would pass Excel's row limit.
    """
    if rows not in ("entries", "groups") or ext not in ("csv", "xlsx"):
        raise ValueError(f"unknown export: rows={rows!r}, ext={ext!r}")
    if rows == "groups":
        report = cost_report(query)
        return groups_csv_response(report) if ext == "csv" else groups_xlsx_response(report)
    return entries_csv_response(query) if ext == "csv" else entries_xlsx_response(query)
