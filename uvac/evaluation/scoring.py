"""Evaluate a trained clusterer on a list of recordings, with the paper's reference rows.

`evaluate_clusterer` runs a model over every clip and reports the paper's five metrics:
unsupervised accuracy and NMI against the labels (when there are labels) and Silhouette,
Davies-Bouldin and Calinski-Harabasz in two named spaces, because internal metrics computed on
a model's own latent flatter it:

- ``"latent"``: the model's own representation of a clip (``model.latent``, aggregated over the
  clip's windows): pi for Cat. UVAC, the z means for UVAC-GMM, the features for K-means.
- ``"features"``: one space shared by every method, the normalised input features (log-mel in
  [0, 1], exactly what the model sees), each window flattened to T x M values.

Clip level. A clip longer than the time-context window is cut into windows; the clip's pi,
latent and feature vector are the means of its windows' values weighted by each window's sound
activity (`Windows.activity`, the share of active unpadded frames); for pi that is
`uvac.evaluation.inference.aggregate_windows`, exactly what the service returns. The clip's cluster
is argmax of its pi.

`uvac.evaluation.baselines` adds the paper's reference rows computed on exactly the same clips and
feature vectors (K-means, labels as clusters), so that a table can show Table I's rows.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from uvac import metrics
from uvac.audio import EmbeddingCache, FeatureExtractor, Windows, embed_items, load_audio
from uvac.errors import AudioError, DatasetError
from uvac.evaluation.inference import aggregate_windows
from uvac.evaluation.tables import TableRow

if TYPE_CHECKING:
    from uvac.audio import DatasetItem
    from uvac.models import ClusterModel
    from uvac.training import TrainedModel

__all__ = [
    "FEATURES_DESCRIPTION",
    "EvaluationReport",
    "RepresentationScores",
    "evaluate_clusterer",
    "report_from_assignments",
]

logger = logging.getLogger(__name__)

FEATURES_DESCRIPTION = (
    "normalised log-mel input features in [0, 1] (the model's input), each window flattened "
    "to T x M values, averaged over a clip's windows weighted by sound activity"
)
LATENT_DESCRIPTIONS = {
    "cat-uvac": "cluster probabilities pi (q(y|x)), averaged over a clip's windows weighted by "
    "sound activity",
    "uvac-gmm": "means of q(z|x), averaged over a clip's windows weighted by sound activity",
    "kmeans": "the K-means model's input: the normalised features, as in 'features'",
}

ProgressCallback = Callable[[int, int], None]  # (clips done, clips total)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RepresentationScores:
    """Silhouette, DBI and CHI of one clustering in one named space."""

    name: str
    description: str
    dimension: int
    silhouette: float | None
    dbi: float | None
    chi: float | None
    note: str | None  # why a score is missing, or how Silhouette was sampled

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "dimension": self.dimension,
            "silhouette": self.silhouette,
            "dbi": self.dbi,
            "chi": self.chi,
            "note": self.note,
        }


@dataclasses.dataclass(kw_only=True)
class EvaluationReport:
    """One method's clustering of a set of clips and its metrics.

    `to_dict()` is the JSON-able summary. The per-clip arrays (`paths`, `labels`,
    `assignments`, `probabilities`, `representations`) are kept for plots and for the
    reference rows, and left out of `to_dict()`.
    """

    method: str
    model_type: str | None
    n_clusters: int
    n_clips: int
    n_labelled: int
    accuracy: float | None  # fraction in [0, 1], on the labelled clips
    nmi: float | None
    cluster_sizes: list[int]
    clusters_used: int
    cluster_to_label: dict[int, str | None] | None
    scores: dict[str, RepresentationScores]
    description: str = ""  # what this row is, in words
    skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    # Per-clip arrays (N = n_clips), not serialised; paths are relative to the data set root.
    paths: list[str] = dataclasses.field(default_factory=list, repr=False)
    labels: list[str | None] = dataclasses.field(default_factory=list, repr=False)
    assignments: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int64), repr=False
    )
    probabilities: np.ndarray | None = dataclasses.field(default=None, repr=False)  # (N, K)
    representations: dict[str, np.ndarray] = dataclasses.field(
        default_factory=dict, repr=False
    )  # (N, D)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "description": self.description,
            "model_type": self.model_type,
            "n_clusters": self.n_clusters,
            "n_clips": self.n_clips,
            "n_labelled": self.n_labelled,
            "accuracy": self.accuracy,
            "nmi": self.nmi,
            "cluster_sizes": list(self.cluster_sizes),
            "clusters_used": self.clusters_used,
            "cluster_to_label": (
                None
                if self.cluster_to_label is None
                else {str(k): v for k, v in self.cluster_to_label.items()}
            ),
            "internal": {name: s.to_dict() for name, s in self.scores.items()},
            "skipped": list(self.skipped),
            "seconds": self.seconds,
        }

    def table_row(self, *, dataset: str, space: str = "features") -> TableRow:
        """This report as a Table I row, with internal metrics from the named space."""
        scores = self.scores.get(space)
        return TableRow(
            dataset=dataset,
            k=self.n_clusters,
            method=self.method,
            accuracy=self.accuracy,
            nmi=self.nmi,
            silhouette=None if scores is None else scores.silhouette,
            dbi=None if scores is None else scores.dbi,
            chi=None if scores is None else scores.chi,
        )


# --------------------------------------------------------------------------- model rows


def evaluate_clusterer(
    trained_model: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
    embedding_cache: EmbeddingCache | dict[str, Windows] | None = None,
) -> EvaluationReport:
    """Cluster every item with `trained_model` and compute the paper's metrics.

    Windows are extracted with the model's own feature configuration and normalisation
    statistics. Items that fail to decode are skipped and listed in `skipped`; if none can be
    used, `DatasetError` is raised. `batch_size` is the number of windows per forward pass.
    For an encoder front-end, ``embedding_cache`` lets the encoder run once per clip: the
    on-disk `uvac.audio.EmbeddingCache` (the service's, read through and filled here), or a
    dict (item path -> raw embedding windows, filled here when missing) that a study keeps
    per front-end config.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    started = time.perf_counter()
    model = trained_model.model
    extractor = FeatureExtractor(trained_model.feature_config, trained_model.norm_stats)
    sample_rate = trained_model.feature_config.sample_rate
    runner = _WindowRunner(model, batch_size=batch_size)

    paths: list[str] = []
    labels: list[str | None] = []
    skipped: list[dict[str, str]] = []
    for done, (item, windows) in enumerate(
        _items_windows(items, extractor, sample_rate, embedding_cache), start=1
    ):
        if isinstance(windows, AudioError):
            logger.warning("skipping %s: %s", item.path, windows)
            skipped.append({"path": item.relpath, "reason": str(windows)})
        else:
            runner.add(windows.features, windows.mask, windows.activity)
            paths.append(item.relpath)
            labels.append(None if item.label is None else str(item.label))
        if progress is not None:
            progress(done, len(items))
    if not paths:
        raise DatasetError(f"none of the {len(items)} recordings could be decoded")

    probabilities, latent, features = runner.finish()
    assignments = probabilities.argmax(axis=1)
    model_type = str(model.model_type)
    representations = {"latent": latent, "features": features}
    descriptions = {
        "latent": LATENT_DESCRIPTIONS.get(model_type, "the model's latent"),
        "features": FEATURES_DESCRIPTION,
    }
    report = report_from_assignments(
        method=model_type,
        model_type=model_type,
        n_clusters=int(model.n_clusters),
        paths=paths,
        labels=labels,
        assignments=assignments,
        representations=representations,
        descriptions=descriptions,
    )
    report.probabilities = probabilities
    report.description = f"the {model_type} model, clip pi = activity-weighted mean of windows"
    report.skipped = skipped
    report.seconds = time.perf_counter() - started
    return report


def _items_windows(
    items: Sequence[DatasetItem],
    extractor: FeatureExtractor,
    sample_rate: int,
    embedding_cache: EmbeddingCache | dict[str, Windows] | None,
) -> Iterator[tuple[DatasetItem, Windows | AudioError]]:
    """Each item's normalised windows, or the error that kept it out."""
    embedder = extractor.embedder
    if embedder is not None and isinstance(embedding_cache, EmbeddingCache):
        for embedded in embed_items(items, embedder=embedder, cache=embedding_cache):
            if embedded.windows is None:
                assert embedded.error is not None
                yield embedded.item, embedded.error
            else:
                yield embedded.item, embedder.standardise(embedded.windows)
        return
    for item in items:
        try:
            yield item, _item_windows(item, extractor, sample_rate, embedding_cache)
        except AudioError as error:
            yield item, error


def _item_windows(
    item: DatasetItem,
    extractor: FeatureExtractor,
    sample_rate: int,
    embedding_cache: EmbeddingCache | dict[str, Windows] | None,
) -> Windows:
    embedder = extractor.embedder
    if embedder is None or not isinstance(embedding_cache, dict):
        return extractor.windows(load_audio(item.path, sample_rate=sample_rate))
    key = str(item.path)
    if key not in embedding_cache:
        audio = load_audio(item.path, sample_rate=sample_rate)
        embedding_cache[key] = embedder.raw_windows_batch([audio])[0]
    return embedder.standardise(embedding_cache[key])


class _WindowRunner:
    """Runs a model over the windows of many clips in fixed-size batches.

    Clip-level values are the activity-weighted mean of the clip's windows (see module doc).
    """

    def __init__(self, model: ClusterModel, *, batch_size: int) -> None:
        self._model = model
        self._batch_size = batch_size
        self._device = _module_device(model)
        # per clip: features (W, 1, T, M), mask (W, T), activity (W,)
        self._pending: list[tuple[Tensor, Tensor, Tensor]] = []
        self._pending_windows = 0
        self._probabilities: list[np.ndarray] = []  # per clip: (K,)
        self._latent: list[np.ndarray] = []  # per clip: (D,)
        self._features: list[np.ndarray] = []  # per clip: (T * M,)

    def add(self, features: Tensor, mask: Tensor, activity: Tensor) -> None:
        self._pending.append((features, mask, activity))
        self._pending_windows += features.shape[0]
        if self._pending_windows >= self._batch_size:
            self._flush()

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._flush()
        return (
            np.stack(self._probabilities),
            np.stack(self._latent),
            np.stack(self._features),
        )

    def _flush(self) -> None:
        if not self._pending:
            return
        features = torch.cat([f for f, _, _ in self._pending])  # (W_all, 1, T, M)
        mask = torch.cat([m for _, m, _ in self._pending]).to(features.dtype)  # (W_all, T)
        activity = torch.cat([a for _, _, a in self._pending])  # (W_all,)
        window_counts = [f.shape[0] for f, _, _ in self._pending]
        self._pending, self._pending_windows = [], 0

        probabilities, latent = self._forward(features, mask)  # (W_all, K), (W_all, D)
        flat = features.flatten(start_dim=1)  # (W_all, T * M)
        for chunk in zip(
            probabilities.split(window_counts),
            latent.split(window_counts),
            flat.split(window_counts),
            activity.split(window_counts),
            strict=True,
        ):
            clip_pi, clip_latent, clip_features, weights = chunk
            self._probabilities.append(aggregate_windows(clip_pi, weights).numpy())
            self._latent.append(_weighted_mean(clip_latent, weights))
            self._features.append(_weighted_mean(clip_features, weights))

    def _forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        was_training = self._model.training
        self._model.eval()
        pis, latents = [], []
        try:
            with torch.inference_mode():
                for start in range(0, features.shape[0], self._batch_size):
                    x = features[start : start + self._batch_size].to(self._device)
                    m = mask[start : start + self._batch_size].to(self._device)
                    pis.append(self._model.cluster_probabilities(x, m).float().cpu())
                    latents.append(self._model.latent(x, m).float().cpu())
        finally:
            self._model.train(was_training)
        return torch.cat(pis), torch.cat(latents)


def _weighted_mean(values: Tensor, weights: Tensor) -> np.ndarray:
    """(W, D) values, (W,) weights -> (D,); equal weights when every window is silent."""
    total = weights.sum()
    if float(total) <= 0.0:
        weights, total = torch.ones_like(weights), torch.tensor(float(weights.shape[0]))
    mean = (values.float() * weights[:, None].float()).sum(dim=0) / total  # (D,)
    return mean.numpy().astype(np.float32)


def _module_device(model: torch.nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------- shared part


def report_from_assignments(
    *,
    method: str,
    model_type: str | None,
    n_clusters: int,
    paths: list[str],
    labels: list[str | None],
    assignments: np.ndarray,
    representations: dict[str, np.ndarray],
    descriptions: dict[str, str],
) -> EvaluationReport:
    """Score one clustering of clips: accuracy and NMI against the labels (labelled clips
    only) and the internal metrics in each named representation."""
    labelled = [i for i, label in enumerate(labels) if label is not None]
    accuracy = nmi = None
    mapping: dict[int, str | None] | None = None
    if labelled:
        known_labels = [labels[i] for i in labelled]
        known_clusters = assignments[labelled]
        accuracy = metrics.unsupervised_accuracy(known_labels, known_clusters)
        nmi = metrics.nmi(known_labels, known_clusters)
        mapping = {
            cluster: None if label is None else str(label)
            for cluster, label in metrics.cluster_label_mapping(
                known_labels, known_clusters
            ).items()
        }
    scores = {}
    for name, representation in representations.items():
        values = metrics.internal_metrics(representation, assignments)
        scores[name] = RepresentationScores(
            name=name,
            description=descriptions[name],
            dimension=int(representation.shape[1]),
            silhouette=_optional_float(values["silhouette"]),
            dbi=_optional_float(values["dbi"]),
            chi=_optional_float(values["chi"]),
            note=None if values["note"] is None else str(values["note"]),
        )
    return EvaluationReport(
        method=method,
        model_type=model_type,
        n_clusters=n_clusters,
        n_clips=len(paths),
        n_labelled=len(labelled),
        accuracy=accuracy,
        nmi=nmi,
        cluster_sizes=metrics.cluster_sizes(assignments, n_clusters),
        clusters_used=metrics.clusters_used(assignments),
        cluster_to_label=mapping,
        scores=scores,
        paths=paths,
        labels=labels,
        assignments=assignments,
        representations=representations,
    )


def _optional_float(value: float | str | None) -> float | None:
    return None if value is None else float(value)
