"""A team's monthly statement as CSV and XLSX (one line per spend entry, a total, and a sheet
by member); ``billing.exports`` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.http import FileResponse, StreamingHttpResponse
from django.utils import timezone

from billing.exports import (
    COUNT_FORMAT,
    DATETIME_FORMAT,
    USD_FORMAT,
    Kind,
    _RowWriter,
    _streaming,
    _title_rows,
    _typed_row,
    _workbook,
    _xlsx_cell,
    _xlsx_response,
    csv_chunks,
    entry_rows,
    statement_filename,
)
from billing.money import ZERO, money
from billing.reports import (
    Period,
    statement_entries,
)

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
