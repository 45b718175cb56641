"""Which recordings an evaluation runs on, and the words that say so.

A figure computed on recordings the model was trained on overstates how it does on new ones,
so every evaluation is told its *split* and every report carries the description this
module writes (`EvaluationRecordings.describe`):

- ``"held-out"``: the recordings the model's training put aside
  (`uvac.audio.holdout.held_out_split`, listed in the version's metadata); only on the data
  set the model was trained on;
- ``"all"``: every recording of the data set; on the model's own data set the training
  recordings are among them and the description carries a warning that says how many.

`SPLITS` are the names; `evaluation_recordings(..., split=None)` chooses ``"held-out"`` on
the model's own data set when the model held recordings out, else ``"all"``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from uvac.audio import DatasetItem
from uvac.errors import InvalidSplitError

__all__ = [
    "SPLITS",
    "EvaluationRecordings",
    "EvaluationSplit",
    "evaluation_recordings",
    "held_out_paths",
    "is_own_dataset",
]

EvaluationSplit = Literal["held-out", "all"]
SPLITS: tuple[EvaluationSplit, ...] = ("held-out", "all")


@dataclass(frozen=True)
class EvaluationRecordings:
    """The recordings to evaluate on, and what is known of their part in training."""

    items: list[DatasetItem]
    split: EvaluationSplit
    dataset_id: str
    own_dataset: bool
    dataset_files: int
    used_for_training: int | None  # None: not known (the training data set is gone)

    def describe(self) -> dict[str, Any]:
        """``{"split", "dataset_id", "own_dataset", "recordings", "used_for_training",
        "description", "warning"}``; ``warning`` is None only when no recording was used for
        training."""
        count, total = len(self.items), self.dataset_files
        if self.split == "held-out":
            description = (
                f"Computed on the {count} held-out recordings of data set {self.dataset_id} "
                f"(of its {total}): training never saw them."
            )
        elif self.own_dataset:
            description = (
                f"Computed on all {count} recordings of data set {self.dataset_id}, the model's "
                f"training data set."
            )
        else:
            description = f"Computed on all {count} recordings of data set {self.dataset_id}."
        used = self.used_for_training
        if used is None:
            warning: str | None = (
                "Whether any of these recordings were used to train the model is not known "
                "(its training data set is no longer stored): these figures may overstate how "
                "it does on new recordings."
            )
        elif used:
            warning = (
                f"{used} of these {count} recordings were used to train the model: these "
                "figures overstate how it does on new recordings."
            )
        else:
            warning = None
            if self.split == "all":
                description += " None of them was used to train the model."
        return {
            "split": self.split,
            "dataset_id": self.dataset_id,
            "own_dataset": self.own_dataset,
            "recordings": count,
            "used_for_training": used,
            "description": description,
            "warning": warning,
        }


def evaluation_recordings(
    items: Sequence[DatasetItem],
    *,
    split: EvaluationSplit | None,
    dataset_id: str,
    own_dataset: bool,
    held_out_paths: Collection[str] | None,
    trained_on: Collection[str] | None = None,
) -> EvaluationRecordings:
    """Choose the recordings of ``items`` to evaluate on.

    ``held_out_paths``: the model's held-out recordings (paths in its training data set; None
    when the version recorded none, as versions trained before the split existed).
    ``trained_on``: for another data set, the paths of ``items`` whose recordings trained the
    model (None when that cannot be known). Raises `InvalidSplitError` for a held-out split
    that does not exist.
    """
    if split is not None and split not in SPLITS:
        raise InvalidSplitError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    held = set(held_out_paths or ())
    if split is None:
        split = "held-out" if own_dataset and held else "all"
    if split == "held-out":
        if not own_dataset:
            raise InvalidSplitError(
                f"Data set {dataset_id} is not the one the model was trained on, so it has no "
                'held-out recordings; evaluate it with split "all".'
            )
        chosen = [item for item in items if item.relpath in held]
        if not chosen:
            raise InvalidSplitError(
                "The model held no recordings of its data set out of training (a held-out "
                'share of 0, or a version trained before held-out parts existed); use split "all".'
            )
        used: int | None = 0
    else:
        chosen = list(items)
        if own_dataset:
            used = sum(item.relpath not in held for item in chosen)
        elif trained_on is None:
            used = None
        else:
            trained = set(trained_on)
            used = sum(item.relpath in trained for item in chosen)
    return EvaluationRecordings(
        items=chosen,
        split=split,
        dataset_id=dataset_id,
        own_dataset=own_dataset,
        dataset_files=len(items),
        used_for_training=used,
    )


def is_own_dataset(model_metadata: Mapping[str, Any], *, dataset_id: str, digest: str) -> bool:
    """Whether the data set (its id, or its content digest) is the one the version was
    trained on (its metadata's ``dataset``)."""
    trained_on = model_metadata.get("dataset")
    if not isinstance(trained_on, Mapping):
        return False
    return trained_on.get("id") == dataset_id or trained_on.get("digest") == digest


def held_out_paths(model_metadata: Mapping[str, Any]) -> list[str] | None:
    """The held-out recordings a version's metadata lists (``held_out.files``), or None when
    it records no held-out part."""
    held_out = model_metadata.get("held_out")
    files = held_out.get("files") if isinstance(held_out, Mapping) else None
    if not isinstance(files, list):
        return None
    return [str(path) for path in files]
