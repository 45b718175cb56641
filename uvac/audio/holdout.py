"""The held-out part of a data set: recordings that training never sees.

A model is judged on recordings it was not fitted on. `held_out_split(items, share=...)` puts
aside a deterministic share of a data set's recordings (whole files, so every window of a
recording stays on one side) before anything is fitted: the model, the normalisation
statistics, the clustering start and any early stopping see only the training part.

The rule, decided once per data set:

- every recording gets a key: the first 16 hex digits of the SHA-1 of its relative path
  (stable across machines, independent of the other files and of their order);
- when every recording has a label, each label's recordings are ordered by key and the first
  ``round(share * n)`` of them are held out (at most ``n - 1``, so every label keeps a
  recording for training): the held-out part has the data set's label proportions;
- otherwise all recordings are ordered by key and the first ``round(share * N)`` are held out
  (at most ``N - 1``).

``share`` lies in ``[0, 1)``; 0 holds nothing out. `DEFAULT_HELD_OUT_SHARE` (20%) is the
service's default. Ten recordings, five of label ``a`` and five of ``b``, at 20%: one of
each label is held out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from uvac.audio.datasets import DatasetItem

__all__ = ["DEFAULT_HELD_OUT_SHARE", "HeldOutSplit", "held_out_split"]

DEFAULT_HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class HeldOutSplit:
    """A data set's recordings in two parts; both keep the data set's item order."""

    training: list[DatasetItem]
    held_out: list[DatasetItem]
    share: float
    stratified: bool  # by label (every recording had one)

    @property
    def held_out_paths(self) -> list[str]:
        """The held-out recordings' paths in the data set, sorted."""
        return sorted(item.relpath for item in self.held_out)

    def describe(self) -> dict[str, object]:
        """What a model's metadata records of the split (evaluation finds the files by it)."""
        return {
            "share": self.share,
            "rule": "sha1-of-path" + (", stratified by label" if self.stratified else ""),
            "stratified": self.stratified,
            "training_files": len(self.training),
            "files": self.held_out_paths,
        }


def held_out_split(items: Sequence[DatasetItem], *, share: float) -> HeldOutSplit:
    """Put a deterministic ``share`` of ``items`` aside (rule in the module docstring)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the held-out share must lie in [0, 1), got {share!r}")
    stratified = bool(items) and all(item.label is not None for item in items)
    groups: dict[str | None, list[DatasetItem]] = {}
    for item in items:
        groups.setdefault(item.label if stratified else None, []).append(item)
    held: set[str] = set()
    for members in groups.values():
        count = min(int(share * len(members) + 0.5), len(members) - 1)
        ranked = sorted(members, key=lambda item: (_key(item.relpath), item.relpath))
        held.update(item.relpath for item in ranked[: max(count, 0)])
    return HeldOutSplit(
        training=[item for item in items if item.relpath not in held],
        held_out=[item for item in items if item.relpath in held],
        share=share,
        stratified=stratified,
    )


def _key(relpath: str) -> str:
    return hashlib.sha1(relpath.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]
