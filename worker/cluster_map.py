"""The cluster browser's map, made once per version by the worker (`reports.cluster_map`).

At publishing, on the training recordings; at an evaluation, only when the version has no
map yet (a version published before maps existed, the bundled model), on the evaluated data
set. The map and, for a swept version, its sweep figure go in the version's report area.

Each window's embedding is the model's own input, averaged over time: the standardised
encoder embedding for the encoder presets, the mean log-mel spectrum for the log-mel ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reports.cluster_map import CLUSTER_MAP_FILE, WindowTable, build_cluster_map

if TYPE_CHECKING:
    from dataset_store import DatasetManifest
    from model_store import AnyModelStore, ModelVersion
    from uvac.audio import DatasetItem
    from uvac.training import TrainedModel

__all__ = ["existing_map_files", "map_files", "window_table"]

logger = logging.getLogger(__name__)

_BATCH_CLIPS = 16


def window_table(
    trained: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> WindowTable:
    """Every window of every decodable item, with its embedding and pi."""
    import torch

    from uvac.audio import load_audio
    from uvac.errors import AudioError, RunCancelled
    from uvac.evaluation import Clusterer

    clusterer = Clusterer(trained)
    recordings: list[str] = []
    labels: list[str | None] = []
    recording, starts, ends = [], [], []
    embeddings: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    pending: list[Any] = []

    def flush() -> None:
        windows, slices = clusterer.extractor.windows_batch(pending)
        pi = clusterer.cluster_features(windows.features, windows.mask)  # (W, K)
        with torch.inference_mode():
            features = windows.features.float().mean(dim=2).flatten(1)  # (W, D)
        first = len(recordings) - len(pending)
        for offset, clip in enumerate(slices):
            count = clip.stop - clip.start
            recording.extend([first + offset] * count)
        starts.extend(windows.starts_s)
        ends.extend(windows.ends_s)
        embeddings.append(features.numpy())
        probabilities.append(pi.numpy())
        pending.clear()

    for item in items:
        if should_stop is not None and should_stop():
            raise RunCancelled("cancelled while mapping the recordings")
        try:
            audio = load_audio(item.path, sample_rate=clusterer.sample_rate)
        except AudioError as error:
            logger.warning("map: skipping %s: %s", item.relpath, error)
            continue
        recordings.append(str(item.relpath or item.path.name))
        labels.append(item.label)
        pending.append(audio)
        if len(pending) == _BATCH_CLIPS:
            flush()
    if pending:
        flush()
    k = int(trained.model.n_clusters)
    dimensions = embeddings[0].shape[1] if embeddings else 0
    return WindowTable(
        recordings=recordings,
        labels=labels,
        recording=np.asarray(recording, dtype=np.int64),
        starts_s=np.asarray(starts, dtype=np.float64),
        ends_s=np.asarray(ends, dtype=np.float64),
        embeddings=np.concatenate(embeddings) if embeddings else np.zeros((0, dimensions)),
        probabilities=np.concatenate(probabilities) if probabilities else np.zeros((0, k)),
    )


def map_files(
    trained: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    manifest: DatasetManifest,
    metadata: Mapping[str, Any],
    n_jobs: int = 1,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, bytes]:
    """``cluster_map.json`` of ``items`` (and ``sweep.png`` for a swept version), for the
    report area. ``trained`` is in the version's numbering."""
    from reports import sweep_chart

    table = window_table(trained, items, should_stop=should_stop)
    document = build_cluster_map(
        table, dataset={"id": manifest.id, "digest": manifest.digest}, n_jobs=n_jobs
    )
    files = {CLUSTER_MAP_FILE: json.dumps(document, separators=(",", ":")).encode("utf-8")}
    sweep = sweep_chart(metadata.get("selection"))
    if sweep is not None:
        files["sweep.png"] = sweep
    return files


def existing_map_files(store: AnyModelStore, version: ModelVersion) -> dict[str, bytes]:
    """The map files already in a version's report area (kept when the report is redrawn)."""
    report_dir = store.report_path(version.ref)
    if report_dir is None or not (report_dir / CLUSTER_MAP_FILE).is_file():
        return {}
    return {CLUSTER_MAP_FILE: (report_dir / CLUSTER_MAP_FILE).read_bytes()}
