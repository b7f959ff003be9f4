"""Per-process cache of provider accounts, price rules and teams' approval rules, dropped whenever any changes.

Why: a submit read the provider account and the price rules on every request (issue 16, "≤ 6
queries per submit"). They change rarely (an admin's edit, a key rotation, a rate-limit
pause), so each process keeps a copy and checks a counter instead:

- PostgreSQL statement triggers on ``providers_provideraccount``, ``billing_pricerule`` and
  ``approvals_approvalrule`` (that one installed by ``approvals`` migration 0002)
  bump ``billing_configversion.n`` on every INSERT, UPDATE, DELETE or TRUNCATE, whoever
  writes (admin, ORM ``update()``, raw SQL, another process), in the writer's transaction,
  to the next number of a sequence: a number is never given twice, even when the
  transaction that took it rolls back (:data:`SEQUENCE_SQL`).
- A request notes the counter once: the API's token lookup reads it in the same query
  (``accounts.selectors.api_token_for`` calls :func:`note_version`); otherwise each use
  reads it (one query, instead of the account's or the rules' own). The note is cleared when
  each request starts and ends.
- When the noted number differs from the cached copy's, the copy is dropped and re-read.

So a change is seen by the next request that starts after it commits, in every process. Off
PostgreSQL (no triggers) nothing is cached.
"""

from __future__ import annotations

import contextvars
import threading
from datetime import datetime

from django.core.signals import request_finished, request_started
from django.db import connection
from django.db.models import Q

_noted: contextvars.ContextVar[int | None] = contextvars.ContextVar("billing_config_version", default=None)
_lock = threading.Lock()
_cache: dict = {"version": None, "accounts": {}, "rules": {}, "approval_rules": {}}


def note_version(n: int | None) -> None:
    """Record the counter read by this request's first query (None: unknown)."""
    _noted.set(n)


def _forget_noted(**kwargs) -> None:
    _noted.set(None)


request_started.connect(_forget_noted, dispatch_uid="billing_config_cache_request_started")
request_finished.connect(_forget_noted, dispatch_uid="billing_config_cache_request_finished")


def _enabled() -> bool:
    return connection.vendor == "postgresql"


def _current() -> int:
    """The counter this request noted, else read now (every time: outside a request's token
    lookup nothing says how long a read stays true)."""
    n = _noted.get()
    if n is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT n FROM billing_configversion WHERE id = 1")
            row = cursor.fetchone()
        n = row[0] if row else -1
    return n


def _fresh() -> dict:
    n = _current()
    with _lock:
        if _cache["version"] != n:
            _cache.update(version=n, accounts={}, rules={}, approval_rules={})
        return _cache


def provider_account(pk):
    """The ``providers.ProviderAccount`` with ``pk`` (a copy shared by the process: do not modify it), or None."""
    from providers.models import ProviderAccount

    if not _enabled():
        return ProviderAccount.objects.filter(pk=pk).first()
    cache = _fresh()
    if pk not in cache["accounts"]:
        cache["accounts"][pk] = ProviderAccount.objects.filter(pk=pk).first()
    return cache["accounts"][pk]


def price_rules(*, provider_kind: str, model: str, at: datetime) -> list:
    """The price rules of one provider model valid at ``at`` (``billing.selectors.price_rules_for``'s answer)."""
    from billing.models import PriceRule

    if not _enabled():
        return list(PriceRule.objects.filter(provider_kind=provider_kind, model=model, valid_from__lte=at).filter(
            Q(valid_to__isnull=True) | Q(valid_to__gt=at)))
    cache = _fresh()
    key = (provider_kind, model)
    if key not in cache["rules"]:
        cache["rules"][key] = list(PriceRule.objects.filter(provider_kind=provider_kind, model=model))
    return [r for r in cache["rules"][key] if r.valid_from <= at and (r.valid_to is None or r.valid_to > at)]


def approval_rule(team_id):
    """The ``approvals.ApprovalRule`` of team ``team_id`` (a copy shared by the process: do not
    modify it), or None when the team has none (issue 15, approvals; read on every submit)."""
    from approvals.models import ApprovalRule

    if not _enabled():
        return ApprovalRule.objects.filter(team_id=team_id).first()
    cache = _fresh()
    if team_id not in cache["approval_rules"]:
        cache["approval_rules"][team_id] = ApprovalRule.objects.filter(team_id=team_id).first()
    return cache["approval_rules"][team_id]


#: Migration 0012's counter function (``n + 1``), replaced by :data:`SEQUENCE_SQL` (0013).
_BUMP_BY_ONE_SQL = """
CREATE OR REPLACE FUNCTION billing_bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE billing_configversion SET n = n + 1 WHERE id = 1;
  RETURN NULL;
END
$fn$;
"""

TRIGGERS_SQL = """
INSERT INTO billing_configversion (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
""" + _BUMP_BY_ONE_SQL + """DROP TRIGGER IF EXISTS billing_config_version ON providers_provideraccount;
CREATE TRIGGER billing_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON providers_provideraccount
  FOR EACH STATEMENT EXECUTE FUNCTION billing_bump_config_version();
DROP TRIGGER IF EXISTS billing_config_version ON billing_pricerule;
CREATE TRIGGER billing_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON billing_pricerule
  FOR EACH STATEMENT EXECUTE FUNCTION billing_bump_config_version();
"""

#: Migration 0013: the counter takes its numbers from a sequence, which a rollback does not take
#: back. With ``n + 1``, a transaction that bumped the counter and rolled back left it where a
#: later change would bring it again, so a process that had cached inside the rolled-back
#: transaction (or in a test, which always rolls back) saw its stale copy as current: a provider
#: account created by the later change read as missing.
SEQUENCE_SQL = """
CREATE SEQUENCE IF NOT EXISTS billing_configversion_seq;
SELECT setval('billing_configversion_seq', GREATEST((SELECT n FROM billing_configversion WHERE id = 1), 0) + 1);
CREATE OR REPLACE FUNCTION billing_bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  -- An upsert: a flush that emptied the table (Django's TransactionTestCase) does not leave
  -- the counter stuck at "unknown".
  INSERT INTO billing_configversion (id, n) VALUES (1, nextval('billing_configversion_seq'))
    ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n;
  RETURN NULL;
END
$fn$;
"""

SEQUENCE_UNINSTALL_SQL = _BUMP_BY_ONE_SQL + """
DROP SEQUENCE IF EXISTS billing_configversion_seq;
"""

UNINSTALL_SQL = """
DROP TRIGGER IF EXISTS billing_config_version ON providers_provideraccount;
DROP TRIGGER IF EXISTS billing_config_version ON billing_pricerule;
DROP FUNCTION IF EXISTS billing_bump_config_version();
"""
