"""The PostgreSQL CSV export (``COPY (SELECT …) TO STDOUT``) writes the same bytes as the Python path.

Both paths of ``billing.exports`` run over the same few hundred entries: the report fixture's
(real services, three providers, adjustments and credits) plus written-here ones with the
awkward cells: quotes, commas, CR/LF inside a reason, empty strings, non-ASCII, whole seconds
and microseconds, entries with and without a generation, team or provider account. Compared
in several time zones (whole-hour, half-hour and negative offsets, a DST change inside the month).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from accounts.models import Membership, Team, User
from billing import exports
from billing.models import LedgerEntry
from billing.reports import report_entries
from generations.models import Generation, State
from tests.test_reports import accounts, clock, dataset, finance, month_query, world  # noqa: F401  (fixtures)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("no_queue"),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="COPY is PostgreSQL's"),
]

REASONS = ["", "plain", 'quoted "word", and a comma', "line one\nline two", "cr\r\nlf", "trailing newline\n",
           "日本語の理由", " leading space", '"', "\n", "a,b"]


@pytest.fixture
def awkward(dataset, accounts):  # noqa: F811
    """~300 more entries in November 2026 with the cells that tell a CSV writer apart."""
    rng = random.Random(16)
    odd = Team.objects.create(name='Team "Odd", Ltd\nsecond line', time_zone="Asia/Kolkata")
    empty = Team.objects.create(name="", time_zone="UTC")
    user = User.objects.create_user("zoë@example.com", "pw-zoe-12345")
    Membership.objects.create(user=user, team=odd)
    start = datetime(2026, 10, 31, 12, tzinfo=UTC)
    generations, entries = [], []
    for _ in range(150):
        at = start + timedelta(seconds=rng.randrange(0, 31 * 86400), microseconds=rng.choice([0, 0, 1, 999999, 123456]))
        g = Generation(
            id=uuid.uuid4(), user=user, team=rng.choice([odd, empty, None]), provider_account=accounts["apixo"],
            provider_kind="apixo", model=rng.choice(["hailuo-2-3", ""]), mode=rng.choice(["standard-text-to-video", ""]),
            prompt="p", duration=rng.choice([6, 10]), resolution=rng.choice(["768p", "1080p", ""]),
            state=rng.choice([State.SUCCEEDED, State.FAILED]), quoted_amount=Decimal("0.056000"),
            price_rule={"unit_price": "0.056"}, created_at=at, updated_at=at,
        )
        generations.append(g)
        amount = Decimal(rng.randrange(0, 10**7)) / Decimal(10**6)
        common = dict(user=user, team=g.team, provider_account=rng.choice([accounts["apixo"], None]), generation=g,
                      effective_at=at)
        entries.append(LedgerEntry(kind="hold", amount=amount, created_at=at, reason=rng.choice(REASONS), **common))
        settled = at + timedelta(seconds=rng.randrange(1, 7200), microseconds=rng.choice([0, 7]))
        kind = "capture" if g.state == State.SUCCEEDED else "release"
        entries.append(LedgerEntry(kind=kind, amount=amount, created_at=settled, reason=rng.choice(REASONS), **common))
    for i in range(40):
        at = start + timedelta(seconds=rng.randrange(0, 31 * 86400), microseconds=rng.choice([0, 5]))
        kind = rng.choice(["adjustment", "credit"])
        amount = Decimal(rng.randrange(0, 10**7)) / Decimal(10**6)
        if kind == "adjustment":
            amount = -amount if i % 2 else amount
        entries.append(LedgerEntry(kind=kind, amount=amount, user=user, team=rng.choice([odd, empty, None]),
                                   reason=rng.choice(REASONS[1:]) if kind == "adjustment" else rng.choice(REASONS),
                                   effective_at=at, created_at=at))
    Generation.objects.bulk_create(generations)
    LedgerEntry.objects.bulk_create(entries)
    return odd


def _python_path(query) -> bytes:
    rows = exports.entry_rows(report_entries(query), query.period.zone)
    return b"".join(exports.csv_chunks(exports.ENTRY_COLUMNS, rows, **exports._ENTRY_CSV_TYPES))


def _copy_path(query) -> bytes:
    return b"".join(exports.entries_csv_copy_chunks(report_entries(query), query.period.tz))


@pytest.mark.parametrize("tz", ["UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Kolkata", "America/St_Johns"])
def test_copy_csv_is_byte_identical_to_the_python_csv(awkward, tz):
    query = month_query("2026-11", tz)
    expected = _python_path(query)
    got = _copy_path(query)
    assert expected.count(b"\r\n") > 300  # the data really is a few hundred rows
    assert got == expected
    # The session's time zone is left as it was.
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('TimeZone')")
        assert cursor.fetchone()[0] == "UTC"


def test_copy_csv_of_a_team_and_of_nothing(awkward):
    query = month_query("2026-11", "Asia/Kolkata", team_id=awkward.pk)
    assert _copy_path(query) == _python_path(query)
    empty = month_query("2031-01", "UTC")
    assert _copy_path(empty) == _python_path(empty) == b"entry_id,created_at,effective_at,kind,amount_usd,spend_usd," \
        b"team_id,team,user_id,member,provider,provider_account_id,provider_account,generation_id,model,mode," \
        b"resolution,duration_s,generation_state,reason\r\n"


def test_crlf_keeps_newlines_inside_quoted_cells_across_pieces():
    data = b'1,"a\nb"\n2,"x""\ny",z\n3,\n'
    want = b'1,"a\nb"\r\n2,"x""\ny",z\r\n3,\r\n'
    for cut in range(len(data) + 1):  # every split point: the quote state carries over
        first, inside = exports._crlf(data[:cut], False)
        second, inside = exports._crlf(data[cut:], inside)
        assert first + second == want and inside is False


def test_the_view_uses_the_copy_path_and_its_spend_sums_to_the_report(client, finance, awkward):  # noqa: F811
    from billing.reports import cost_report
    from tests.test_reports import read_csv  # the report tests' CSV reader

    client.force_login(finance)
    response = client.get("/reports/export.csv", {"period": "month", "month": "2026-11", "tz": "America/St_Johns"})
    body = b"".join(response.streaming_content)
    query = month_query("2026-11", "America/St_Johns")
    assert body == _python_path(query)
    response = client.get("/reports/export.csv", {"period": "month", "month": "2026-11", "tz": "America/St_Johns"})
    rows = read_csv(response)
    assert sum(Decimal(r["spend_usd"]) for r in rows) == cost_report(query).totals.spend


# --- XLSX: the database-made sheet has the same cells as openpyxl's -----------------------------------------
def _cells(body: bytes) -> list[list[tuple]]:
    import io

    import openpyxl

    sheet = openpyxl.load_workbook(io.BytesIO(body))["Entries"]
    return [[(c.value, c.number_format, bool(c.font and c.font.b)) for c in row if c.value is not None]
            for row in sheet.iter_rows()]


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/St_Johns", "Asia/Kolkata"])
def test_copy_xlsx_has_the_cells_of_the_openpyxl_xlsx(awkward, tz):
    import io

    query = month_query("2026-11", tz)
    today = io.BytesIO()
    exports.entries_workbook(query).save(today)
    fast = io.BytesIO()
    count = exports.write_entries_xlsx_copy(query, fast)
    want, got = _cells(today.getvalue()), _cells(fast.getvalue())
    assert count > 300 and len(got) == count + 6  # title (3), a blank row, header, entries, total
    assert got == want
    # The totals row holds the exact Decimal sum (a number) and the count.
    assert got[-1][0][0] == "Total" and got[-1][1][0] == f"{count} entries"


def test_xlsx_view_on_postgresql_is_the_copy_path(client, finance, awkward):  # noqa: F811
    client.force_login(finance)
    response = client.get("/reports/export.xlsx", {"period": "month", "month": "2026-11", "tz": "UTC"})
    assert response.status_code == 200
    assert 'filename="hailuo-costs-2026-11.xlsx"' in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(body)) as book:
        head = book.read("xl/worksheets/sheet1.xml")[:4000]
        assert b"<sheetData>" in head and b"<sheetPr" not in head  # our writer, not openpyxl's (which writes sheetPr)
        assert b'state="frozen"' in head and b"<cols>" in head  # with the openpyxl path's layout
    assert _cells(body)[-1][0][0] == "Total"
