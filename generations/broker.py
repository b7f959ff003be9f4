"""django-q2's ORM broker with a cheaper enqueue (issue 16).

The web process enqueues one task per submit (``generations.queue.enqueue_submit``, on commit).
django-q2's own ORM broker writes it through ``OrmQ.objects.create``, whose query compilation
cost more Python than the INSERT costs PostgreSQL; here it is one prepared INSERT
(``config.hotsql.create``: the same row, the same ``post_save`` signals). Everything else
(dequeue, acknowledgements, the workers' side) is django-q2's ``ORM`` broker unchanged.
Selected by ``Q_CLUSTER["broker_class"]`` in ``config/settings.py``.
"""

from __future__ import annotations

from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ

from config import hotsql


class OrmBroker(ORM):
    """django-q2's ORM broker; ``enqueue`` is one prepared INSERT on PostgreSQL (the ORM's
    create elsewhere, or when ``Q_CLUSTER["orm"]`` names another database). Returns the
    queued row's id, as django-q2's does."""

    def enqueue(self, task: str) -> int:
        if Conf.ORM != "default":
            return super().enqueue(task)
        package = hotsql.create(OrmQ, key=self.list_key or Conf.CLUSTER_NAME, payload=task, lock=timezone.now())
        return package.pk
