"""``{% load approvals %}``: the Approvals menu's count badge and a generation's approval request."""

from django import template

register = template.Library()


@register.simple_tag
def pending_approvals_count(user) -> int:
    """How many requests wait for ``user``'s decision (0 for members); one query for team admins."""
    from approvals.selectors import pending_count

    if not getattr(user, "is_authenticated", False):
        return 0
    return pending_count(user=user)


@register.simple_tag
def approval_request_of(generation):
    """The generation's ``ApprovalRequest`` (reasons, decision, who, when) or None; one query."""
    from approvals.models import ApprovalRequest

    return ApprovalRequest.objects.select_related("decided_by").filter(generation_id=generation.pk).first()
