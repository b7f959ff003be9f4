"""Issue 14, server side: the rough edges a new user hit, each reproduced and fixed.

Provider options follow the provider (not the click order); cancel is offered only in the
provider's documented states; an upload's rule error sits under the upload; 403/404 pages in
the site's layout without tracebacks; admin messages in words and units; MiniMax's "success"
never a failure message; a first poll sweep as the cluster starts; manage.py in the demo;
human model names; the prompt kept and refused (not cut) over the limit; money in cents.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from generations import services
from generations.models import Generation, State
from providers.models import ProviderAccount

from .conftest import make_params, qcluster_process

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _account(kind: str, label: str, priority: int = 100, **options) -> ProviderAccount:
    account = ProviderAccount(kind=kind, label=label, base_url="http://127.0.0.1:9", priority=priority, options=options)
    account.set_api_key(f"sk-{kind}-test-9876")
    account.save()
    return account


def _checkbox(html: str, name: str) -> str:
    match = re.search(rf'<input type="checkbox" name="{name}"[^>]*>', html)
    assert match, f"no checkbox {name}"
    return match.group(0)


# --- bug 1: options do not carry over between providers -----------------------------------
def test_qingbo_options_start_at_their_defaults_whatever_provider_was_shown_before(client, member):
    poyo = _account("poyo", "PoYo", priority=1)
    qingbo = _account("qingbo", "qingbo", priority=2)
    client.force_login(member)
    # PoYo's form was on screen with its (default-off) prompt optimizer unchecked; then qingbo is chosen.
    poyo_form = client.post("/studio/form/", {"provider_account": poyo.pk, "model": "hailuo-2.3", "mode": "text-to-video"})
    marker = re.search(r'name="_options" value="([^"]*)"', poyo_form.content.decode()).group(1)
    assert marker == f"{poyo.pk}:prompt_optimizer"
    assert "checked" not in _checkbox(poyo_form.content.decode(), "opt_prompt_optimizer")
    via_poyo = client.post("/studio/form/", {"provider_account": qingbo.pk, "model": "hailuo-2.3", "mode": "text-to-video",
                                             "_options": marker}).content.decode()
    direct = client.post("/studio/form/", {"provider_account": qingbo.pk, "model": "hailuo-2.3", "mode": "text-to-video"}).content.decode()
    assert "checked" in _checkbox(via_poyo, "opt_prompt_optimizer")  # qingbo's documented default: on
    assert _checkbox(via_poyo, "opt_prompt_optimizer") == _checkbox(direct, "opt_prompt_optimizer")
    # Within the same account an unchecked option stays unchecked on a refresh.
    own = re.search(r'name="_options" value="([^"]*)"', direct).group(1)
    again = client.post("/studio/form/", {"provider_account": qingbo.pk, "model": "hailuo-2.3", "mode": "image-to-video",
                                          "_options": own}).content.decode()
    assert "checked" not in _checkbox(again, "opt_prompt_optimizer")


# --- rough edge 6: members see only options that change their video -------------------------
def test_account_settings_and_options_without_effect_are_not_in_the_member_form(client, member):
    seed = _account("qingbo", "qingbo seed", priority=1)
    client.force_login(member)
    html = client.get(f"/studio/?provider_account={seed.pk}&model=hailuo-2.3&mode=text-to-video").content.decode()
    assert "Model naming" not in html and "opt_model_naming" not in html
    assert "opt_aspect_ratio" not in html  # documented only with the "minimax" model naming
    minimax_named = _account("qingbo", "qingbo minimax", priority=2, model_naming="minimax")
    html = client.get(f"/studio/?provider_account={minimax_named.pk}&model=hailuo-2.3&mode=text-to-video").content.decode()
    assert "opt_aspect_ratio" in html and "opt_model_naming" not in html


# --- bug 3: cancel only where the provider documents it in the current state -----------------
@pytest.mark.parametrize(
    ("kind", "state", "provider_state", "offered"),
    [
        ("qingbo", State.SUBMITTED, "queued", True),
        ("qingbo", State.SUBMITTED, "", True),
        ("qingbo", State.RUNNING, "processing", False),
        ("apixo", State.SUBMITTED, "pending", False),
        ("apixo", State.QUEUED, "", True),  # not sent yet: a local cancel
        ("qingbo", State.SUCCEEDED, "completed", False),
    ],
)
def test_cancel_is_offered_only_in_documented_states(client, member, kind, state, provider_state, offered):
    account = _account(kind, kind)
    model = "hailuo-2.3" if kind == "qingbo" else "hailuo-2-3"
    mode = "text-to-video" if kind == "qingbo" else "standard-text-to-video"
    generation = Generation.objects.create(
        user=member, provider_account=account, provider_kind=kind, model=model, mode=mode, prompt="a red kite",
        duration=6, resolution="768p", quoted_amount=Decimal("0.3"), state=state, provider_state=provider_state,
    )
    assert generation.cancel_offered is offered
    client.force_login(member)
    detail = client.get(f"/g/{generation.pk}/").content.decode()
    assert ('data-testid="cancel"' in detail) is offered
    card = client.get(f"/g/{generation.pk}/card/").content.decode()
    assert ('data-testid="card-cancel"' in card) is offered


# --- bug 4: an upload's rule error sits under the upload -----------------------------------
def test_an_upload_that_breaks_a_rule_is_refused_under_the_upload(client, member, apixo_account, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from .browser.conftest import png_bytes

    settings.MEDIA_ROOT = tmp_path
    client.force_login(member)
    response = client.post(
        "/studio/",
        {"provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-image-to-video", "duration": 6,
         "resolution": "768p", "prompt": "the poster shimmers", "image_url": "",
         "image_file": SimpleUploadedFile("tiny.png", png_bytes(200, 200), content_type="image/png")},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert 'id="id_image_file_error"' in html and "300" in html
    assert 'id="id_image_url_error"' not in html
    assert not Generation.objects.exists()


# --- bug 5: error pages in the site's layout; no traceback for an expected refusal ----------
def test_403_and_404_are_pages_of_the_site_with_the_servers_message(client, member, caplog):
    client.force_login(member)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        forbidden = client.get("/reports/")
    html = forbidden.content.decode()
    assert forbidden.status_code == 403
    assert "Reports need the finance role." in html and 'class="topbar"' in html and "Back to the studio" in html
    assert not [r for r in caplog.records if r.exc_info]  # the one line, no traceback
    missing = client.get("/g/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code == 404 and 'class="topbar"' in missing.content.decode()


def test_the_log_filter_drops_client_error_tracebacks_only():
    from config.logfilters import QuietClientErrors

    def record(status):
        try:
            raise RuntimeError("x")
        except RuntimeError:
            import sys

            rec = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "m", (), sys.exc_info())
        rec.status_code = status
        return rec

    forbidden, broken = record(403), record(500)
    assert QuietClientErrors().filter(forbidden) and forbidden.exc_info is None
    assert QuietClientErrors().filter(broken) and broken.exc_info is not None


# --- bug 8: the admin speaks in words and units ---------------------------------------------
def test_admin_generation_page_has_no_save_and_poll_now_explains_itself(client, apixo_account, member, sandbox):
    from accounts.models import User

    admin = User.objects.create_superuser("boss@example.com", "pw-boss-123")
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    client.force_login(admin)
    page = client.get(f"/admin/generations/generation/{generation.pk}/change/").content.decode()
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    answer = client.post(
        "/admin/generations/generation/", {"action": "poll_now", "_selected_action": [generation.pk]}, follow=True
    ).content.decode()
    assert "Nothing to poll: none of the 1 selected generation(s) is in flight" in answer
    assert "{}" not in answer


def test_poll_summary_in_words():
    from generations.admin import poll_summary

    assert poll_summary({"polled": 2, "succeeded": 1, "in_progress": 1}, in_flight=2, selected=3) == (
        "Polled 2 of the 3 selected generation(s) (2 in flight): 1 in progress, 1 succeeded."
    )


def test_test_connection_gives_units_and_the_accounts_last_four(client, apixo_account, sandbox):
    from accounts.models import User
    from providers.services import format_balance, provider_account_check

    sandbox.configure(balance=73.526)
    check = provider_account_check(account=apixo_account)
    assert check.ok and check.message == f"Connected to “{apixo_account}”: balance $73.53"
    assert format_balance(9965, "credits") == "9,965 credits" and format_balance("35.5", "credits") == "35.5 credits"
    admin = User.objects.create_superuser("boss@example.com", "pw-boss-123")
    client.force_login(admin)
    page = client.get(f"/admin/providers/provideraccount/{apixo_account.pk}/change/").content.decode()
    assert "Stored key: ••••0042" in page


# --- bug 9: MiniMax's "success" is not a failure message ------------------------------------
def test_minimax_fail_with_status_code_zero_has_no_success_message():
    from providers.adapters.minimax.adapter import MiniMaxAdapter

    adapter = MiniMaxAdapter(api_key="k", base_url="http://127.0.0.1:9")
    update = adapter.parse_status({"task_id": "t1", "status": "Fail", "base_resp": {"status_code": 0, "status_msg": "success"}})
    assert update.state.value == "failed" and "success" not in update.fail_message.lower() and update.fail_code == "fail"
    coded = adapter.parse_status({"task_id": "t1", "status": "Fail", "base_resp": {"status_code": 1026, "status_msg": "input new_sensitive"}})
    assert (coded.fail_code, coded.fail_message) == ("1026", "input new_sensitive")


# --- bug 10: a first poll sweep as the cluster starts ----------------------------------------
def test_the_start_sweep_ends_before_the_schedules_next_run(db):
    from django_q.models import Schedule

    from generations import tasks
    from generations.models import SweepLease

    Schedule.objects.create(func="generations.tasks.poll_sweep", schedule_type=Schedule.MINUTES, minutes=1,
                            next_run=timezone.now() + timedelta(seconds=4))
    started = time.monotonic()
    counts = tasks.poll_sweep_at_start()
    assert "skipped" not in counts and time.monotonic() - started < 5
    assert not SweepLease.objects.filter(expires_at__gt=timezone.now()).exclude(holder="").exists()  # the slot is free again


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_run_workers_sweeps_as_soon_as_it_starts(tmp_path):
    from django_q.models import Schedule, Task

    # The schedule's next tick is a minute away: the start sweep runs until just before it.
    Schedule.objects.create(func="generations.tasks.poll_sweep", schedule_type=Schedule.MINUTES, minutes=1,
                            next_run=timezone.now() + timedelta(seconds=60))

    with qcluster_process(public_base_url="", media_root=tmp_path, log_path=tmp_path / "workers.log"):
        from generations.models import SweepLease

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not SweepLease.objects.filter(expires_at__gt=timezone.now()).exclude(holder="").exists():
            time.sleep(0.2)
        # A sweep holds its slot within seconds of the start, long before the schedule's tick.
        assert SweepLease.objects.filter(expires_at__gt=timezone.now()).exclude(holder="").exists()
    assert not Task.objects.filter(func="generations.tasks.poll_sweep").exists()  # the schedule did not run it


# --- bug 12: manage.py in the demo checkout --------------------------------------------------
def test_manage_py_reads_the_demo_secrets(tmp_path, monkeypatch):
    import manage

    env = tmp_path / "dev.env"
    env.write_text("DJANGO_SECRET_KEY=from-the-demo\nHAILUO_ENCRYPTION_KEYS=abc=\n")
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    monkeypatch.setenv("HAILUO_ENCRYPTION_KEYS", "already-set")
    manage.load_demo_env(env)
    import os

    assert os.environ["DJANGO_SECRET_KEY"] == "from-the-demo"
    assert os.environ["HAILUO_ENCRYPTION_KEYS"] == "already-set"  # the environment wins
    manage.load_demo_env(tmp_path / "absent.env")  # no demo: nothing happens


# --- rough edges 1, 2, 4, 7 --------------------------------------------------------------------
def test_model_names_are_human_and_the_filter_lists_families(client, member, apixo_account):
    from providers.registry import model_families

    families = model_families()
    assert set(families["Hailuo 2.3"]) == {"hailuo-2-3", "hailuo-2.3", "v2.3", "MiniMax-Hailuo-2.3"}
    assert set(families["Hailuo 2.3 Fast"]) >= {"hailuo-2-3-fast", "v2.3-fast", "MiniMax-Hailuo-2.3-Fast"}
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    client.force_login(member)
    studio = client.get("/studio/").content.decode()
    assert '<option value="Hailuo 2.3">Hailuo 2.3</option>' in studio and '<option value="v2.3">' not in studio
    assert 'data-testid="model-name">Hailuo 2.3</span>' in studio
    assert str(generation.pk) in client.get("/studio/gallery/?model=Hailuo+2.3").content.decode()
    assert str(generation.pk) not in client.get("/studio/gallery/?model=Hailuo+2.3+Fast").content.decode()
    detail = client.get(f"/g/{generation.pk}/").content.decode()
    assert f"<title>{generation.prompt[:57]}" in detail and "<code>hailuo-2-3</code>" in detail


def test_the_prompt_is_kept_counted_and_refused_not_cut_over_the_limit(client, member, apixo_account, monkeypatch):
    from .conftest import record_queue

    record_queue(monkeypatch)
    mm = _account("minimax", "MiniMax", priority=300)
    client.force_login(member)
    form = client.get(f"/studio/?provider_account={mm.pk}&model=MiniMax-Hailuo-2.3&mode=text-to-video").content.decode()
    assert "maxlength" not in re.search(r"<textarea[^>]*>", form).group(0)
    assert 'data-max-chars="2000"' in form and "/ 2000 characters" in form
    too_long = client.post("/studio/", {"provider_account": mm.pk, "model": "MiniMax-Hailuo-2.3", "mode": "text-to-video",
                                        "duration": 6, "resolution": "768p", "prompt": "雪" * 2001}, HTTP_HX_REQUEST="true")
    assert too_long.status_code == 422
    assert "The prompt has 2,001 characters; MiniMax accepts at most 2,000" in too_long.content.decode()
    kept = client.post("/studio/", {"provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
                                    "duration": 6, "resolution": "768p", "prompt": "a lighthouse at dusk"}, HTTP_HX_REQUEST="true")
    assert kept.status_code == 200 and "a lighthouse at dusk</textarea>" in kept.content.decode()


def test_money_in_cents_for_sums_and_exact_for_prices(client, member, budget):
    from billing.money import format_cents, format_usd

    assert format_cents(Decimal("23.6679")) == "$23.67" and format_cents(Decimal("1250")) == "$1,250.00"
    assert format_usd(Decimal("0.336")) == "$0.336"  # a per-second quote keeps its places
    client.force_login(member)
    assert "$5.00 left" in client.get("/studio/budget/").content.decode()


def test_downloads_are_named_after_the_prompt_and_the_date(member, apixo_account):
    from generations.views import download_name

    generation = services.generation_create(user=member, params=make_params(apixo_account, prompt="A Paper boat, drifting!"))
    assert download_name(generation) == f"a-paper-boat-drifting-{generation.created_at:%Y-%m-%d}.mp4"
    generation.prompt = "一只白猫"
    assert download_name(generation).startswith("hailuo-video-")


def test_team_admins_get_a_team_menu(client, member, team):
    from accounts.models import Membership

    client.force_login(member)
    assert 'data-testid="team-menu"' not in client.get("/studio/").content.decode()
    Membership.objects.filter(user=member).update(role=Membership.Role.TEAM_ADMIN)
    html = client.get("/studio/").content.decode()
    assert f'href="/team/{team.pk}/budgets/"' in html


def test_the_api_docs_lead_back_to_the_studio(client, member):
    client.force_login(member)
    html = client.get("/api/v1/docs").content.decode()
    assert 'href="/studio/"' in html and "Back to Hailuo Studio" in html


@pytest.mark.parametrize(
    ("code", "message", "words"),
    [
        ("1026", "input new_sensitive", "safety check"),
        ("402", "PiAPI: insufficient credits", "out of credit"),
        ("401", "invalid api key", "was refused (its key)"),
        ("E500", "internal error", "could not make this video"),
    ],
)
def test_provider_failures_in_plain_sentences_with_the_code_as_detail(client, member, apixo_account, code, message, words):
    generation = Generation.objects.create(
        user=member, provider_account=apixo_account, provider_kind="apixo", model="hailuo-2-3", mode="standard-text-to-video",
        prompt="a red kite", duration=6, resolution="768p", quoted_amount=Decimal("0.3"), state=State.FAILED,
        fail_code=code, fail_message=message,
    )
    assert words in generation.fail_summary
    client.force_login(member)
    card = client.get(f"/g/{generation.pk}/card/").content.decode()
    assert words in card and f">{code}</code>" in card
