"""Staff are told when a provider account itself is in trouble: no credit left (HTTP 402) or
its key refused (HTTP 401), answered at submit (provider docs, "Errors": 401 unauthorized,
402 insufficient credits/balance). Members only see the plain sentence on their card
(``Generation.fail_summary``); staff get an email with the provider's code and message.

At most one email per provider account per :data:`NOTIFY_EVERY` (one hour): the claim is a
conditional UPDATE of ``ProviderAccount.problem_notified_at``, so concurrent workers send one.
The seam: a ``post_save`` receiver on ``GenerationEvent`` (the lifecycle writes one per state
change, with the provider's ``http_status``/``code`` in its data), so the lifecycle's own
code does not change; the email leaves when the lifecycle's transaction commits.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

log = logging.getLogger(__name__)

NOTIFY_EVERY = timedelta(hours=1)

#: HTTP status → what it means for the account (the subject of the staff email).
ACCOUNT_PROBLEMS = {
    402: "is out of credit (HTTP 402)",
    401: "has its API key refused (HTTP 401)",
}


def account_problem_status(data: dict | None, message: str = "") -> int | None:
    """401 or 402 when a lifecycle event's ``data`` (``{"http_status", "code", ...}``) or its
    message (a failover's "… has no balance (402)") reports an account-level problem; else None."""
    data = data or {}
    for value in (data.get("http_status"), data.get("code")):
        try:
            status = int(value)
        except (TypeError, ValueError):
            continue
        if status in ACCOUNT_PROBLEMS:
            return status
    if "(402)" in message:
        return 402
    return None


def staff_emails() -> list[str]:
    """Active staff users' email addresses (superusers are staff here too), sorted."""
    from accounts.models import User

    return sorted(
        User.objects.filter(Q(is_staff=True) | Q(is_superuser=True), is_active=True)
        .exclude(email="").values_list("email", flat=True).distinct()
    )


def account_problem_notify(*, account, status: int, detail: str, now: datetime | None = None) -> bool:
    """Email staff that ``account`` (a ``ProviderAccount``) has problem ``status`` (401/402),
    unless they were told about it less than :data:`NOTIFY_EVERY` ago; ``detail`` is the
    provider's code and message. Returns True when an email was queued (it is sent on commit).

    The "once per hour" record is ``problem_notified_at``/``problem_note`` on the account,
    claimed with one conditional UPDATE. Nothing is claimed when there is no staff address.
    Never raises for a mail failure (it is logged): the lifecycle must not fail over an email.
    """
    from providers.models import ProviderAccount

    now = now or timezone.now()
    recipients = staff_emails()
    if not recipients:
        log.warning("provider account %s %s, but no staff address to tell", account, ACCOUNT_PROBLEMS[status])
        return False
    claimed = ProviderAccount.objects.filter(pk=account.pk).filter(
        Q(problem_notified_at__isnull=True) | Q(problem_notified_at__lte=now - NOTIFY_EVERY)
    ).update(problem_notified_at=now, problem_note=f"{status}: {detail}"[:300])
    if not claimed:
        return False
    what = ACCOUNT_PROBLEMS[status]
    subject = f"[Hailuo Studio] Provider account “{account.label}” ({account.kind}) {what}"
    body = (
        f"The provider account “{account.label}” ({account.get_kind_display()}, {account.base_url}) {what}.\n\n"
        f"The provider said: {detail}\n\n"
        + ("Top up the account's credit at the provider, " if status == 402 else "Set a valid API key, ")
        + "or set a fallback account in the admin (Provider accounts).\n"
        "Members whose videos failed were shown that the company's provider account has a problem and that admins were told; "
        "nothing was charged to them.\n\n"
        f"You get at most one such email per account per hour ({now:%Y-%m-%d %H:%M} UTC).\n"
    )

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:
            log.exception("could not email staff about provider account %s", account.pk)

    transaction.on_commit(send)
    return True


def generation_event_saved(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """``post_save`` of ``GenerationEvent``: an event reporting a 401/402 from the provider
    notifies staff about the account that answered it (after a 402 failover: the account the
    generation left, ``fallback_from``)."""
    if not created or raw:
        return
    status = account_problem_status(instance.data, instance.message)
    if status is None:
        return
    generation = instance.generation
    failover = "failover from" in (instance.message or "")
    account = generation.fallback_from if failover and generation.fallback_from_id else generation.provider_account
    data = instance.data or {}
    detail = " ".join(str(p) for p in (data.get("code"), data.get("message") or instance.message) if p)
    try:
        with transaction.atomic():
            account_problem_notify(account=account, status=status, detail=detail)
    except Exception:  # never let an alert fail the lifecycle's transaction
        log.exception("could not record the problem of provider account %s", account.pk)
