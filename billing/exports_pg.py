"""The PostgreSQL export paths: the entries CSV and XLSX streamed by ``COPY (SELECT …) TO STDOUT``
(psycopg 3's ``cursor.copy()``), with the spend column, the zone conversion and (for XLSX) each
row's XML computed in SQL. Byte-identical CSV and cell-identical XLSX to the portable paths in
``billing.exports``, which dispatches here on PostgreSQL and re-exports these names.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Case, Count, DecimalField, F, Func, Sum, TextField, Value, When
from django.db.models.functions import Cast, Coalesce, NullIf

from billing.exports import (
    _ENTRY_INTS,
    _ENTRY_MONEY,
    _ENTRY_TIMES,
    _FLUSH_BYTES,
    DATETIME_FORMAT,
    ENTRY_COLUMNS,
    ENTRY_WIDTHS,
    HEADER_ROW,
    USD_FORMAT,
    XLSX_MAX_ROWS,
    ExportTooLarge,
    Kind,
    _column_widths,
    _entry_formats,
    _zone_note,
)
from billing.models import LedgerEntry
from billing.money import ZERO, money
from billing.reports import (
    ReportQuery,
    report_entries,
)

# --- the PostgreSQL path: COPY (SELECT …) TO STDOUT ----------------------------------------------------
#: ISO 8601 like ``datetime.isoformat()`` of the time in the session's zone: ``2026-11-03T12:04:05+01:00``,
#: ``.123456`` before the offset only when there are microseconds. One ``to_char`` (one conversion to
#: the zone) and a ``replace`` of the only place ``.000000`` can occur: a third of the server's CPU of
#: three ``to_char`` calls and a ``CASE`` per time (bench/README.md, "export_ledger.py").
_ISO_SQL = "replace(to_char(%(expressions)s, 'YYYY-MM-DD\"T\"HH24:MI:SS.USTZH:TZM'), '.000000', '')"


def _iso(field: str) -> Func:
    return Func(F(field), template=_ISO_SQL, output_field=TextField())


def _text(expression) -> NullIf:
    # COPY writes an empty string as "" and NULL as nothing; today's CSV writes both as nothing.
    return NullIf(expression if not isinstance(expression, str) else F(expression), Value(""), output_field=TextField())


def entry_copy_queryset(entries):
    """``entries`` (a :func:`report_entries` queryset) as a ``values_list`` whose columns are
    :data:`ENTRY_COLUMNS` computed in SQL as today's CSV writes them: times as ISO 8601 text in
    the session's time zone, ``spend_usd`` as a signed numeric (capture and adjustment
    ``+amount``, credit ``−amount``, else 0; see :func:`spend_of`), empty text as NULL."""
    spend = Case(
        When(kind__in=[Kind.CAPTURE, Kind.ADJUSTMENT], then=F("amount")),
        When(kind=Kind.CREDIT, then=-F("amount")),
        default=Value(ZERO),
        output_field=DecimalField(max_digits=LedgerEntry._meta.get_field("amount").max_digits, decimal_places=6),
    )
    return entries.annotate(
        c_created=_iso("created_at"), c_effective=_iso("effective_at"), c_kind=_text("kind"), c_spend=spend,
        c_team=_text("team__name"), c_email=_text("user__email"), c_provider=_text("r_provider"),
        c_account=_text(Coalesce(F("provider_account__label"), F("generation__provider_account__label"))),
        c_generation=Cast("generation_id", TextField()), c_model=_text("generation__model"),
        c_mode=_text("generation__mode"), c_resolution=_text("generation__resolution"),
        c_state=_text("generation__state"), c_reason=_text("reason"),
    ).values_list(
        "id", "c_created", "c_effective", "c_kind", "amount", "c_spend", "team_id", "c_team", "user_id", "c_email",
        "c_provider", "r_account", "c_account", "c_generation", "c_model", "c_mode", "c_resolution",
        "generation__duration", "c_state", "c_reason",
    )


def _crlf(data: bytes, inside: bool) -> tuple[bytes, bool]:
    """``data`` (a piece of COPY's CSV) with its record ends ``\n`` made ``\r\n``, as the csv module
    writes them; newlines inside quoted cells stay as they are. ``inside``: whether ``data`` starts
    inside a quoted cell; returns the new bytes and whether they end inside one."""
    if b'"' not in data:
        return (data if inside else data.replace(b"\n", b"\r\n")), inside
    parts = data.split(b'"')
    start = 1 if inside else 0  # parts outside quotes: every other one, from `start`
    for i in range(start, len(parts), 2):
        parts[i] = parts[i].replace(b"\n", b"\r\n")
    return b'"'.join(parts), inside ^ (len(parts) % 2 == 0)


def entries_csv_copy_chunks(entries, tz: str) -> Iterator[bytes]:
    """PostgreSQL only: the CSV of ``entries`` (a :func:`report_entries` queryset) in ~64 KB pieces,
    byte for byte what :func:`csv_chunks` writes from :func:`entry_rows`, with times in ``tz``
    (an IANA name).

    One ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` read through psycopg 3's ``cursor.copy()``,
    every column computed in SQL (:func:`entry_copy_queryset`), in a transaction whose
    ``TimeZone`` is ``tz`` (set back afterwards). Python only turns COPY's ``\n`` record ends
    into CRLF. Memory stays flat: nothing is held beyond one piece.
    """
    header = io.StringIO()
    csv.writer(header).writerow(ENTRY_COLUMNS)
    yield header.getvalue().encode("utf-8")
    queryset = entry_copy_queryset(entries)
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
        # The zone for to_char; no JIT: compiling the expressions costs more than it saves on one pass.
        cursor.execute("SELECT current_setting('TimeZone'), current_setting('jit'), set_config('TimeZone', %s, true), "
                       "set_config('jit', 'off', true)", [tz])
        previous, jit = cursor.fetchone()[:2]
        try:
            inside = False
            buffer = bytearray()
            with cursor.cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", params) as copy:
                for data in copy:
                    buffer += data
                    if len(buffer) >= _FLUSH_BYTES:
                        out, inside = _crlf(bytes(buffer), inside)
                        buffer.clear()
                        yield out
            out, inside = _crlf(bytes(buffer), inside)
            if out:
                yield out
        finally:
            cursor.execute("SELECT set_config('TimeZone', %s, true), set_config('jit', %s, true)", [previous, jit])


# --- the PostgreSQL XLSX path: the sheet's rows as XML from COPY ------------------------------------
_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_XLSX_PARTS = {
    "[Content_Types].xml": _XML_HEAD + (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        "</Types>"),
    "_rels/.rels": _XML_HEAD + (
        f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
        "</Relationships>"),
    "xl/workbook.xml": _XML_HEAD + (
        f'<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets><sheet name="Entries" sheetId="1" r:id="rId1"/></sheets></workbook>'),
    "xl/_rels/workbook.xml.rels": _XML_HEAD + (
        f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/></Relationships>'),
    # Cell styles (s=): 0 General, 1 USD, 2 date-time, 3 bold, 4 bold USD, 5 bold count.
    "xl/styles.xml": _XML_HEAD + (
        f'<styleSheet xmlns="{_NS}"><numFmts count="2"><numFmt numFmtId="164" formatCode="{USD_FORMAT}"/>'
        f'<numFmt numFmtId="165" formatCode="{DATETIME_FORMAT}"/></numFmts>'
        '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
        '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        '<cellXfs count="6"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
        '<xf numFmtId="164" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1" applyNumberFormat="1"/>'
        '<xf numFmtId="1" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1" applyNumberFormat="1"/></cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'),
}
_S_USD, _S_TIME, _S_BOLD, _S_BOLD_USD, _S_BOLD_COUNT = 1, 2, 3, 4, 5
_COLUMN_LETTERS = [chr(ord("A") + i) for i in range(len(ENTRY_COLUMNS))]
#: XML 1.0 forbids these; openpyxl refuses them, the database path drops them.
_XML_ILLEGAL_SQL = "[\\x01-\\x08\\x0b\\x0c\\x0e-\\x1f]"


def _xml_text(value: str) -> str:
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("\r", "&#13;").replace("\n", "&#10;").replace("\t", "&#9;")


def _xml_cell(ref: str, value, style: int = 0) -> str:
    s = f' s="{style}"' if style else ""
    if value is None:
        return ""
    if isinstance(value, str):
        return f'<c r="{ref}"{s} t="inlineStr"><is><t xml:space="preserve">{_xml_text(value)}</t></is></c>'
    return f'<c r="{ref}"{s}><v>{value:f}</v></c>' if isinstance(value, Decimal) else f'<c r="{ref}"{s}><v>{value}</v></c>'


def _xml_row(n: int, cells: list[str]) -> str:
    return f'<row r="{n}">{"".join(cells)}</row>'


def _sql_cell(letter: str, column: str, kind: str) -> str:
    """SQL text of one cell of row ``n``; NULL (left out by ``concat``) when the value is."""
    ref = f"'<c r=\"{letter}' || n || '\""
    if kind == "text":
        text = (f"replace(replace(replace(replace(replace(replace(regexp_replace({column}, E'{_XML_ILLEGAL_SQL}', '', 'g'), "
                "'&', '&amp;'), '<', '&lt;'), '>', '&gt;'), E'\\r', '&#13;'), E'\\n', '&#10;'), E'\\t', '&#9;')")
        return f"{ref} t=\"inlineStr\"><is><t xml:space=\"preserve\">' || NULLIF({text}, '') || '</t></is></c>'"
    style = {"int": "", "usd": f' s="{_S_USD}"', "time": f' s="{_S_TIME}"'}[kind]
    if kind == "time":  # Excel's serial day number (1899-12-30 is day 0) of the time in the report's zone
        column = f"(extract(epoch FROM ({column} AT TIME ZONE %s)) / 86400 + 25569)"
    return f"{ref}{style}><v>' || {column} || '</v></c>'"


def entry_xlsx_sql(entries, tz: str) -> tuple[str, list]:
    """``(sql, params)``: one text column, the ``<row>`` XML of each entry of ``entries`` (a
    :func:`report_entries` queryset) from sheet row 6 on, cells as :func:`entries_workbook`
    writes them (times as Excel serial days in ``tz``, amounts and spend as USD numbers,
    text as inline strings, absent values left out)."""
    inner = entry_copy_queryset(entries).annotate(
        x_created=F("created_at"), x_effective=F("effective_at"), x_amount=F("amount"), x_team_id=F("team_id"),
        x_user_id=F("user_id"), x_duration=F("generation__duration"), x_account_id=F("r_account"), x_id=F("id"),
    ).values_list(
        "x_id", "x_created", "x_effective", "c_kind", "x_amount", "c_spend", "x_team_id", "c_team", "x_user_id", "c_email",
        "c_provider", "x_account_id", "c_account", "c_generation", "c_model", "c_mode", "c_resolution", "x_duration",
        "c_state", "c_reason",
    )
    inner_sql, inner_params = inner.query.get_compiler(using=inner.db).as_sql()
    names = ["x_id", "x_created", "x_effective", "c_kind", "x_amount", "c_spend", "x_team_id", "c_team", "x_user_id",
             "c_email", "c_provider", "x_account_id", "c_account", "c_generation", "c_model", "c_mode", "c_resolution",
             "x_duration", "c_state", "c_reason"]
    cells, params = [], []
    for letter, name, column in zip(_COLUMN_LETTERS, names, ENTRY_COLUMNS, strict=True):
        kind = ("usd" if column in _ENTRY_MONEY else "time" if column in _ENTRY_TIMES else "int" if column in _ENTRY_INTS
                else "text")
        cells.append(_sql_cell(letter, f'q."{name}"', kind))
        if kind == "time":
            params.append(tz)
    sql = (f"""SELECT '<row r="' || n || '">' || concat({", ".join(cells)}) || '</row>' """
           f"FROM (SELECT row_number() OVER () + 5 AS n, s.* FROM ({inner_sql}) s) q ORDER BY n")
    return sql, params + list(inner_params)


def write_entries_xlsx_copy(query: ReportQuery, handle) -> int:
    """PostgreSQL only: write the XLSX of the report's entries into the binary file ``handle``;
    returns the number of entries. Raises :class:`ExportTooLarge` beyond :data:`XLSX_MAX_ROWS`.

    The same sheet as :func:`entries_workbook` ("Entries": title rows, header, entries, a
    ``Total`` row with the count and the exact Decimal sum of ``spend_usd``). The database
    makes each data row's XML (:func:`entry_xlsx_sql`) and streams it through
    ``COPY … TO STDOUT`` (psycopg 3's ``cursor.copy()``); Python only writes the pieces into the
    zip. The count and the total are read in the same transaction first (REPEATABLE READ when
    this opens the transaction, so they match the rows).
    """
    import zipfile

    entries = report_entries(query)
    period = query.period
    fresh = not connection.in_atomic_block
    with transaction.atomic(using=entries.db), connection.cursor() as cursor:
        if fresh:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        totals = entry_copy_queryset(entries).aggregate(n=Count("id"), spend=Sum("c_spend"))
        count, total = totals["n"], money(totals["spend"] or ZERO)
        if count > XLSX_MAX_ROWS:
            raise ExportTooLarge(count)
        sql, params = entry_xlsx_sql(entries, period.tz)
        head = [
            _xml_row(1, [_xml_cell("A1", f"Hailuo Studio costs: ledger entries, {period.label}", _S_BOLD)]),
            _xml_row(2, [_xml_cell("A2", f"Period: {period.label} ({period.start.isoformat()} to {period.end.isoformat()}, end excluded)")]),
            _xml_row(3, [_xml_cell("A3", _zone_note(period))]),
            _xml_row(5, [_xml_cell(f"{letter}5", name, _S_BOLD) for letter, name in zip(_COLUMN_LETTERS, ENTRY_COLUMNS, strict=True)]),
        ]
        spend_at = ENTRY_COLUMNS.index("spend_usd")
        last = 6 + count
        tail = _xml_row(last, [
            _xml_cell(f"A{last}", "Total", _S_BOLD_COUNT), _xml_cell(f"D{last}", f"{count} entries", _S_BOLD),
            _xml_cell(f"{_COLUMN_LETTERS[spend_at]}{last}", total, _S_BOLD_USD),
        ])
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as book:
            for name, text in _XLSX_PARTS.items():
                book.writestr(name, text)
            with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
                # The same layout as the openpyxl path: panes frozen below the header row, column
                # widths, and (after the rows) an autofilter over the header and the entries.
                cols = "".join(
                    f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>'
                    for i, w in enumerate(_column_widths(ENTRY_COLUMNS, _entry_formats(), widths=ENTRY_WIDTHS), start=1)
                )
                views = (f'<sheetViews><sheetView workbookViewId="0"><pane ySplit="{HEADER_ROW}" topLeftCell="A{HEADER_ROW + 1}" '
                         'activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft"/></sheetView></sheetViews>')
                sheet.write((_XML_HEAD + f'<worksheet xmlns="{_NS}">{views}<cols>{cols}</cols><sheetData>' + "".join(head)).encode())
                buffer = bytearray()
                # CSV with a delimiter and quote no cell can hold: COPY neither quotes nor escapes the rows.
                with cursor.cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x03')",
                                        params) as copy:
                    for data in copy:
                        buffer += data
                        if len(buffer) >= _FLUSH_BYTES:
                            sheet.write(buffer)
                            buffer.clear()
                sheet.write(buffer)
                autofilter = f'<autoFilter ref="A{HEADER_ROW}:{_COLUMN_LETTERS[len(ENTRY_COLUMNS) - 1]}{HEADER_ROW + count}"/>'
                sheet.write((tail + "</sheetData>" + autofilter + "</worksheet>").encode())
    return count
