from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _create_cache_table(sender, using="default", verbosity=1, **kwargs):
    """After ``migrate``: create the database cache table(s) (django-q2's cluster stats, read by /healthz).

    ``createcachetable`` is idempotent; running it here means every deploy's ``migrate``
    (and every test database) has the table without a step to remember.
    """
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Generations"

    def ready(self):
        post_migrate.connect(_create_cache_table, sender=self, dispatch_uid="generations.create_cache_table")
