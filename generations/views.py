"""Studio pages: the create form, the gallery with live cards, the detail page, the video, callbacks."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from approvals import services as approvals
from billing.money import format_cents, format_usd
from billing.pricing import NoPriceRule, quote
from billing.selectors import budget_statuses_for, entries_for_generation, price_rules_for
from config.errors import Forbidden
from config.metrics import CALLBACKS_RECEIVED
from generations import actions, services
from generations.batches.views import created_group, gallery_rows
from generations.eta import attach_etas
from generations.forms import GalleryFilterForm, StudioForm
from generations.media import download_name, poster_response, serve_file, video_response  # noqa: F401  (re-exported)
from generations.models import Generation, State
from generations.selectors import gallery_page, generation_for, teammates_of, teams_of
from generations.services.batch import variants_create
from providers.base import GenerationRequest
from providers.registry import ADAPTERS as PROVIDER_KINDS
from teamwork.selectors import project_choices, project_for


def _price_context(form: StudioForm, user, budget_statuses=None) -> dict:
    """Price of the current selection and the member's remaining budget (no validation of the prompt).

    Pass ``budget_statuses`` when they were already read (the header shows them too)."""
    selection = form.selection()
    if not selection:
        return {"price": None, "price_error": "No provider account is enabled yet: ask an admin to add one."}
    adapter = form.account.adapter_cls(api_key="", base_url=form.account.base_url)
    facts = adapter.billing_facts(
        GenerationRequest(
            model=selection["model"], mode=selection["mode"], prompt="", duration=selection["duration"],
            resolution=selection["resolution"],
        )
    )
    try:
        priced = quote(facts=facts, rules=price_rules_for(provider_kind=facts.provider_kind, model=facts.model), at=timezone.now())
    except NoPriceRule:
        return {
            "price": None,
            "price_error": "No price rule for this model yet: an admin must add one before it can be used.",
        }
    if budget_statuses is None:
        budget_statuses = budget_statuses_for(user=user, team=form.booked_team() or user.primary_team)
    statuses = budget_statuses
    remaining = min((s.remaining for s in statuses), default=None)
    variants = form.variants_count()
    return {
        "price": priced.display,
        "price_rule": priced.snapshot,
        "variants": variants,
        "price_total": format_usd(priced.amount * variants) if variants > 1 else None,
        "remaining": format_cents(remaining) if remaining is not None else None,
        "fits": remaining is None or priced.amount * variants <= remaining,
        "approval_reasons": approvals.reasons_for_submit(  # shown before submitting: it would wait for a team admin
            user=user, team_id=getattr(form.booked_team(), "pk", None), amount=priced.amount,
            resolution=selection["resolution"], model=selection["model"], primary=True,
        ),
    }


@login_required
def studio(request):
    """GET: the form and the gallery. POST: create a generation (HTMX: return the new card)."""
    open_projects, all_projects = project_choices(request.user)
    if request.method == "POST":
        form = StudioForm(request.POST, request.FILES, teams=_teams(request.user), projects=open_projects)
        if form.is_valid():
            # The switcher offers only the member's teams' open projects (the form refuses
            # anything else); the take then belongs to the project's team.
            project = project_for(user=request.user, project_id=form.cleaned_data["project"]) if form.cleaned_data.get("project") else None
            image_url = form.cleaned_data.get("image_url") or ""
            upload = form.cleaned_data.get("image_file")
            if upload:
                try:
                    image_url = services.input_image_url(services.input_image_create(user=request.user, uploaded_file=upload))
                except services.GenerationRefused as refused:
                    form.add_error("image_file", refused.message)
            params = services.CreateParams(
                provider_account_id=form.cleaned_data["provider_account"].pk,
                model=form.cleaned_data["model"],
                mode=form.cleaned_data["mode"],
                prompt=form.cleaned_data["prompt"],
                duration=form.cleaned_data["duration"],
                resolution=form.cleaned_data["resolution"],
                image_url=image_url,
                options=form.options(),
                project_id=project.pk if project is not None else None,
            )
            try:
                if form.errors:
                    raise services.GenerationRefused("validation_error", "invalid upload")
                # A project books the take to the project's team; otherwise the chosen team.
                team = project.team if project is not None else form.booked_team()
                if (form.cleaned_data.get("variants") or 1) > 1:  # N variants: one batch, all held or none
                    generation = variants_create(user=request.user, params=params, count=form.cleaned_data["variants"], team=team)
                else:
                    generation = services.generation_create(user=request.user, params=params, team=team)
            except services.GenerationRefused as refused:
                for field_name, messages_ in refused.fields.items():
                    target = field_name if field_name in form.fields else None
                    if target == "image_url" and upload:
                        target = "image_file"  # the rule was broken by the uploaded file, not the URL field
                    for message in messages_:
                        form.add_error(target, message)
            else:
                if request.htmx:
                    # The prompt stays: iterating on it is the main loop (the image is not kept).
                    fresh = StudioForm(
                        initial={k: v for k, v in request.POST.items() if k not in {"csrfmiddlewaretoken", "image_url"}},
                        teams=_teams(request.user),
                        projects=open_projects,
                    )
                    response = render(
                        request,
                        "generations/partials/created.html" if isinstance(generation, Generation) else "generations/batches/created.html",
                        {"form": fresh, "generation": generation, **_price_context(fresh, request.user), **created_group(generation)},
                    )
                    response["HX-Trigger"] = "budget-changed"
                    return response
                return redirect("studio")
        if request.htmx:
            return render(
                request, "generations/partials/form.html", {"form": form, **_price_context(form, request.user)}, status=422
            )
        return _studio_page(request, form, projects=all_projects)
    remix = None
    # A link may prefill the form (``?provider_account=…&model=…``); the gallery's filters
    # share some names (``model``) but never carry ``provider_account``.
    initial = request.GET.dict() if request.GET.get("provider_account") else None
    if request.GET.get("remix"):
        remix = generation_for(user=request.user, generation_id=_uuid_or_404(request.GET["remix"]))
        if remix is None:
            raise Http404
        initial = StudioForm.initial_from_generation(remix)
    return _studio_page(
        request, StudioForm(initial=initial, teams=_teams(request.user), projects=open_projects), remix=remix,
        projects=all_projects,
    )


def _teams(user) -> list:
    """The member's teams, primary (first membership) first: the studio's "Book to team" choices."""
    return [m.team for m in user.memberships.select_related("team").order_by("id")]


def _uuid_or_404(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Http404 from None


def _studio_page(request, form: StudioForm, *, remix=None, projects=None):
    """The whole studio page: the form with its price, the filters and the gallery.

    The budgets are read once for the header and the price row (the context processor's
    lazy value is overridden)."""
    team_ids, primary_team = teams_of(request.user)
    statuses = budget_statuses_for(user=request.user, team=form.booked_team() or primary_team)
    members = [(u.pk, u.email) for u in teammates_of(user=request.user, team_ids=team_ids)]
    return render(
        request,
        "generations/studio.html",
        {
            "form": form, "remix": remix, "budget_statuses": statuses,
            **_price_context(form, request.user, budget_statuses=statuses),
            **_gallery(request, team_ids=team_ids, members=members, projects=projects),
        },
    )


def _gallery(request, *, team_ids=None, members=None, projects=None) -> dict:
    """The gallery's context: the filter form, one page of cards and the pager's links.

    A fixed number of queries whatever the page size and the number of generations (keyset
    pagination: no COUNT, no OFFSET)."""
    params = request.GET if not request.GET.get("remix") else {}
    filter_form = GalleryFilterForm(params, members=members, projects=projects)
    filters = filter_form.filters()
    size = filter_form.page_size()
    page = gallery_page(
        user=request.user, filters=filters, size=size, before=params.get("before"), after=params.get("after"),
        team_ids=team_ids,
    )
    attach_etas(page.items)
    rows = gallery_rows(page.items)
    kept = {k: v for k, v in params.items() if k in filter_form.fields and v not in ("", None)}
    if kept.get("size") == str(GalleryFilterForm.DEFAULT_SIZE):
        kept.pop("size")

    def link(**cursor) -> str:
        return "?" + urlencode({**kept, **cursor}) if (kept or cursor) else "?"

    return {
        "filter_form": filter_form,
        "filters": filters,
        "page": page,
        "generations": page.items,
        "gallery_rows": rows,
        "query": urlencode(kept),
        "newer_query": link(after=page.newer_cursor) if page.newer_cursor else None,
        "newest_query": link() if not page.is_first else None,
        "older_query": link(before=page.older_cursor) if page.older_cursor else None,
    }


@login_required
@require_http_methods(["GET", "POST"])
def form_fragment(request):
    """Re-render the form for the current picks (choices narrowed), with the price and budget.

    Nothing is saved: POST only because the picks travel with the prompt, which may not fit
    in a URL. The form is unbound (no errors yet), its values taken as initial values."""
    values = request.POST if request.method == "POST" else request.GET
    form = StudioForm(
        initial={k: v for k, v in values.items() if k != "csrfmiddlewaretoken"}, teams=_teams(request.user),
        projects=project_choices(request.user)[0],
    )
    return render(request, "generations/partials/form.html", {"form": form, "preview": True, **_price_context(form, request.user)})


def _visible_or_404(request, generation_id):
    """The generation if the user may see it (their own, or their team's); else 404, never 403,
    so another team's generations cannot even be confirmed to exist."""
    generation = generation_for(user=request.user, generation_id=generation_id)
    if generation is None:
        raise Http404
    return generation


@login_required
@require_GET
def gallery(request):
    """The gallery alone (filters and pages via HTMX); the address bar follows the filters."""
    context = _gallery(request)
    response = render(request, "generations/partials/gallery.html", context)
    if request.htmx:
        cursor = {k: request.GET[k] for k in ("before", "after") if request.GET.get(k)}
        query = "&".join(q for q in (context["query"], urlencode(cursor)) if q)
        response["HX-Push-Url"] = reverse("studio") + (f"?{query}" if query else "")
    return response


@login_required
@require_GET
def card(request, generation_id):
    """One card; while not final it re-polls itself (the final render carries no trigger)."""
    generation = _visible_or_404(request, generation_id)
    attach_etas([generation])
    return render(request, "generations/partials/card.html", {"g": generation, "detail_view": request.GET.get("detail") == "1"})


def _detail_context(generation, user=None) -> dict:
    account = generation.provider_account
    attach_etas([generation])
    may_act = user is None or actions.may_act_on(user=user, generation=generation)
    return {
        "g": generation,
        "events": list(generation.events.all()),
        "tags": list(generation.tags.all()),
        "entries": entries_for_generation(generation_id=generation.pk),
        "can_retry": may_act and generation.retry_offered,
        "can_cancel": may_act and generation.cancel_offered,
        "can_hide": may_act,
        "provider_label": account.adapter_cls.label,
        "detail_view": True,
    }


@login_required
@require_GET
def detail(request, generation_id):
    """The full record: parameters, timeline, task id, failure, ledger entries; remix, retry, cancel."""
    generation = _visible_or_404(request, generation_id)
    return render(request, "generations/detail.html", _detail_context(generation, request.user))


@login_required
@require_POST
def retry(request, generation_id):
    """A new generation with the same parameters as a failed one (budgets apply as usual).

    The rules are ``generations.actions.generation_retry``'s (owner or team admin only)."""
    generation = _visible_or_404(request, generation_id)
    try:
        new = actions.generation_retry(user=request.user, generation=generation)
    except Forbidden as refused:
        return _detail_refusal(request, generation, refused.message, status=403)
    except services.GenerationRefused as refused:
        return _detail_refusal(request, generation, _refusal_text(refused))
    messages.success(request, "Retry submitted: a new generation with the same parameters.")
    return redirect("generation_detail", generation_id=new.pk)


@login_required
@require_POST
def archive_retry(request, generation_id):
    """Try again to save a video whose download failed for good, while the provider's URL may still be valid."""
    generation = _visible_or_404(request, generation_id)
    if generation.user_id != request.user.pk and not request.user.is_staff:
        return _detail_refusal(request, generation, "Only its owner (or staff) can retry saving this video.")
    if not services.generation_archive_retry(generation_id=generation.pk, user=request.user):
        return _detail_refusal(request, generation, "This video can no longer be saved again: the provider's link has expired.")
    messages.success(request, "Saving the video again.")
    return redirect("generation_detail", generation_id=generation.pk)


@login_required
@require_POST
def cancel(request, generation_id):
    """Cancel: locally before it was sent, at the provider where it documents a cancel.

    The rules are ``generations.actions.generation_cancel``'s (owner or team admin only)."""
    generation = _visible_or_404(request, generation_id)
    try:
        state = actions.generation_cancel(user=request.user, generation=generation)
    except Forbidden as refused:
        return _detail_refusal(request, generation, refused.message, status=403)
    except services.GenerationRefused as refused:
        return _detail_refusal(request, generation, refused.message)
    if state == State.CANCELED:
        messages.success(request, "Canceled: the hold was released, nothing is charged.")
    else:
        messages.info(request, f"Not canceled: the generation is {state}.")
    return redirect("generation_detail", generation_id=generation.pk)


@login_required
@require_POST
def set_hidden(request, generation_id, hidden: bool):
    """Hide a generation from the gallery, or show it again (``generations.actions
    .generation_set_hidden``: owner or team admin only; the ledger is untouched).

    HTMX (a card's button): answers the card re-rendered (marked hidden, with "Unhide");
    otherwise redirects to the detail page."""
    generation = _visible_or_404(request, generation_id)
    try:
        actions.generation_set_hidden(user=request.user, generation=generation, hidden=hidden)
    except Forbidden as refused:
        if request.htmx:
            return HttpResponse(refused.message, status=403, content_type="text/plain; charset=utf-8")
        return _detail_refusal(request, generation, refused.message, status=403)
    if request.htmx:
        return render(request, "generations/partials/card.html", {"g": generation})
    messages.success(request, "Hidden from the gallery (“Show hidden” lists it)." if hidden else "Shown in the gallery again.")
    return redirect("generation_detail", generation_id=generation.pk)


def _refusal_text(refused) -> str:
    texts = [m for messages_ in refused.fields.values() for m in messages_]
    return " ".join(dict.fromkeys(texts)) or refused.message


def _detail_refusal(request, generation, message: str, *, status: int = 422):
    generation.refresh_from_db()
    return render(
        request, "generations/detail.html", {**_detail_context(generation, request.user), "action_error": message},
        status=status,
    )


@login_required
@require_GET
def video(request, generation_id):
    """Stream the archived MP4 (from our storage, never the provider's URL), with HTTP Range support."""
    return video_response(request, _visible_or_404(request, generation_id), download=bool(request.GET.get("download")))


@login_required
@require_GET
def poster(request, generation_id):
    """The archived video's poster frame (JPEG)."""
    return poster_response(request, _visible_or_404(request, generation_id))


@login_required
@require_GET
def budget_badge(request):
    """The header's spend and remaining budget (refreshed after a submit)."""
    return render(request, "partials/budget.html", {"budget_statuses": budget_statuses_for(user=request.user, team=request.user.primary_team)})


@csrf_exempt
@require_POST
def provider_callback(request, kind: str, generation_id, token: str):
    """A provider's callback (webhook). A hint only: it wakes the poll, the status endpoint decides."""
    try:
        answer = services.generation_callback(
            kind=kind, generation_id=generation_id, token=token, headers=request.headers, body=request.body
        )
    except services.CallbackRejected as exc:
        CALLBACKS_RECEIVED.labels(kind if kind in PROVIDER_KINDS else "unknown", "rejected").inc()
        return JsonResponse({"ok": False, "error": str(exc)}, status=exc.status)
    CALLBACKS_RECEIVED.labels(kind if kind in PROVIDER_KINDS else "unknown", "accepted").inc()
    return JsonResponse(answer if answer is not None else {"ok": True})


def home(request):
    return redirect("studio")


def favicon(request):
    """/favicon.ico for clients that ask for it without reading the page's icon link."""
    return redirect(static("favicon.svg"), permanent=True)


@require_GET
def input_image(request, image_id, ext: str):
    """An uploaded input image, public under its unguessable id (providers fetch it by URL)."""
    from generations.models import InputImage

    image = InputImage.objects.filter(pk=image_id, format=ext).first()
    if image is None:
        raise Http404
    content_type = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}.get(image.format, "application/octet-stream")
    response = FileResponse(image.file.open("rb"), content_type=content_type)
    response["Cache-Control"] = "public, max-age=604800, immutable"
    return response
