#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

DEMO_ENV = Path(__file__).resolve().parent / "var" / "dev.env"


def load_demo_env(path: Path = DEMO_ENV) -> None:
    """In the demo checkout (``make run`` wrote ``var/dev.env``: DJANGO_SECRET_KEY and
    HAILUO_ENCRYPTION_KEYS), use its values for any the environment does not set, so
    ``python manage.py create_api_token EMAIL`` works there as the README shows."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            os.environ.setdefault(name, value)


def main() -> None:
    load_demo_env()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
