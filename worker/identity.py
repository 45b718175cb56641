"""At publishing: keep cluster numbers across versions, carry names, record each cluster.

When a model name already has a version, the new model's clusters are matched to the latest
version's (`uvac.selection.cluster_identity.match_clusters`) on both models' assignments of the same
recordings: the new training set, or a reference data set the job names
(``reference_dataset_id``). The numbering, the match and its agreement go in the new
version's metadata (``cluster_identity``) and every reader applies it
(`uvac.selection.cluster_identity.renumbered`). Names are carried over (``cluster_names``), from
the earlier version's published and edited names, only to clusters that kept at least
`uvac.selection.NAME_CARRY_SHARE` of the earlier cluster's recordings; a kept cluster below it
gets no name and the earlier one as a suggestion (``name_suggestions``: number -> ``{"name",
"previous", "kept_share"}``), which the clusters listing shows as ``needs_name``.

Whatever the history, ``clusters`` records each cluster's size in the training set and its
most typical training clips (highest pi), for ``GET .../clusters``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from model_store import AnyModelStore, NotFound, StoreError
from model_store.cluster_names import cluster_names

if TYPE_CHECKING:
    from uvac.audio import DatasetItem, EmbeddingCache
    from uvac.evaluation import Clusterer
    from uvac.training import TrainedModel

__all__ = ["TYPICAL_CLIPS", "assign_recordings", "publication_metadata"]

logger = logging.getLogger(__name__)

TYPICAL_CLIPS = 5
_BATCH_CLIPS = 16


def assign_recordings(
    trained: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> tuple[list[str], np.ndarray]:
    """Each decodable item's id (its path in the data set) and pi ``(N, K)``. A model on an
    encoder reads the embeddings through ``embedding_cache``."""
    from uvac.evaluation import Clusterer

    clusterer = Clusterer(trained)
    if clusterer.extractor.embedder is not None:
        rows = _embedded_rows(clusterer, items, should_stop, progress, embedding_cache)
    else:
        rows = _decoded_rows(clusterer, items, should_stop, progress)
    ids = [clip_id for clip_id, _ in rows]
    k = int(trained.model.n_clusters)
    pi = np.asarray([row for _, row in rows], dtype=np.float64).reshape(len(ids), k)
    return ids, pi


def _embedded_rows(
    clusterer: Clusterer,
    items: Sequence[DatasetItem],
    should_stop: Callable[[], bool] | None,
    progress: Callable[[int, int], None] | None,
    embedding_cache: EmbeddingCache | None,
) -> list[tuple[str, list[float]]]:
    from uvac.audio import EmbeddedItem, embed_items
    from uvac.errors import RunCancelled

    assert clusterer.extractor.embedder is not None
    rows: list[tuple[str, list[float]]] = []
    pending: list[EmbeddedItem] = []

    def flush() -> None:
        results = clusterer.cluster_embedded(pending, novelty=False)  # only pi is needed
        for clip, result in zip(pending, results, strict=True):
            rows.append((_clip_id(clip.item), result.probabilities))
        pending.clear()

    embedded = embed_items(
        items,
        embedder=clusterer.extractor.embedder,
        cache=embedding_cache,
        should_stop=should_stop,
        progress=progress,
    )
    try:
        for clip in embedded:
            if clip.windows is None:
                logger.warning("matching: skipping %s: %s", clip.item.relpath, clip.error)
                continue
            pending.append(clip)
            if len(pending) == _BATCH_CLIPS:
                flush()
    except RunCancelled as stop:
        raise RunCancelled("cancelled while matching clusters to the earlier version") from stop
    if pending:
        flush()
    return rows


def _decoded_rows(
    clusterer: Clusterer,
    items: Sequence[DatasetItem],
    should_stop: Callable[[], bool] | None,
    progress: Callable[[int, int], None] | None,
) -> list[tuple[str, list[float]]]:
    from uvac.audio import load_audio
    from uvac.errors import AudioError, RunCancelled

    rows: list[tuple[str, list[float]]] = []
    pending: list[tuple[str, Any]] = []

    def flush() -> None:
        results = clusterer.cluster_batch([audio for _, audio in pending])
        for (clip_id, _), result in zip(pending, results, strict=True):
            rows.append((clip_id, result.probabilities))
        pending.clear()

    for done, item in enumerate(items, start=1):
        if should_stop is not None and should_stop():
            raise RunCancelled("cancelled while matching clusters to the earlier version")
        try:
            audio = load_audio(item.path, sample_rate=clusterer.sample_rate)
        except AudioError as error:
            logger.warning("matching: skipping %s: %s", item.relpath, error)
            continue
        pending.append((_clip_id(item), audio))
        if len(pending) == _BATCH_CLIPS:
            flush()
        if progress is not None:
            progress(done, len(items))
    if pending:
        flush()
    return rows


def _clip_id(item: DatasetItem) -> str:
    return str(item.relpath or item.path)


def _cluster_facts(ids: list[str], probabilities: np.ndarray, order: list[int]) -> list[dict]:
    assignments = probabilities.argmax(axis=1)
    facts = []
    for number, output in enumerate(order):
        members = np.flatnonzero(assignments == output)
        ranked = members[np.argsort(-probabilities[members, output], kind="stable")]
        facts.append(
            {
                "number": number,
                "size": int(members.size),
                "typical_clips": [ids[i] for i in ranked[:TYPICAL_CLIPS]],
            }
        )
    return facts


def publication_metadata(
    trained: TrainedModel,
    *,
    store: AnyModelStore,
    name: str,
    training_items: Sequence[DatasetItem],
    reference_items: Sequence[DatasetItem] | None = None,
    reference_id: str | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Metadata keys for the new version: ``clusters``, and with an earlier version
    ``cluster_identity`` and the carried ``cluster_names``. Embeddings are read through
    ``embedding_cache``."""
    from uvac.errors import ArtifactError, EncoderUnavailableError
    from uvac.selection import carried_names, match_clusters, name_suggestions, renumbered
    from uvac.training import load_trained_model

    k = int(trained.model.n_clusters)
    ids, pi = assign_recordings(
        trained,
        training_items,
        should_stop=should_stop,
        progress=progress,
        embedding_cache=embedding_cache,
    )
    try:
        earlier = store.get(name)
    except NotFound:
        return {"clusters": _cluster_facts(ids, pi, list(range(k)))}
    recordings = reference_items if reference_items is not None else training_items
    try:
        earlier_trained = renumbered(
            load_trained_model(store.load_verified(earlier.ref).path), earlier.metadata
        )
        earlier_ids, earlier_pi = assign_recordings(
            earlier_trained,
            recordings,
            should_stop=should_stop,
            progress=progress,
            embedding_cache=embedding_cache,
        )
    except (StoreError, ArtifactError, EncoderUnavailableError, OSError) as error:
        # The new model is fine; without the earlier one it keeps its own numbering.
        logger.warning("%s: clusters not matched to %s: %s", name, earlier.ref, error)
        return {
            "clusters": _cluster_facts(ids, pi, list(range(k))),
            "cluster_identity": {"previous": earlier.ref, "error": str(error)},
        }
    earlier_k = int(earlier_trained.model.n_clusters)
    if reference_items is not None:
        new_ids, new_pi = assign_recordings(
            trained, reference_items, should_stop=should_stop, embedding_cache=embedding_cache
        )
    else:
        new_ids, new_pi = ids, pi
    common = sorted(set(earlier_ids) & set(new_ids))
    if not common:
        logger.warning("no recording decodes for both %s and the new model", earlier.ref)
        return {"clusters": _cluster_facts(ids, pi, list(range(k)))}
    earlier_rows = {clip: row for clip, row in zip(earlier_ids, earlier_pi, strict=True)}
    new_rows = {clip: row for clip, row in zip(new_ids, new_pi, strict=True)}
    match = match_clusters(
        [int(np.argmax(earlier_rows[clip])) for clip in common],
        [int(np.argmax(new_rows[clip])) for clip in common],
        previous_k=earlier_k,
        current_k=k,
    )
    identity = {
        "previous": earlier.ref,
        "previous_sha256": earlier.sha256,
        "recordings": reference_id or "training set",
        **match.to_dict(),
    }
    metadata: dict[str, Any] = {
        "cluster_identity": identity,
        "clusters": _cluster_facts(ids, pi, match.order),
    }
    earlier_names = cluster_names(store, earlier, n_clusters=earlier_k)
    names = carried_names(match, earlier_names)
    if names:
        metadata["cluster_names"] = names
    suggestions = name_suggestions(match, earlier_names)
    if suggestions:
        metadata["name_suggestions"] = suggestions
    logger.info(
        "%s: clusters matched to %s, %.1f%% of %d recordings keep their number",
        name, earlier.ref, 100 * match.agreement, match.n_recordings,
    )  # fmt: skip
    return metadata
