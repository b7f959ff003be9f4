"""``manage.py migrate``, as the tables' owner: Django's command, run with the credentials of
``DATABASE_MIGRATE_URL`` when it is set (PostgreSQL, default database), then re-granting the
app role (``DATABASE_URL``'s user) exactly its privileges (:func:`billing.db_roles.grant_app_role`),
so tables a migration created or recreated are covered. Without ``DATABASE_MIGRATE_URL`` it is
Django's ``migrate`` unchanged.
"""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

from billing import db_roles


class Command(DjangoMigrate):
    help = DjangoMigrate.help + " Connects as DATABASE_MIGRATE_URL's owner when set, then re-grants the app role."

    def handle(self, *args, **options):
        alias = options["database"]
        try:
            with db_roles.as_owner(alias) as app_role:
                super().handle(*args, **options)
                if app_role and not options.get("plan") and not options.get("check_unapplied"):
                    connection = connections[alias]
                    if db_roles.role_exists(connection, app_role):
                        db_roles.grant_app_role(connection, app_role)
                        if options["verbosity"] >= 1:
                            self.stdout.write(f"Granted the app role {app_role} its privileges.")
                    else:
                        self.stderr.write(
                            f"The app role {app_role} (DATABASE_URL) does not exist: "
                            f"run `manage.py create_app_role {app_role} --password-env VAR`."
                        )
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
