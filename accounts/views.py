"""Account pages: a team admin sets the budgets of the team's members; a member manages their API tokens."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone

from accounts.models import ApiToken, Membership, Team, User
from accounts.selectors import api_tokens_of
from accounts.services import api_token_create, api_token_revoke
from billing.models import Budget
from billing.selectors import budget_statuses_for
from billing.services import BudgetPermissionDenied, budget_set_for_member, budget_set_for_project
from config.errors import DomainError


class MemberBudgetForm(forms.Form):
    """A member-in-team budget: always hard, for a member other than the acting team admin."""

    member = forms.ModelChoiceField(queryset=None, label="Member")
    amount = forms.DecimalField(min_value=Decimal("0"), max_digits=12, decimal_places=2, label="Amount (USD)")
    period = forms.ChoiceField(choices=Budget.Period.choices, initial=Budget.Period.MONTH, label="Period")

    def __init__(self, *args, team: Team, actor=None, **kwargs):
        super().__init__(*args, **kwargs)
        members = User.objects.filter(memberships__team=team).order_by("email")
        if actor is not None and not actor.is_staff:
            members = members.exclude(pk=actor.pk)  # never their own budget
        self.fields["member"].queryset = members


class ProjectBudgetForm(forms.Form):
    """A project budget: caps all spend booked to one of the team's projects (always hard here)."""

    project = forms.ModelChoiceField(queryset=None, label="Project")
    amount = forms.DecimalField(min_value=Decimal("0"), max_digits=12, decimal_places=2, label="Amount (USD)")
    period = forms.ChoiceField(choices=Budget.Period.choices, initial=Budget.Period.MONTH, label="Period")

    def __init__(self, *args, team: Team, **kwargs):
        from teamwork.models import Project

        super().__init__(*args, prefix="project", **kwargs)
        self.fields["project"].queryset = Project.objects.filter(team=team, archived=False).order_by("name")


@login_required
def team_budgets(request, team_id: int):
    """GET: the team's members with their member-in-team budgets and use, and its projects'
    budgets. POST: set a member's (hard, within the team's budget;
    ``billing.services.budget_set_for_member`` has the rules) or, with ``project-project``, a
    project's (``billing.services.budget_set_for_project``)."""
    team = Team.objects.filter(pk=team_id).first()
    is_admin = team is not None and (
        request.user.is_staff
        or Membership.objects.filter(user=request.user, team=team, role=Membership.Role.TEAM_ADMIN).exists()
    )
    if not is_admin:
        raise Http404
    is_project_post = request.method == "POST" and "project-project" in request.POST
    form = MemberBudgetForm(request.POST if request.method == "POST" and not is_project_post else None, team=team, actor=request.user)
    project_form = ProjectBudgetForm(request.POST if is_project_post else None, team=team)
    if is_project_post and project_form.is_valid():
        try:
            budget_set_for_project(
                actor=request.user, project=project_form.cleaned_data["project"], amount=project_form.cleaned_data["amount"],
                period=project_form.cleaned_data["period"], hard=True,
            )
        except (BudgetPermissionDenied, ValueError) as exc:
            project_form.add_error("amount", str(exc))
        else:
            messages.success(request, f"Budget set for project {project_form.cleaned_data['project'].name}.")
            return redirect("team_budgets", team_id=team.pk)
    if request.method == "POST" and not is_project_post and form.is_valid():
        try:
            budget_set_for_member(
                actor=request.user, team=team, member=form.cleaned_data["member"], amount=form.cleaned_data["amount"],
                period=form.cleaned_data["period"], hard=True,
            )
        except (BudgetPermissionDenied, ValueError) as exc:
            form.add_error("amount", str(exc))
        else:
            messages.success(request, f"Budget set for {form.cleaned_data['member']}.")
            return redirect("team_budgets", team_id=team.pk)
    rows = []
    for membership in team.memberships.select_related("user").order_by("user__email"):
        statuses = [s for s in budget_statuses_for(user=membership.user, team=team) if s.budget.user_id]
        rows.append({"membership": membership, "statuses": statuses})
    shared = [s for s in budget_statuses_for(user=request.user, team=team) if s.budget.team_id and not s.budget.user_id]
    team_statuses = [s for s in shared if not s.budget.project_id]
    project_statuses = [s for s in shared if s.budget.project_id]
    return render(
        request, "accounts/team_budgets.html",
        {"team": team, "rows": rows, "form": form, "team_statuses": team_statuses, "project_form": project_form,
         "project_statuses": project_statuses},
        status=422 if form.errors or project_form.errors else 200,
    )


class ApiTokenForm(forms.Form):
    """The token page's create form: a name, a scope, an optional expiry (days from now)."""

    name = forms.CharField(max_length=100, label="Name", help_text="What script or integration will use it.")
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ_WRITE, label="Scope")
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Expires after (days)", help_text="Empty: never expires."
    )


@login_required
def api_tokens(request):
    """GET: the member's API tokens. POST: create one (its secret shown on this answer only) or,
    with ``revoke=<id>``, revoke one of theirs."""
    form = ApiTokenForm()
    created_secret = None
    if request.method == "POST" and request.POST.get("revoke"):
        try:
            token = api_token_revoke(user=request.user, token_id=int(request.POST["revoke"]))
        except (ValueError, DomainError):
            raise Http404 from None
        messages.success(request, f"Revoked “{token.name}”: it no longer works.")
        return redirect("api_tokens")
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            days = form.cleaned_data["expires_in_days"]
            try:
                _, created_secret = api_token_create(
                    user=request.user, name=form.cleaned_data["name"], scope=form.cleaned_data["scope"],
                    expires_at=timezone.now() + timedelta(days=days) if days else None,
                )
            except DomainError as refused:
                for field_name, texts in refused.fields.items():
                    for text in texts:
                        form.add_error(field_name if field_name in form.fields else None, text)
            else:
                form = ApiTokenForm()
    response = render(
        request, "accounts/api_tokens.html",
        {"form": form, "tokens": api_tokens_of(user=request.user), "created_secret": created_secret},
        status=422 if form.errors else 200,
    )
    response["Cache-Control"] = "no-store"
    return response
