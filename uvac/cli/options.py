"""Command-line options made from the configuration dataclasses, so that a new field of
`FeatureConfig` or `TrainConfig` needs no change to the ``uvac`` command."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from uvac.device import DEVICE_CHOICES
from uvac.models import MODEL_TYPES

__all__ = ["add_config_options", "key_json_value", "positive_int", "prefixed"]

# Friendlier flags (listed first) and fixed choices for some config fields; every other field
# is offered as --field-name.
_FLAG_ALIASES = {
    "n_clusters": ("--clusters", "--n-clusters"),
    "lambda_kl": ("--lambda", "--lambda-kl"),
    "bf16_autocast": ("--bf16", "--bf16-autocast"),
}
_CHOICES: dict[str, Sequence[str]] = {
    "model_type": sorted(MODEL_TYPES),
    "device": DEVICE_CHOICES,
}
_NOT_OPTIONS = frozenset({"model_hyperparameters"})  # set through --model-option


def add_config_options(group: argparse._ArgumentGroup, config_class: type, *, prefix: str) -> None:
    """One option per field of a config dataclass, so that new fields need no CLI change.

    Unset options stay out of the namespace (SUPPRESS), so the preset's values stand.
    """
    for config_field in dataclasses.fields(config_class):
        name = config_field.name
        if name in _NOT_OPTIONS:
            continue
        flags = _FLAG_ALIASES.get(name, ("--" + name.replace("_", "-"),))
        dest = prefix + name
        annotation = str(config_field.type)
        if annotation == "bool":
            group.add_argument(
                *flags, dest=dest, action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
            )  # fmt: skip
            continue
        nullable = "None" in annotation
        metavar = name.upper() + ("|none" if nullable else "")
        if name in _CHOICES:
            group.add_argument(*flags, dest=dest, choices=_CHOICES[name], default=argparse.SUPPRESS)
            continue
        group.add_argument(
            *flags, dest=dest, type=_value_parser(annotation), metavar=metavar,
            default=argparse.SUPPRESS,
        )  # fmt: skip


def _value_parser(annotation: str) -> Callable[[str], Any]:
    """A parser for a field annotated ``int``, ``float``, ``str``, or unions of them and None."""
    kinds = {part.strip() for part in annotation.split("|")} - {"None"}

    def parse_value(text: str) -> Any:
        if "None" in annotation and text.lower() == "none":
            return None
        if kinds == {"int"}:
            return int(text)
        if kinds == {"float"}:
            return float(text)
        if kinds == {"str"}:
            return text
        return _guess_scalar(text)  # a union such as ``bool | str``: the field validates it

    parse_value.__name__ = annotation  # argparse names the type in its error message
    return parse_value


def _guess_scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def key_json_value(text: str) -> tuple[str, Any]:
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=JSON, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw  # a bare word is a string


def prefixed(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    return {
        name.removeprefix(prefix): value
        for name, value in vars(args).items()
        if name.startswith(prefix)
    }
