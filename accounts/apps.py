from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and teams"

    def ready(self):
        # Project-wide, connected here because ``config`` is not an app: psycopg's C loader for
        # timestamps on every PostgreSQL connection whose session zone is UTC (config/pgtypes.py).
        from django.db.backends.signals import connection_created

        from config.pgtypes import use_c_timestamptz_loader

        connection_created.connect(use_c_timestamptz_loader, dispatch_uid="config.pgtypes.c_timestamptz")
