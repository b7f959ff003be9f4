"""Price rules, quote(), the append-only ledger and budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from billing.models import Budget, LedgerEntry, PriceRule
from billing.money import format_usd, money
from billing.pricing import NoPriceRule, quote
from billing.selectors import committed_in, period_bounds, price_rules_for
from billing.services import BudgetExceeded, ledger_adjust, ledger_capture, ledger_release
from generations import services
from providers.base import BillingFacts

from .conftest import make_params

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def facts(mode="standard-text-to-video", seconds=6, resolution="768p", model="hailuo-2-3"):
    return BillingFacts("apixo", model, mode, seconds, resolution)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mode,seconds,resolution,expected",
    [
        # seeds/001 "Billing": standard $0.056/s (6 s: $0.336; 10 s: $0.56); pro $0.49 per use.
        ("standard-text-to-video", 6, "768p", "0.336"),
        ("standard-text-to-video", 10, "768p", "0.56"),
        ("standard-image-to-video", 6, "768p", "0.336"),
        ("standard-image-to-video", 10, "768p", "0.56"),
        ("pro-text-to-video", 5, "1080p", "0.49"),
        ("pro-image-to-video", 5, "1080p", "0.49"),
    ],
)
def test_seeded_apixo_prices_match_the_documentation(mode, seconds, resolution, expected):
    rules = price_rules_for(provider_kind="apixo", model="hailuo-2-3", at=NOW)
    assert quote(facts=facts(mode, seconds, resolution), rules=rules, at=NOW).amount == Decimal(expected)


@pytest.mark.django_db
def test_a_model_without_documented_price_has_no_rule():
    with pytest.raises(NoPriceRule, match="admin must add one"):
        quote(facts=facts("standard-image-to-video", model="hailuo-2-3-fast"), rules=price_rules_for(provider_kind="apixo", model="hailuo-2-3-fast"), at=NOW)


@pytest.mark.django_db
def test_most_specific_rule_wins_and_validity_window_is_honoured():
    PriceRule.objects.create(provider_kind="apixo", model="m", unit="per_second", unit_price=Decimal("0.1"), valid_from=NOW - timedelta(days=10))
    PriceRule.objects.create(provider_kind="apixo", model="m", resolution="1080p", unit="per_task", unit_price=Decimal("2"), valid_from=NOW - timedelta(days=10))
    PriceRule.objects.create(
        provider_kind="apixo", model="m", unit="per_second", unit_price=Decimal("0.2"),
        valid_from=NOW - timedelta(days=20), valid_to=NOW - timedelta(days=10),
    )
    rules = list(PriceRule.objects.filter(model="m"))
    assert quote(facts=facts("x", 6, "768p", "m"), rules=rules, at=NOW).amount == Decimal("0.6")
    assert quote(facts=facts("x", 6, "1080p", "m"), rules=rules, at=NOW).amount == Decimal("2")
    assert quote(facts=facts("x", 6, "768p", "m"), rules=rules, at=NOW - timedelta(days=15)).amount == Decimal("1.2")


def test_money_helpers():
    assert money("0.0518500") * 6 == Decimal("0.311100")
    assert format_usd(Decimal("0.336")) == "$0.336"
    assert format_usd(Decimal("0.56")) == "$0.56"
    assert format_usd(Decimal("25")) == "$25.00"
    assert format_usd(Decimal("-1.2")) == "-$1.20"
    with pytest.raises(TypeError):
        money(0.1)


def test_period_bounds_follow_the_team_time_zone():
    # 23:30 UTC on Sunday 2026-11-22 is already Monday in Tokyo.
    now = datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    start, end = period_bounds("week", tz_name="Asia/Tokyo", now=now)
    assert start.isoformat() == "2026-11-23T00:00:00+09:00" and end - start == timedelta(days=7)
    start, end = period_bounds("month", tz_name="UTC", now=now)
    assert (start.day, start.month, end.month) == (1, 11, 12)
    assert period_bounds("none", now=now) == (None, None)


@pytest.mark.django_db
def test_hold_capture_once_and_never_release_after_capture(member, apixo_account):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    assert LedgerEntry.objects.filter(generation=generation, kind="hold").get().amount == Decimal("0.336")
    with transaction.atomic():
        first = ledger_capture(generation=generation)
    with transaction.atomic():
        second = ledger_capture(generation=generation)
        release = ledger_release(generation=generation)
    assert first is not None and second is None and release is None
    kinds = list(LedgerEntry.objects.filter(generation=generation).values_list("kind", flat=True))
    assert kinds == ["hold", "capture"]


@pytest.mark.django_db
def test_database_constraints_refuse_a_second_capture_and_capture_plus_release(member, apixo_account):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    common = dict(user=member, generation=generation, amount=Decimal("0.336"))
    LedgerEntry.objects.create(kind="capture", hold_amount=Decimal("0.336"), **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(kind="capture", hold_amount=Decimal("0.336"), **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(kind="release", **common)


@pytest.mark.django_db
def test_ledger_is_append_only(member, apixo_account):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    entry = LedgerEntry.objects.get(generation=generation)
    entry.amount = Decimal("0")
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    with pytest.raises(PermissionError):
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=0)


@pytest.mark.django_db
@pytest.mark.postgres
def test_postgres_trigger_refuses_update_and_delete(member, apixo_account):
    from django.db import DatabaseError

    generation = services.generation_create(user=member, params=make_params(apixo_account))
    pk = LedgerEntry.objects.get(generation=generation).pk
    for sql in ("UPDATE billing_ledgerentry SET amount = 0 WHERE id = %s", "DELETE FROM billing_ledgerentry WHERE id = %s"):
        # As the app role the suite runs as, the missing privilege refuses first; the trigger
        # refusing the owner too is in tests/test_db_roles.py.
        with pytest.raises(DatabaseError, match="append-only|permission denied"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [pk])
    assert LedgerEntry.objects.get(pk=pk).amount == Decimal("0.336")


@pytest.mark.django_db
def test_budget_refuses_with_a_message_that_says_which_and_by_how_much(member, apixo_account):
    Budget.objects.create(user=member, amount=Decimal("1.00"), period=Budget.Period.MONTH)
    services.generation_create(user=member, params=make_params(apixo_account, duration=10))  # holds $0.56
    with pytest.raises(services.GenerationRefused) as refused:
        services.generation_create(user=member, params=make_params(apixo_account, duration=10))
    assert refused.value.code == "budget_exceeded"
    assert "your budget of $1.00 per month" in refused.value.message
    assert "$0.44 left" in refused.value.message and "costs $0.56" in refused.value.message
    assert "over by $0.12" in refused.value.message
    assert LedgerEntry.objects.count() == 1


@pytest.mark.django_db
def test_release_frees_the_budget_and_adjustments_count(member, apixo_account):
    budget = Budget.objects.create(user=member, amount=Decimal("1.00"), period=Budget.Period.MONTH)
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    assert committed_in(budget=budget) == Decimal("0.336")
    with transaction.atomic():
        ledger_release(generation=generation, reason="test")
    assert committed_in(budget=budget) == Decimal("0")
    ledger_adjust(user=member, amount=Decimal("0.25"), reason="manual correction", created_by=member)
    assert committed_in(budget=budget) == Decimal("0.25")


@pytest.mark.django_db
def test_team_budget_applies_to_every_member(member, teammate, team, apixo_account):
    Budget.objects.create(team=team, amount=Decimal("0.50"), period=Budget.Period.DAY)
    services.generation_create(user=teammate, params=make_params(apixo_account))
    with pytest.raises(services.GenerationRefused, match="team Studio A's budget"):
        services.generation_create(user=member, params=make_params(apixo_account))


@pytest.mark.django_db
def test_soft_budget_warns_and_allows(member, apixo_account):
    Budget.objects.create(user=member, amount=Decimal("0.10"), period=Budget.Period.MONTH, hard=False)
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    assert generation.warnings and "Over your budget" in generation.warnings[0]


def test_budget_exceeded_is_an_exception_with_figures():
    budget = Budget(amount=Decimal("1"), period="month", user_id=1)
    exc = BudgetExceeded(budget=budget, amount=Decimal("0.56"), remaining=Decimal("0.44"))
    assert exc.over_by == Decimal("0.12")


# Every documented price (providers.md) against the price the seeded rules give.
DOCUMENTED = [
    ("poyo", "hailuo-2.3", "text-to-video", 6, "768p", "0.175"),
    ("poyo", "hailuo-2.3", "image-to-video", 10, "768p", "0.35"),
    ("poyo", "hailuo-2.3", "text-to-video", 6, "1080p", "0.30"),
    ("qingbo", "hailuo-2.3", "text-to-video", 6, "768p", "0.3111"),
    ("qingbo", "hailuo-2.3", "text-to-video", 10, "768p", "0.5185"),
    ("qingbo", "hailuo-2.3", "image-to-video", 6, "1080p", "0.459"),
    ("qingbo", "hailuo-2.3-fast", "image-to-video", 6, "768p", "0.1581"),
    ("qingbo", "hailuo-2.3-fast", "image-to-video", 10, "768p", "0.2635"),
    ("qingbo", "hailuo-2.3-fast", "text-to-video", 6, "1080p", "0.2703"),
    ("piapi", "v2.3", "text-to-video", 6, "768p", "0.23"),
    ("piapi", "v2.3", "text-to-video", 10, "768p", "0.45"),
    ("piapi", "v2.3", "image-to-video", 6, "1080p", "0.46"),
    ("piapi", "v2.3-fast", "text-to-video", 6, "768p", "0.16"),
    ("piapi", "v2.3-fast", "image-to-video", 10, "768p", "0.26"),
    ("piapi", "v2.3-fast", "image-to-video", 6, "1080p", "0.26"),
    ("minimax", "MiniMax-Hailuo-2.3", "text-to-video", 6, "768p", "0.28"),
    ("minimax", "MiniMax-Hailuo-2.3", "image-to-video", 10, "768p", "0.56"),
    ("minimax", "MiniMax-Hailuo-2.3", "text-to-video", 6, "1080p", "0.49"),
    ("minimax", "MiniMax-Hailuo-2.3-Fast", "image-to-video", 6, "768p", "0.19"),
    ("minimax", "MiniMax-Hailuo-2.3-Fast", "image-to-video", 10, "768p", "0.32"),
    ("minimax", "MiniMax-Hailuo-2.3-Fast", "image-to-video", 6, "1080p", "0.33"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("provider,model,mode,seconds,resolution,expected", DOCUMENTED)
def test_every_seeded_price_rule_matches_the_documented_price(provider, model, mode, seconds, resolution, expected):
    rules = price_rules_for(provider_kind=provider, model=model, at=NOW)
    priced = quote(facts=BillingFacts(provider, model, mode, seconds, resolution), rules=rules, at=NOW)
    assert priced.amount == Decimal(expected)


@pytest.mark.django_db
def test_price_rules_are_versioned_never_edited(member, apixo_account):
    from billing.services import price_rule_revise

    rule = PriceRule.objects.get(provider_kind="apixo", model="hailuo-2-3", mode="standard-text-to-video")
    held = services.generation_create(user=member, params=make_params(apixo_account))
    rule.unit_price = Decimal("0.07")
    with pytest.raises(PermissionError):
        rule.save()
    rule.refresh_from_db()
    new = price_rule_revise(rule=rule, unit_price=Decimal("0.06"), source="APIXO price change (test)")
    rule.refresh_from_db()
    assert rule.valid_to == new.valid_from and new.supersedes == rule
    with pytest.raises(ValueError, match="already superseded"):
        price_rule_revise(rule=rule, unit_price=Decimal("0.05"))
    later = services.generation_create(user=member, params=make_params(apixo_account))
    assert later.quoted_amount == Decimal("0.36")
    held.refresh_from_db()
    assert held.quoted_amount == Decimal("0.336") and held.price_rule["unit_price"] == "0.056000"


@pytest.mark.django_db
def test_budget_allow_lists(member, apixo_account):
    Budget.objects.create(user=member, amount=Decimal("10"), period="month", allowed_providers=["piapi"])
    with pytest.raises(services.GenerationRefused) as refused:
        services.generation_create(user=member, params=make_params(apixo_account))
    assert refused.value.code == "budget_not_allowed" and "not on its allow-list (piapi)" in refused.value.message


@pytest.mark.django_db
def test_admin_credits_and_adjusts_with_a_reason(admin_client, admin_user, member):
    response = admin_client.post(
        "/admin/billing/ledgerentry/add/",
        {"kind": "credit", "amount": "1.50", "user": member.pk, "team": "", "generation": "", "reason": "goodwill"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    entry = LedgerEntry.objects.get(kind="credit")
    assert entry.amount == Decimal("1.5") and entry.created_by == admin_user and entry.reason == "goodwill"
    change = admin_client.get(f"/admin/billing/ledgerentry/{entry.pk}/change/")
    assert change.status_code == 200 and b'name="_save"' not in change.content


@pytest.mark.django_db
def test_admin_revises_a_price_rule_as_a_new_version(admin_client):
    rule = PriceRule.objects.get(provider_kind="apixo", model="hailuo-2-3", mode="pro-text-to-video")
    response = admin_client.post(
        f"/admin/billing/pricerule/{rule.pk}/change/",
        {"new_unit_price": "0.55", "new_valid_from_0": "", "new_valid_from_1": "", "new_source": "new price list"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    versions = PriceRule.objects.filter(provider_kind="apixo", model="hailuo-2-3", mode="pro-text-to-video").order_by("valid_from")
    assert [v.unit_price for v in versions] == [Decimal("0.49"), Decimal("0.55")]
    assert versions[0].valid_to == versions[1].valid_from
