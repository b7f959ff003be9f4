"""Studio pages: the create form, the gallery with live cards, the detail page, the video, callbacks."""

from __future__ import annotations

import mimetypes
import os
import re

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from billing.money import format_usd
from billing.pricing import NoPriceRule, quote
from billing.selectors import budget_statuses_for, entries_for_generation, price_rules_for
from generations import services
from generations.forms import StudioForm
from generations.models import FINAL_STATES
from generations.selectors import generation_for, generations_visible_to
from providers.base import GenerationRequest

GALLERY_PAGE_SIZE = 24


def _price_context(form: StudioForm, user) -> dict:
    """Price of the current selection and the member's remaining budget (no validation of the prompt)."""
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
    from django.utils import timezone

    try:
        priced = quote(facts=facts, rules=price_rules_for(provider_kind=facts.provider_kind, model=facts.model), at=timezone.now())
    except NoPriceRule:
        return {
            "price": None,
            "price_error": "No price rule for this model yet: an admin must add one before it can be used.",
        }
    statuses = budget_statuses_for(user=user, team=user.primary_team)
    remaining = min((s.remaining for s in statuses), default=None)
    return {
        "price": priced.display,
        "price_rule": priced.snapshot,
        "remaining": format_usd(remaining) if remaining is not None else None,
        "fits": remaining is None or priced.amount <= remaining,
    }


@login_required
def studio(request):
    """GET: the form and the gallery. POST: create a generation (HTMX: return the new card)."""
    if request.method == "POST":
        form = StudioForm(request.POST, request.FILES)
        if form.is_valid():
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
            )
            try:
                if form.errors:
                    raise services.GenerationRefused("validation_error", "invalid upload")
                generation = services.generation_create(user=request.user, params=params)
            except services.GenerationRefused as refused:
                for field_name, messages in refused.fields.items():
                    target = field_name if field_name in form.fields else None
                    for message in messages:
                        form.add_error(target, message)
            else:
                if request.htmx:
                    fresh = StudioForm(initial={k: v for k, v in request.POST.items() if k not in {"prompt", "csrfmiddlewaretoken"}})
                    response = render(
                        request,
                        "generations/partials/created.html",
                        {"form": fresh, "generation": generation, **_price_context(fresh, request.user)},
                    )
                    response["HX-Trigger"] = "budget-changed"
                    return response
                return redirect("studio")
        status = 422 if request.htmx else 200
        return render(
            request, "generations/partials/form.html" if request.htmx else "generations/studio.html",
            {"form": form, **_price_context(form, request.user), **({} if request.htmx else _gallery(request))},
            status=status,
        )
    form = StudioForm(initial=request.GET.dict() if request.GET else None)
    return render(request, "generations/studio.html", {"form": form, **_price_context(form, request.user), **_gallery(request)})


def _gallery(request) -> dict:
    queryset = generations_visible_to(user=request.user).order_by("-created_at", "-id")
    page = Paginator(queryset, GALLERY_PAGE_SIZE).get_page(request.GET.get("page"))
    return {"page": page, "generations": page.object_list}


@login_required
@require_GET
def form_fragment(request):
    """Re-render the form for the current picks (choices narrowed), with the price and budget."""
    form = StudioForm(initial=request.GET.dict())
    return render(request, "generations/partials/form.html", {"form": form, "preview": True, **_price_context(form, request.user)})


@login_required
@require_GET
def gallery(request):
    """The gallery grid alone (pagination)."""
    return render(request, "generations/partials/gallery.html", _gallery(request))


@login_required
@require_GET
def card(request, generation_id):
    """One card; while not final it re-polls itself (the final render carries no trigger)."""
    generation = generation_for(user=request.user, generation_id=generation_id)
    if generation is None:
        raise Http404
    return render(request, "generations/partials/card.html", {"g": generation})


@login_required
@require_GET
def detail(request, generation_id):
    """The full record: parameters, timeline, task id, failure, ledger entries."""
    generation = generation_for(user=request.user, generation_id=generation_id)
    if generation is None:
        raise Http404
    return render(
        request,
        "generations/detail.html",
        {
            "g": generation,
            "events": generation.events.all(),
            "entries": entries_for_generation(generation_id=generation.pk),
            "final_states": FINAL_STATES,
        },
    )


_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@login_required
@require_GET
def video(request, generation_id):
    """Stream the archived MP4 (from our storage, never the provider's URL), with HTTP Range support."""
    generation = generation_for(user=request.user, generation_id=generation_id)
    if generation is None or not generation.has_video:
        raise Http404
    storage_file = generation.video
    size = storage_file.size
    content_type = mimetypes.guess_type(storage_file.name)[0] or "video/mp4"
    match = _RANGE.match(request.headers.get("Range", "").strip())
    if match and (match.group(1) or match.group(2)):
        start_s, end_s = match.groups()
        if start_s:
            start, end = int(start_s), min(int(end_s) if end_s else size - 1, size - 1)
        else:
            start, end = max(size - int(end_s), 0), size - 1
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        handle = storage_file.open("rb")
        handle.seek(start)
        length = end - start + 1

        def chunks(remaining=length):
            try:
                while remaining > 0:
                    data = handle.read(min(64 * 1024, remaining))
                    if not data:
                        break
                    remaining -= len(data)
                    yield data
            finally:
                handle.close()

        response = StreamingHttpResponse(chunks(), status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(length)
    else:
        response = FileResponse(storage_file.open("rb"), content_type=content_type)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=86400"
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="hailuo-{generation.pk}{os.path.splitext(storage_file.name)[1]}"'
    return response


@login_required
@require_GET
def poster(request, generation_id):
    """The archived video's poster frame (JPEG)."""
    generation = generation_for(user=request.user, generation_id=generation_id)
    if generation is None or not generation.poster:
        raise Http404
    response = FileResponse(generation.poster.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=604800"
    return response


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
        return JsonResponse({"ok": False, "error": str(exc)}, status=exc.status)
    return JsonResponse(answer if answer is not None else {"ok": True})


def home(request):
    return redirect("studio")


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
