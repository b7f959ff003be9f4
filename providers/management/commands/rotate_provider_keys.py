"""``manage.py rotate_provider_keys``: re-encrypt every stored provider API key with the first key.

Rotation of ``HAILUO_ENCRYPTION_KEYS`` (providers/crypto.py): prepend a new Fernet key,
restart, run this command, then drop the old key from the list and restart again. Each
account is re-encrypted in its own short transaction under a row lock (a concurrent admin
edit is not overwritten); an account whose key no configured key opens is reported and
makes the command exit with status 1, the others are still rotated. ``--check`` only
reports how many keys would change. Never prints a key.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from providers import crypto
from providers.models import ProviderAccount


class Command(BaseCommand):
    help = "Re-encrypt every stored provider API key with the first key of HAILUO_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="only verify that every stored key decrypts; change nothing")

    def handle(self, *args, check: bool, **options):
        rotated, failed = 0, []
        for pk in ProviderAccount.objects.exclude(api_key_encrypted="").order_by("pk").values_list("pk", flat=True):
            with transaction.atomic():
                account = ProviderAccount.objects.select_for_update().get(pk=pk)
                try:
                    token = crypto.rotate(account.api_key_encrypted)
                    crypto.decrypt(token)
                except Exception:  # InvalidToken from MultiFernet.rotate, ValueError from decrypt
                    failed.append(str(account))
                    continue
                if not check:
                    ProviderAccount.objects.filter(pk=pk).update(api_key_encrypted=token)
                rotated += 1
        verb = "would re-encrypt" if check else "re-encrypted"
        self.stdout.write(f"{verb} {rotated} provider API key(s) with the first key of HAILUO_ENCRYPTION_KEYS")
        if failed:
            raise CommandError(
                f"{len(failed)} key(s) cannot be decrypted with any key of HAILUO_ENCRYPTION_KEYS: {', '.join(failed)}"
            )
