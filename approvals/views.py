"""Studio pages for approvals: the queue of requests a team admin may decide (approve, or
reject with a reason) and the team's rule.

Another team's request or rule answers 404; a member who sees a request but may not decide
it gets 403 from the approve/reject posts.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.models import Membership, Team
from approvals import selectors, services
from approvals.forms import ApprovalRuleForm, RejectForm
from approvals.models import ApprovalRule
from billing.money import format_usd
from config.errors import DomainError, Forbidden, NotFound


def _admin_teams(user) -> list[Team]:
    if user.is_staff:
        return list(Team.objects.order_by("name"))
    return list(user.admin_teams)


@login_required
def queue(request):
    """The requests waiting for the user's decision (their admin teams'; staff: every team's),
    oldest first, each with approve and reject (with a reason); the latest decisions below.
    A user who is no team's admin (nor staff) gets 404."""
    teams = _admin_teams(request.user)
    if not teams:
        raise Http404
    pending = list(selectors.pending_for(user=request.user))
    rules = {r.team_id: r for r in ApprovalRule.objects.filter(team__in=teams)}
    return render(request, "approvals/queue.html", {
        "pending": pending, "reject_form": RejectForm(), "recent": selectors.recent_decisions(user=request.user),
        "teams": [(t, rules.get(t.pk)) for t in teams], "now": timezone.now(),
    })


def _decide(request, generation_id, action):
    try:
        generation = services.decidable(user=request.user, generation_id=generation_id)
    except NotFound:
        raise Http404 from None
    except Forbidden as exc:
        messages.error(request, exc.message)
        return redirect("approvals:queue")
    try:
        generation = action(generation)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{generation.get_state_display()}: {generation.user.email}'s {format_usd(generation.quoted_amount)} request."
        )
    return redirect("approvals:queue")


@login_required
@require_POST
def approve(request, generation_id):
    """Approve one request: it is sent to the provider (once, however often this is posted)."""
    return _decide(request, generation_id, lambda g: services.approve(actor=request.user, generation=g))


@login_required
@require_POST
def reject(request, generation_id):
    """Reject one request with the posted ``reason`` (required): its hold is released."""
    form = RejectForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A rejection needs a reason: the member sees it.")
        return redirect("approvals:queue")
    return _decide(request, generation_id, lambda g: services.reject(actor=request.user, generation=g, reason=form.cleaned_data["reason"]))


@login_required
def rule(request, team_id: int):
    """GET: the team's approval rule. POST: save it. Only the team's admins and staff (404 otherwise)."""
    team = Team.objects.filter(pk=team_id).first()
    allowed = team is not None and (
        request.user.is_staff
        or Membership.objects.filter(user=request.user, team=team, role=Membership.Role.TEAM_ADMIN).exists()
    )
    if not allowed:
        raise Http404
    instance = ApprovalRule.objects.filter(team=team).first() or ApprovalRule(team=team)
    form = ApprovalRuleForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        saved.team, saved.updated_by, saved.updated_at = team, request.user, timezone.now()
        saved.save()
        messages.success(request, f"{team.name}: approval needed {saved.describe()}.")
        return redirect("approvals:rule", team_id=team.pk)
    return render(request, "approvals/rule.html", {"team": team, "form": form, "rule": instance},
                  status=422 if form.errors else 200)
