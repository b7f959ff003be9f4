"""Issue 15, variants and batches: many generations from one submit, all held or none.

Real PostgreSQL; the APIXO sandbox's documented prices (6 s $0.336, 10 s $0.56); the
member's budget is $5.00 a month (the ``budget`` fixture).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db.models import Sum

from billing.models import Budget, LedgerEntry
from generations.batches.parsing import MAX_BATCH_ROWS, BatchInvalid, parse_csv, parse_lines
from generations.models import Batch, Generation, State
from generations.services.batch import BatchShared, batch_create, variants_create
from generations.services.lifecycle import GenerationRefused
from providers.base import TaskState, TaskUpdate

from .conftest import make_params, record_queue

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def shared(account, **overrides) -> BatchShared:
    values = dict(provider_account_id=account.pk, model="hailuo-2-3", mode="standard-text-to-video", duration=6, resolution="768p")
    values.update(overrides)
    return BatchShared(**values)


def csv_of(rows: list[str], header: str = "prompt") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def api_body(account, prompts, **extra) -> dict:
    return {
        "shared": {"provider_account_id": account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video", "duration": 6,
                   "resolution": "768p"},
        "items": [{"prompt": p} if isinstance(p, str) else p for p in prompts],
        **extra,
    }


# --- all held or none ----------------------------------------------------------------------
def test_a_batch_over_budget_is_refused_whole_naming_the_budget(member, apixo_account, budget, no_queue):
    # 14 × $0.336 = $4.704 fits the $5.00 budget, the 15th does not: nothing at all is written.
    items = parse_lines("\n".join(f"a lighthouse at dusk, take {n}" for n in range(15)))
    with pytest.raises(GenerationRefused) as refused:
        batch_create(user=member, shared=shared(apixo_account), items=items)
    assert refused.value.code == "budget_exceeded" and refused.value.status == 402
    assert refused.value.message == (
        "Refused by your budget of $5.00 per month: $5.00 left, this batch of 15 costs $5.04 (over by $0.04)."
    )
    assert not Batch.objects.exists() and not Generation.objects.exists() and not LedgerEntry.objects.exists()


def test_a_batch_refused_by_a_team_budget_names_it_and_leaves_earlier_spend_alone(member, team, apixo_account, no_queue):
    Budget.objects.create(team=team, amount=Decimal("1.00"), period=Budget.Period.MONTH)
    first = batch_create(user=member, shared=shared(apixo_account), items=parse_lines("one\ntwo"))  # $0.672
    with pytest.raises(GenerationRefused) as refused:
        batch_create(user=member, shared=shared(apixo_account), items=parse_lines("three\nfour"))
    assert refused.value.message.startswith("Refused by team Studio A's budget of $1.00 per month: $0.328 left")
    assert "this batch of 2 costs $0.672" in refused.value.message
    assert list(Batch.objects.all()) == [first]
    assert LedgerEntry.objects.count() == 2 and Generation.objects.count() == 2


def test_the_ledger_of_a_batch_equals_its_holds_to_the_cent(member, apixo_account, budget, no_queue):
    items = parse_csv(csv_of(["a,6", "b,10", "c,", "d,10", "e,6"], header="prompt,duration"))
    batch = batch_create(user=member, shared=shared(apixo_account), items=items)
    gens = list(batch.generations.order_by("batch_index"))
    assert [g.duration for g in gens] == [6, 10, 6, 10, 6] and [g.batch_index for g in gens] == [1, 2, 3, 4, 5]
    holds = LedgerEntry.objects.filter(generation__batch=batch, kind="hold")
    assert holds.count() == 5
    assert holds.aggregate(s=Sum("amount"))["s"] == sum(g.quoted_amount for g in gens) == batch.quoted_total == Decimal("2.128")
    # Through the lifecycle: two succeed (captured), one fails (released); the captures are the charge.
    for g, state in ((gens[0], TaskState.SUCCEEDED), (gens[1], TaskState.SUCCEEDED), (gens[2], TaskState.FAILED)):
        Generation.objects.filter(pk=g.pk).update(state=State.SUBMITTED, provider_task_id=f"t-{g.pk}")
        from generations import services

        services.generation_apply_update(generation_id=g.pk, update=TaskUpdate(
            task_id=f"t-{g.pk}", state=state, provider_state=state.value, result_urls=("http://127.0.0.1:1/v.mp4",),
        ))
    from generations.batches.selectors import batch_progress

    progress = batch_progress([batch])[batch.pk]
    assert (progress.succeeded, progress.failed, progress.running, progress.total) == (2, 1, 2, 5)
    captured = LedgerEntry.objects.filter(generation__batch=batch, kind="capture").aggregate(s=Sum("amount"))["s"]
    assert progress.charged == captured == Decimal("0.896")


def test_no_submit_leaves_before_the_whole_batch_commits(member, apixo_account, budget, monkeypatch, django_capture_on_commit_callbacks):
    queue = record_queue(monkeypatch)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        batch = batch_create(user=member, shared=shared(apixo_account), items=parse_lines("x\ny\nz"))
        assert queue == []  # inside the transaction nothing was handed to the workers
    assert len(callbacks) == 3 and queue == []
    for callback in callbacks:
        callback()
    assert sorted(gid for _, gid in queue) == sorted(batch.generations.values_list("pk", flat=True))


# --- variants ------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 5, -1])
def test_variants_out_of_bounds_are_refused(member, apixo_account, budget, no_queue, count):
    with pytest.raises(GenerationRefused) as refused:
        variants_create(user=member, params=make_params(apixo_account), count=count)
    assert refused.value.code == "validation_error" and "variants" in refused.value.fields
    assert not Generation.objects.exists()


def test_variants_through_the_api_are_one_batch_and_bounded(client, api_token, apixo_account, budget, no_queue):
    body = {"provider_account_id": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
            "prompt": "a koi pond in the rain", "duration": 6, "resolution": "768p"}
    for bad in (0, 5):
        response = client.post("/api/v1/generations", {**body, "variants": bad}, content_type="application/json", **auth(api_token))
        assert response.status_code == 422 and response.json()["code"] == "invalid_request"
        assert "payload.variants" in response.json()["fields"]
    made = client.post("/api/v1/generations", {**body, "variants": 3}, content_type="application/json", **auth(api_token))
    assert made.status_code == 201, made.content
    data = made.json()
    assert data["kind"] == "variants" and data["size"] == 3 and data["quoted_usd"] == "1.008000"
    assert [g["prompt"] for g in data["generations"]] == ["a koi pond in the rain"] * 3
    assert {g["batch_id"] for g in data["generations"]} == {data["id"]}
    # One variant is the plain single create (a generation, no batch).
    single = client.post("/api/v1/generations", body, content_type="application/json", **auth(api_token))
    assert single.status_code == 201 and single.json()["batch_id"] is None and "kind" not in single.json()


def test_studio_form_makes_three_variants_and_refuses_five(client, member, apixo_account, budget, no_queue):
    client.force_login(member)
    data = {"provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video", "duration": 6,
            "resolution": "768p", "prompt": "a glass bird", "variants": 3}
    assert client.post("/studio/", data).status_code == 302
    batch = Batch.objects.get()
    assert batch.kind == "variants" and batch.generations.count() == 3
    page = client.get("/studio/").content.decode()
    assert 'data-testid="batch-group"' in page and "0 succeeded, 0 failed, 3 running of 3" in page
    response = client.post("/studio/", {**data, "variants": 5, "prompt": "five"})
    assert response.status_code == 200 and not Generation.objects.filter(prompt="five").exists()


# --- idempotency ---------------------------------------------------------------------------
def test_a_batch_replays_by_its_idempotency_key_and_refuses_another_body(client, member, api_token, apixo_account, budget, no_queue):
    body = api_body(apixo_account, ["a dune at noon", {"prompt": "a dune at night", "duration": 10}])
    first = client.post("/api/v1/batches", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="b-1", **auth(api_token))
    assert first.status_code == 201, first.content
    assert first.json()["quoted_usd"] == "0.896000" and [g["duration"] for g in first.json()["generations"]] == [6, 10]
    again = client.post("/api/v1/batches", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="b-1", **auth(api_token))
    assert again.status_code == 201 and again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Batch.objects.count() == 1 and Generation.objects.count() == 2 and LedgerEntry.objects.count() == 2
    other = api_body(apixo_account, ["a dune at noon", {"prompt": "a dune at night", "duration": 6}])
    conflict = client.post("/api/v1/batches", other, content_type="application/json", HTTP_IDEMPOTENCY_KEY="b-1", **auth(api_token))
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    # A key of a single create is not a batch's, and the other way round.
    single = {"provider_account_id": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
              "prompt": "one", "duration": 6, "resolution": "768p"}
    assert client.post("/api/v1/generations", single, content_type="application/json", HTTP_IDEMPOTENCY_KEY="b-1",
                       **auth(api_token)).status_code == 409
    assert client.post("/api/v1/generations", single, content_type="application/json", HTTP_IDEMPOTENCY_KEY="s-1",
                       **auth(api_token)).status_code == 201
    assert client.post("/api/v1/batches", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="s-1",
                       **auth(api_token)).status_code == 409
    assert Batch.objects.count() == 1 and Generation.objects.count() == 3


def test_variants_replay_by_key(client, api_token, apixo_account, budget, no_queue):
    body = {"provider_account_id": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
            "prompt": "three cats", "duration": 6, "resolution": "768p", "variants": 2}
    first = client.post("/api/v1/generations", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="v-1", **auth(api_token))
    again = client.post("/api/v1/generations", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="v-1", **auth(api_token))
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    one = client.post("/api/v1/generations", {**body, "variants": 1}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="v-1",
                      **auth(api_token))
    assert one.status_code == 409 and Generation.objects.count() == 2


def test_an_api_batch_over_budget_creates_nothing(client, api_token, apixo_account, budget, no_queue):
    response = client.post("/api/v1/batches", api_body(apixo_account, [f"p{n}" for n in range(20)]),
                           content_type="application/json", **auth(api_token))
    assert response.status_code == 402 and response.json()["code"] == "budget_exceeded"
    assert "your budget of $5.00 per month" in response.json()["message"] and "this batch of 20 costs $6.72" in response.json()["message"]
    assert not Generation.objects.exists() and not LedgerEntry.objects.exists() and not Batch.objects.exists()


def test_api_item_errors_name_the_item_and_field(client, api_token, apixo_account, budget, no_queue):
    body = api_body(apixo_account, ["fine", {"prompt": "bad duration", "duration": 7}, {"prompt": " "}])
    response = client.post("/api/v1/batches", body, content_type="application/json", **auth(api_token))
    assert response.status_code == 422 and response.json()["code"] == "validation_error"
    fields = response.json()["fields"]
    assert "items.1.duration" in fields and "items.2.prompt" in fields and not any(k.startswith("items.0") for k in fields)
    too_many = client.post("/api/v1/batches", api_body(apixo_account, ["x"] * (MAX_BATCH_ROWS + 1)),
                           content_type="application/json", **auth(api_token))
    assert too_many.status_code == 422 and "payload.items" in too_many.json()["fields"]
    assert not Generation.objects.exists()


# --- CSV and lines -------------------------------------------------------------------------
def test_csv_errors_name_the_row_and_the_field():
    data = csv_of(['"a cat, sleeping",6,768p', "a dog,abc,", ",6,", "a fox,10,768p,extra"], header="prompt,duration,resolution")
    with pytest.raises(BatchInvalid) as invalid:
        parse_csv(data)
    found = {(e.where, e.field) for e in invalid.value.errors}
    assert found == {("row 3", "duration"), ("row 4", "prompt"), ("row 5", "")}
    assert "Row 3, duration: “abc” is not a whole number of seconds." in invalid.value.message
    assert invalid.value.fields["row 3.duration"] == ["“abc” is not a whole number of seconds."]


def test_csv_header_rules():
    with pytest.raises(BatchInvalid) as no_prompt:
        parse_csv(b"text,duration\nhello,6\n")
    assert no_prompt.value.errors[0].field == "prompt" and no_prompt.value.errors[0].where == "row 1"
    with pytest.raises(BatchInvalid) as unknown:
        parse_csv(b"prompt,durration\nhello,6\n")
    assert "Unknown column durration" in unknown.value.message
    with pytest.raises(BatchInvalid) as latin:
        parse_csv("prompt\ncafé\n".encode("latin-1"))
    assert "not UTF-8" in latin.value.message
    with pytest.raises(BatchInvalid) as too_many:
        parse_csv(csv_of([f"p{n}" for n in range(MAX_BATCH_ROWS + 1)]))
    assert f"at most {MAX_BATCH_ROWS}" in too_many.value.message
    items = parse_csv("\ufeffPrompt,Duration,Image URL\n\nhello,6 s,\n,,\nworld,,https://example.com/a.png\n".encode())
    assert [(i.where, i.prompt, i.duration, i.image_url) for i in items] == [
        ("row 3", "hello", 6, None), ("row 5", "world", None, "https://example.com/a.png"),
    ]


def test_provider_rules_are_named_by_row(member, apixo_account, budget, no_queue):
    items = parse_csv(csv_of(["ok,6,768p", "pro res,6,1080p"], header="prompt,duration,resolution"))
    with pytest.raises(BatchInvalid) as invalid:
        batch_create(user=member, shared=shared(apixo_account), items=items)
    assert {e.where for e in invalid.value.errors} == {"row 3"}
    assert any(e.field in ("resolution", "duration") for e in invalid.value.errors)
    assert not Generation.objects.exists()
    with pytest.raises(BatchInvalid) as empty:
        parse_lines("\n \n")
    assert "No prompts" in empty.value.message


# --- visibility ----------------------------------------------------------------------------
def test_another_teams_batch_is_404(client, member, teammate, outsider, api_token, apixo_account, budget, no_queue):
    from accounts.models import ApiToken

    batch = batch_create(user=member, shared=shared(apixo_account), items=parse_lines("mine\nours"))
    assert client.get(f"/api/v1/batches/{batch.pk}", **auth(api_token)).json()["progress"]["running"] == 2
    _, theirs = ApiToken.issue(user=outsider, name="x")
    response = client.get(f"/api/v1/batches/{batch.pk}", **auth(theirs))
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    _, mate = ApiToken.issue(user=teammate, name="y")
    assert client.get(f"/api/v1/batches/{batch.pk}", **auth(mate)).status_code == 200
    client.force_login(outsider)
    assert client.get(f"/batches/{batch.pk}/").status_code == 404
    assert "mine" not in client.get("/studio/").content.decode()
    client.force_login(teammate)
    page = client.get(f"/batches/{batch.pk}/")
    assert page.status_code == 200 and "mine" in page.content.decode()


# --- the studio's batch pages ----------------------------------------------------------------
def _batch_form(account, **extra) -> dict:
    return {"provider_account": account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video", "duration": 6,
            "resolution": "768p", **extra}


def _hidden(page: str, name: str) -> str:
    import html
    import re

    return html.unescape(re.search(rf'name="{name}" value="([^"]*)"', page).group(1))


def test_preview_shows_each_price_the_total_and_the_budget_then_confirm_makes_one_batch(client, member, apixo_account, budget, no_queue):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(member)
    upload = SimpleUploadedFile("shots.csv", csv_of(["a red kite,6", "a blue kite,10", "a green kite,"], header="prompt,duration"))
    preview = client.post("/batches/new/", _batch_form(apixo_account, csv_file=upload, title="Kites"))
    page = preview.content.decode()
    assert preview.status_code == 200 and page.count('data-testid="batch-row"') == 3
    assert ["$0.336", "$0.56", "$0.336"] == [cell.split("<")[0] for cell in page.split('data-testid="row-price">')[1:]]
    assert "$1.232" in page and "Budget left $5.00" in page and "after this batch $3.77" in page
    assert not Generation.objects.exists()  # a preview writes nothing
    form = {name: _hidden(page, name) for name in ("shared", "items", "token", "title", "team")}
    done = client.post("/batches/confirm/", form)
    batch = Batch.objects.get()
    assert done.status_code == 302 and done["Location"] == f"/batches/{batch.pk}/"
    assert batch.title == "Kites" and batch.quoted_total == Decimal("1.232") and batch.generations.count() == 3
    assert client.post("/batches/confirm/", form).status_code == 302 and Batch.objects.count() == 1  # a double click
    detail = client.get(f"/batches/{batch.pk}/").content.decode()
    assert "0 succeeded, 0 failed, 3 running of 3" in detail and "quoted $1.23, charged $0.00" in detail


def test_batch_form_names_the_row_and_field_of_each_problem(client, member, apixo_account, budget, no_queue):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(member)
    upload = SimpleUploadedFile("bad.csv", csv_of(["fine,6,", "slow,abc,", "pro,6,1080p"], header="prompt,duration,resolution"))
    response = client.post("/batches/new/", _batch_form(apixo_account, csv_file=upload))
    page = response.content.decode()
    assert response.status_code == 422 and "Row 3, duration: “abc” is not a whole number of seconds." in page
    assert "Row 4, " in page and "Row 2" not in page and not Generation.objects.exists()
    assert "Paste prompts" in client.post("/batches/new/", _batch_form(apixo_account)).content.decode()


def test_confirming_a_batch_over_budget_refuses_it_whole_naming_the_budget(client, member, apixo_account, budget, no_queue):
    client.force_login(member)
    lines = "\n".join(f"a comet over the sea, take {n}" for n in range(16))
    preview = client.post("/batches/new/", _batch_form(apixo_account, lines=lines)).content.decode()
    assert 'data-testid="batch-over"' in preview and "$5.376" in preview
    form = {name: _hidden(preview, name) for name in ("shared", "items", "token", "title", "team")}
    refused = client.post("/batches/confirm/", form)
    assert refused.status_code == 402
    assert "Refused by your budget of $5.00 per month: $5.00 left, this batch of 16 costs $5.376" in refused.content.decode()
    assert not Batch.objects.exists() and not Generation.objects.exists() and not LedgerEntry.objects.exists()


def test_confirm_refuses_a_team_not_mine_and_a_tampered_body(client, member, outsider, apixo_account, budget, no_queue):
    client.force_login(member)
    preview = client.post("/batches/new/", _batch_form(apixo_account, lines="one\ntwo")).content.decode()
    form = {name: _hidden(preview, name) for name in ("shared", "items", "token", "title", "team")}
    theirs = client.post("/batches/confirm/", {**form, "team": outsider.primary_team.pk}, follow=True)
    assert "only to a team you belong to" in theirs.content.decode()
    broken = client.post("/batches/confirm/", {**form, "items": "not json"}, follow=True)
    assert "could not be read again" in broken.content.decode()
    assert not Generation.objects.exists() and not LedgerEntry.objects.exists()


def test_batches_are_in_django_admin(client, member, apixo_account, budget, no_queue):
    from accounts.models import User

    batch = batch_create(user=member, shared=shared(apixo_account), items=parse_lines("admin one\nadmin two"), title="Admin view")
    staff = User.objects.create_superuser("root@example.com", "pw-root-123")
    client.force_login(staff)
    listing = client.get("/admin/generations/batch/").content.decode()
    assert "Admin view" in listing and "0 succeeded, 0 failed, 2 running of 2" in listing and "$0.672" in listing
    page = client.get(f"/admin/generations/batch/{batch.pk}/change/")
    assert page.status_code == 200 and "admin one" in page.content.decode() and "admin two" in page.content.decode()


def test_an_api_item_error_is_counted_from_one_and_keeps_its_key():
    """The message a script's author reads: "Item 2 (items.1), duration: …", the field key
    stays ``items.1.duration`` (ErrorOut.fields)."""
    from generations.batches.parsing import BatchInvalid, RowError

    error = RowError("items.1", "duration", "APIXO: Standard text-to-video takes 6 or 10 seconds")
    refused = BatchInvalid([error])
    assert str(error) == "Item 2 (items.1), duration: APIXO: Standard text-to-video takes 6 or 10 seconds"
    assert refused.fields == {"items.1.duration": ["APIXO: Standard text-to-video takes 6 or 10 seconds"]}
    assert str(RowError("row 3", "prompt", "Empty.")) == "Row 3, prompt: Empty."
