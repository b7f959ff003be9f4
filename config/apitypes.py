"""Input types shared by the API's schemas.

PostgreSQL refuses NUL (``\\x00``) in text and ``jsonb``: a string carrying one would
reach the database and fail there (a 500). :data:`Text` refuses it at the edge (422
``invalid_request``), as does :data:`JsonObject` anywhere inside an options object.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _no_nul_deep(value: Any) -> Any:
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(str(key))
            _no_nul_deep(item)
    elif isinstance(value, list):
        for item in value:
            _no_nul_deep(item)
    return value


#: A string without NUL characters.
Text = Annotated[str, AfterValidator(_no_nul)]
#: A JSON object whose keys and string values carry no NUL characters.
JsonObject = Annotated[dict[str, Any], AfterValidator(_no_nul_deep)]
