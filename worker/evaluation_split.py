"""Which recordings an evaluation job runs on (`uvac.evaluation.evaluation_recordings`).

On the model's own data set the version's metadata says which recordings were held out. On
another data set, recordings that trained the model are found by content: a file whose SHA-256
is that of a training recording of the model's data set (while that data set is still
stored) was used for training, whatever its name here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dataset_store import DatasetManifest, DatasetNotFound, DatasetStore

if TYPE_CHECKING:
    from uvac.audio import DatasetItem
    from uvac.evaluation import EvaluationRecordings

__all__ = ["choose_recordings"]


def choose_recordings(
    items: Sequence[DatasetItem],
    *,
    manifest: DatasetManifest,
    model_metadata: Mapping[str, Any],
    datasets: DatasetStore,
    split: Any,
) -> EvaluationRecordings:
    from uvac.evaluation import evaluation_recordings, held_out_paths, is_own_dataset

    own = is_own_dataset(model_metadata, dataset_id=manifest.id, digest=manifest.digest)
    held = held_out_paths(model_metadata)
    return evaluation_recordings(
        items,
        split=split,
        dataset_id=manifest.id,
        own_dataset=own,
        held_out_paths=held,
        trained_on=None if own else _trained_on(manifest, model_metadata, datasets, held),
    )


def _trained_on(
    manifest: DatasetManifest,
    model_metadata: Mapping[str, Any],
    datasets: DatasetStore,
    held: list[str] | None,
) -> set[str] | None:
    """Paths of ``manifest`` whose content trained the model; None when that is unknown."""
    recorded = model_metadata.get("dataset")
    training_id = recorded.get("id") if isinstance(recorded, Mapping) else None
    if not isinstance(training_id, str):
        return None
    try:
        training = datasets.get(training_id)
    except DatasetNotFound:
        return None
    held_set = set(held or ())
    digests = {entry.sha256 for entry in training.files if entry.path not in held_set}
    return {entry.path for entry in manifest.files if entry.sha256 in digests}
