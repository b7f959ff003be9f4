"""REST endpoints for your own API tokens (/api/v1/tokens): create, list, revoke.

The secret of a new token is in the create answer only (only its SHA-256 is stored). A
read-scoped token may list tokens but not create or revoke them (403 ``insufficient_scope``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Field, Router, Schema
from ninja.responses import Status

from accounts.models import ApiToken
from accounts.selectors import api_tokens_of
from accounts.services import TOKEN_NAME_MAX, api_token_create, api_token_revoke
from config.apitypes import Text
from config.errors import ErrorOut, NotFound

router = Router(tags=["tokens"])


class TokenIn(Schema):
    name: Text = Field(min_length=1, max_length=TOKEN_NAME_MAX, examples=["nightly product shots"])
    scope: Literal["read", "read_write"] = Field("read_write", description="`read`: GET only; `read_write`: everything")
    expires_at: datetime | None = Field(
        None, description="ISO 8601 with offset; null: never expires", examples=["2027-01-01T00:00:00Z"]
    )


class TokenOut(Schema):
    id: int = Field(examples=[7])
    name: str = Field(examples=["nightly product shots"])
    scope: str = Field(examples=["read_write"], description="`read` or `read_write`")
    last4: str = Field(examples=["x9Qa"], description="The secret's last four characters, to recognise it")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute")
    revoked_at: datetime | None
    active: bool = Field(description="Neither revoked nor expired")


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The secret: shown this once, store it now", examples=["hs_3v9...x9Qa"])


def _out(token: ApiToken) -> dict:
    return {
        "id": token.pk, "name": token.name, "scope": token.scope, "last4": token.last4, "created_at": token.created_at,
        "expires_at": token.expires_at, "last_used_at": token.last_used_at, "revoked_at": token.revoked_at,
        "active": token.is_active,
    }


@router.get("/tokens", response={200: list[TokenOut]}, summary="List my API tokens")
def list_tokens(request):
    """Your tokens, newest first, revoked and expired ones included (`active` tells)."""
    return Status(200, [_out(t) for t in api_tokens_of(user=request.auth)])


@router.post("/tokens", response={201: TokenCreatedOut, 403: ErrorOut, 422: ErrorOut}, summary="Create an API token")
def create_token(request, payload: TokenIn):
    """A new token for you, with a name, a scope and an optional expiry. The answer's `token` is
    the secret, shown this once. 422 `validation_error` for an expiry in the past."""
    token, raw = api_token_create(user=request.auth, name=payload.name, scope=payload.scope, expires_at=payload.expires_at)
    return Status(201, {**_out(token), "token": raw})


@router.delete(
    "/tokens/{token_id}", response={200: TokenOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut}, summary="Revoke an API token"
)
def revoke_token(request, token_id: int):
    """Revoke one of your tokens (from now on it answers 401). Revoking twice is harmless. You
    may revoke the token you are calling with. 404 for a token that is not yours."""
    if not 1 <= token_id <= 2**63 - 1:
        raise NotFound("No such token.")
    return Status(200, _out(api_token_revoke(user=request.auth, token_id=token_id)))
