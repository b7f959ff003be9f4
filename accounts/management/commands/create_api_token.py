"""``manage.py create_api_token EMAIL [--name NAME]``: print a new API token for a user."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiToken, User


class Command(BaseCommand):
    help = "Create a REST API bearer token for the user with this email and print it (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, email: str, name: str, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with email {email!r}")
        _, raw = ApiToken.issue(user=user, name=name)
        self.stdout.write(raw)
