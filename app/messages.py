"""Validation messages as people read them: pydantic's type prefixes removed."""

from __future__ import annotations

import re

__all__ = ["plain_message"]

# pydantic prefixes what a validator raised with its type ("Value error, ...").
_PREFIX = re.compile(r"^(?:Value error|Assertion failed), ")


def plain_message(message: str) -> str:
    """``"Value error, the K range 9..3 is empty"`` -> ``"the K range 9..3 is empty"``."""
    return _PREFIX.sub("", message.strip())
