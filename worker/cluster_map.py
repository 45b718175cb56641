"""The cluster browser's map, made once per version by the worker (`reports.cluster_map`).

At publishing, on the training recordings; at an evaluation, only when the version has no
map yet (a version published before maps existed, the bundled model), on the evaluated data
set. The map and, for a swept version, its sweep figure go in the version's report area.

Each window's embedding is the model's own input, averaged over time: the standardised
encoder embedding for the encoder presets, the mean log-mel spectrum for the log-mel ones.
A model with a novelty score also scores every window, and the map records the threshold at
the version's false-alarm rate when it is drawn (the page greys the foreign windows).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reports.cluster_map import (
    CLUSTER_MAP_FILE,
    PROJECTION_FORMAT,
    NoveltyThreshold,
    Projector,
    WindowTable,
    build_cluster_map,
    project_windows,
)

if TYPE_CHECKING:
    from dataset_store import DatasetManifest
    from model_store import AnyModelStore, ModelVersion
    from uvac.audio import DatasetItem, EmbeddingCache, Windows
    from uvac.evaluation import Clusterer
    from uvac.training import TrainedModel

__all__ = [
    "existing_map_files",
    "map_files",
    "novelty_threshold",
    "remembered_projection",
    "window_table",
]

logger = logging.getLogger(__name__)

_BATCH_CLIPS = 16


def window_table(
    trained: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    should_stop: Callable[[], bool] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> WindowTable:
    """Every window of every decodable item, with its embedding and pi. A model on an encoder
    reads the embeddings through ``embedding_cache``, as training does."""
    import torch

    from uvac.audio import concatenate_windows
    from uvac.evaluation import Clusterer, window_novelty

    clusterer = Clusterer(trained)
    recordings: list[str] = []
    labels: list[str | None] = []
    recording, starts, ends = [], [], []
    embeddings: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    novelty_scores: list[np.ndarray] = []
    novelty: list[np.ndarray] = []
    pending: list[Windows] = []

    def flush() -> None:
        windows, slices = concatenate_windows(pending)
        pi = clusterer.cluster_features(windows.features, windows.mask)  # (W, K)
        scored = window_novelty(trained, windows)  # (W,) raw and calibrated, or None
        if scored is not None:
            novelty_scores.append(scored[0].numpy())
            novelty.append(scored[1].numpy())
        with torch.inference_mode():
            features = windows.features.float().mean(dim=2).flatten(1)  # (W, D)
        first = len(recordings) - len(pending)
        for offset, clip in enumerate(slices):
            recording.extend([first + offset] * (clip.stop - clip.start))
        starts.extend(windows.starts_s)
        ends.extend(windows.ends_s)
        embeddings.append(features.numpy())
        probabilities.append(pi.numpy())
        pending.clear()

    for item, windows in _item_windows(clusterer, items, embedding_cache, should_stop):
        recordings.append(str(item.relpath or item.path.name))
        labels.append(item.label)
        pending.append(windows)
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
        novelty_scores=_joined(novelty_scores) if trained.novelty is not None else None,
        novelty=_joined(novelty) if trained.novelty is not None else None,
    )


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0)


def novelty_threshold(
    trained: TrainedModel, *, false_alarm_rate: float | None = None
) -> NoveltyThreshold | None:
    """The threshold foreign windows are marked at (None for a model without a score): at
    ``false_alarm_rate`` when the version has one set, else the model's own."""
    if trained.novelty is None:
        return None
    calibration = trained.novelty.calibration
    rate = false_alarm_rate if false_alarm_rate is not None else calibration.false_alarm_rate
    return NoveltyThreshold(
        method=str(trained.novelty.score.to_dict()["method"]),
        false_alarm_rate=float(rate),
        threshold=calibration.threshold(rate),
    )


def _item_windows(
    clusterer: Clusterer,
    items: Sequence[DatasetItem],
    cache: EmbeddingCache | None,
    should_stop: Callable[[], bool] | None,
) -> Iterator[tuple[DatasetItem, Windows]]:
    """Each decodable item with its normalised windows (undecodable ones are logged)."""
    from uvac.audio import embed_items, load_audio
    from uvac.errors import AudioError, RunCancelled

    embedder = clusterer.extractor.embedder
    if embedder is not None and cache is not None:
        for result in embed_items(items, embedder=embedder, cache=cache, should_stop=should_stop):
            if result.windows is None:
                logger.warning("map: skipping %s: %s", result.item.relpath, result.error)
                continue
            yield result.item, embedder.standardise(result.windows)
        return
    for item in items:
        if should_stop is not None and should_stop():
            raise RunCancelled("cancelled while mapping the recordings")
        try:
            audio = load_audio(item.path, sample_rate=clusterer.sample_rate)
        except AudioError as error:
            logger.warning("map: skipping %s: %s", item.relpath, error)
            continue
        yield item, clusterer.extractor.windows(audio)


def map_files(
    trained: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    manifest: DatasetManifest,
    metadata: Mapping[str, Any],
    n_jobs: int = 1,
    should_stop: Callable[[], bool] | None = None,
    embedding_cache: EmbeddingCache | None = None,
    false_alarm_rate: float | None = None,
) -> dict[str, bytes]:
    """``cluster_map.json`` of ``items`` (and ``sweep.png`` for a swept version), for the
    report area. ``trained`` is in the version's numbering; ``false_alarm_rate`` is the one
    set on the version after publishing, if any."""
    from reports import sweep_chart

    table = window_table(trained, items, should_stop=should_stop, embedding_cache=embedding_cache)
    document = build_cluster_map(
        table,
        dataset={"id": manifest.id, "digest": manifest.digest},
        n_jobs=n_jobs,
        novelty=novelty_threshold(trained, false_alarm_rate=false_alarm_rate),
        project=(
            remembered_projection(embedding_cache)
            if embedding_cache is not None
            else project_windows
        ),
    )
    files = {CLUSTER_MAP_FILE: json.dumps(document, separators=(",", ":")).encode("utf-8")}
    sweep = sweep_chart(metadata.get("selection"))
    if sweep is not None:
        files["sweep.png"] = sweep
    return files


def remembered_projection(cache: EmbeddingCache) -> Projector:
    """`project_windows`, its results kept in the embedding cache under a digest of the
    windows it placed: another job on the same recordings (another seed, a sweep's next K)
    gives the map the same model inputs and finds their projection instead of running
    t-SNE again."""

    def project(embeddings: np.ndarray, *, seed: int, n_jobs: int) -> tuple[np.ndarray, dict]:
        import openTSNE
        import sklearn
        import torch

        from uvac.hashing import arrays_sha256

        settings = {
            "result": "cluster-map-projection",
            "format": PROJECTION_FORMAT,
            "seed": seed,
            "openTSNE": openTSNE.__version__,
            "scikit-learn": sklearn.__version__,
        }
        key = cache.key(arrays_sha256([embeddings]), settings)
        stored = cache.load_result(key)
        remembered = _stored_projection(stored, rows=embeddings.shape[0]) if stored else None
        if remembered is not None:
            return remembered
        points, projection = project_windows(embeddings, seed=seed, n_jobs=n_jobs)
        cache.store_result(
            key,
            {"points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float64))},
            {"projection": json.dumps(projection)},
        )
        return points, projection

    return project


def _stored_projection(
    stored: tuple[dict[str, Any], dict[str, str]], *, rows: int
) -> tuple[np.ndarray, dict] | None:
    """A remembered projection of ``rows`` windows, or None when it does not fit them."""
    tensors, info = stored
    points = tensors.get("points")
    try:
        projection = json.loads(info["projection"])
    except (KeyError, ValueError):
        return None
    if points is None or tuple(points.shape) != (rows, 2):
        return None
    return points.numpy(), projection


def existing_map_files(store: AnyModelStore, version: ModelVersion) -> dict[str, bytes]:
    """The map files already in a version's report area (kept when the report is redrawn)."""
    report_dir = store.report_path(version.ref)
    if report_dir is None or not (report_dir / CLUSTER_MAP_FILE).is_file():
        return {}
    return {CLUSTER_MAP_FILE: (report_dir / CLUSTER_MAP_FILE).read_bytes()}
