"""Studio pages for outbound webhooks: list and register endpoints, edit one, its delivery log,
test ping, secret rotation (shown once), redeliver. Others' endpoints are 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.models import Team
from config.errors import DomainError, NotFound
from webhooks import services
from webhooks.forms import EndpointForm
from webhooks.models import EventType

SESSION_SECRET = "webhook_secret_once"


def _endpoint(request, endpoint_id):
    try:
        return services.endpoint_for(user=request.user, endpoint_id=endpoint_id)
    except NotFound as exc:
        raise Http404 from exc


def _apply_errors(form, exc: DomainError) -> None:
    for field, problems in (exc.fields or {"url": [exc.message]}).items():
        for problem in problems:
            form.add_error(field if field in form.fields else None, problem)


def _show_secret_once(request, endpoint, secret: str) -> None:
    request.session[SESSION_SECRET] = {"endpoint": str(endpoint.pk), "secret": secret}


def _pop_secret(request, endpoint) -> str | None:
    stored = request.session.pop(SESSION_SECRET, None)
    return stored["secret"] if stored and stored.get("endpoint") == str(endpoint.pk) else None


@login_required
def index(request):
    """GET: my endpoints (and my admin teams'), and the form to register one. POST: register."""
    admin_teams = Team.objects.filter(pk__in=services.admin_team_ids(request.user)).order_by("name")
    form = EndpointForm(request.POST or None, admin_teams=admin_teams)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            endpoint, secret = services.endpoint_create(
                actor=request.user, url=data["url"], events=data["events"], description=data["description"],
                enabled=data["enabled"], team_id=form.team_id(),
            )
        except DomainError as exc:
            _apply_errors(form, exc)
        else:
            _show_secret_once(request, endpoint, secret)
            messages.success(request, "Endpoint registered. Copy its signing secret now: it is shown only once.")
            return redirect("webhooks:detail", endpoint_id=endpoint.pk)
    endpoints = services.endpoints_visible_to(request.user).order_by("created_at")
    status = 422 if request.method == "POST" else 200
    return render(request, "webhooks/index.html", {"endpoints": endpoints, "form": form}, status=status)


@login_required
def detail(request, endpoint_id):
    """GET: the endpoint, its edit form, its last 50 deliveries with attempts. POST: save the edit form."""
    endpoint = _endpoint(request, endpoint_id)
    initial = {"url": endpoint.url, "description": endpoint.description, "events": endpoint.events, "enabled": endpoint.enabled}
    form = EndpointForm(request.POST or None, initial=initial, with_owner=False)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.endpoint_update(endpoint, url=data["url"], events=data["events"], description=data["description"],
                                     enabled=data["enabled"])
        except DomainError as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, "Endpoint saved.")
            return redirect("webhooks:detail", endpoint_id=endpoint.pk)
    deliveries = endpoint.deliveries.order_by("-created_at", "-id").prefetch_related("attempt_log")[:50]
    return render(request, "webhooks/detail.html", {
        "endpoint": endpoint, "form": form, "deliveries": deliveries, "secret": _pop_secret(request, endpoint),
        "event_labels": dict(EventType.choices),
    }, status=422 if request.method == "POST" else 200)


@login_required
@require_POST
def test(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    services.send_test_ping(endpoint, actor=request.user)
    messages.success(request, "Test ping queued: its attempt appears in the log below within seconds (reload).")
    return redirect("webhooks:detail", endpoint_id=endpoint.pk)


@login_required
@require_POST
def rotate(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    _show_secret_once(request, endpoint, services.endpoint_rotate_secret(endpoint))
    messages.success(request, "New signing secret made. Copy it now: it is shown only once. The old one no longer signs.")
    return redirect("webhooks:detail", endpoint_id=endpoint.pk)


@login_required
@require_POST
def delete(request, endpoint_id):
    endpoint = _endpoint(request, endpoint_id)
    url = endpoint.url
    endpoint.delete()
    messages.success(request, f"Endpoint {url} deleted.")
    return redirect("webhooks:index")


@login_required
@require_POST
def redeliver(request, endpoint_id, delivery_id):
    endpoint = _endpoint(request, endpoint_id)
    try:
        delivery = services.delivery_for(endpoint=endpoint, delivery_id=delivery_id)
    except NotFound as exc:
        raise Http404 from exc
    try:
        number = services.redeliver(delivery)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Redelivery queued (attempt {number}).")
    return redirect("webhooks:detail", endpoint_id=endpoint.pk)
