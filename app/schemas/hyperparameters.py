"""The model options (`TrainRequest.model_hyperparameters`) each model type accepts.

Read from the constructors of the classes in `uvac.models.MODEL_TYPES`: every keyword
argument a model takes, typed by its annotation, less the ones the service fills in itself.
A new option, or a new model type, is then accepted here without a second list to keep in
step. Without this check a typo reached the model's constructor only in the worker, after
the data set had been loaded, as a failed job minutes later.

Types are checked strictly (no ``"8"`` or ``8.0`` or ``true`` for an integer): the worker
hands the values to the constructor as they are, and torch refuses them only there. Every
numeric option has a range (`OPTION_BOUNDS`; a test keeps it in step with the models), so a
width of 100000 is a 422 here rather than a worker out of memory. The ranges are generous
one by one; what a combination costs is estimated from the whole request when it is
submitted (`app.training_limits`).
"""

from __future__ import annotations

import collections.abc
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, create_model
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.schemas.closed import ClosedModel
from uvac.models import DATA_ARGUMENTS, MODEL_TYPES, model_options

__all__ = [
    "OPTION_BOUNDS",
    "SET_BY_THE_SERVICE",
    "allowed_hyperparameters",
    "check_model_hyperparameters",
    "describe_options",
]

# What the trainer passes to every model from the request's other settings and the data
# (`n_clusters`, the features' mel bins and frames); `TrainConfig` refuses them in
# model_hyperparameters.
SET_BY_THE_SERVICE = DATA_ARGUMENTS
_PLURALS = {"integer": "integers", "number": "numbers", "string": "strings", "boolean": "booleans"}


@dataclass(frozen=True)
class Bounds:
    """The values a numeric option may take; for a list option, each item's, and its length."""

    minimum: int
    maximum: int
    max_items: int = 8


# Per option name, whichever model takes it. Widths far above any recipe's, layer counts
# and latent sizes above anything the networks gain from.
OPTION_BOUNDS: Mapping[str, Bounds] = MappingProxyType(
    {
        "conv_channels": Bounds(1, 512),
        "deconv_channels": Bounds(1, 512),
        "hidden_units": Bounds(1, 8192),
        "gru_hidden": Bounds(1, 2048),
        "gru_layers": Bounds(1, 8),
        "latent_dim": Bounds(1, 1024),
    }
)
_SEQUENCES = (collections.abc.Sequence, list, tuple)
# pydantic's error types for a value of the right type outside its bounds.
_RANGE_ERRORS = frozenset({"greater_than_equal", "less_than_equal", "too_long", "too_short"})


def _bounded(hint: Any, bounds: Bounds | None) -> Any:
    """``hint`` with ``bounds`` as pydantic constraints (an int, or a sequence of ints)."""
    if bounds is None:
        return hint
    item = Annotated[int, Field(ge=bounds.minimum, le=bounds.maximum)]
    if hint is int:
        return item
    if typing.get_origin(hint) in _SEQUENCES and typing.get_args(hint)[:1] == (int,):
        return Annotated[list[item], Field(min_length=1, max_length=bounds.max_items)]
    return hint


@functools.cache
def _options_model(model_type: str) -> type[BaseModel]:
    """A closed, strict pydantic model with one field per option of ``model_type``."""
    model_class = MODEL_TYPES[model_type]
    constructor = model_class.__init__
    hints = typing.get_type_hints(constructor)
    fields: dict[str, Any] = {
        # The default is never used: only given keys count.
        name: (_bounded(hints.get(name, Any), OPTION_BOUNDS.get(name)), None)
        for name in sorted(model_options(model_type))
    }
    return create_model(f"{model_class.__name__}Options", __base__=ClosedModel, **fields)


def _json_type(schema: Mapping[str, Any], *, plural: bool = False) -> str:
    if schema.get("type") == "array":
        items = _json_type(schema.get("items", {}), plural=True)
        length = f"at most {schema['maxItems']} " if "maxItems" in schema else ""
        return f"array of {length}{items}"
    if "anyOf" in schema:
        return " or ".join(_json_type(option, plural=plural) for option in schema["anyOf"])
    kind = str(schema.get("type", "any value"))
    if plural:
        kind = _PLURALS.get(kind, kind + " values")
    if "minimum" in schema and "maximum" in schema:
        kind += f" from {schema['minimum']} to {schema['maximum']}"
    return kind


@functools.cache
def allowed_hyperparameters(model_type: str) -> Mapping[str, str]:
    """Each option ``model_type`` accepts, by name, with its JSON type in words."""
    properties = _options_model(model_type).model_json_schema().get("properties", {})
    # Read-only: the result is cached and shared.
    return MappingProxyType({name: _json_type(properties[name]) for name in sorted(properties)})


def _allowed_text(model_type: str) -> str:
    allowed = allowed_hyperparameters(model_type)
    if not allowed:
        return f"model_type {model_type!r} takes no model_hyperparameters"
    options = ", ".join(f"{name} ({kind})" for name, kind in allowed.items())
    return f"allowed for model_type {model_type!r}: {options}"


def _error(kind: str, location: tuple[str | int, ...], value: Any, reason: str) -> InitErrorDetails:
    # The reason goes in as context, not as the template, so braces in it are not read as
    # placeholders.
    return InitErrorDetails(
        type=PydanticCustomError(kind, "{reason}", {"reason": reason}), loc=location, input=value
    )


def check_model_hyperparameters(model_type: str, values: Mapping[str, Any]) -> None:
    """Raise a pydantic `ValidationError` located at each key of ``values`` that is not an
    option of ``model_type``, or whose value has the wrong type; each message lists the
    allowed options. An unknown ``model_type`` is left to the engine's own check."""
    if model_type not in MODEL_TYPES:
        return
    allowed = _allowed_text(model_type)
    errors: list[InitErrorDetails] = [
        _error(
            "model_hyperparameter_reserved",
            (key,),
            value,
            f"{key} comes from the request's other settings and the data, not from here; "
            + allowed,
        )
        for key, value in values.items()
        if key in SET_BY_THE_SERVICE
    ]
    options = {key: value for key, value in values.items() if key not in SET_BY_THE_SERVICE}
    try:
        _options_model(model_type).model_validate(options)
    except ValidationError as invalid:
        for error in invalid.errors(include_url=False):
            key = str(error["loc"][0])
            if error["type"] == "extra_forbidden":
                reason = f"unknown option {key!r}; {allowed}"
                kind = "model_hyperparameter_unknown"
            else:
                expected = allowed_hyperparameters(model_type)[key]
                article = "an" if expected[0] in "aeiou" else "a"
                reason = f"{key} must be {article} {expected} ({error['msg']}); {allowed}"
                in_range = error["type"] in _RANGE_ERRORS
                kind = "model_hyperparameter_range" if in_range else "model_hyperparameter_type"
            errors.append(_error(kind, error["loc"], error["input"], reason))
    if errors:
        raise ValidationError.from_exception_data("model_hyperparameters", errors)


def describe_options() -> str:
    """The options of every model type in a sentence, for the OpenAPI description."""
    parts = []
    for model_type in sorted(MODEL_TYPES):
        names = ", ".join(f"`{name}`" for name in allowed_hyperparameters(model_type))
        parts.append(f"`{model_type}`: {names or 'none'}")
    return "; ".join(parts)
