"""The start of training: teach h a partition of the training windows before the ELBO.

From a random start, h's pi is flat and the ELBO keeps it so (the collapse the paper's recipe
meets). With ``TrainConfig.init_epochs > 0`` h is first trained alone, for at least that many
epochs and `INIT_MIN_STEPS` batches, to predict a clustering of the training windows
(cross-entropy), so the ELBO starts from an informative pi. ``TrainConfig.init_clustering``
picks the clustering: ``"kmeans"``; ``"spectral"``, spectral clustering of the windows'
k-nearest-neighbour graph, which follows the local structure where K-means's centroids cut
through it; or ``"ward"``, Ward-linkage agglomerative clustering, which falls back to K-means
when one Ward cluster dominates.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse
import torch
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.neighbors import kneighbors_graph
from torch import Tensor

from uvac.errors import RunCancelled
from uvac.training.consistency import nearest_neighbours
from uvac.training.optimizer import adam
from uvac.training.progress import Progress

if TYPE_CHECKING:
    from uvac.models import ClusterModel
    from uvac.training.config import TrainConfig

__all__ = [
    "INIT_MIN_STEPS",
    "initial_pseudo_labels",
    "kmeans_pseudo_labels",
    "spectral_pseudo_labels",
    "teach_initial_partition",
    "ward_pseudo_labels",
]

logger = logging.getLogger(__name__)

# The start runs at least this many batches (more epochs on small data sets).
INIT_MIN_STEPS = 300

# Ward's clustering holds an N x N distance structure: beyond this many windows it clusters a
# random sample of them and gives the others the cluster with the nearest mean.
WARD_MAX_WINDOWS = 4000
# A Ward partition whose largest cluster holds more than this many times the mean cluster size
# is one blob and crumbs: the initialisation then falls back to K-means. The ratios seen on
# the benchmark data sets are in benchmarks/README.md ("Cluster starts").
WARD_MAX_CLUSTER_RATIO = 2.5

# Neighbours per window in the graph that spectral initialisation partitions.
SPECTRAL_NEIGHBOURS = 10


def kmeans_pseudo_labels(x: Tensor, mask: Tensor, *, n_clusters: int, seed: int) -> Tensor:
    """K-means cluster ``(N,)`` int64 of each window ``(N, 1, T, F)``, flattened and masked."""
    vectors = (x * mask[:, None, :, None]).flatten(start_dim=1).float().cpu().numpy()  # (N, T*F)
    kmeans = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed)
    return torch.from_numpy(kmeans.fit_predict(vectors.astype("float64"))).to(torch.int64)


def spectral_pseudo_labels(
    x: Tensor, mask: Tensor, *, n_clusters: int, seed: int, groups: Tensor | None = None
) -> Tensor:
    """Spectral cluster ``(N,)`` int64 of each window ``(N, 1, T, F)``: the symmetrised graph
    of each flattened masked window's ``SPECTRAL_NEIGHBOURS`` nearest neighbours, cut into
    ``n_clusters`` parts (normalised Laplacian embedding, then K-means in it).

    With ``groups (N,)`` (the recording each window was cut from) and a recording of more than
    one window, a window's graph neighbours come from other recordings: otherwise the
    overlapping windows of each recording form a tight component of their own, and the cut
    follows recordings instead of sounds.
    """
    if groups is not None and int(torch.bincount(groups).max()) > 1:
        return _spectral_across_recordings(x, mask, n_clusters=n_clusters, seed=seed, groups=groups)
    vectors = (x * mask[:, None, :, None]).flatten(start_dim=1).float().cpu().numpy()  # (N, T*F)
    if _tiny(vectors.shape[0], n_clusters):
        graph = kneighbors_graph(
            vectors.astype("float64"),
            n_neighbors=min(SPECTRAL_NEIGHBOURS, vectors.shape[0] - 1),
            include_self=True,
        )
        return _cut_graph(graph, n_clusters=n_clusters, seed=seed)
    spectral = SpectralClustering(
        n_clusters=n_clusters,
        affinity="nearest_neighbors",
        n_neighbors=min(SPECTRAL_NEIGHBOURS, vectors.shape[0] - 1),
        assign_labels="kmeans",
        random_state=seed,
    )
    return torch.from_numpy(spectral.fit_predict(vectors.astype("float64"))).to(torch.int64)


def _tiny(n_windows: int, n_clusters: int) -> bool:
    """Too few windows for ARPACK's sparse eigensolver, which cannot take as many eigenvectors
    as the graph has nodes: such graphs go to the dense solver, the same graph otherwise."""
    return n_windows <= 3 * n_clusters


def _spectral_across_recordings(
    x: Tensor, mask: Tensor, *, n_clusters: int, seed: int, groups: Tensor
) -> Tensor:
    """`spectral_pseudo_labels` on the graph scikit-learn builds (each window joined to
    itself and its nearest others, symmetrised), with the others drawn across recordings."""
    n_windows = x.shape[0]
    others = min(SPECTRAL_NEIGHBOURS - 1, n_windows - 1)
    neighbours = nearest_neighbours(x, mask, k=others, groups=groups).cpu()  # (N, others)
    rows = torch.arange(n_windows).repeat_interleave(others + 1)
    columns = torch.cat([torch.arange(n_windows)[:, None], neighbours], dim=1).flatten()
    connectivity = scipy.sparse.csr_matrix(
        (np.ones(rows.shape[0]), (rows.numpy(), columns.numpy())), shape=(n_windows, n_windows)
    )
    return _cut_graph(connectivity, n_clusters=n_clusters, seed=seed)


def _cut_graph(connectivity: scipy.sparse.spmatrix, *, n_clusters: int, seed: int) -> Tensor:
    """Spectral clustering ``(N,)`` int64 of a k-nearest-neighbour connectivity ``(N, N)``,
    symmetrised as scikit-learn does (dense when the graph is `_tiny`)."""
    affinity = 0.5 * (connectivity + connectivity.T)
    if _tiny(affinity.shape[0], n_clusters):
        affinity = affinity.toarray()
    spectral = SpectralClustering(
        n_clusters=n_clusters, affinity="precomputed", assign_labels="kmeans", random_state=seed
    )
    return torch.from_numpy(spectral.fit_predict(affinity)).to(torch.int64)


def ward_pseudo_labels(x: Tensor, mask: Tensor, *, n_clusters: int, seed: int) -> Tensor:
    """Ward-linkage agglomerative cluster ``(N,)`` int64 of each window ``(N, 1, T, F)``,
    flattened and masked. Ward merges the pair of clusters that least raises the within-cluster
    variance, bottom-up, so it keeps elongated and uneven groups that K-means's Voronoi cells
    split (benchmarks/README.md, "Cluster starts"). Deterministic, except for the sample
    beyond `WARD_MAX_WINDOWS`."""
    vectors = (x * mask[:, None, :, None]).flatten(start_dim=1).float().cpu()  # (N, T*F)
    sample = torch.arange(vectors.shape[0])
    if vectors.shape[0] > WARD_MAX_WINDOWS:
        generator = torch.Generator().manual_seed(seed)
        sample = torch.randperm(vectors.shape[0], generator=generator)[:WARD_MAX_WINDOWS]
    ward = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
    sample_labels = torch.from_numpy(
        ward.fit_predict(vectors[sample].numpy().astype("float64"))
    ).to(torch.int64)  # (S,)
    if sample.shape[0] == vectors.shape[0]:
        return sample_labels
    means = torch.stack(
        [vectors[sample][sample_labels == k].mean(dim=0) for k in range(n_clusters)]
    )  # (K, T*F)
    return torch.cdist(vectors, means).argmin(dim=1).to(torch.int64)


def initial_pseudo_labels(
    x: Tensor,
    mask: Tensor,
    *,
    method: str,
    n_clusters: int,
    seed: int,
    groups: Tensor | None = None,
) -> Tensor:
    """The partition ``(N,)`` int64 the initialisation teaches h: ``method`` "kmeans",
    "spectral" or "ward" (`TrainConfig.init_clustering`). "ward" falls back to K-means, with a
    warning, when one Ward cluster holds more than `WARD_MAX_CLUSTER_RATIO` times the mean
    cluster size. ``groups`` (the recording of each window) shapes the spectral graph."""
    if method == "kmeans":
        return kmeans_pseudo_labels(x, mask, n_clusters=n_clusters, seed=seed)
    if method == "spectral":
        return spectral_pseudo_labels(x, mask, n_clusters=n_clusters, seed=seed, groups=groups)
    if method != "ward":
        raise ValueError(f"unknown initial clustering {method!r}")
    labels = ward_pseudo_labels(x, mask, n_clusters=n_clusters, seed=seed)
    largest = int(torch.bincount(labels, minlength=n_clusters).max())
    if largest > WARD_MAX_CLUSTER_RATIO * labels.shape[0] / n_clusters:
        logger.warning(
            "Ward's largest cluster holds %d of %d windows: initialising from K-means instead",
            largest, labels.shape[0],
        )  # fmt: skip
        return kmeans_pseudo_labels(x, mask, n_clusters=n_clusters, seed=seed)
    return labels


def teach_initial_partition(
    model: ClusterModel,
    features: Tensor,
    mask: Tensor,
    *,
    config: TrainConfig,
    batches: Callable[[Tensor], list[Tensor]],
    shuffle: torch.Generator,
    device: torch.device,
    should_stop: Callable[[], bool] | None,
    groups: Tensor | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> None:
    """Train h alone to predict `initial_pseudo_labels` of the windows ``(N, 1, T, F)``.

    ``batches`` cuts a permutation of the window indices into batches (the trainer's own);
    ``should_stop`` is asked before every batch and raises `RunCancelled` when it says so;
    ``progress`` hears `Progress.partition` before the clustering (step 0) and after every
    batch (its receiver throttles)."""
    started = time.perf_counter()
    batches_per_epoch = len(batches(torch.arange(features.shape[0])))
    # A small data set has few batches per epoch: give h enough steps to learn the targets.
    epochs = max(config.init_epochs, math.ceil(INIT_MIN_STEPS / batches_per_epoch))
    total_steps = epochs * batches_per_epoch
    if progress is not None:
        progress(Progress.partition(0, total_steps, elapsed_seconds=0.0))
    targets = initial_pseudo_labels(
        features,
        mask,
        method=config.init_clustering,
        n_clusters=config.n_clusters,
        seed=config.seed,
        groups=groups,
    ).to(device)  # (N,)
    optimizer = adam(model.parameters(), learning_rate=config.learning_rate, device=device)
    model.train()
    clustered = time.perf_counter()
    steps_done = 0
    for epoch_index in range(epochs):
        order = torch.randperm(features.shape[0], generator=shuffle)
        for indices in batches(order):
            if should_stop is not None and should_stop():
                raise RunCancelled("training cancelled while teaching the initial partition")
            indices = indices.to(device)
            probabilities = model.cluster_probabilities(features[indices], mask[indices])  # (B, K)
            loss = torch.nn.functional.nll_loss(
                probabilities.clamp_min(1e-8).log(), targets[indices]
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps_done += 1
            if progress is not None:
                elapsed = time.perf_counter() - started
                progress(Progress.partition(steps_done, total_steps, elapsed_seconds=elapsed))
        # Hundreds of short epochs on a small data set: one line each only when debugging.
        logger.debug(
            "initial %s partition, epoch %d/%d: cross-entropy %.3f",
            config.init_clustering, epoch_index + 1, epochs, float(loss.detach()),
        )  # fmt: skip
    logger.info(
        "initial %s partition of %d windows into %d clusters: %.1f s, then h taught it in "
        "%d epochs (%.1f s), cross-entropy %.3f",
        config.init_clustering, features.shape[0], config.n_clusters, clustered - started,
        epochs, time.perf_counter() - clustered, float(loss.detach()),
    )  # fmt: skip
