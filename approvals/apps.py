from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """A team's approval rule and the requests it holds back for a team admin's decision."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "approvals"
