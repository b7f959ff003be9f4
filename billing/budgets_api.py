"""REST endpoints for budgets (/api/v1/budgets, /api/v1/projects/{id}/budget).

``GET /api/v1/budgets``: the budget layers that cap the caller's spend booked to one of their
teams (README "Money": own, member-in-team, team, the site-wide default, and the team's
project budgets), each with its use this period from the running totals: what a script checks
before it submits a batch. ``PUT /api/v1/projects/{id}/budget``: a team admin (or staff) sets a
project's budget, with ``billing.services.budget_set_for_project``'s rules.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from ninja import Field, Query, Router, Schema
from ninja.responses import Status

from billing.models import Budget
from billing.selectors import BudgetStatus, budget_statuses_for
from billing.services import BudgetPermissionDenied, budget_set_for_project
from config.apitypes import Text
from config.errors import DomainError, ErrorOut, NotFound
from generations.selectors import teams_of
from teamwork.selectors import project_for

router = Router(tags=["budgets"])


class BudgetOut(Schema):
    id: int | None = Field(description="null for the site-wide default (a policy, not a row)")
    layer: str = Field(examples=["team"], description=f"One of {', '.join(Budget.Layer.values)}")
    label: str = Field(examples=["team Studio A's"], description="Whose budget, as the studio names it")
    team_id: int | None
    project_id: int | None
    amount_usd: str = Field(examples=["500.000000"])
    period: str = Field(examples=["month"], description=f"One of {', '.join(Budget.Period.values)}")
    hard: bool = Field(description="true: a submit beyond it is refused (402); false: warned only")
    committed_usd: str = Field(examples=["123.456000"], description="Held and captured this period, USD")
    remaining_usd: str = Field(examples=["376.544000"], description="amount − committed (negative when over)")
    percent: int = Field(examples=[24])
    threshold_reached: int | None = Field(examples=[None], description="Highest alert threshold reached (percent)")
    period_start: datetime | None = Field(description="null for a lifetime budget")
    period_end: datetime | None


class BudgetsOut(Schema):
    team_id: int | None = Field(description="The team the layers are for")
    budgets: list[BudgetOut]


class BudgetsQuery(Schema):
    team_id: int | None = Field(None, ge=1, le=2**63 - 1, description="One of your teams; default: your first team")


class ProjectBudgetIn(Schema):
    amount_usd: Text = Field(max_length=30, examples=["300.00"], description="USD, a decimal string")
    period: Text = Field(max_length=10, examples=["month"], description=f"One of {', '.join(Budget.Period.values)}")
    hard: bool = Field(True, description="A team admin's budget is always hard; staff may set a soft one")


def _budget_out(status: BudgetStatus) -> dict:
    b = status.budget
    return {
        "id": b.pk, "layer": b.layer, "label": b.scope_label, "team_id": b.team_id, "project_id": b.project_id,
        "amount_usd": f"{b.amount:f}", "period": b.period, "hard": b.hard, "committed_usd": f"{status.committed:f}",
        "remaining_usd": f"{status.remaining:f}", "percent": status.percent, "threshold_reached": status.threshold,
        "period_start": status.period_start, "period_end": status.period_end,
    }


@router.get("/budgets", response={200: BudgetsOut, 403: ErrorOut, 422: ErrorOut}, summary="The budgets that cap your spend")
def list_budgets(request, params: Query[BudgetsQuery]):
    """Every budget layer that applies to your spend booked to `team_id` (default: your first
    team), then that team's project budgets, each with what is committed this period and what
    is left. 403 `team_forbidden` for a team that is not yours."""
    team_ids, primary = teams_of(request.auth)
    team_id = params.team_id or (primary.pk if primary else None)
    if team_id is not None and team_id not in team_ids:
        raise DomainError("team_forbidden", "That team is not one of yours.", {"team_id": ["Not one of your teams."]}, status=403)
    statuses = budget_statuses_for(user=request.auth, team=team_id)
    return Status(200, {"team_id": team_id, "budgets": [_budget_out(s) for s in statuses]})


@router.put(
    "/projects/{project_id}/budget",
    response={200: BudgetOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
    summary="Set a project's budget (team admins, staff)",
)
def set_project_budget(request, project_id: int, payload: ProjectBudgetIn):
    """Set (or replace) the project's budget: it caps all spend booked to the project, by any
    member. 404 for another team's project; 403 `budget_permission_denied` unless you are a
    team admin of its team or staff; 422 `invalid_budget` for a negative amount, an unknown
    period, or a soft budget set by a team admin."""
    project = project_for(user=request.auth, project_id=project_id)
    if project is None:
        raise NotFound("No such project.")
    try:
        amount = Decimal(payload.amount_usd)
        if not amount.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise DomainError("invalid_budget", "amount_usd is not a number.", {"amount_usd": ["A decimal number, e.g. 300.00."]},
                          status=422) from None
    try:
        budget = budget_set_for_project(actor=request.auth, project=project, amount=amount, period=payload.period,
                                        hard=payload.hard)
    except BudgetPermissionDenied as exc:
        raise DomainError("budget_permission_denied", str(exc), status=403) from exc
    except ValueError as exc:
        raise DomainError("invalid_budget", str(exc), {"__all__": [str(exc)]}, status=422) from exc
    status = next(s for s in budget_statuses_for(user=request.auth, team=project.team_id) if s.budget.pk == budget.pk)
    return Status(200, _budget_out(status))
