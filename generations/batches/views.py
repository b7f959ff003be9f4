"""The studio's batch pages: the batch form, its preview (each row's price, the total, the
budget left) and confirm, the batch page with its progress, and the gallery's groups.

Confirming sends the previewed rows back (a hidden JSON field) with a one-time idempotency
token: everything is validated, priced and held again on confirm (``batch_create``: all or
none), and a double click makes one batch.
"""

from __future__ import annotations

import json
import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generations.batches.forms import BatchForm
from generations.batches.parsing import BatchInvalid, BatchItem, RowError, parse_csv, parse_lines
from generations.batches.selectors import (
    GalleryGroup,
    batch_budget_preview,
    batch_for,
    batch_generations,
    batch_progress,
    gallery_rows,
)
from generations.eta import attach_etas
from generations.models import Batch
from generations.services.batch import BatchShared, batch_create, batch_fingerprint, batch_plan
from generations.services.lifecycle import GenerationRefused
from teamwork.selectors import project_choices, project_for

__all__ = ["batch_confirm", "batch_detail", "batch_form", "batch_new", "batch_progress_view", "created_group", "gallery_rows"]


def created_group(made) -> dict:
    """Extra context for the studio's "created" fragment: a ``group`` when ``made`` is a batch."""
    if not isinstance(made, Batch):
        return {}
    items = batch_generations(made)
    attach_etas(items)
    return {"group": GalleryGroup(batch=made, progress=batch_progress([made])[made.pk], items=items)}


def _teams(user) -> list:
    return [m.team for m in user.memberships.select_related("team").order_by("id")]


def _form(request, data=None, files=None, initial=None) -> BatchForm:
    return BatchForm(data, files, initial=initial, teams=_teams(request.user), projects=project_choices(request.user)[0])


def _render_form(request, form: BatchForm, *, errors: list[RowError] | None = None, status: int = 200):
    from generations.views import _price_context

    return render(
        request, "generations/batches/new.html",
        {"form": form, "row_errors": errors or [], **_price_context(form, request.user)}, status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def batch_new(request):
    """GET: the batch form. POST: read the prompts (lines or CSV), validate and price every row,
    and show the preview, or the form again with every problem named by row and field."""
    if request.method == "GET":
        return _render_form(request, _form(request))
    form = _form(request, request.POST, request.FILES)
    if not form.is_valid():
        return _render_form(request, form, status=422)
    project = project_for(user=request.user, project_id=form.cleaned_data["project"]) if form.cleaned_data.get("project") else None
    errors: list[RowError] = []
    try:
        upload = form.cleaned_data.get("csv_file")
        items = parse_csv(upload.read(), collect=errors) if upload else parse_lines(form.cleaned_data["lines"])
        shared = BatchShared(
            provider_account_id=form.cleaned_data["provider_account"].pk, model=form.cleaned_data["model"],
            mode=form.cleaned_data["mode"], duration=form.cleaned_data["duration"], resolution=form.cleaned_data["resolution"],
            image_url=form.cleaned_data.get("image_url") or "", options=form.options(),
            project_id=project.pk if project is not None else None,
        )
        plan = batch_plan(shared=shared, items=items, errors=errors)
    except BatchInvalid as invalid:
        return _render_form(request, form, errors=invalid.errors, status=422)
    except GenerationRefused as refused:
        form.add_error(None, refused.message)
        return _render_form(request, form, status=422)
    team = project.team if project is not None else (form.booked_team() or request.user.primary_team)
    return render(request, "generations/batches/preview.html", _preview_context(
        request, plan=plan, shared=shared, items=items, team=team, title=form.cleaned_data.get("title") or "",
        token=uuid.uuid4().hex,
    ))


def _preview_context(request, *, plan, shared, items, team, title: str, token: str, error: str = "") -> dict:
    return {
        "plan": plan, "team": team, "title": title, "error": error,
        "shared_json": json.dumps(shared.as_dict()), "items_json": json.dumps([i.as_dict() for i in items]),
        "token": token, "account": plan.account,
        **batch_budget_preview(user=request.user, team=team, total=plan.total),
    }


@login_required
@require_POST
def batch_confirm(request):
    """Create the previewed batch: everything is validated, priced and held again, in one
    transaction (all or none). A refusal (a budget without room for the whole batch) shows the
    preview again with the message naming the budget; nothing is created."""
    try:
        shared_data = json.loads(request.POST.get("shared") or "{}")
        items = [BatchItem.from_dict(row) for row in json.loads(request.POST.get("items") or "[]")]
        shared = BatchShared(**{k: shared_data.get(k) for k in BatchShared.__dataclass_fields__ if k in shared_data})
        shared.provider_account_id = int(shared.provider_account_id)
    except (ValueError, TypeError, BatchInvalid):
        messages.error(request, "This batch could not be read again: make it anew.")
        return redirect("batches:new")
    project = None
    if shared.project_id:
        project = project_for(user=request.user, project_id=shared.project_id)
        if project is None or project.archived:
            raise Http404
    team = project.team if project is not None else (request.POST.get("team") or None)
    token = (request.POST.get("token") or "")[:64]
    title = (request.POST.get("title") or "")[:200]
    try:
        batch = batch_create(
            user=request.user, shared=shared, items=items, team=team, title=title,
            idempotency_key=f"studio-batch-{token}" if token else None,
            fingerprint=batch_fingerprint(shared=shared, items=items, kind="studio-batch", extra={"team": str(team or ""), "title": title}),
        )
    except GenerationRefused as refused:
        from generations.services.create import _booked_team

        try:
            plan = batch_plan(shared=shared, items=items)
            booked = _booked_team(request.user, team)
        except GenerationRefused:
            messages.error(request, refused.message)
            return redirect("batches:new")
        return render(request, "generations/batches/preview.html", _preview_context(
            request, plan=plan, shared=shared, items=items, team=booked, title=title, token=token, error=refused.message,
        ), status=refused.status)
    if not getattr(batch, "replayed", False):
        messages.success(request, f"Batch of {batch.size} submitted: {batch.quoted_total.normalize():f} USD held.")
    return redirect("batches:detail", batch_id=batch.pk)


@login_required
@require_http_methods(["GET", "POST"])
def batch_form(request):
    """Re-render the batch form for the current picks (choices narrowed, price shown); nothing is saved."""
    from generations.views import _price_context

    values = request.POST if request.method == "POST" else request.GET
    form = _form(request, initial={k: v for k, v in values.items() if k != "csrfmiddlewaretoken"})
    return render(request, "generations/batches/form.html", {"form": form, "preview": True, **_price_context(form, request.user)})


def _visible_or_404(request, batch_id) -> Batch:
    batch = batch_for(user=request.user, batch_id=batch_id)
    if batch is None:
        raise Http404
    return batch


@login_required
@require_GET
def batch_detail(request, batch_id):
    """The batch page: its progress (quoted against charged) and every card, in batch order."""
    batch = _visible_or_404(request, batch_id)
    items = batch_generations(batch)
    attach_etas(items)
    return render(request, "generations/batches/detail.html", {
        "batch": batch, "progress": batch_progress([batch])[batch.pk], "generations": items,
    })


@login_required
@require_GET
def batch_progress_view(request, batch_id):
    """The progress line alone (it re-polls itself until every generation is final)."""
    batch = _visible_or_404(request, batch_id)
    return render(request, "generations/batches/progress.html", {"batch": batch, "progress": batch_progress([batch])[batch.pk]})
