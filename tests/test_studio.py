"""Studio pages through Django's test client: login, price before submit, form errors, budget refusal, visibility."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Budget
from generations import services
from generations.models import Generation

from .conftest import make_params
from .pg_roles import execute_as_owner

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_queue")]


@pytest.fixture
def logged_in(client, member):
    client.force_login(member)
    return client


def form_data(account, **overrides):
    data = {
        "provider_account": account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
        "duration": 6, "resolution": "768p", "prompt": "a tiktok dancer is dancing on a small drone", "image_url": "",
    }
    data.update(overrides)
    return data


def test_login_is_required_and_signup_is_closed(client):
    assert client.get("/studio/").status_code == 302
    page = client.get("/accounts/signup/")
    assert b"Sign Up Closed" in page.content or page.status_code in (302, 403, 404)


def test_login_with_email_and_password(client, member):
    response = client.post("/accounts/login/", {"login": member.email, "password": "pw-member-123"})
    assert response.status_code == 302 and response["Location"] == "/studio/"


def test_price_is_shown_before_submit_and_follows_the_mode(logged_in, apixo_account, budget):
    page = logged_in.get("/studio/").content.decode()
    assert "$0.336" in page and "Budget left $5.00" in page
    pro = logged_in.get("/studio/form/", form_data(apixo_account, mode="pro-text-to-video")).content.decode()
    assert "$0.49" in pro and 'value="5" selected' in pro and "1080p" in pro and "768p" not in pro


def test_submit_creates_a_queued_card_and_a_hold(logged_in, apixo_account, member):
    response = logged_in.post("/studio/", form_data(apixo_account), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    generation = Generation.objects.get()
    assert f'id="gen-{generation.pk}"' in response.content.decode() and "Queued" in response.content.decode()
    assert response["HX-Trigger"] == "budget-changed"
    assert generation.ledger_entries.get().kind == "hold"


def test_empty_prompt_is_an_error_beside_the_field(logged_in, apixo_account):
    response = logged_in.post("/studio/", form_data(apixo_account, prompt=""), HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="id_prompt_error"' in html and "APIXO: a prompt is required" in html
    assert Generation.objects.count() == 0


def test_image_mode_requires_an_image(logged_in, apixo_account):
    response = logged_in.post("/studio/", form_data(apixo_account, mode="standard-image-to-video"), HTTP_HX_REQUEST="true")
    assert 'id="id_image_url_error"' in response.content.decode()


def test_budget_refusal_is_shown_and_nothing_is_held(logged_in, apixo_account, member):
    Budget.objects.create(user=member, amount=Decimal("0.10"), period="month")
    response = logged_in.post("/studio/", form_data(apixo_account), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "Refused by your budget of $0.10 per month" in html and "over by $0.236" in html
    assert Generation.objects.count() == 0


def test_card_shows_failure_code_and_stops_polling_when_final(logged_in, apixo_account, member):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    live = logged_in.get(f"/g/{generation.pk}/card/").content.decode()
    assert 'hx-trigger="every 2s"' in live
    Generation.objects.filter(pk=generation.pk).update(state="failed", fail_code="PromptInvalid", fail_message="Prompt is invalid or rejected by provider")
    final = logged_in.get(f"/g/{generation.pk}/card/").content.decode()
    assert "PromptInvalid" in final and "Prompt is invalid or rejected by provider" in final
    assert "hx-trigger" not in final


def test_teammates_see_each_other_outsiders_get_404(client, apixo_account, member, teammate, outsider):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    client.force_login(teammate)
    assert client.get(f"/g/{generation.pk}/").status_code == 200
    client.force_login(outsider)
    for url in (f"/g/{generation.pk}/", f"/g/{generation.pk}/card/", f"/g/{generation.pk}/video.mp4"):
        assert client.get(url).status_code == 404
    assert str(generation.pk) not in client.get("/studio/").content.decode()


# --- the create form: capabilities, options, remix ----------------------------------------
@pytest.fixture
def minimax_account(db):
    from providers.models import ProviderAccount

    account = ProviderAccount(kind="minimax", label="MiniMax test", base_url="http://127.0.0.1:9/v1", priority=200)
    account.set_api_key("mm-test-key-0001")
    account.save()
    return account


def _checkbox(html: str, name: str) -> str:
    import re

    match = re.search(rf'<input type="checkbox" name="{name}"[^>]*>', html)
    assert match, f"no checkbox {name}"
    return match.group(0)


def test_an_unchecked_option_stays_unchecked_when_the_form_refreshes(logged_in, minimax_account):
    base = form_data(minimax_account, model="MiniMax-Hailuo-2.3", mode="text-to-video")
    # First render: the provider's default (prompt optimizer on).
    fresh = logged_in.get("/studio/form/", base).content.decode()
    assert "checked" in _checkbox(fresh, "opt_prompt_optimizer")
    assert f'name="_options" value="{minimax_account.pk}:prompt_optimizer,fast_pretreatment"' in fresh
    # The member unchecked it, then changed the duration: the refresh keeps it off.
    refreshed = logged_in.get("/studio/form/", {**base, "duration": 10, "_options": f"{minimax_account.pk}:prompt_optimizer,fast_pretreatment"}).content.decode()
    assert "checked" not in _checkbox(refreshed, "opt_prompt_optimizer")
    kept_on = logged_in.get(
        "/studio/form/", {**base, "_options": "prompt_optimizer,fast_pretreatment", "opt_prompt_optimizer": "on"}
    ).content.decode()
    assert "checked" in _checkbox(kept_on, "opt_prompt_optimizer")


def test_resolution_narrows_the_durations_and_the_price_follows(logged_in, minimax_account):
    base = form_data(minimax_account, model="MiniMax-Hailuo-2.3", mode="text-to-video")
    ten = logged_in.get("/studio/form/", {**base, "resolution": "768p", "duration": 10}).content.decode()
    assert "$0.56" in ten and 'value="10" selected' in ten
    # 1080p only comes in 6 s: 10 s is no longer offered and the pick falls back.
    hd = logged_in.get("/studio/form/", {**base, "resolution": "1080p", "duration": 10}).content.decode()
    assert "$0.49" in hd and 'value="10"' not in hd and 'value="6" selected' in hd


def test_text_modes_hide_the_image_inputs_image_modes_show_upload_and_url(logged_in, apixo_account):
    text = logged_in.get("/studio/form/", form_data(apixo_account)).content.decode()
    assert 'type="file"' not in text and 'type="hidden" name="image_url"' in text
    image = logged_in.get("/studio/form/", form_data(apixo_account, mode="standard-image-to-video")).content.decode()
    assert 'type="file" name="image_file"' in image and 'type="url" name="image_url"' in image
    assert "data-dropzone" in image and 'data-min-short-exclusive="300"' in image
    assert "short side &gt; 300 px" in image


def test_remix_prefills_the_form_with_the_generation(logged_in, apixo_account, member, outsider, client):
    generation = services.generation_create(
        user=member, params=make_params(apixo_account, prompt="a red kite over the dunes", duration=10)
    )
    page = logged_in.get(f"/studio/?remix={generation.pk}").content.decode()
    assert "a red kite over the dunes</textarea>" in page
    assert 'value="10" selected' in page and 'value="hailuo-2-3" selected' in page
    assert "$0.56" in page and 'data-testid="remix-note"' in page
    client.force_login(outsider)
    assert client.get(f"/studio/?remix={generation.pk}").status_code == 404
    assert client.get("/studio/?remix=not-a-uuid").status_code == 404


# --- the gallery: filters, keyset pages, a fixed number of queries -------------------------
def _bulk(account, user, team, n, **fields):
    """``n`` generations straight into the table (no services), newest last."""
    from datetime import timedelta

    from django.utils import timezone

    start = fields.pop("start", timezone.now() - timedelta(days=1))
    rows = [
        Generation(
            user=user, team=team, provider_account=account, provider_kind=account.kind,
            model=fields.get("model", "hailuo-2-3"), mode=fields.get("mode", "standard-text-to-video"),
            prompt=fields.get("prompt", f"prompt number {i}"), duration=6, resolution="768p",
            state=fields.get("state", "succeeded"), quoted_amount=Decimal("0.336"),
            charged_amount=Decimal("0.336") if fields.get("state", "succeeded") == "succeeded" else None,
            video=fields.get("video", f"videos/2025/01/{i}.mp4"), archive_state=fields.get("archive_state", "done"),
            poster=fields.get("poster", f"posters/2025/01/{i}.jpg"),
            created_at=start + timedelta(seconds=i), completed_at=start + timedelta(seconds=i + 40),
        )
        for i in range(n)
    ]
    return Generation.objects.bulk_create(rows)


def _cards(html: str) -> list[str]:
    import re

    return re.findall(r'id="gen-([0-9a-f-]{36})"', html)


def test_gallery_filters(logged_in, apixo_account, minimax_account, member, teammate, outsider, team):
    from datetime import timedelta

    from django.utils import timezone

    old = timezone.now() - timedelta(days=10)
    mine = _bulk(apixo_account, member, team, 2, prompt="a lighthouse in a storm")
    failed = _bulk(apixo_account, member, team, 1, state="failed", prompt="a cat [fail]", video="", archive_state="", poster="")
    mates = _bulk(minimax_account, teammate, team, 2, model="MiniMax-Hailuo-2.3", mode="text-to-video", start=old)
    theirs = _bulk(apixo_account, outsider, outsider.primary_team, 1, prompt="a lighthouse elsewhere")

    def shown(**query):
        response = logged_in.get("/studio/gallery/", query, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        return set(_cards(response.content.decode())), response

    everything, response = shown()
    assert everything == {str(g.pk) for g in mine + failed + mates}
    assert response["HX-Push-Url"] == "/studio/"
    assert shown(state="failed")[0] == {str(failed[0].pk)}
    assert shown(state="in_progress")[0] == set()
    assert shown(provider="minimax")[0] == {str(g.pk) for g in mates}
    # The model filter is by family: "Hailuo 2.3" is APIXO's hailuo-2-3 and MiniMax's MiniMax-Hailuo-2.3
    # alike (a provider's id in a link selects its family).
    assert shown(model="Hailuo 2.3")[0] == {str(g.pk) for g in mine + failed + mates}
    assert shown(model="MiniMax-Hailuo-2.3")[0] == {str(g.pk) for g in mine + failed + mates}
    assert shown(model="Hailuo 2.3 Fast")[0] == set()
    assert shown(member=teammate.pk)[0] == {str(g.pk) for g in mates}
    assert shown(member=outsider.pk)[0] == set()  # another team's member: still nothing of theirs
    lighthouse, response = shown(q="LIGHTHOUSE storm")
    assert lighthouse == {str(g.pk) for g in mine} and str(theirs[0].pk) not in lighthouse
    assert response["HX-Push-Url"] == "/studio/?q=LIGHTHOUSE+storm"
    recent = (timezone.now() - timedelta(days=2)).date().isoformat()
    assert shown(date_from=recent)[0] == {str(g.pk) for g in mine + failed}
    assert shown(date_to=(old + timedelta(days=1)).date().isoformat())[0] == {str(g.pk) for g in mates}
    # Empty states say why.
    html = shown(q="nothing like this")[1].content.decode()
    assert "No videos match these filters" in html
    # A bad value is ignored, not an error.
    assert shown(state="bogus", date_from="yesterday")[0] == everything
    # The full page renders the filter form with the member choices (teammates only).
    page = logged_in.get("/studio/?state=failed").content.decode()
    assert set(_cards(page)) == {str(failed[0].pk)}
    assert f'<option value="{teammate.pk}">{teammate.email}</option>' in page and outsider.email not in page


def test_empty_gallery_invites_a_first_video(logged_in, apixo_account):
    assert "No videos yet" in logged_in.get("/studio/").content.decode()


def test_gallery_keyset_pages_newest_first(logged_in, apixo_account, member, team):
    rows = _bulk(apixo_account, member, team, 30)
    newest_first = [str(g.pk) for g in reversed(rows)]
    first = logged_in.get("/studio/gallery/", {"size": 12}).content.decode()
    assert _cards(first) == newest_first[:12] and "Newer" not in first
    import re

    older = re.search(r'hx-get="/studio/gallery/(\?[^"]+)"[^>]*rel="next"', first).group(1).replace("&amp;", "&")
    assert "size=12" in older
    second = logged_in.get("/studio/gallery/" + older).content.decode()
    assert _cards(second) == newest_first[12:24]
    older = re.search(r'hx-get="/studio/gallery/(\?[^"]+)"[^>]*rel="next"', second).group(1).replace("&amp;", "&")
    third = logged_in.get("/studio/gallery/" + older).content.decode()
    assert _cards(third) == newest_first[24:] and 'rel="next"' not in third
    newer = re.search(r'hx-get="/studio/gallery/(\?[^"]+)"[^>]*rel="prev"', third).group(1).replace("&amp;", "&")
    back = logged_in.get("/studio/gallery/" + newer).content.decode()
    assert _cards(back) == newest_first[12:24]


@pytest.mark.parametrize("url", ["/studio/gallery/?size={size}", "/studio/?size={size}", "/studio/gallery/?size={size}&q=prompt&state=succeeded"])
def test_a_gallery_page_costs_a_fixed_number_of_queries_whatever_its_size(
    url, logged_in, apixo_account, member, teammate, team, budget, django_assert_num_queries
):
    from billing.models import Budget as TeamBudget

    TeamBudget.objects.create(team=team, amount=Decimal("100"), period="month")
    _bulk(apixo_account, member, team, 60)
    _bulk(apixo_account, teammate, team, 60, state="failed", video="", archive_state="", poster="")
    counts = {}
    # The per-process caches (provider accounts, price rules: billing.config_cache) are warm in a
    # running server; warm them here too, so the count does not depend on which test ran before.
    assert logged_in.get(url.format(size=1)).status_code == 200
    for size in (12, 48):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            response = logged_in.get(url.format(size=size))
        assert response.status_code == 200
        assert len(_cards(response.content.decode())) == size
        counts[size] = len(captured)
    assert counts[12] == counts[48], counts
    # And the exact count, so a new per-card query cannot hide. The fragment: session, user,
    # teams, one page of generations, the page's tags (one prefetch). The full page adds the form's accounts, the price rules,
    # the member choices and the budgets (one query, then per budget its spend, and for a
    # member's own budget its time zone twice: billing.selectors.budget_time_zone).
    expected = EXPECTED_QUERIES[url]
    from django.db import connection

    if connection.vendor != "postgresql":
        # The counts are PostgreSQL's: SQLite has no triggers for the running totals or the config
        # cache's counter, so it sums the ledger per budget and reads the price rules each time.
        return
    with django_assert_num_queries(expected):
        logged_in.get(url.format(size=24))


EXPECTED_QUERIES = {
    "/studio/gallery/?size={size}": 5,
    # + the teams the user is a team admin of (the "Team" menu), the spending policy (the
    # site-wide default layer), the teams a generation may be booked to (the team choice) and
    # the projects (switcher and filter), and the booked team's approval rule (the price row
    # says beforehand whether a submit will wait for a team admin). The Templates and History
    # menus load when opened.
    "/studio/?size={size}": 19,
    "/studio/gallery/?size={size}&q=prompt&state=succeeded": 5,
}


# --- the detail page: everything about one generation, retry, cancel -----------------------
def test_detail_shows_parameters_timeline_failure_and_ledger(logged_in, apixo_account, member):
    generation = services.generation_create(user=member, params=make_params(apixo_account, prompt="line one\nline two [fail]"))
    services.generation_cancel  # noqa: B018 (the lead's service exists)
    Generation.objects.filter(pk=generation.pk).update(
        state="failed", provider_task_id="task_abc123", fail_code="PromptInvalid", fail_message="Prompt is invalid or rejected by provider"
    )
    html = logged_in.get(f"/g/{generation.pk}/").content.decode()
    assert "line one\nline two [fail]</dd>" in html
    assert "task_abc123" in html and "PromptInvalid" in html and "Prompt is invalid or rejected by provider" in html
    assert "Quoted $0.336; hold placed" in html and ">Hold</span>" in html
    assert f'href="/studio/?remix={generation.pk}"' in html and 'data-testid="retry"' in html
    assert "<title>line one" in html and "Hailuo Studio</title>" in html


def test_retry_makes_a_new_generation_with_the_same_parameters(logged_in, apixo_account, member, budget):
    failed = services.generation_create(user=member, params=make_params(apixo_account, prompt="retry me", duration=10))
    Generation.objects.filter(pk=failed.pk).update(state="failed", fail_code="InternalError")
    response = logged_in.post(f"/g/{failed.pk}/retry/")
    new = Generation.objects.exclude(pk=failed.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/g/{new.pk}/"
    assert (new.prompt, new.duration, new.mode, new.state) == ("retry me", 10, "standard-text-to-video", "queued")
    assert "Retry submitted" in logged_in.get(response["Location"]).content.decode()
    # Only failed (or expired) generations can be retried.
    refused = logged_in.post(f"/g/{new.pk}/retry/")
    assert refused.status_code == 422 and "cannot be retried" in refused.content.decode()


def test_retry_refused_by_the_budget_shows_why(logged_in, apixo_account, member):
    failed = services.generation_create(user=member, params=make_params(apixo_account))
    Generation.objects.filter(pk=failed.pk).update(state="failed")
    Budget.objects.create(user=member, amount=Decimal("0.10"), period="month")
    response = logged_in.post(f"/g/{failed.pk}/retry/")
    assert response.status_code == 422
    assert "Refused by your budget of $0.10 per month" in response.content.decode()
    assert Generation.objects.count() == 1


def test_cancel_a_queued_generation_releases_the_hold(logged_in, apixo_account, member):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    assert 'data-testid="cancel"' in logged_in.get(f"/g/{generation.pk}/").content.decode()
    response = logged_in.post(f"/g/{generation.pk}/cancel/")
    assert response.status_code == 302
    generation.refresh_from_db()
    assert generation.state == "canceled"
    assert list(generation.ledger_entries.values_list("kind", flat=True).order_by("id")) == ["hold", "release"]
    html = logged_in.get(f"/g/{generation.pk}/").content.decode()
    assert "Canceled: the hold was released" in html and 'data-testid="cancel"' not in html


def test_cancel_is_not_offered_where_the_provider_has_none(logged_in, apixo_account, member):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    Generation.objects.filter(pk=generation.pk).update(state="running", provider_task_id="task_1")
    assert 'data-testid="cancel"' not in logged_in.get(f"/g/{generation.pk}/").content.decode()
    refused = logged_in.post(f"/g/{generation.pk}/cancel/")
    assert refused.status_code == 422 and "documents no way to cancel" in refused.content.decode()


def test_outsiders_cannot_retry_cancel_or_remix(client, apixo_account, member, outsider):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    client.force_login(outsider)
    for url in (f"/g/{generation.pk}/retry/", f"/g/{generation.pk}/cancel/"):
        assert client.post(url).status_code == 404
    assert client.get(f"/g/{generation.pk}/poster.jpg").status_code == 404
    generation.refresh_from_db()
    assert generation.state == "queued"


def test_title_favicon_and_labels(logged_in, apixo_account):
    html = logged_in.get("/studio/").content.decode()
    assert "<title>Studio · Hailuo Studio</title>" in html and 'rel="icon"' in html
    assert logged_in.get("/favicon.ico")["Location"].endswith("favicon.svg")
    import re

    # Every visible control has a label.
    for control_id in re.findall(r'<(?:input|select|textarea)(?![^>]*type="(?:hidden|submit)")[^>]*id="([^"]+)"', html):
        assert f'for="{control_id}"' in html, control_id


def test_the_form_refresh_is_a_post_that_keeps_a_long_prompt(logged_in, minimax_account):
    """The picks travel with the prompt: 2,000 CJK characters do not fit in a URL, so the
    refresh posts them (nothing is saved) and the re-rendered form keeps the text."""
    prompt = "一只白猫慵懒地躺在阳光下的窗台上" * 120
    data = {**form_data(minimax_account, model="MiniMax-Hailuo-2.3", mode="text-to-video", prompt=prompt), "_options": "prompt_optimizer,fast_pretreatment"}
    html = logged_in.post("/studio/form/", data, HTTP_HX_REQUEST="true").content.decode()
    assert prompt in html and "checked" not in _checkbox(html, "opt_prompt_optimizer")
    assert Generation.objects.count() == 0
    assert 'hx-post="/studio/form/"' in html


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # committed, so that the owner can ANALYZE them
def test_the_gallery_stays_fast_with_100000_generations(logged_in, member, teammate, apixo_account, django_assert_num_queries):
    """100,000 generations (inserted by SQL from one real one): the newest page, a page 50,000
    deep, a search with no match (the worst case: every visible prompt is read), a member and a
    state filter each answer well under a second, in the same 5 queries as a small gallery (4 for
    the search that matches nothing: no tags to prefetch)."""
    import time

    from django.db import connection

    from generations.selectors import encode_cursor

    template = services.generation_create(user=member, params=make_params(apixo_account, prompt="a template prompt"))
    columns = [f.column for f in Generation._meta.concrete_fields]
    varied = {
        "id": "gen_random_uuid()",
        "created_at": "t.created_at - make_interval(secs => i * 37)",
        "prompt": "t.prompt || ' #' || i",
        "state": "(ARRAY['succeeded', 'failed', 'running', 'succeeded'])[1 + i %% 4]",
        "user_id": f"CASE WHEN i %% 3 = 0 THEN {teammate.pk} ELSE {member.pk} END",
        "idempotency_key": "NULL",
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO generations_generation ({', '.join(columns)}) "
            f"SELECT {', '.join(varied.get(c, f't.{c}') for c in columns)} "
            "FROM generations_generation t, generate_series(1, 99999) i WHERE t.id = %s",
            [template.pk],
        )
    execute_as_owner("ANALYZE generations_generation")  # only the owner may; the suite runs as the app role
    assert Generation.objects.count() == 100_000
    deep = Generation.objects.order_by("-created_at", "-id")[50_000]
    logged_in.get("/studio/gallery/")  # warm up (templates)
    for url in (
        "/studio/gallery/?size=96",
        f"/studio/gallery/?before={encode_cursor(deep)}",
        "/studio/gallery/?q=nothing+like+this",
        f"/studio/gallery/?member={teammate.pk}&state=failed",
    ):
        started = time.monotonic()
        with django_assert_num_queries(4 if "nothing" in url else 5):
            response = logged_in.get(url)
        elapsed = time.monotonic() - started
        assert response.status_code == 200 and elapsed < 1.0, (url, elapsed)
    assert len(_cards(logged_in.get(f"/studio/gallery/?before={encode_cursor(deep)}&size=96").content.decode())) == 96


def test_a_gallery_filter_does_not_change_the_create_form(logged_in, apixo_account):
    html = logged_in.get("/studio/?model=hailuo-2-3-fast").content.decode()
    assert '<option value="hailuo-2-3" selected>' in html  # the create form keeps its default
    assert '<option value="Hailuo 2.3 Fast" selected>Hailuo 2.3 Fast</option>' in html  # the filter shows the pick's family
    prefilled = logged_in.get(f"/studio/?provider_account={apixo_account.pk}&model=hailuo-2-3-fast").content.decode()
    assert '<option value="hailuo-2-3-fast" selected>Hailuo 2.3 Fast</option>' in prefilled
