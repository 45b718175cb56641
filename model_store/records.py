"""What the store hands out: ModelVersion, ModelSummary and the publish staging path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PosixPath
from typing import Any

from model_store.errors import StoreError

__all__ = ["ModelSummary", "ModelVersion", "StagingPath"]


@dataclass(frozen=True)
class ModelVersion:
    """One immutable published version.

    ``sha256`` is the SHA-256 of the version's MANIFEST.json, which lists the SHA-256 of
    every file: the single identity a client can record and trace. ``metadata`` is the JSON
    document given to ``publish``; ``aliases`` are the aliases pointing here when read.
    """

    name: str
    version: int
    ref: str
    path: Path
    sha256: str
    metadata: dict[str, Any]
    created_at: str
    aliases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "path": str(self.path),
            "sha256": self.sha256,
            "metadata": self.metadata,
            "created_at": self.created_at,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True)
class ModelSummary:
    """One model name: its newest version number, version count and alias targets."""

    name: str
    latest_version: int | None
    version_count: int
    aliases: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "latest_version": self.latest_version,
            "version_count": self.version_count,
            "aliases": dict(self.aliases),
        }


class StagingPath(PosixPath):
    """The folder ``publish`` yields: a real Path to write into, plus the result afterwards.

    ``with store.publish("scenes", metadata=...) as staging: save(staging)`` and then
    ``staging.version`` is the published ModelVersion. (Paths derived from it with ``/``
    are plain locations and carry no result.)
    """

    _published: ModelVersion | None = None

    @property
    def version(self) -> ModelVersion:
        if self._published is None:
            raise StoreError("the version is only known after the publish block exits cleanly")
        return self._published

    def _set_published(self, version: ModelVersion) -> None:
        self._published = version
