"""Blanking absolute paths out of what callers read (job errors, problem documents).

Every absolute path is replaced by ``<server path>``, whatever folder it names: blanking only
the server's own folders would tell a caller which folders those are, by the difference
between what comes back blanked and what comes back as sent. The one exception is a path
written after an HTTP method (``POST /v1/train``): that is how the service's messages name
its own routes, and the rule does not depend on which folders exist here either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SERVER_PATH", "redacted", "without_server_paths"]

SERVER_PATH = "<server path>"
# A slash that starts a path: not inside a word, a URL (``https://``), a media type
# (``audio/wav``) or a fraction, unless a ``file://`` URL; then at least one character of a
# first component.
_ABSOLUTE_PATH = re.compile(r"(?:file://|(?<![\w.:/\\]))/[^\s'\"/:]+(?:/[^\s'\"]*)?")
_ROUTE_METHOD = re.compile(r"\b(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|WS) $")


def _blank(match: re.Match[str]) -> str:
    before = match.string[max(0, match.start() - 8) : match.start()]
    return match.group(0) if _ROUTE_METHOD.search(before) else SERVER_PATH


def without_server_paths(text: str) -> str:
    """``text`` with every absolute path replaced by ``<server path>``, except a route named
    after its method (``GET /v1/jobs/{id}``)."""
    return _ABSOLUTE_PATH.sub(_blank, text)


def redacted(value: Any) -> Any:
    """``value`` with `without_server_paths` applied to every string in it, at any depth."""
    if isinstance(value, str):
        return without_server_paths(value)
    if isinstance(value, Mapping):
        return {key: redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    return value
