"""allauth adapter: public sign-up is closed unless ``HAILUO_ALLOW_SIGNUP`` is on."""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


class AccountAdapter(DefaultAccountAdapter):
    """Admins create users; self sign-up only when the operator opens it."""

    def is_open_for_signup(self, request) -> bool:
        return bool(settings.HAILUO_ALLOW_SIGNUP)
