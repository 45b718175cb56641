"""`ClosedModel`: a request body that refuses unknown keys, cheaply however many there are, and
takes every value as the JSON type its schema says.

Strict types: a JSON `true` or `"0"` is not a number, `1` or `"yes"` not a boolean, and an
integer field takes only an integer (`8.0` too is refused: the worker hands values on as they
are). A number field takes an integer as well, as JSON Schema's `number` does. An enum field
(a preset's name) takes its value's string, the only way JSON can spell it
(`LaxEnum` marks those fields). Query parameters are text by nature and are converted as before.

`extra="forbid"` reports every unknown key as its own error: a 1 MB body of 75,000 keys
made 75,000 errors that took seconds to build and encode on the event loop, and a 7 MB
answer. A body with more than `MAX_UNKNOWN_KEYS` unknown keys is refused with one error
that names the first few, before pydantic looks at any field; fewer are reported one by
one, as before.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Strict, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["MAX_UNKNOWN_KEYS", "ClosedModel", "LaxEnum", "refuse_many_unknown_keys"]

MAX_UNKNOWN_KEYS = 10

# For an enum field of a strict model: pydantic's strict mode takes only enum members from
# Python objects (FastAPI validates the parsed JSON as Python objects), never their values.
LaxEnum = Strict(False)


def refuse_many_unknown_keys(model: type[BaseModel], data: Any) -> Any:
    """``data`` unchanged, or one error when it holds more than `MAX_UNKNOWN_KEYS` keys that
    are not fields (or aliases) of ``model``."""
    if not isinstance(data, dict) or len(data) <= MAX_UNKNOWN_KEYS:
        return data
    known = set(model.model_fields)
    known.update(f.alias for f in model.model_fields.values() if f.alias)
    unknown = [key for key in data if key not in known]
    if len(unknown) <= MAX_UNKNOWN_KEYS:
        return data
    named = ", ".join(repr(str(key)[:40]) for key in unknown[:3])
    raise PydanticCustomError(
        "extra_forbidden",
        "{count} unknown keys (such as {named}); this object accepts only its documented keys",
        {"count": len(unknown), "named": named},
    )


class ClosedModel(BaseModel):
    """A closed, strict request model (``extra="forbid"``, ``strict=True``) that refuses many
    unknown keys at once."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_keys(cls, data: Any) -> Any:
        return refuse_many_unknown_keys(cls, data)
