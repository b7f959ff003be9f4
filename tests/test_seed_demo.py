"""``manage.py seed_demo`` (run by ``make run`` every time): idempotent, follows the sandboxes' port."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from accounts.models import Membership, Team, User
from billing.models import Budget
from providers.models import ProviderAccount

pytestmark = pytest.mark.django_db


def seed(port: int = 8801) -> str:
    out = io.StringIO()
    call_command("seed_demo", sandbox_base_port=port, stdout=out)
    return out.getvalue()


def test_seeding_twice_creates_nothing_twice():
    first = seed()
    assert "studio-member" in first and "Demo data ready." in first
    counts = (User.objects.count(), Team.objects.count(), Membership.objects.count(), Budget.objects.count(),
              ProviderAccount.objects.count())
    seed()
    assert (User.objects.count(), Team.objects.count(), Membership.objects.count(), Budget.objects.count(),
            ProviderAccount.objects.count()) == counts
    assert ProviderAccount.objects.count() == 5
    member = User.objects.get(email="member@studio.local")
    assert member.check_password("studio-member") and Budget.objects.filter(user=member).count() == 1
    apixo = ProviderAccount.objects.get(kind="apixo")
    assert apixo.base_url == "http://127.0.0.1:8801/api/v1" and apixo.api_key == "sk-sandbox-apixo"


def test_the_demo_accounts_follow_the_sandboxes_to_another_port_unless_pointed_elsewhere():
    seed(8801)
    ProviderAccount.objects.filter(kind="piapi").update(base_url="https://api.piapi.ai")  # an admin's choice
    seed(8901)
    urls = dict(ProviderAccount.objects.values_list("kind", "base_url"))
    assert urls["apixo"] == "http://127.0.0.1:8901/api/v1"
    assert urls["minimax"] == "http://127.0.0.1:8905"
    assert urls["piapi"] == "https://api.piapi.ai"
