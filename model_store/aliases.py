"""Alias table of one model: current targets, rollback stacks and an audit history.

Stored as ``<root>/<name>/aliases.json`` and always replaced atomically (temp file, fsync,
rename) by a writer holding the model's lock; readers just read it.

::

    {"format": 1,
     "aliases": {"production": {"version": 3, "previous": [1, 2]}, "latest": {...}},
     "history": [{"alias": "production", "action": "promote", "version": 3,
                  "from_version": 2, "at": "2025-01-01T00:00:00+00:00"}, ...]}

Rollback semantics: every move of an alias pushes its old target onto ``previous`` (unless it
is the same version); ``rollback`` pops until it finds a version that still exists and
differs from the current target. So promote v1, v2, v3 then rollback twice gives v2, then v1.
The history is an append-only log (the newest ``HISTORY_LIMIT`` entries are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_store.errors import AliasConflict, Corrupted, NotFound
from model_store.fsutil import atomic_write_json, read_json

__all__ = ["ALIASES_FILE_NAME", "HISTORY_LIMIT", "MAX_ALIASES_PER_MODEL", "AliasTable"]

ALIASES_FILE_NAME = "aliases.json"
ALIASES_FORMAT = 1
HISTORY_LIMIT = 1000
# Every model listing carries each model's aliases: a promotion may not add one beyond this
# (moving an existing alias is always allowed; publishing may always set `latest`).
MAX_ALIASES_PER_MODEL = 32


@dataclass
class AliasTable:
    """In-memory view of aliases.json; mutate under the model lock, then ``save``."""

    name: str
    targets: dict[str, int] = field(default_factory=dict)
    previous: dict[str, list[int]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, *, name: str) -> AliasTable:
        if not path.exists():
            return cls(name=name)
        try:
            document = read_json(path)
        except (OSError, ValueError) as error:
            raise Corrupted(f"unreadable alias table {path}: {error}", ref=name) from error
        return cls.from_document(document, name=name, source=str(path))

    @classmethod
    def from_document(cls, document: Any, *, name: str, source: str) -> AliasTable:
        """The table an aliases.json document describes (``source`` names it in errors)."""
        try:
            table = cls(name=name, history=list(document.get("history", [])))
            for alias, entry in document["aliases"].items():
                table.targets[alias] = int(entry["version"])
                table.previous[alias] = [int(version) for version in entry.get("previous", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise Corrupted(f"unreadable alias table {source}: {error}", ref=name) from error
        return table

    def document(self) -> dict[str, Any]:
        """The aliases.json document of this table."""
        return {
            "format": ALIASES_FORMAT,
            "aliases": {
                alias: {"version": version, "previous": self.previous.get(alias, [])}
                for alias, version in sorted(self.targets.items())
            },
            "history": self.history[-HISTORY_LIMIT:],
        }

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.document())

    def aliases_of(self, version: int) -> list[str]:
        return sorted(alias for alias, target in self.targets.items() if target == version)

    def move(self, alias: str, version: int, *, action: str, at: str) -> None:
        """Point ``alias`` at ``version``, remembering the old target for rollback.

        A promotion that would add an alias beyond `MAX_ALIASES_PER_MODEL` is an
        `AliasConflict` (409)."""
        old = self.targets.get(alias)
        if old is None and action == "promote" and len(self.targets) >= MAX_ALIASES_PER_MODEL:
            raise AliasConflict(
                f"{self.name} already has {len(self.targets)} aliases, the most a model may "
                f"have; move one of them (or remove it) instead of adding @{alias}."
            )
        if old is not None and old != version:
            stack = self.previous.setdefault(alias, [])
            stack.append(old)
            del stack[:-HISTORY_LIMIT]
        self.targets[alias] = version
        self._log(alias=alias, action=action, version=version, from_version=old, at=at)

    def roll_back(self, alias: str, *, exists: Callable[[int], bool], at: str) -> int:
        """Move ``alias`` to its previous distinct, still existing target; return it."""
        if alias not in self.targets:
            raise NotFound(f"alias {self.name}@{alias} is not set")
        current = self.targets[alias]
        stack = self.previous.setdefault(alias, [])
        while stack:
            candidate = stack.pop()
            if candidate != current and exists(candidate):
                self.targets[alias] = candidate
                self._log(
                    alias=alias, action="rollback", version=candidate, from_version=current, at=at
                )
                return candidate
        raise AliasConflict(
            f"alias {self.name}@{alias} has no earlier version to roll back to "
            f"(it points at v{current})"
        )

    def remove(self, alias: str, *, at: str) -> None:
        if alias not in self.targets:
            raise NotFound(f"alias {self.name}@{alias} is not set")
        old = self.targets.pop(alias)
        self.previous.pop(alias, None)
        self._log(alias=alias, action="remove", version=None, from_version=old, at=at)

    def _log(
        self, *, alias: str, action: str, version: int | None, from_version: int | None, at: str
    ) -> None:
        self.history.append(
            {
                "alias": alias,
                "action": action,
                "version": version,
                "from_version": from_version,
                "at": at,
            }
        )
        del self.history[:-HISTORY_LIMIT]
