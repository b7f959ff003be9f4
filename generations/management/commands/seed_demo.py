"""``manage.py seed_demo``: an admin, a member, a team, a sandbox APIXO account, a budget. Idempotent."""

from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Membership, Team, User
from billing.models import Budget
from providers.models import ProviderAccount
from providers.registry import ADAPTERS

LOOPBACK = {"127.0.0.1", "localhost", "::1"}

#: The demo's sandboxes: kind → (port offset from --sandbox-base-port, base URL path). The Procfile
#: (Procfile.dev) starts one sandbox per line on the same ports.
DEMO_SANDBOXES = {
    "apixo": (0, "/api/v1"),
    "poyo": (1, ""),
    "qingbo": (2, ""),
    "piapi": (3, ""),
    "minimax": (4, ""),
}

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@studio.local", "studio-admin"
MEMBER_EMAIL, MEMBER_PASSWORD = "member@studio.local", "studio-member"


class Command(BaseCommand):
    help = "Create the demo data once (running it again changes nothing) and print the logins."

    def add_arguments(self, parser):
        parser.add_argument("--sandbox-host", default="127.0.0.1")
        parser.add_argument("--sandbox-base-port", type=int, default=8801, help="APIXO's port; the others follow")

    @transaction.atomic
    def handle(self, *args, sandbox_host: str, sandbox_base_port: int, **options):
        admin, admin_new = User.objects.get_or_create(
            email=ADMIN_EMAIL, defaults={"is_staff": True, "is_superuser": True, "first_name": "Demo admin"}
        )
        if admin_new:
            admin.set_password(ADMIN_PASSWORD)
            admin.save()
        member, member_new = User.objects.get_or_create(email=MEMBER_EMAIL, defaults={"first_name": "Demo member"})
        if member_new:
            member.set_password(MEMBER_PASSWORD)
            member.save()
        team, _ = Team.objects.get_or_create(name="Demo team")
        Membership.objects.get_or_create(user=member, team=team, defaults={"role": Membership.Role.MEMBER})
        Membership.objects.get_or_create(user=admin, team=team, defaults={"role": Membership.Role.TEAM_ADMIN})
        accounts = []
        for index, (kind, (offset, path)) in enumerate(DEMO_SANDBOXES.items()):
            if kind not in ADAPTERS:
                continue
            label = f"{ADAPTERS[kind].label} sandbox"
            account = ProviderAccount.objects.filter(kind=kind, label=label).first()
            base_url = f"http://{sandbox_host}:{sandbox_base_port + offset}{path}"
            if account is not None and account.base_url != base_url and urlsplit(account.base_url).hostname in LOOPBACK:
                # The sandboxes moved (another SANDBOX_BASE_PORT): follow them. An account an
                # admin pointed elsewhere (a real API) is left alone.
                account.base_url = base_url
                account.save(update_fields=["base_url"])
            if account is None:
                account = ProviderAccount(kind=kind, label=label, base_url=base_url, priority=10 + index)
                account.set_api_key(f"sk-sandbox-{kind}")
                account.save()
            else:
                try:
                    account.api_key  # noqa: B018 (can the current keys decrypt it?)
                except ValueError:
                    account.set_api_key(f"sk-sandbox-{kind}")
                    account.save(update_fields=["api_key_encrypted", "api_key_last4"])
                    self.stdout.write(self.style.WARNING(f"  re-keyed {account}: its key was encrypted with other keys"))
            accounts.append(account)
        if not Budget.objects.filter(user=member).exists():
            Budget.objects.create(user=member, amount=Decimal(settings.HAILUO_DEMO_BUDGET), period=Budget.Period.MONTH)
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  admin : {ADMIN_EMAIL} / {ADMIN_PASSWORD if admin_new else '(password set on first run: ' + ADMIN_PASSWORD + ')'}")
        self.stdout.write(f"  member: {MEMBER_EMAIL} / {MEMBER_PASSWORD if member_new else '(password set on first run: ' + MEMBER_PASSWORD + ')'}")
        for account in accounts:
            self.stdout.write(f"  provider account: {account} -> {account.effective_base_url}")
