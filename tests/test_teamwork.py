"""Issue 15, first slice: projects, stars and tags, compare, share links, and the reports by
project and by kept (starred) takes, equal to the ledger's sums to the cent.

Real PostgreSQL; the APIXO sandbox prices and accepts the creates (loopback HTTP).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.models import Membership, Team, User
from billing.models import LedgerEntry
from billing.reports import report_query_from_params
from billing.reports.cost import cost_report
from billing.services import ledger_adjust
from generations import services
from generations.models import Generation, State
from providers.base import TaskState, TaskUpdate
from teamwork.models import Project, ShareLink, hash_token
from teamwork.services import share_create

from .conftest import make_params

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

VIDEO_BYTES = bytes(range(256)) * 8


@pytest.fixture(autouse=True)
def _quiet(no_queue, media_root):
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def project(team):
    return Project.objects.create(team=team, name="Client Acme")


@pytest.fixture
def other_project(outsider):
    return Project.objects.create(team=outsider.primary_team, name="Their client")


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def make(user, account, **params) -> Generation:
    return services.generation_create(user=user, params=make_params(account, **params))


def archived(g: Generation) -> Generation:
    g.video.save("v.mp4", ContentFile(VIDEO_BYTES), save=False)
    g.poster.save("p.jpg", ContentFile(b"\xff\xd8\xff\xe0JPEG"), save=False)
    g.archive_state = "done"
    g.state = State.SUCCEEDED
    g.save()
    return g


_serial = iter(range(1, 10_000))


def succeed(g: Generation) -> Generation:
    """Through the real lifecycle: submitted, then the provider's success (hold captured)."""
    task = f"task-{next(_serial)}"
    Generation.objects.filter(pk=g.pk).update(state=State.SUBMITTED, provider_task_id=task)
    update = TaskUpdate(task_id=task, state=TaskState.SUCCEEDED, provider_state="success", result_urls=("http://127.0.0.1:1/v.mp4",))
    assert services.generation_apply_update(generation_id=g.pk, update=update) == "succeeded"
    return Generation.objects.get(pk=g.pk)


def fail(g: Generation) -> Generation:
    task = f"task-{next(_serial)}"
    Generation.objects.filter(pk=g.pk).update(state=State.SUBMITTED, provider_task_id=task)
    update = TaskUpdate(task_id=task, state=TaskState.FAILED, provider_state="failed", fail_code="X")
    assert services.generation_apply_update(generation_id=g.pk, update=update) == "failed"
    return Generation.objects.get(pk=g.pk)


# --- projects -------------------------------------------------------------------------------
def test_the_studio_switcher_offers_only_my_teams_open_projects_and_files_the_take(
    client, member, apixo_account, project, other_project, budget
):
    archived_one = Project.objects.create(team=project.team, name="Old client", archived=True)
    client.force_login(member)
    page = client.get("/studio/").content.decode()
    assert "Client Acme" in page and "Their client" not in page
    switcher = page.split('name="project"')[1].split("</select>")[0]
    assert "Client Acme" in switcher and f'value="{archived_one.pk}"' not in switcher  # not in the switcher
    data = {
        "provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video", "duration": 6,
        "resolution": "768p", "prompt": "a red kite over the dunes", "project": project.pk,
    }
    assert client.post("/studio/", data).status_code == 302
    g = Generation.objects.get(prompt="a red kite over the dunes")
    assert g.project == project and g.team == project.team
    # Another team's project (or an archived one) is refused by the form: nothing is created.
    for pid in (other_project.pk, archived_one.pk):
        response = client.post("/studio/", {**data, "project": pid, "prompt": f"refused {pid}"})
        assert response.status_code == 200 and not Generation.objects.filter(prompt=f"refused {pid}").exists()


def test_the_api_create_takes_a_project_of_my_teams_only(client, member, api_token, apixo_account, project, other_project, budget):
    body = {"provider_account_id": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
            "prompt": "a cat", "duration": 6, "resolution": "768p"}
    ok = client.post("/api/v1/generations", {**body, "project_id": project.pk}, content_type="application/json", **auth(api_token))
    assert ok.status_code == 201 and ok.json()["project_id"] == project.pk and ok.json()["starred"] is False
    theirs = client.post("/api/v1/generations", {**body, "project_id": other_project.pk}, content_type="application/json", **auth(api_token))
    assert theirs.status_code == 404 and theirs.json()["code"] == "not_found"
    Project.objects.filter(pk=project.pk).update(archived=True)
    old = client.post("/api/v1/generations", {**body, "project_id": project.pk}, content_type="application/json", **auth(api_token))
    assert old.status_code == 422 and old.json()["code"] == "project_archived"
    assert Generation.objects.count() == 1
    # The list filter.
    make(member, apixo_account, prompt="no project")
    listed = client.get(f"/api/v1/generations?project={project.pk}", **auth(api_token)).json()["items"]
    assert [g["id"] for g in listed] == [ok.json()["id"]]


def test_projects_api_and_page_show_only_my_teams(client, member, outsider, api_token, project, other_project):
    names = [p["name"] for p in client.get("/api/v1/projects", **auth(api_token)).json()]
    assert names == ["Client Acme"]
    made = client.post("/api/v1/projects", {"name": "Spring"}, content_type="application/json", **auth(api_token))
    assert made.status_code == 201 and made.json()["team_id"] == project.team_id
    again = client.post("/api/v1/projects", {"name": "Spring"}, content_type="application/json", **auth(api_token))
    assert again.status_code == 409 and again.json()["code"] == "project_exists"
    foreign = client.post("/api/v1/projects", {"name": "X", "team_id": other_project.team_id}, content_type="application/json", **auth(api_token))
    assert foreign.status_code == 404
    client.force_login(member)
    page = client.get("/projects/").content.decode()
    assert "Client Acme" in page and "Their client" not in page
    assert client.post(f"/projects/{other_project.pk}/archive/").status_code == 404
    assert client.post(f"/projects/{project.pk}/archive/").status_code == 302
    assert Project.objects.get(pk=project.pk).archived


def test_the_gallery_filters_by_project_star_and_tag(client, member, teammate, apixo_account, project, budget):
    a = make(member, apixo_account, prompt="alpha take", project_id=project.pk)
    b = make(teammate, apixo_account, prompt="beta take")
    make(member, apixo_account, prompt="gamma take")
    client.force_login(member)
    assert client.post(f"/g/{b.pk}/star/", {"starred": "1"}).status_code == 302
    assert client.post(f"/g/{a.pk}/tags/", {"tags": "Hero, client ok"}).status_code == 302
    assert sorted(t.name for t in a.tags.all()) == ["client ok", "hero"]

    def shown(query):
        html = client.get(f"/studio/gallery/?{query}").content.decode()
        return sorted(p for p in ("alpha", "beta", "gamma") if f"{p} take" in html)

    assert shown(f"project={project.pk}") == ["alpha"]
    assert shown("starred=on") == ["beta"]
    assert shown("tag=hero") == ["alpha"]
    assert shown("tag=HERO&q=alpha") == ["alpha"]
    assert shown("tag=nothing") == []


# --- star and tags through the API; visibility ----------------------------------------------
def test_star_and_tags_through_the_api_and_another_teams_take_is_404(client, member, outsider, api_token, apixo_account, budget):
    g = make(member, apixo_account)
    assert client.put(f"/api/v1/generations/{g.pk}/star", **auth(api_token)).json() == {"id": str(g.pk), "starred": True}
    assert client.get("/api/v1/generations?starred=true", **auth(api_token)).json()["items"][0]["starred"] is True
    assert client.delete(f"/api/v1/generations/{g.pk}/star", **auth(api_token)).json()["starred"] is False
    assert client.get("/api/v1/generations?starred=true", **auth(api_token)).json()["items"] == []
    tagged = client.put(f"/api/v1/generations/{g.pk}/tags", {"tags": ["Keeper", "v2"]}, content_type="application/json", **auth(api_token))
    assert tagged.status_code == 200 and tagged.json() == {"tags": ["keeper", "v2"]}
    assert [i["id"] for i in client.get("/api/v1/generations?tag=keeper", **auth(api_token)).json()["items"]] == [str(g.pk)]
    bad = client.put(f"/api/v1/generations/{g.pk}/tags", {"tags": ["<script>"]}, content_type="application/json", **auth(api_token))
    assert bad.status_code == 422 and bad.json()["fields"]["tags"]
    # The outsider: every route answers 404, and nothing changes.
    client.force_login(outsider)
    assert client.post(f"/g/{g.pk}/star/", {"starred": "1"}).status_code == 404
    assert client.post(f"/g/{g.pk}/tags/", {"tags": "mine"}).status_code == 404
    assert client.post(f"/g/{g.pk}/share/").status_code == 404
    g.refresh_from_db()
    assert not g.starred and sorted(t.name for t in g.tags.all()) == ["keeper", "v2"]


# --- compare --------------------------------------------------------------------------------
def test_compare_shows_two_to_four_visible_takes_with_their_parameters(client, member, teammate, outsider, apixo_account, budget):
    takes = [archived(make(member if i % 2 else teammate, apixo_account, prompt=f"take number {i}")) for i in range(5)]
    client.force_login(member)
    ids = "&".join(f"ids={t.pk}" for t in takes[:3])
    page = client.get(f"/compare/?{ids}")
    html = page.content.decode()
    assert page.status_code == 200 and html.count('data-testid="compare-take"') == 3
    assert all(f"take number {i}" in html for i in range(3)) and "js/compare.js" in html and "<script>" not in html
    assert html.count("768p") >= 3
    for query in (f"ids={takes[0].pk}", "&".join(f"ids={t.pk}" for t in takes)):  # 1 or 5: refused
        assert client.get(f"/compare/?{query}").status_code == 302
    mine_and_foreign = archived(make(outsider, apixo_account, prompt="not yours"))
    client.force_login(outsider)
    assert client.get(f"/compare/?ids={takes[0].pk}&ids={mine_and_foreign.pk}").status_code == 404


# --- share links ----------------------------------------------------------------------------
def test_a_share_link_plays_logged_out_shows_only_what_was_chosen_and_is_logged(client, member, apixo_account, budget):
    g = archived(make(member, apixo_account, prompt="a lighthouse at dawn"))
    client.force_login(member)
    created = client.post(f"/g/{g.pk}/share/", {"days": "7", "show_prompt": "1"})
    assert created.status_code == 201
    url = created.context["url"]
    token = url.rstrip("/").rsplit("/", 1)[1]
    link = ShareLink.objects.get()
    assert link.token_hash == hash_token(token) and len(token) >= 43
    assert not ShareLink.objects.filter(token_hash=token).exists()  # only the hash is stored
    client.logout()
    page = client.get(f"/s/{token}/")
    html = page.content.decode()
    assert page.status_code == 200 and "a lighthouse at dawn" in html
    assert "$" not in html and "member@example.com" not in html and "USD" not in html
    assert "768p" not in html  # parameters were not chosen
    video = client.get(f"/s/{token}/{g.pk}.mp4", HTTP_RANGE="bytes=0-9")
    assert video.status_code == 206 and b"".join(video.streaming_content) == VIDEO_BYTES[:10]
    client.get(f"/s/{token}/")
    link.refresh_from_db()
    assert link.open_count == 2 and link.last_opened_at is not None
    # Another take through this token, a guessed token: 404.
    other = archived(make(member, apixo_account, prompt="another"))
    assert client.get(f"/s/{token}/{other.pk}.mp4").status_code == 404
    assert client.get(f"/s/{token[:-1]}x/").status_code == 404
    # Revoked: 404 at once; expired: 404 too.
    client.force_login(member)
    assert client.post(f"/links/{link.pk}/revoke/").status_code == 302
    client.logout()
    assert client.get(f"/s/{token}/").status_code == 404
    assert client.get(f"/s/{token}/{g.pk}.mp4").status_code == 404
    link2, raw2 = share_create(user=member, generation=g, days=1)
    assert client.get(f"/s/{raw2}/").status_code == 200
    ShareLink.objects.filter(pk=link2.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get(f"/s/{raw2}/").status_code == 404


def test_a_project_link_shows_its_starred_takes_only_and_another_team_cannot_revoke(
    client, member, outsider, api_token, apixo_account, project, budget
):
    kept = archived(make(member, apixo_account, prompt="kept take", project_id=project.pk))
    archived(make(member, apixo_account, prompt="dropped take", project_id=project.pk))
    Generation.objects.filter(pk=kept.pk).update(starred=True)
    made = client.post("/api/v1/share-links", {"project_id": project.pk, "show_parameters": True}, content_type="application/json",
                       **auth(api_token))
    assert made.status_code == 201
    body = made.json()
    html = client.get(body["url"].replace("http://testserver", "")).content.decode()
    assert "kept take" in html and "dropped take" not in html and "768p" in html
    listed = client.get("/api/v1/share-links", **auth(api_token)).json()
    assert listed[0]["open_count"] == 1 and listed[0]["url"] is None
    client.force_login(outsider)
    assert client.post(f"/links/{body['id']}/revoke/").status_code == 404
    assert client.get("/projects/").content.decode().count('data-testid="share-link-row"') == 0
    from accounts.models import ApiToken

    _, raw = ApiToken.issue(user=outsider, name="t")
    assert client.post(f"/api/v1/share-links/{body['id']}/revoke", **auth(raw)).status_code == 404
    assert client.post("/api/v1/share-links", {"project_id": project.pk}, content_type="application/json", **auth(raw)).status_code == 404
    assert client.post(f"/api/v1/share-links/{body['id']}/revoke", **auth(api_token)).json()["revoked_at"] is not None


# --- reports: by project, and kept against everything else, to the cent ----------------------
def test_spend_by_project_member_and_kept_equals_the_ledger_to_the_cent(client, member, teammate, apixo_account, team, project):
    from billing.models import Budget

    Budget.objects.create(team=team, amount=Decimal("500"), period=Budget.Period.MONTH)
    second = Project.objects.create(team=team, name="Client Zed")
    admin = User.objects.create_superuser("root@example.com", "pw-root-123")
    plan = [
        (member, project, True, "succeed", dict(duration=6, resolution="768p")),
        (member, project, False, "succeed", dict(duration=10, resolution="768p")),
        (member, second, True, "succeed", dict(duration=10, resolution="768p", prompt="a longer take")),
        (teammate, project, True, "succeed", dict(duration=6, resolution="768p")),
        (teammate, None, False, "succeed", dict(duration=6, resolution="768p")),
        (teammate, second, False, "fail", dict(duration=6, resolution="768p")),
        (member, None, True, "fail", dict(duration=6, resolution="768p")),
    ]
    made = []
    for user, proj, star, outcome, params in plan:
        g = make(user, apixo_account, project_id=proj.pk if proj else None, **params)
        g = succeed(g) if outcome == "succeed" else fail(g)
        Generation.objects.filter(pk=g.pk).update(starred=star)
        made.append(g)
    # An adjustment on a starred take counts for it; one not tied to a take counts apart.
    ledger_adjust(user=member, amount=Decimal("-0.05"), reason="partial refund", created_by=admin, team=team, generation=made[0])
    ledger_adjust(user=member, amount=Decimal("1.25"), reason="setup fee", created_by=admin, team=team)

    oracle: dict[tuple, Decimal] = defaultdict(Decimal)
    for e in LedgerEntry.objects.select_related("generation"):
        delta = {"capture": e.amount, "adjustment": e.amount, "credit": -e.amount}.get(e.kind, Decimal(0))
        key = (e.generation.project_id if e.generation else None, e.user_id, e.generation.starred if e.generation else None)
        oracle[key] += delta
    query = report_query_from_params({"period": "this_month", "group_by": "project,member,kept"})
    report = cost_report(query)
    got = {(g.key["project"], g.key["member"], g.key["kept"]): g.figures.spend for g in report.groups}
    assert got == {k: v for k, v in oracle.items() if k in got} and set(oracle) == set(got)
    assert sum(got.values()) == report.totals.spend == sum(oracle.values())
    kept = sum(v for (_, _, starred), v in got.items() if starred)
    assert kept == sum(g.charged_amount for g in Generation.objects.filter(starred=True, state=State.SUCCEEDED)) - Decimal("0.05")
    labels = {g.labels["project"] for g in report.groups} | {g.labels["kept"] for g in report.groups}
    assert {"Client Acme", "Client Zed", "(no project)", "Starred", "Not starred", "(not a generation)"} <= labels
    # The groups export has the project's id and name; its rows sum to the ledger's cent.
    finance = User.objects.create_user("fin@example.com", "pw-fin-123")
    Membership.objects.create(user=finance, team=team, role=Membership.Role.FINANCE)
    client.force_login(finance)
    response = client.get(f"/reports/export.csv?rows=groups&period=this_month&group_by=project,kept&team_id={team.pk}")
    assert response.status_code == 200, response.content[:300]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {"project_id", "project", "kept", "spend_usd"} <= set(rows[0])
    by_project = defaultdict(Decimal)
    for row in rows:
        by_project[row["project"]] += Decimal(row["spend_usd"])
    expected = defaultdict(Decimal)
    for (pid, _, _), v in oracle.items():
        expected[Project.objects.get(pk=pid).name if pid else "(no project)"] += v
    assert dict(by_project) == dict(expected)
    assert Team.objects.count() == 1
