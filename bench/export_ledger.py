#!/usr/bin/env python
"""Ledger CSV export: time and peak memory of exporting 100,000 and 1,000,000 ledger entries.

Prints figures; it is not a test. See bench/README.md ("export_ledger.py") for the results.

    scripts/with-postgres.sh .venv/bin/python bench/export_ledger.py [--rows 1000000] [--small 100000]

What it does:

1. Migrates the database and fills it with ``--rows`` ledger entries for November 2026:
   ``rows/2`` generations, each with a hold and a capture (9 in 10) or a release, spread
   evenly over the month; the first ``--small`` entries are booked to team "Small", the
   rest to team "Big". PostgreSQL: ``COPY ... FROM STDIN`` (psycopg 3); SQLite (a temp
   file, when ``DATABASE_URL`` is unset): ``bulk_create`` in batches.
2. For each of "Small" (``--small`` rows) and every team (``--rows`` rows), runs the export
   in a fresh child process — so each has its own peak RSS — exactly as the view does:
   ``billing.exports.entries_csv_response(query)``, draining ``streaming_content``. Each
   child measures twice: once plain (wall time, rows/s, MB, peak RSS minus the RSS before
   the export) and once under ``tracemalloc`` (peak Python heap during the export). The
   small export is also parsed back and its ``spend_usd`` sum compared with the report's.

Memory is flat when the peak figures of the two sizes are about equal.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MONTH_SECONDS = 30 * 24 * 3600
PRICE = Decimal("0.336000")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="ledger entries to create and export (default 1,000,000)")
    p.add_argument("--small", type=int, default=100_000, help="entries of the smaller export (default 100,000)")
    p.add_argument("--no-xlsx", dest="xlsx", action="store_false", help="skip the XLSX export of the smaller set")
    p.add_argument("--measure", choices=["small", "all", "xlsx"], help=argparse.SUPPRESS)  # child-process mode
    p.add_argument("--path", choices=["today", "copy", "copy_only"], default="copy", help=argparse.SUPPRESS)  # child mode
    p.add_argument("--paths", default="today,copy_only,copy",
                   help="CSV paths to measure, in order (default today,copy_only,copy; 'today' is the slow Python path)")
    p.add_argument("--reuse", action="store_true",
                   help="the database already holds the entries of an earlier run with the same --rows/--small: measure only")
    p.add_argument("--reps", type=int, default=1, help="measure each CSV path this many times, alternating (default 1)")
    return p.parse_args(argv)


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    if not os.environ.get("DATABASE_URL") and not os.environ.get("SQLITE_PATH"):
        os.environ["SQLITE_PATH"] = str(Path(tempfile.mkdtemp(prefix="bench-export-")) / "bench.sqlite3")
    import django

    django.setup()


def rss_kb() -> int:
    """Current resident set size, KiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def peak_rss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# --- filling the ledger --------------------------------------------------------------------------------
class _Rows:
    """Prepares rows of one model for COPY: every concrete column, defaults computed once."""

    def __init__(self, model, keys, connection):
        from django.core.exceptions import ValidationError

        auto = model._meta.auto_field
        self.fields = [f for f in model._meta.concrete_fields if f is not auto]  # the database numbers auto ids
        self.columns = [f.column for f in self.fields]
        self.template = []
        for f in self.fields:
            value = f.get_default() if f.has_default() else (None if f.null else "")
            try:
                self.template.append(f.get_db_prep_save(value, connection))
            except (TypeError, ValueError, ValidationError):
                self.template.append(None)  # no usable default: every row gives it
        index = {f.attname: i for i, f in enumerate(self.fields)} | {f.name: i for i, f in enumerate(self.fields)}
        self.slots = [(key, index[key], self.fields[index[key]]) for key in keys]
        self.connection = connection

    def row(self, item: dict) -> list:
        out = list(self.template)
        for key, i, f in self.slots:
            if key not in item:
                continue
            value = item[key]
            out[i] = f.get_db_prep_save(value, self.connection) if f.get_internal_type() == "JSONField" else value
        return out


def _generations(rows: int, small: int, user, teams: dict, account):
    """Yields ``(generation values, [its ledger entries' values])`` in time order."""
    import uuid

    from generations.models import State

    step = MONTH_SECONDS / rows
    for i in range((rows + 1) // 2):
        hold_i, settle_i = 2 * i, 2 * i + 1
        team = teams["Small"] if hold_i < small else teams["Big"]
        at = MONTH_START + timedelta(seconds=hold_i * step)
        gid = uuid.UUID(int=(0xBE << 120) + i)  # deterministic: the two COPY passes regenerate the same rows
        ok = i % 10 != 9
        generation = dict(
            id=gid, user_id=user.pk, team_id=team.pk, provider_account_id=account.pk, provider_kind="apixo",
            model="hailuo-2-3", mode="standard-text-to-video", prompt=f"bench {i}", duration=6, resolution="768p",
            state=State.SUCCEEDED if ok else State.FAILED, quoted_amount=PRICE, charged_amount=PRICE if ok else None,
            price_rule={"unit_price": "0.056"}, created_at=at, completed_at=at, updated_at=at,
        )
        common = dict(user_id=user.pk, team_id=team.pk, provider_account_id=account.pk, generation_id=gid,
                      price_rule={"unit_price": "0.056"}, effective_at=at, currency="USD")
        entries = [dict(common, kind="hold", amount=PRICE, created_at=at)]
        if settle_i < rows:
            settled = MONTH_START + timedelta(seconds=settle_i * step)
            if ok:
                entries.append(dict(common, kind="capture", amount=PRICE, hold_amount=PRICE, created_at=settled))
            else:
                entries.append(dict(common, kind="release", amount=PRICE, reason="failed: X", created_at=settled))
        yield generation, entries


_GEN_KEYS = ("id", "user_id", "team_id", "provider_account_id", "provider_kind", "model", "mode", "prompt", "duration",
             "resolution", "state", "quoted_amount", "charged_amount", "price_rule", "created_at", "completed_at", "updated_at")
_ENTRY_KEYS = ("user_id", "team_id", "provider_account_id", "generation_id", "price_rule", "effective_at", "currency",
               "kind", "amount", "hold_amount", "reason", "created_at")


def populate(rows: int, small: int) -> dict:
    """Migrate, then write ``rows`` ledger entries (and half as many generations); returns counts and seconds."""
    from django.core.management import call_command
    from django.db import connection, transaction

    from accounts.models import Membership, Team, User
    from billing import db_roles
    from billing.models import LedgerEntry
    from generations.models import Generation
    from providers.models import ProviderAccount

    call_command("migrate", verbosity=0)
    if LedgerEntry.objects.exists():
        raise SystemExit("the database already has ledger entries: use a throwaway database (scripts/with-postgres.sh)")
    user = User.objects.create_user("bench@example.com", "x")
    teams = {name: Team.objects.create(name=name, time_zone="UTC") for name in ("Small", "Big")}
    Membership.objects.create(user=user, team=teams["Small"])
    account = ProviderAccount(kind="apixo", label="bench")
    account.set_api_key("sk-bench-0001")
    account.save()

    started = time.perf_counter()
    n_gen = n_entries = 0
    if connection.vendor == "postgresql":
        gen_rows, entry_rows = _Rows(Generation, _GEN_KEYS, connection), _Rows(LedgerEntry, _ENTRY_KEYS, connection)
        # Generations first (the entries reference them), each table in one COPY.
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.cursor.copy(f'COPY {Generation._meta.db_table} ({", ".join(gen_rows.columns)}) FROM STDIN') as copy:
                for generation, _ in _generations(rows, small, user, teams, account):
                    copy.write_row(gen_rows.row(generation))
                    n_gen += 1
            with cursor.cursor.copy(f'COPY {LedgerEntry._meta.db_table} ({", ".join(entry_rows.columns)}) FROM STDIN') as copy:
                for _, entries in _generations(rows, small, user, teams, account):
                    for entry in entries:
                        copy.write_row(entry_rows.row(entry))
                        n_entries += 1
        # Only a table's owner may ANALYZE it: as DATABASE_MIGRATE_URL's owner when set (the
        # app role of scripts/with-postgres.sh owns nothing; billing/db_roles.py).
        with db_roles.as_owner(), connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    else:
        batch_g, batch_e = [], []
        with transaction.atomic():
            for generation, entries in _generations(rows, small, user, teams, account):
                batch_g.append(Generation(**generation))
                batch_e.extend(LedgerEntry(**e) for e in entries)
                if len(batch_e) >= 5000:
                    Generation.objects.bulk_create(batch_g)
                    LedgerEntry.objects.bulk_create(batch_e)
                    n_gen, n_entries = n_gen + len(batch_g), n_entries + len(batch_e)
                    batch_g, batch_e = [], []
            Generation.objects.bulk_create(batch_g)
            LedgerEntry.objects.bulk_create(batch_e)
            n_gen, n_entries = n_gen + len(batch_g), n_entries + len(batch_e)
    return {"generations": n_gen, "entries": n_entries, "seconds": round(time.perf_counter() - started, 1),
            "vendor": connection.vendor}


# --- measuring one export (child process) --------------------------------------------------------------
def _query(which: str):
    from accounts.models import Team
    from billing.reports import ReportQuery, period_resolve

    team_id = Team.objects.get(name="Small").pk if which == "small" else None
    return ReportQuery(period=period_resolve("month", tz="UTC", month="2026-11"), group_by=("provider",),
                       team_id=team_id)


def _today_csv_response(query):
    """The CSV export as it was before the COPY path (and as it still is on SQLite): ``values_list``
    over a server-side cursor, each row converted in Python, written by the csv module."""
    from billing import exports
    from billing.reports import report_entries

    rows = exports.entry_rows(report_entries(query), query.period.zone)
    return exports._streaming(exports.csv_chunks(exports.ENTRY_COLUMNS, rows, **exports._ENTRY_CSV_TYPES), "x.csv")


def _today_xlsx_response(query):
    """The XLSX export as it was before the COPY path (and as it still is on SQLite): openpyxl write-only."""
    from billing import exports

    return exports._xlsx_response(exports.entries_workbook(query), "x.xlsx")


def _copy_only_chunks(query):
    """The baseline: ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` of the same rows and joins with the
    columns as stored (no time zone, no spend, no empty-as-NULL), its pieces passed on as they come:
    what PostgreSQL and psycopg cost without any formatting or CRLF work."""
    from django.db import connection, transaction

    from billing.reports import report_entries

    raw = report_entries(query).values_list(
        "id", "created_at", "effective_at", "kind", "amount", "team_id", "team__name", "user_id", "user__email",
        "r_provider", "r_account", "generation_id", "generation__model", "generation__mode", "generation__resolution",
        "generation__duration", "generation__state", "reason",
    )
    sql, params = raw.query.get_compiler(using=raw.db).as_sql()
    with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(
        f"COPY ({sql}) TO STDOUT (FORMAT csv)", params
    ) as copy:
        yield from copy


def _drain(query, path: str = "copy") -> tuple[int, int, float]:
    """Export as the view does and read it all; returns (bytes, data rows, seconds to the first data chunk).

    ``path``: "copy" = ``billing.exports.entries_csv_response`` (COPY on PostgreSQL), "today" = the
    Python path (:func:`_today_csv_response`)."""
    from billing.exports import entries_csv_response

    started = time.perf_counter()
    if path == "copy_only":
        size = lines = 0
        first = None
        for chunk in _copy_only_chunks(query):
            if first is None:
                first = time.perf_counter() - started
            size += len(chunk)
            lines += 1  # one COPY message per row
        return size, lines, first or 0.0
    response = entries_csv_response(query) if path == "copy" else _today_csv_response(query)
    size = lines = 0
    first = None
    for chunk in response.streaming_content:
        if first is None:
            first = time.perf_counter() - started
        size += len(chunk)
        lines += chunk.count(b"\n")
    response.close()
    return size, lines - 1, first or 0.0  # rows: minus the header


def measure(which: str, path: str = "copy") -> dict:
    import tracemalloc

    from django.db import connection

    query = _query(which)
    connection.ensure_connection()
    before = rss_kb()
    started = time.perf_counter()
    size, rows, first = _drain(query, path)
    seconds = time.perf_counter() - started
    peak = peak_rss_kb()
    heap_peak = 0
    if path == "copy":  # today's heap figure is in bench/README.md; a second 1,000,000-row run costs a minute
        tracemalloc.start()
        tracemalloc.reset_peak()
        _drain(query, path)
        _, heap_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    out = {
        "which": which, "path": path, "rows": rows, "mb": round(size / 1e6, 1), "seconds": round(seconds, 2), "first_chunk_s": round(first, 2),
        "rows_per_s": round(rows / seconds), "rss_before_mb": round(before / 1024, 1), "rss_peak_mb": round(peak / 1024, 1),
        "rss_growth_mb": round((peak - before) / 1024, 1), "tracemalloc_peak_mb": round(heap_peak / 1e6, 2),
    }
    if which == "small" and path != "copy_only":
        out["spend_matches_report"] = _verify(query, path)
    return out


def measure_xlsx(path: str = "copy") -> dict:
    """The smaller set as XLSX (``billing.exports.entries_xlsx_response``): time, size, peak RSS, and its totals row checked."""
    import io

    import openpyxl
    from django.db import connection

    from billing.exports import entries_xlsx_response
    from billing.reports import cost_report

    query = _query("small")
    connection.ensure_connection()
    before = rss_kb()
    started = time.perf_counter()
    response = entries_xlsx_response(query) if path == "copy" else _today_xlsx_response(query)
    body = b"".join(response.streaming_content)
    response.close()
    seconds = time.perf_counter() - started
    peak = peak_rss_kb()
    sheet = openpyxl.load_workbook(io.BytesIO(body), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    header_at = next(i for i, r in enumerate(rows) if r and "spend_usd" in r)
    column = rows[header_at].index("spend_usd")
    data = [r for r in rows[header_at + 1:] if r and r[0] != "Total" and isinstance(r[column], (int, float, Decimal))]
    total = sum(Decimal(str(r[column])) for r in data)
    try:
        import lxml  # noqa: F401

        writer = "openpyxl + lxml"
    except ImportError:
        writer = "openpyxl + et_xmlfile (no lxml)"
    if path == "copy" and connection.vendor == "postgresql":
        writer = "COPY-made sheet XML"
    return {
        "which": "xlsx", "path": path, "rows": len(data), "mb": round(len(body) / 1e6, 1), "seconds": round(seconds, 2),
        "rows_per_s": round(len(data) / seconds), "rss_peak_mb": round(peak / 1024, 1),
        "rss_growth_mb": round((peak - before) / 1024, 1), "writer": writer,
        "spend_matches_report": abs(total - cost_report(query).totals.spend) < Decimal("0.000001") * max(1, len(data)),
    }


def _verify(query, path: str = "copy") -> bool:
    import csv
    import io

    from billing.exports import entries_csv_response
    from billing.reports import cost_report

    response = entries_csv_response(query) if path == "copy" else _today_csv_response(query)
    body = b"".join(response.streaming_content).decode()
    spend = sum(Decimal(r["spend_usd"]) for r in csv.DictReader(io.StringIO(body)))
    return spend == cost_report(query).totals.spend


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_django()
    if args.measure:
        print(json.dumps(measure_xlsx(args.path) if args.measure == "xlsx" else measure(args.measure, args.path)))
        return 0
    from django.db import connection

    if args.reuse:
        filled = {"reused": True, "vendor": connection.vendor}
    else:
        print(f"filling {args.rows:,} ledger entries ({connection.vendor}) ...", flush=True)
        filled = populate(args.rows, args.small)
        print(f"  {filled['entries']:,} entries and {filled['generations']:,} generations in {filled['seconds']} s", flush=True)
    env = dict(os.environ)
    results = []
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    runs = [(w, p) for w in ("small", "all") for _ in range(args.reps) for p in paths]
    runs += [("xlsx", "today"), ("xlsx", "copy")] if args.xlsx else []
    for which, path in runs:
        done = subprocess.run([sys.executable, __file__, "--measure", which, "--path", path], env=env, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return done.returncode
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {which} {path}: {results[-1]['rows']:,} rows in {results[-1]['seconds']} s", flush=True)
    csvs = [r for r in results if r["which"] != "xlsx"]
    print()
    print("| rows | path | CSV size | time | first chunk after | rows/s | peak RSS (growth during export) | tracemalloc peak |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in csvs:
        heap = f"{r['tracemalloc_peak_mb']} MB" if r["path"] == "copy" else "—"
        print(f"| {r['rows']:,} | {r['path']} | {r['mb']} MB | {r['seconds']} s | {r['first_chunk_s']} s | {r['rows_per_s']:,} | "
              f"{r['rss_peak_mb']} MB (+{r['rss_growth_mb']} MB) | {heap} |")
    print()
    import statistics

    def median_of(which, path, key="seconds"):
        values = [r[key] for r in csvs if r["which"] == which and r["path"] == path]
        return statistics.median(values) if values else None

    for which in ("small", "all"):
        copy, base, today = (median_of(which, p) for p in ("copy", "copy_only", "today"))
        if copy is None:
            continue
        rows = next(r["rows"] for r in csvs if r["which"] == which and r["path"] == "copy")
        line = f"CSV, {rows:,} rows (median of {args.reps}): export {copy} s = {rows / copy:,.0f} rows/s"
        if base:
            line += f"; COPY-only baseline {base} s: export / baseline = {copy / base:.2f}"
        if today:
            line += f"; the Python path {today} s ({today / copy:.1f}x slower)"
        print(line)
    for path in ("today", "copy"):
        matches = [r.get("spend_matches_report") for r in csvs if r["which"] == "small" and r["path"] == path]
        if matches:
            print(f"small export's spend_usd sum equals the report's total ({path}): {all(matches)}")
    load = os.getloadavg()
    print(f"Machine: {os.cpu_count()} cores, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min) at the end.")
    if args.xlsx:
        for x in results[-2:]:
            print(f"XLSX of the smaller set, {x['path']} ({x['writer']}): {x['rows']:,} rows, {x['mb']} MB in {x['seconds']} s = "
                  f"{x['rows_per_s']:,} rows/s; peak RSS {x['rss_peak_mb']} MB (+{x['rss_growth_mb']} MB); "
                  f"its spend_usd sum equals the report's total: {x['spend_matches_report']}")
        today, copy = results[-2:]
        print(f"XLSX rows/s: {copy['rows_per_s'] / today['rows_per_s']:.1f}x today's")
    print(json.dumps({"fill": filled, "exports": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
