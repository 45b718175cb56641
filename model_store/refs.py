"""Model references: ``name``, ``name:vN`` and ``name@alias``.

Names and aliases become folder and key names on disk, so they are checked against a
strict pattern before anything touches the file system: lower-case letters, digits and
``.``, ``_``, ``-``, starting with a letter or digit (so ``..``, ``.staging``, ``a/b`` and
the empty string are all refused). Lower case only, because the volume may live on a
case-insensitive file system where ``Scenes`` and ``scenes`` would collide.

>>> parse_ref("scenes:v7")
ModelRef(name='scenes', version=7, alias=None)
>>> str(parse_ref("scenes"))
'scenes@latest'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model_store.errors import InvalidReference

__all__ = [
    "ALIAS_PATTERN",
    "LATEST_ALIAS",
    "NAME_PATTERN",
    "ModelRef",
    "parse_ref",
    "validate_alias",
    "validate_name",
]

NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
ALIAS_PATTERN = r"[a-z][a-z0-9_-]{0,63}"
#: The alias that every successful publish moves to the new version.
LATEST_ALIAS = "latest"

_NAME_RE = re.compile(NAME_PATTERN)
_ALIAS_RE = re.compile(ALIAS_PATTERN)
_VERSION_RE = re.compile(r"v([1-9][0-9]{0,8})")


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:v{self.version}"
        return f"{self.name}@{self.alias}"


def validate_name(name: str) -> str:
    """Return ``name`` unchanged if it is a safe model name, else raise InvalidReference."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidReference(
            f"invalid model name {name!r}: expected {NAME_PATTERN} "
            "(lower-case letters, digits, '.', '_', '-'; at most 64 characters)"
        )
    return name


def validate_alias(alias: str) -> str:
    """Return ``alias`` unchanged if it is a safe alias name, else raise InvalidReference."""
    if not isinstance(alias, str) or _ALIAS_RE.fullmatch(alias) is None:
        raise InvalidReference(
            f"invalid alias {alias!r}: expected {ALIAS_PATTERN} "
            "(starts with a lower-case letter; letters, digits, '_', '-')"
        )
    return alias


def parse_ref(text: str) -> ModelRef:
    """Parse ``name``, ``name:vN`` or ``name@alias``; ``name`` alone means ``name@latest``."""
    if not isinstance(text, str) or not text:
        raise InvalidReference("empty model reference")
    if ":" in text:
        name, _, version_text = text.partition(":")
        match = _VERSION_RE.fullmatch(version_text)
        if match is None:
            raise InvalidReference(
                f"invalid version in {text!r}: expected 'name:vN' with N a positive integer"
            )
        return ModelRef(name=validate_name(name), version=int(match.group(1)))
    if "@" in text:
        name, _, alias = text.partition("@")
        return ModelRef(name=validate_name(name), alias=validate_alias(alias))
    return ModelRef(name=validate_name(text), alias=LATEST_ALIAS)
