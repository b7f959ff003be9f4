"""Team pages: a team admin sets the budgets of the team's members."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render

from accounts.models import Membership, Team, User
from billing.models import Budget
from billing.selectors import budget_statuses_for
from billing.services import BudgetPermissionDenied, budget_set_for_member


class MemberBudgetForm(forms.Form):
    member = forms.ModelChoiceField(queryset=None, label="Member")
    amount = forms.DecimalField(min_value=Decimal("0"), max_digits=12, decimal_places=2, label="Amount (USD)")
    period = forms.ChoiceField(choices=Budget.Period.choices, initial=Budget.Period.MONTH, label="Period")
    hard = forms.BooleanField(required=False, initial=True, label="Hard limit (refuse beyond it)")

    def __init__(self, *args, team: Team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["member"].queryset = User.objects.filter(memberships__team=team).order_by("email")


@login_required
def team_budgets(request, team_id: int):
    """GET: the team's members with their budgets and use. POST: set one member's budget."""
    team = Team.objects.filter(pk=team_id).first()
    is_admin = team is not None and (
        request.user.is_staff
        or Membership.objects.filter(user=request.user, team=team, role=Membership.Role.TEAM_ADMIN).exists()
    )
    if not is_admin:
        raise Http404
    form = MemberBudgetForm(request.POST or None, team=team)
    if request.method == "POST" and form.is_valid():
        try:
            budget_set_for_member(
                actor=request.user, team=team, member=form.cleaned_data["member"], amount=form.cleaned_data["amount"],
                period=form.cleaned_data["period"], hard=form.cleaned_data["hard"],
            )
        except (BudgetPermissionDenied, ValueError) as exc:
            form.add_error("amount", str(exc))
        else:
            messages.success(request, f"Budget set for {form.cleaned_data['member']}.")
            return redirect("team_budgets", team_id=team.pk)
    rows = []
    for membership in team.memberships.select_related("user").order_by("user__email"):
        statuses = [s for s in budget_statuses_for(user=membership.user) if s.budget.user_id]
        rows.append({"membership": membership, "statuses": statuses})
    team_statuses = [s for s in budget_statuses_for(user=request.user, team=team) if s.budget.team_id]
    return render(request, "accounts/team_budgets.html", {"team": team, "rows": rows, "form": form, "team_statuses": team_statuses})
