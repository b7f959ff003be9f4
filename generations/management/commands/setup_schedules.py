"""``manage.py setup_schedules``: upsert every django-q2 schedule by name; delete orphans.

Idempotent; run on every deploy (GreedyBear's pattern, ARCHITECTURE.md).
"""

from django.core.management.base import BaseCommand
from django.utils import timezone
from django_q.models import Schedule

PREFIX = "hailuo:"

#: Every schedule the app needs: name → (function, schedule type, minutes).
SCHEDULES = {
    f"{PREFIX}poll-sweep": ("generations.tasks.poll_sweep", Schedule.MINUTES, 1),
    f"{PREFIX}balance-snapshots": ("billing.tasks.snapshot_balances", Schedule.MINUTES, 60),
    f"{PREFIX}webhook-deliveries": ("webhooks.tasks.deliveries_sweep", Schedule.MINUTES, 1),
    f"{PREFIX}reconciliation-digest": ("generations.tasks.reconciliation_digest", Schedule.MINUTES, 24 * 60),
    f"{PREFIX}approvals-expire": ("approvals.tasks.expire_pending", Schedule.MINUTES, 60),
}


class Command(BaseCommand):
    help = "Create or update the django-q2 schedules (idempotent) and delete ones no longer declared."

    def handle(self, *args, **options):
        for name, (func, schedule_type, minutes) in SCHEDULES.items():
            schedule, created = Schedule.objects.update_or_create(
                name=name,
                defaults={"func": func, "schedule_type": schedule_type, "minutes": minutes, "repeats": -1},
            )
            if created or schedule.next_run is None or schedule.next_run > timezone.now() + timezone.timedelta(minutes=minutes):
                Schedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now())
            self.stdout.write(f"{'created' if created else 'updated'} {name} -> {func} every {minutes} min")
        orphans = Schedule.objects.filter(name__startswith=PREFIX).exclude(name__in=list(SCHEDULES))
        for orphan in orphans:
            self.stdout.write(f"deleted orphan schedule {orphan.name}")
        orphans.delete()
