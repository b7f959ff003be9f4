"""REST endpoints for provider accounts and their capabilities (/api/v1/providers)."""

from __future__ import annotations

from ninja import Router, Schema

from providers.models import ProviderAccount

router = Router(tags=["providers"])


class OptionOut(Schema):
    name: str
    label: str
    kind: str
    choices: list[str]
    required: bool
    default: bool | str | None


class ModeOut(Schema):
    id: str
    label: str
    image: str
    combos: list[tuple[int, str]]
    options: list[OptionOut]


class ModelOut(Schema):
    id: str
    label: str
    prompt_max_chars: int | None
    modes: list[ModeOut]


class AccountOut(Schema):
    id: int
    kind: str
    provider: str
    label: str
    callbacks: bool
    cancel: bool
    models: list[ModelOut]


def _option(o) -> dict:
    return {"name": o.name, "label": o.label, "kind": o.kind, "choices": list(o.choices), "required": o.required, "default": o.default}


@router.get("/providers", response=list[AccountOut], summary="Enabled provider accounts and what each offers")
def list_providers(request):
    """Each enabled account with its provider's capabilities: models, modes, allowed
    (duration seconds, resolution) pairs, image requirement and options."""
    out = []
    for account in ProviderAccount.objects.filter(enabled=True).order_by("priority", "label"):
        caps = account.adapter_cls.capabilities
        out.append(
            {
                "id": account.pk,
                "kind": account.kind,
                "provider": account.adapter_cls.label,
                "label": account.label,
                "callbacks": caps.callbacks,
                "cancel": caps.cancel,
                "models": [
                    {
                        "id": m.id,
                        "label": m.label,
                        "prompt_max_chars": m.prompt_max_chars,
                        "modes": [
                            {
                                "id": mode.id,
                                "label": mode.label,
                                "image": mode.image,
                                "combos": [list(c) for c in mode.combos],
                                "options": [_option(o) for o in (*mode.options, *caps.account_options)],
                            }
                            for mode in m.modes
                        ],
                    }
                    for m in caps.models
                ],
            }
        )
    return out
