"""REST endpoints for approvals (/api/v1/approvals): the requests waiting for your decision,
approve, and reject with a reason.

Another team's request answers 404 ``not_found`` (its existence is not revealed); a request
you see (your own, a teammate's) but may not decide answers 403 ``forbidden``; one that no
longer waits answers 409 ``not_pending``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ninja import Field, Router, Schema
from ninja.responses import Status

from approvals import selectors, services
from config.apitypes import Text
from config.errors import ErrorOut
from generations.api import GenerationOut, _out

router = Router(tags=["approvals"])


class ApprovalOut(Schema):
    generation_id: UUID
    team_id: int
    member_email: str = Field(examples=["member@example.com"])
    prompt: str
    provider: str = Field(examples=["apixo"])
    model: str = Field(examples=["hailuo-2-3"])
    mode: str = Field(examples=["pro-text-to-video"])
    duration: int = Field(examples=[5])
    resolution: str = Field(examples=["1080p"])
    price_usd: str = Field(description="Quoted and held, decimal string, USD", examples=["0.490000"])
    reasons: list[str] = Field(description="Which conditions of the team's rule it matched", examples=[["resolution 1080p"]])
    requested_at: datetime
    expires_at: datetime = Field(description="Rejected automatically then (HAILUO_APPROVAL_TTL)")


class ApprovalListOut(Schema):
    items: list[ApprovalOut]


class RejectIn(Schema):
    reason: Text = Field(min_length=1, max_length=services.REASON_MAX, description="Shown to the member", examples=["Use 768p for drafts"])


def _row(g) -> dict:
    request = getattr(g, "approval_request", None)
    return {
        "generation_id": g.pk, "team_id": g.team_id, "member_email": g.user.email, "prompt": g.prompt,
        "provider": g.provider_kind, "model": g.model, "mode": g.mode, "duration": g.duration, "resolution": g.resolution,
        "price_usd": f"{g.quoted_amount:f}", "reasons": list(request.reasons) if request else [],
        "requested_at": request.requested_at if request else g.created_at,
        "expires_at": request.expires_at if request else g.created_at,
    }


@router.get("/approvals", response={200: ApprovalListOut, 422: ErrorOut}, summary="Requests waiting for your approval")
def list_approvals(request):
    """The generations waiting in `pending_approval` that you may decide: your admin teams'
    (every team's for staff), oldest first. Empty for a member who is no team's admin."""
    return {"items": [_row(g) for g in selectors.pending_for(user=request.auth)]}


@router.post(
    "/approvals/{generation_id}/approve",
    response={200: GenerationOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Approve a request",
)
def approve(request, generation_id: UUID):
    """Approve: the generation becomes `queued` and is sent to the provider once, however often
    this is called (a second call answers 409 `not_pending`). 403 `forbidden` unless you are an
    admin of its team; 404 for another team's."""
    generation = services.decidable(user=request.auth, generation_id=generation_id)
    return Status(200, _out(request, services.approve(actor=request.auth, generation=generation)))


@router.post(
    "/approvals/{generation_id}/reject",
    response={200: GenerationOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Reject a request",
)
def reject(request, generation_id: UUID, payload: RejectIn):
    """Reject with a `reason` (required: 422 `validation_error` without one): the generation
    becomes `rejected`, its hold is released (never charged) and the member sees the reason
    (`rejection_reason`). 409 `not_pending`, 403 `forbidden`, 404 as for approve."""
    generation = services.decidable(user=request.auth, generation_id=generation_id)
    return Status(200, _out(request, services.reject(actor=request.auth, generation=generation, reason=payload.reason)))
