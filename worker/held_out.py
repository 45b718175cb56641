"""The held-out part of a training job: put aside before training, scored after it.

`split_for_training` applies the engine's rule (`uvac.audio.held_out_split`) to a data set's
recordings with the job's ``held_out_share``; only the training part reaches the training
function, so the model, its normalisation, its start and any early stopping never see the
held-out recordings. `held_out_record` scores the trained model on them and returns what the
version's metadata keeps under ``held_out``: the split (the held-out files by their path in the
data set, so an evaluation finds them) and the figures (accuracy and NMI when every held-out
recording has a label; the clusters used and the mean confidence always; and the
``novelty_rate``, the share of held-out recordings the model answers as unknown, decided as
`/v1/cluster` decides it (`uvac.evaluation.unknown_share`), None for a model without a novelty
score). Without labels the novelty rate is what a promotion compares (`model_store.promotion`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.identity import assign_recordings
from worker.job_support import InvalidJobParameters

if TYPE_CHECKING:
    from uvac.audio import DatasetItem, EmbeddingCache, HeldOutSplit
    from uvac.training import TrainedModel

__all__ = ["held_out_metrics", "held_out_record", "held_out_share", "split_for_training"]


def held_out_share(params: Mapping[str, Any]) -> float:
    """The job's ``held_out_share`` (default `uvac.audio.DEFAULT_HELD_OUT_SHARE`)."""
    from uvac.audio import DEFAULT_HELD_OUT_SHARE

    share = params.get("held_out_share", DEFAULT_HELD_OUT_SHARE)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
        raise InvalidJobParameters(f"held_out_share must be a number in [0, 1), got {share!r}")
    return float(share)


def split_for_training(items: Sequence[DatasetItem], params: Mapping[str, Any]) -> HeldOutSplit:
    from uvac.audio import held_out_split

    return held_out_split(items, share=held_out_share(params))


def held_out_metrics(
    trained: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    should_stop: Callable[[], bool] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """The model's figures on ``items``: ``{"recordings", "accuracy", "nmi", "clusters_used",
    "mean_confidence", "novelty_rate"}`` (accuracy and NMI None without a label on every
    recording; the novelty rate None without a novelty score)."""
    from uvac.evaluation import unknown_share
    from uvac.metrics import clusters_used, nmi, unsupervised_accuracy

    ids, pi = assign_recordings(
        trained, items, should_stop=should_stop, embedding_cache=embedding_cache
    )
    if not ids:
        return {
            "recordings": 0,
            "accuracy": None,
            "nmi": None,
            "clusters_used": 0,
            "novelty_rate": None,
        }
    assignments = pi.argmax(axis=1)
    labels_by_id = {item.relpath: item.label for item in items}
    labels = [labels_by_id.get(clip) for clip in ids]
    labelled = all(label is not None for label in labels)
    return {
        "recordings": len(ids),
        "accuracy": float(unsupervised_accuracy(labels, assignments)) if labelled else None,
        "nmi": float(nmi(labels, assignments)) if labelled else None,
        "clusters_used": int(clusters_used(assignments)),
        "mean_confidence": float(np.mean(pi.max(axis=1))),
        "novelty_rate": unknown_share(
            trained, items, should_stop=should_stop, embedding_cache=embedding_cache
        ),
    }


def held_out_record(
    trained: TrainedModel,
    split: HeldOutSplit,
    *,
    should_stop: Callable[[], bool] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """The version's ``held_out`` metadata: the split, its figures and a sentence on both."""
    record: dict[str, Any] = split.describe()
    if not split.held_out:
        record["metrics"] = None
        record["description"] = (
            "No recording was held out (held_out_share 0): there are no held-out figures."
        )
        return record
    metrics = held_out_metrics(
        trained, split.held_out, should_stop=should_stop, embedding_cache=embedding_cache
    )
    description = (
        f"Figures on the {len(split.held_out)} held-out recordings ({100 * split.share:g}% of "
        "the data set" + (", stratified by label" if split.stratified else "") + "), which "
        "training never saw."
    )
    if metrics["novelty_rate"] is not None:
        description += (
            " novelty_rate is the share of them /v1/cluster answers as unknown, at the model's "
            "own false-alarm rate."
        )
    record["metrics"] = metrics
    record["description"] = description
    return record
