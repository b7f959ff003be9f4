"""Issue 16: the hot paths' hand-written statements (``config.hotsql``) answer exactly what the
ORM answered, and PostgreSQL prepares them after a few uses.

``GET /api/v1/generations/{id}`` reads the generation and its tags in one prepared statement
(``generations.selectors.generation_for_api``): its answer must be byte-for-byte the answer the
ORM path gives (``generation_for`` + ``_out``), for every shape a generation can take, and
visibility must stay the studio's (a teammate's: yes; another team's: 404).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone
from ninja.renderers import JSONRenderer

from generations.api import GenerationOut, _out
from generations.models import Generation, State
from generations.selectors import generation_for, generation_for_api

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _make(user, account, **fields) -> Generation:
    base = dict(
        user=user, team=user.primary_team, provider_account=account, provider_kind=account.kind, model="hailuo-2-3",
        mode="standard-text-to-video", prompt="a lantern drifting over a lake", duration=6, resolution="768p",
        quoted_amount=Decimal("0.336000"),
    )
    base.update(fields)
    return Generation.objects.create(**base)


def _orm_answer(user, generation_id) -> bytes:
    """The answer as the ORM path renders it: generation_for, _out, ninja's schema and renderer."""
    request = RequestFactory().get(f"/api/v1/generations/{generation_id}")
    generation = generation_for(user=user, generation_id=generation_id)
    body = GenerationOut.model_validate(_out(request, generation)).model_dump()
    return JSONRenderer().render(request, body, response_status=200).encode()


def _get(client, token, generation_id):
    return client.get(f"/api/v1/generations/{generation_id}", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_the_hot_read_answers_what_the_orm_answered_for_every_shape(client, api_token, member, teammate, apixo_account):
    from teamwork.models import Project, Tag

    team = member.primary_team
    project = Project.objects.create(team=team, name="Autumn")
    now = timezone.now()
    shapes = {
        "queued": _make(member, apixo_account),
        "succeeded, archived, tagged": _make(
            member, apixo_account, state=State.SUCCEEDED, progress=100, charged_amount=Decimal("0.336000"),
            provider_task_id="task_1", video="videos/2026/12/a.mp4", poster="posters/2026/12/a.jpg", archive_state="done",
            completed_at=now, starred=True, project=project,
        ),
        "failed": _make(member, apixo_account, state=State.FAILED, fail_code="1301", fail_message="Sensitive content",
                        completed_at=now),
        "rejected": _make(member, apixo_account, state=State.REJECTED, fail_message="Too expensive for a test"),
        "hidden, archive pending": _make(member, apixo_account, state=State.SUCCEEDED, archive_state="pending",
                                          hidden_at=now - timedelta(hours=1), image_url="https://example.com/a.png"),
        "a teammate's": _make(teammate, apixo_account),
    }
    for name in ("zeta", "Alpha", "hero"):  # sorted as the ORM sorts them (the database's collation)
        Tag.objects.create(team=team, name=name).generations.add(shapes["succeeded, archived, tagged"])
    for label, generation in shapes.items():
        answer = _get(client, api_token, generation.pk)
        assert answer.status_code == 200, (label, answer.content)
        assert answer.content == _orm_answer(member, generation.pk), label  # byte for byte
        assert answer["Content-Type"] == "application/json; charset=utf-8"
    assert _get(client, api_token, shapes["succeeded, archived, tagged"].pk).json()["tags"] == [
        t.name for t in Tag.objects.filter(generations=shapes["succeeded, archived, tagged"])
    ]


def test_another_teams_generation_is_absent_from_the_hot_read(client, api_token, member, outsider, apixo_account):
    theirs = _make(outsider, apixo_account)
    assert generation_for_api(user=member, generation_id=theirs.pk) is None
    answer = _get(client, api_token, theirs.pk)
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert _get(client, api_token, "00000000-0000-0000-0000-000000000000").status_code == 404


def test_the_token_and_generation_statements_are_prepared_after_a_few_uses(client, api_token, member, apixo_account):
    generation = _make(member, apixo_account)
    for _ in range(7):
        assert _get(client, api_token, generation.pk).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("FROM accounts_apitoken t" in s for s in prepared), prepared
    assert any("FROM generations_generation g" in s for s in prepared), prepared


def test_without_prepared_statements_the_hot_read_still_answers(client, api_token, member, apixo_account, settings):
    settings.HAILUO_DB_PREPARE = False
    connection.ensure_connection()
    connection.connection.prepare_threshold = None  # as a fresh connection opens
    generation = _make(member, apixo_account)
    for _ in range(7):
        assert _get(client, api_token, generation.pk).json()["id"] == str(generation.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] == 0


def test_the_queue_row_is_written_by_one_prepared_insert_and_reads_back_as_django_q2_wrote_it():
    """``generations.broker.OrmBroker``: async_task's row, dequeued and unpacked by django-q2."""
    from django.test.utils import CaptureQueriesContext
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage
    from django_q.tasks import async_task

    from generations.broker import OrmBroker

    broker = get_broker()
    assert isinstance(broker, OrmBroker)
    with CaptureQueriesContext(connection) as captured:
        task_id = async_task("generations.tasks.submit_generation", "3f1b0c2e-0000-4000-8000-000000000001", task_name="submit x")
    inserts = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1 and '"django_q_ormq"' in inserts[0]
    (package_id, payload), = broker.dequeue()
    task = SignedPackage.loads(payload)
    assert task["id"] == task_id and task["func"] == "generations.tasks.submit_generation"
    assert task["args"] == ("3f1b0c2e-0000-4000-8000-000000000001",)
    broker.acknowledge(package_id)


def test_the_enqueue_functions_reuse_one_broker_and_write_one_row_each(monkeypatch):
    """``generations.queue.enqueue_*`` hand ``async_task`` the process's broker
    (``generations.broker.process_broker``): no broker is built per task, and each task is one
    INSERT that django-q2 dequeues as its own."""
    from django.test.utils import CaptureQueriesContext
    from django_q import tasks as q_tasks
    from django_q.signing import SignedPackage

    from generations import queue
    from generations.broker import process_broker

    broker = process_broker()
    assert process_broker() is broker

    def no_new_broker(*args, **kwargs):
        raise AssertionError("async_task built a broker of its own")

    monkeypatch.setattr(q_tasks, "get_broker", no_new_broker)
    ids = ["3f1b0c2e-0000-4000-8000-00000000000a", "3f1b0c2e-0000-4000-8000-00000000000b"]
    with CaptureQueriesContext(connection) as captured:
        queue.enqueue_submit(ids[0])
        queue.enqueue_poll([ids[1]])
    assert [q["sql"].split(" (")[0] for q in captured.captured_queries] == ['INSERT INTO "django_q_ormq"'] * 2
    tasks = []
    while batch := broker.dequeue():  # django-q2 hands out Conf.BULK rows at a time
        tasks += [SignedPackage.loads(payload) for _, payload in batch]
    assert [(t["func"], t["args"]) for t in tasks] == [
        ("generations.tasks.submit_generation", (ids[0],)), ("generations.tasks.poll_generations", ([ids[1]],)),
    ]


def test_create_writes_the_row_the_orm_would_and_sends_the_save_signals(member, apixo_account):
    """``config.hotsql.create``: defaults, ``pre_save`` values and JSON columns as the ORM writes
    them; ``pre_save``/``post_save`` receivers see a normal save; a constraint violation is
    Django's ``IntegrityError``."""
    from django.db import IntegrityError, transaction
    from django.db.models.signals import post_save, pre_save
    from django.forms.models import model_to_dict

    from billing.models import LedgerEntry
    from config import hotsql
    from generations.models import GenerationEvent

    hot = hotsql.create(
        Generation, user=member, team=member.primary_team, provider_account=apixo_account, provider_kind="apixo",
        model="hailuo-2-3", mode="standard-text-to-video", prompt="hot", duration=6, resolution="768p",
        quoted_amount=Decimal("0.336000"), options={"provider": "value", "nested": [1, 2]}, price_rule={"id": 7},
    )
    orm = Generation.objects.create(
        user=member, team=member.primary_team, provider_account=apixo_account, provider_kind="apixo",
        model="hailuo-2-3", mode="standard-text-to-video", prompt="hot", duration=6, resolution="768p",
        quoted_amount=Decimal("0.336000"), options={"provider": "value", "nested": [1, 2]}, price_rule={"id": 7},
    )
    moving = {"id", "created_at", "updated_at"}
    as_read = [model_to_dict(Generation.objects.get(pk=g.pk)) for g in (hot, orm)]
    assert {k: v for k, v in as_read[0].items() if k not in moving} == {k: v for k, v in as_read[1].items() if k not in moving}
    assert not hot._state.adding and Generation.objects.get(pk=hot.pk).created_at is not None

    seen = []
    pre = lambda sender, instance, **kw: seen.append(("pre", instance.message))  # noqa: E731
    post = lambda sender, instance, created, **kw: seen.append(("post", instance.message, created, instance.pk is not None))  # noqa: E731
    pre_save.connect(pre, sender=GenerationEvent, weak=False)
    post_save.connect(post, sender=GenerationEvent, weak=False)
    try:
        hotsql.create(GenerationEvent, generation_id=hot.pk, state="queued", message="hello")
    finally:
        pre_save.disconnect(pre, sender=GenerationEvent)
        post_save.disconnect(post, sender=GenerationEvent)
    assert seen == [("pre", "hello"), ("post", "hello", True, True)]

    fields = dict(kind="hold", amount=Decimal("0.336000"), user_id=member.pk, team_id=member.primary_team.pk,
                  generation=hot, effective_at=timezone.now(), created_at=timezone.now())
    first = hotsql.create(LedgerEntry, **fields)
    assert LedgerEntry.objects.get(pk=first.pk).amount == Decimal("0.336000")
    with pytest.raises(IntegrityError), transaction.atomic():
        hotsql.create(LedgerEntry, **fields)  # one hold per generation (a unique constraint)


def test_instance_is_the_instance_from_db_makes(member, apixo_account, django_assert_num_queries):
    """``config.hotsql.instance`` skips ``Model.__init__`` (no ``pre_init``/``post_init`` receiver
    for these models): same attributes, same state, the missing fields deferred and read on
    first access; with a receiver it is ``from_db`` itself."""
    from django.db.models.signals import post_init

    from config.hotsql import instance

    generation = _make(member, apixo_account, fail_code="1301")
    names = ("id", "user_id", "state", "fail_code")
    values = (generation.pk, member.pk, generation.state, "1301")
    fast, orm = instance(Generation, names, values), Generation.from_db("default", names, values)
    assert type(fast) is Generation and not fast._state.adding and fast._state.db == "default"
    assert {k: v for k, v in fast.__dict__.items() if k != "_state"} == {k: v for k, v in orm.__dict__.items() if k != "_state"}
    assert fast.get_deferred_fields() == orm.get_deferred_fields() and "prompt" in fast.get_deferred_fields()
    with django_assert_num_queries(1):
        assert fast.prompt == generation.prompt  # a deferred field: one read, as from_db's instance does
    assert fast == generation and fast.user == member

    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=Generation)
    try:
        assert instance(Generation, names, values).fail_code == "1301" and len(seen) == 1
    finally:
        post_init.disconnect(receiver, sender=Generation)
