"""``manage.py provider_matrix [--write]``: print the provider matrix (capabilities and prices), or rewrite it in README.md."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from billing.price_matrix import render_matrix, update_readme


class Command(BaseCommand):
    help = "Print the provider matrix generated from the adapters' capabilities; --write updates README.md."

    def add_arguments(self, parser):
        parser.add_argument("--write", action="store_true")

    def handle(self, *args, write: bool, **options):
        if write:
            changed = update_readme(Path(settings.BASE_DIR) / "README.md")
            self.stdout.write("README.md updated" if changed else "README.md already up to date")
        else:
            self.stdout.write(render_matrix())
