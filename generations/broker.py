"""django-q2's ORM broker with a cheaper enqueue (issue 16).

The web process enqueues one task per submit (``generations.queue.enqueue_submit``, on commit).
django-q2's own ORM broker writes it through ``OrmQ.objects.create``, whose query compilation
cost more Python than the INSERT costs PostgreSQL; here it is one prepared INSERT of the
row's three columns. And ``async_task`` builds a new broker for every task unless given one
(``django_q.brokers.get_broker``: an import, a cache lookup and ``close_old_connections()``),
so every task is queued through :func:`enqueue_task`, with :func:`process_broker`'s. Everything else (dequeue,
acknowledgements, the workers' side) is django-q2's ``ORM`` broker unchanged. Selected by
``Q_CLUSTER["broker_class"]`` in ``config/settings.py``.
"""

from __future__ import annotations

from django.db.models import signals
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ

from config import hotsql

_INSERT = 'INSERT INTO "django_q_ormq" ("key", "payload", "lock") VALUES (%s, %s, %s) RETURNING "id"'


class OrmBroker(ORM):
    """django-q2's ORM broker; ``enqueue`` is one prepared INSERT on PostgreSQL (the ORM's
    create elsewhere, when ``Q_CLUSTER["orm"]`` names another database, or when a
    ``pre_save``/``post_save`` receiver listens for ``OrmQ``). Returns the queued row's id, as
    django-q2's does."""

    def enqueue(self, task: str) -> int:
        if Conf.ORM != "default" or not hotsql.available() or _has_save_receivers():
            return super().enqueue(task)
        with hotsql.hot_cursor() as cursor:
            cursor.execute(_INSERT, [self.list_key or Conf.CLUSTER_NAME, task, timezone.now()])
            return cursor.fetchone()[0]


def _has_save_receivers() -> bool:
    return signals.pre_save.has_listeners(OrmQ) or signals.post_save.has_listeners(OrmQ)


_PROCESS_BROKER = None


def process_broker():
    """The broker ``async_task`` gets from the enqueue functions: one per process for the
    default queue (it holds no connection: ``OrmBroker`` takes the thread's own at each
    enqueue), built on first use with ``get_broker()``, so ``Q_CLUSTER``'s choice still rules."""
    global _PROCESS_BROKER
    if _PROCESS_BROKER is None:
        _PROCESS_BROKER = get_broker()
    return _PROCESS_BROKER


def enqueue_task(func: str, *args, task_name: str) -> None:
    """django-q2's ``async_task(func, *args)`` with :func:`process_broker`'s broker: how every
    task of the web process is queued (``generations.queue``, ``webhooks.services``)."""
    from django_q.tasks import async_task

    async_task(func, *args, task_name=task_name, broker=process_broker())
