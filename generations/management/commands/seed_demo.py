"""``manage.py seed_demo``: an admin, a member, a team, a sandbox APIXO account, a budget. Idempotent."""

from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Membership, Team, User
from billing.models import Budget
from providers.models import ProviderAccount

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@studio.local", "studio-admin"
MEMBER_EMAIL, MEMBER_PASSWORD = "member@studio.local", "studio-member"


class Command(BaseCommand):
    help = "Create the demo data once (running it again changes nothing) and print the logins."

    def add_arguments(self, parser):
        parser.add_argument("--apixo-url", default="http://127.0.0.1:8801/api/v1", help="APIXO sandbox base URL")
        parser.add_argument("--apixo-key", default="sk-sandbox-apixo", help="API key the sandbox accepts")

    @transaction.atomic
    def handle(self, *args, apixo_url: str, apixo_key: str, **options):
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
        account = ProviderAccount.objects.filter(kind="apixo", label="APIXO sandbox").first()
        if account is None:
            account = ProviderAccount(kind="apixo", label="APIXO sandbox", base_url=apixo_url, priority=10)
            account.set_api_key(apixo_key)
            account.save()
        if not Budget.objects.filter(user=member).exists():
            Budget.objects.create(user=member, amount=Decimal(settings.HAILUO_DEMO_BUDGET), period=Budget.Period.MONTH)
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  admin : {ADMIN_EMAIL} / {ADMIN_PASSWORD if admin_new else '(password set on first run: ' + ADMIN_PASSWORD + ')'}")
        self.stdout.write(f"  member: {MEMBER_EMAIL} / {MEMBER_PASSWORD if member_new else '(password set on first run: ' + MEMBER_PASSWORD + ')'}")
        self.stdout.write(f"  provider account: {account} -> {account.effective_base_url}")
