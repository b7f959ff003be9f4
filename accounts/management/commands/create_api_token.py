"""``manage.py create_api_token EMAIL [--name NAME] [--scope read|read_write] [--expires DAYS]``.

Prints a new API token for a user (shown once; only its hash is stored).
"""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import ApiToken, User
from accounts.services import api_token_create
from config.errors import DomainError


class Command(BaseCommand):
    help = "Create a REST API bearer token for the user with this email and print it (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--scope", default=ApiToken.Scope.READ_WRITE, choices=ApiToken.Scope.values)
        parser.add_argument("--expires", type=float, default=None, metavar="DAYS", help="Expire after this many days (default: never).")

    def handle(self, *args, email: str, name: str, scope: str, expires: float | None, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with email {email!r}")
        expires_at = timezone.now() + timedelta(days=expires) if expires is not None else None
        try:
            _, raw = api_token_create(user=user, name=name, scope=scope, expires_at=expires_at)
        except DomainError as exc:
            raise CommandError("; ".join(m for ms in exc.fields.values() for m in ms) or exc.message) from exc
        self.stdout.write(raw)
