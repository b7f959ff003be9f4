"""Issue 15, the prompt library and notifications: templates with placeholders (studio and API),
a member's prompt history in constant queries, per-member email preferences sent once per
event, and tags on cards and in the API's generations.

Real PostgreSQL; the APIXO sandbox prices and accepts the creates (loopback HTTP).
"""

from __future__ import annotations

import json

import pytest
from django.core import mail
from django.core.cache import cache

from accounts.models import ApiToken, Membership
from config.errors import DomainError
from generations import services
from generations.models import Generation, GenerationEvent, State
from providers.base import TaskState, TaskUpdate
from teamwork import library
from teamwork.models import NotificationPreference, NotificationSent, PromptTemplate, Tag
from teamwork.notifications import notify_member

from .conftest import make_params

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def _quiet(no_queue, media_root):
    cache.clear()
    yield
    cache.clear()


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def token_of(user) -> str:
    return ApiToken.issue(user=user, name="t")[1]


@pytest.fixture
def template(member, team, apixo_account):
    return PromptTemplate.objects.create(
        team=team, created_by=member, name="Turntable", prompt="{product} turning on a turntable, {light} light, {{no logo}}",
        provider_account=apixo_account, model="hailuo-2-3", mode="standard-text-to-video", duration=10, resolution="768p",
    )


# --- placeholders -----------------------------------------------------------------------------
def test_placeholders_are_listed_once_in_order_and_double_braces_are_literal():
    assert library.placeholders("{product} on {place}, {product} again, {{escaped}} and { lone } {9bad}") == ["product", "place"]
    assert library.render_prompt("{product} on {place}; {{product}} stays; }} {{", {"product": " a red sneaker ", "place": "sand"}) == (
        "a red sneaker on sand; {product} stays; } {"
    )
    # A value is inserted as written: its braces are not read again.
    assert library.render_prompt("say {word}", {"word": "{other}"}) == "say {other}"


def test_a_missing_or_empty_placeholder_is_refused_naming_it():
    with pytest.raises(DomainError) as refused:
        library.render_prompt("{product} under {light} light", {"product": "a mug", "light": "  "})
    assert refused.value.code == "placeholder_missing" and refused.value.status == 422
    assert "{light}" in refused.value.message and "{product}" not in refused.value.message
    assert refused.value.fields == {"values.light": ["Fill in {light}."]}
    with pytest.raises(DomainError) as unknown:
        library.render_prompt("{product}", {"product": "a mug", "colour": "red"})
    assert unknown.value.code == "placeholder_unknown" and "{colour}" in unknown.value.message
    with pytest.raises(DomainError) as long:
        library.render_prompt("{product}", {"product": "x" * (library.VALUE_MAX + 1)})
    assert long.value.code == "validation_error"


# --- the API: CRUD, render, visibility --------------------------------------------------------
def test_templates_api_create_read_update_render_delete(client, member, api_token, apixo_account, budget):
    body = {
        "name": "Turntable", "prompt": "{product} turning slowly, {{studio}} light", "provider_account_id": apixo_account.pk,
        "model": "hailuo-2-3", "mode": "standard-text-to-video", "duration": 6, "resolution": "768p",
    }
    created = client.post("/api/v1/templates", json.dumps(body), content_type="application/json", **auth(api_token))
    assert created.status_code == 201, created.content
    out = created.json()
    assert out["placeholders"] == ["product"] and out["created_by"] == "member@example.com" and out["team_id"] == member.primary_team.pk
    again = client.post("/api/v1/templates", json.dumps(body), content_type="application/json", **auth(api_token))
    assert again.status_code == 409 and again.json()["code"] == "template_exists"
    bad = client.post("/api/v1/templates", json.dumps({**body, "name": "B", "duration": 7}), content_type="application/json", **auth(api_token))
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error" and "duration" in bad.json()["fields"]
    unknown_model = client.post("/api/v1/templates", json.dumps({**body, "name": "C", "model": "nope"}), content_type="application/json", **auth(api_token))
    assert unknown_model.status_code == 422 and "model" in unknown_model.json()["fields"]

    tid = out["id"]
    assert [t["id"] for t in client.get("/api/v1/templates", **auth(api_token)).json()] == [tid]
    assert client.get(f"/api/v1/templates/{tid}", **auth(api_token)).json()["name"] == "Turntable"
    patched = client.patch(f"/api/v1/templates/{tid}", json.dumps({"name": "Turntable v2", "duration": 10}), content_type="application/json", **auth(api_token))
    assert patched.status_code == 200 and patched.json()["name"] == "Turntable v2" and patched.json()["duration"] == 10

    missing = client.post(f"/api/v1/templates/{tid}/render", json.dumps({"values": {}}), content_type="application/json", **auth(api_token))
    assert missing.status_code == 422 and missing.json()["code"] == "placeholder_missing" and "{product}" in missing.json()["message"]
    rendered = client.post(f"/api/v1/templates/{tid}/render", json.dumps({"values": {"product": "a red sneaker"}}), content_type="application/json", **auth(api_token))
    assert rendered.status_code == 200
    request_body = rendered.json()
    assert request_body["prompt"] == "a red sneaker turning slowly, {studio} light" and request_body["duration"] == 10
    # The rendered body is a create request as it is.
    made = client.post("/api/v1/generations", json.dumps(request_body), content_type="application/json", **auth(api_token))
    assert made.status_code == 201, made.content
    assert Generation.objects.get(pk=made.json()["id"]).prompt == "a red sneaker turning slowly, {studio} light"

    assert client.delete(f"/api/v1/templates/{tid}", **auth(api_token)).status_code == 204
    assert client.get(f"/api/v1/templates/{tid}", **auth(api_token)).status_code == 404


def test_another_teams_template_is_404_and_a_teammate_may_use_but_not_change_it(client, template, teammate, outsider):
    theirs = token_of(outsider)
    for method, path in (("get", ""), ("patch", ""), ("delete", ""), ("post", "/render")):
        response = getattr(client, method)(f"/api/v1/templates/{template.pk}{path}", json.dumps({"values": {}}) if method != "get" else None,
                                           content_type="application/json", **auth(theirs)) if method != "get" else client.get(
            f"/api/v1/templates/{template.pk}", **auth(theirs))
        assert response.status_code == 404, (method, path)
    assert client.get("/api/v1/templates", **auth(theirs)).json() == []
    client.force_login(outsider)
    assert client.get(f"/templates/{template.pk}/edit/").status_code == 404
    assert client.get(f"/templates/fill/?template={template.pk}").status_code == 404
    assert client.post(f"/templates/{template.pk}/use/", {"v_product": "x"}).status_code == 404
    assert client.post(f"/templates/{template.pk}/delete/").status_code == 404
    assert "Turntable" not in client.get("/templates/").content.decode()
    assert PromptTemplate.objects.filter(pk=template.pk).exists()

    mate = token_of(teammate)
    assert client.get(f"/api/v1/templates/{template.pk}", **auth(mate)).status_code == 200
    assert client.patch(f"/api/v1/templates/{template.pk}", json.dumps({"name": "x"}), content_type="application/json", **auth(mate)).status_code == 403
    # A team admin may.
    Membership.objects.filter(user=teammate).update(role=Membership.Role.TEAM_ADMIN)
    assert client.patch(f"/api/v1/templates/{template.pk}", json.dumps({"name": "x"}), content_type="application/json", **auth(mate)).status_code == 200


# --- the studio: fill, save, history ---------------------------------------------------------
def test_filling_a_template_in_the_studio_answers_the_form_filled_or_names_the_missing_placeholder(client, member, template, budget):
    client.force_login(member)
    picker = client.get("/templates/picker/").content.decode()
    assert "Turntable" in picker
    fill = client.get(f"/templates/fill/?template={template.pk}").content.decode()
    assert 'name="v_product"' in fill and 'name="v_light"' in fill and "no logo" in fill
    refused = client.post(f"/templates/{template.pk}/use/", {"v_product": "a mug", "v_light": ""}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 422
    assert "Fill in the placeholder {light}." in refused.content.decode()
    filled = client.post(f"/templates/{template.pk}/use/", {"v_product": "a mug", "v_light": "warm"}, HTTP_HX_REQUEST="true")
    assert filled.status_code == 200 and filled["HX-Retarget"] == "#create-form"
    page = filled.content.decode()
    assert 'id="create-form"' in page and "a mug turning on a turntable, warm light, {no logo}</textarea>" in page
    assert '<option value="10" selected>10 s</option>' in page


def test_saving_the_studio_form_and_a_generation_as_templates(client, member, apixo_account, budget):
    client.force_login(member)
    form = {
        "provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video", "duration": "10",
        "resolution": "768p", "prompt": "{product} on a beach", "name": "Beach",
    }
    saved = client.post("/templates/save/", form, HTTP_HX_REQUEST="true")
    assert saved.status_code == 200 and "Saved “Beach”" in saved.content.decode()
    t = PromptTemplate.objects.get(name="Beach")
    assert (t.prompt, t.duration, t.created_by, t.team) == ("{product} on a beach", 10, member, member.primary_team)
    taken = client.post("/templates/save/", {**form, "prompt": "{product} on a lake"}, HTTP_HX_REQUEST="true")
    assert taken.status_code == 422 and "already has a template" in taken.content.decode() and 'name="replace"' in taken.content.decode()
    client.post("/templates/save/", {**form, "prompt": "{product} on a lake", "replace": "1"}, HTTP_HX_REQUEST="true")
    assert PromptTemplate.objects.get(name="Beach").prompt == "{product} on a lake"

    g = services.generation_create(user=member, params=make_params(apixo_account, prompt="a kite over dunes"))
    response = client.post(f"/g/{g.pk}/save-template/", {"name": "Kite"})
    kite = PromptTemplate.objects.get(name="Kite")
    assert response.status_code == 302 and response["Location"] == f"/templates/{kite.pk}/edit/"
    assert (kite.prompt, kite.model, kite.duration, kite.team_id) == ("a kite over dunes", "hailuo-2-3", 6, g.team_id)
    edited = client.post(f"/templates/{kite.pk}/edit/", {"name": "Kite", "prompt": "a {colour} kite over dunes", "image_url": ""})
    assert edited.status_code == 302 and PromptTemplate.objects.get(pk=kite.pk).prompt == "a {colour} kite over dunes"
    assert "fills in: <code>colour</code>" in client.get("/templates/").content.decode()
    client.post(f"/templates/{kite.pk}/delete/")
    assert not PromptTemplate.objects.filter(pk=kite.pk).exists()


def test_prompt_history_is_distinct_newest_first_with_counts_in_constant_queries(
    client, member, teammate, apixo_account, api_token, django_assert_num_queries
):
    def make(user, prompt, **kw):
        return services.generation_create(user=user, params=make_params(apixo_account, prompt=prompt, **kw))

    make(member, "a cat")
    make(member, "a dog")
    make(member, "a cat", duration=10)
    make(teammate, "their prompt")
    items = library.prompt_history(user=member)
    assert [(i.prompt, i.count, i.last.duration) for i in items] == [("a cat", 2, 10), ("a dog", 1, 6)]
    answer = client.get("/api/v1/prompts/history", **auth(api_token)).json()
    assert [(a["prompt"], a["count"], a["duration"]) for a in answer] == [("a cat", 2, 10), ("a dog", 1, 6)]

    with django_assert_num_queries(2):
        library.prompt_history(user=member)
    for n in range(30):
        make(member, f"prompt number {n}")
    with django_assert_num_queries(2):
        assert len(library.prompt_history(user=member)) == library.HISTORY_SIZE

    client.force_login(member)
    menu = client.get("/prompts/history/").content.decode()
    assert "prompt number 29" in menu and "their prompt" not in menu
    cat = Generation.objects.filter(user=member, prompt="a cat").order_by("-created_at").first()
    used = client.post(f"/prompts/history/{cat.pk}/use/", HTTP_HX_REQUEST="true")
    assert used.status_code == 200 and "a cat</textarea>" in used.content.decode()
    theirs = Generation.objects.get(user=teammate)
    assert client.post(f"/prompts/history/{theirs.pk}/use/").status_code == 404


# --- notification emails ----------------------------------------------------------------------
def _settle(g: Generation, state: TaskState, serial: list[int] = [0]) -> None:  # noqa: B006 (a counter)
    serial[0] += 1
    task = f"lib-task-{serial[0]}"
    Generation.objects.filter(pk=g.pk).update(state=State.SUBMITTED, provider_task_id=task)
    update = TaskUpdate(task_id=task, state=state, provider_state=str(state), fail_code="X" if state == TaskState.FAILED else "",
                        result_urls=("http://127.0.0.1:1/v.mp4",) if state == TaskState.SUCCEEDED else ())
    services.generation_apply_update(generation_id=g.pk, update=update)


def test_emails_follow_the_members_preferences_and_are_sent_once_per_event(
    member, apixo_account, budget, django_capture_on_commit_callbacks
):
    first = services.generation_create(user=member, params=make_params(apixo_account, prompt="off by default [fail]"))
    with django_capture_on_commit_callbacks(execute=True):
        _settle(first, TaskState.FAILED)
    assert mail.outbox == []  # every preference is off by default

    NotificationPreference.objects.create(user=member, email_failed=True)
    failing = services.generation_create(user=member, params=make_params(apixo_account, prompt="a failing one"))
    succeeding = services.generation_create(user=member, params=make_params(apixo_account, prompt="a good one"))
    with django_capture_on_commit_callbacks(execute=True):
        _settle(failing, TaskState.FAILED)
        _settle(succeeding, TaskState.SUCCEEDED)
    assert len(mail.outbox) == 1  # failed only: "finished" is still off
    sent = mail.outbox[0]
    assert sent.to == ["member@example.com"] and "failed" in sent.subject and "a failing one" in sent.subject
    assert f"/g/{failing.pk}/" in sent.body and "Nothing was charged" in sent.body

    # The same event again (a second save, a replayed signal) never sends twice.
    event = GenerationEvent.objects.filter(generation=failing, state="failed").get()
    from teamwork.notifications import on_generation_event

    with django_capture_on_commit_callbacks(execute=True):
        event.save()
        on_generation_event(event)
    assert len(mail.outbox) == 1
    assert NotificationSent.objects.filter(key=f"event:{event.pk}").count() == 1

    NotificationPreference.objects.filter(user=member).update(email_finished=True)
    ok = services.generation_create(user=member, params=make_params(apixo_account, prompt="a ready one"))
    with django_capture_on_commit_callbacks(execute=True):
        _settle(ok, TaskState.SUCCEEDED)
    assert len(mail.outbox) == 2 and "ready" in mail.outbox[1].subject and "a ready one" in mail.outbox[1].body


def test_notify_member_checks_the_preference_and_sends_on_commit_once_per_key(member, apixo_account, django_capture_on_commit_callbacks):
    g = services.generation_create(user=member, params=make_params(apixo_account))
    with django_capture_on_commit_callbacks(execute=True):
        assert notify_member(member, "approval", "Approved", "Your request was approved.", g) is False
    assert mail.outbox == []
    NotificationPreference.objects.create(user=member, email_approval=True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert notify_member(member, "approval", "Approved", "Your request was approved.", g, key="approval:1") is True
    assert mail.outbox == [] and len(callbacks) == 1  # nothing before the commit
    callbacks[0]()
    with django_capture_on_commit_callbacks(execute=True):
        notify_member(member, "approval", "Approved", "Your request was approved.", g, key="approval:1")
    assert len(mail.outbox) == 1 and mail.outbox[0].subject == "[Hailuo Studio] Approved"
    # Without a key, the same subject about the same generation goes once; another subject goes.
    with django_capture_on_commit_callbacks(execute=True):
        notify_member(member, "approval", "Rejected", "Over budget.", g)
        notify_member(member, "approval", "Rejected", "Over budget.", g)
    assert [m.subject for m in mail.outbox] == ["[Hailuo Studio] Approved", "[Hailuo Studio] Rejected"]
    with pytest.raises(ValueError):
        notify_member(member, "nonsense", "s", "b")


def test_only_my_own_cards_last_poll_is_marked_for_a_browser_notification(client, member, teammate, apixo_account):
    mine = services.generation_create(user=member, params=make_params(apixo_account, prompt="mine"))
    theirs = services.generation_create(user=teammate, params=make_params(apixo_account, prompt="theirs"))
    Generation.objects.filter(pk__in=[mine.pk, theirs.pk]).update(state=State.FAILED)
    client.force_login(member)
    own = client.get(f"/g/{mine.pk}/card/", HTTP_HX_REQUEST="true").content.decode()
    other = client.get(f"/g/{theirs.pk}/card/", HTTP_HX_REQUEST="true").content.decode()
    assert "data-final-notify data-mine" in own
    assert "data-final-notify" in other and "data-mine" not in other
    # The first render of a page is not a last poll: nothing to announce.
    assert "data-final-notify" not in client.get(f"/g/{mine.pk}/card/").content.decode()


def test_the_settings_page_edits_the_preferences(client, member):
    client.force_login(member)
    page = client.get("/settings/notifications/").content.decode()
    assert "Email me when a video of mine is ready" in page and 'data-notify-enable' in page
    assert 'href="/settings/notifications/"' in client.get("/studio/").content.decode()
    client.post("/settings/notifications/", {"email_finished": "on", "email_approval": "on"})
    pref = NotificationPreference.objects.get(user=member)
    assert (pref.email_finished, pref.email_failed, pref.email_approval) == (True, False, True)


# --- tags on cards and in the API -------------------------------------------------------------
def test_tags_show_on_cards_and_in_the_api_in_constant_queries(client, member, team, apixo_account, api_token, budget):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def tagged(n):
        for i in range(n):
            g = services.generation_create(user=member, params=make_params(apixo_account, prompt=f"tagged {n}-{i}"))
            for name in ("hero", f"t{i}"):
                Tag.objects.get_or_create(team=team, name=name)[0].generations.add(g)

    tagged(2)
    client.get("/api/v1/generations", **auth(api_token))  # the token's last use is written once a minute
    counts = []
    for n in (0, 5):
        tagged(n)
        with CaptureQueriesContext(connection) as queries:
            listed = client.get("/api/v1/generations", **auth(api_token)).json()["items"]
        counts.append(len(queries))
        assert all("hero" in item["tags"] for item in listed)
    assert counts[0] == counts[1], counts
    one = listed[0]
    assert one["tags"] == sorted(one["tags"]) and "starred" in one and "project_id" in one
    assert client.get(f"/api/v1/generations/{one['id']}", **auth(api_token)).json()["tags"] == one["tags"]
    client.force_login(member)
    studio = client.get("/studio/").content.decode()
    assert 'data-testid="card-tag"' in studio and '?tag=hero' in studio
    detail = client.get(f"/g/{one['id']}/").content.decode()
    assert 'data-testid="card-tag"' in detail and 'data-testid="save-template-form"' in detail
