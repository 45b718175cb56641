"""Which recordings of a data set a student trains on, and which it is judged on.

On the teacher's own data set the student is not trained on the recordings the teacher's
training held out (neither has seen them); on another data set a share of it is put aside by
the rule of `uvac.audio.held_out_split`. The distillation job splits by this, and the API
sizes a distillation on the same split when it is submitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from uvac.audio import DatasetItem, held_out_split
from uvac.evaluation import held_out_paths, is_own_dataset

__all__ = ["StudentSplit", "student_split"]


@dataclass(frozen=True)
class StudentSplit:
    training: list[DatasetItem]
    held_out: list[DatasetItem]
    source: str  # where the held-out part comes from, for people


def student_split(
    items: Sequence[DatasetItem],
    *,
    teacher_metadata: Mapping[str, Any],
    teacher_ref: str,
    dataset_id: str,
    dataset_digest: str,
    share: float,
) -> StudentSplit:
    """The split of ``items`` (data set ``dataset_id``) for a student of ``teacher_ref``."""
    own = is_own_dataset(teacher_metadata, dataset_id=dataset_id, digest=dataset_digest)
    teacher_held = set(held_out_paths(teacher_metadata) or ())
    if own and teacher_held:
        return StudentSplit(
            training=[item for item in items if item.relpath not in teacher_held],
            held_out=[item for item in items if item.relpath in teacher_held],
            source=f"the recordings {teacher_ref}'s training held out",
        )
    split = held_out_split(items, share=share)
    return StudentSplit(split.training, split.held_out, "held out of this distillation")
