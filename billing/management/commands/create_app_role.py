"""``manage.py create_app_role NAME [--password P | --password-env VAR]``: the role the app runs as.

Run as the tables' owner (``DATABASE_MIGRATE_URL``, or ``DATABASE_URL`` naming the owner),
after ``migrate``. Creates login role NAME if it does not exist (that needs CREATEROLE or a
superuser; otherwise create it with SQL first, see the README), sets its password when one is
given, and (re)grants exactly what the app needs (:mod:`billing.db_roles`): no UPDATE, DELETE
or TRUNCATE on the ledger, no ownership of anything. Re-runnable; PostgreSQL only.
"""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from billing import db_roles


class Command(BaseCommand):
    help = "Create (or update) the PostgreSQL role the app runs as, with exactly the privileges it needs."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the app role's name (the user of the app's DATABASE_URL)")
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument("--password", help="its password (visible in the process list: prefer --password-env)")
        secret.add_argument("--password-env", metavar="VAR", help="read its password from environment variable VAR")

    def handle(self, *args, name: str, password: str | None, password_env: str | None, **options):
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"environment variable {password_env} is unset or empty")
        try:
            with db_roles.as_owner(DEFAULT_DB_ALIAS):
                connection = connections[DEFAULT_DB_ALIAS]
                created = db_roles.create_role(connection, name, password)
                db_roles.grant_app_role(connection, name)
                owner = connection.settings_dict["USER"]
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{'created' if created else 'updated'} role {name}: "
            f"SELECT/INSERT/UPDATE/DELETE on the tables of {owner}, SELECT/INSERT only on {db_roles.LEDGER_TABLE}; "
            f"run the app with DATABASE_URL as {name}"
        )
