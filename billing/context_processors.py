"""Every page shows the member's spend and what is left this period."""

from billing.selectors import budget_statuses_for


def budget_summary(request) -> dict:
    """``budget_statuses``: the logged-in member's budgets with their use (empty for anonymous)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or request.path.startswith(("/admin/", "/api/")):
        return {}
    return {"budget_statuses": lambda: budget_statuses_for(user=user, team=user.primary_team)}
