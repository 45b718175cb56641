"""K-means on the input features: the paper's first baseline.

Each window is represented by its flattened, masked features: the ``(T, M)`` log-mel window,
normalised exactly as the neural models see it, with padded frames zeroed, as one vector of
``T * M`` values. That is the paper's "K-means on the input features" (the alternative, mean and
standard deviation per mel bin, throws away the time structure the other models see).

scikit-learn fits it (k-means++, ``n_init=10``, seeded); the centroids live in a buffer so the
model saves to safetensors like the others. pi is the one-hot row of the nearest centroid:
K-means is a hard clustering, and inventing soft probabilities would need a temperature the
method does not have. A clip's pi (the activity-weighted mean over its windows) can still be
soft.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor

from uvac.models.base import ClusterModel, apply_mask, check_features, one_hot_probabilities

__all__ = ["KMeansClusterer"]


class KMeansClusterer(ClusterModel):
    """Hard K-means on flattened feature windows of ``n_frames x n_features``."""

    model_type = "kmeans"
    centroids: Tensor  # (K, T * M), a buffer
    fitted: Tensor  # () bool, a buffer: False until `fit` ran

    def __init__(self, *, n_clusters: int = 10, n_features: int = 64, n_frames: int) -> None:
        super().__init__()
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, got {n_clusters}")
        self._n_clusters = n_clusters
        self.n_features = n_features
        self.n_frames = n_frames
        self.register_buffer("centroids", torch.zeros(n_clusters, n_frames * n_features))  # (K, D)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def n_clusters(self) -> int:
        return self._n_clusters

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "n_clusters": self._n_clusters,
            "n_features": self.n_features,
            "n_frames": self.n_frames,
        }

    def latent(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The flattened masked features, ``(B, 1, T, M)`` -> ``(B, T * M)``."""
        check_features(x, mask, n_features=self.n_features)
        if x.shape[2] != self.n_frames:
            raise ValueError(
                f"this model was fitted on {self.n_frames}-frame windows, got {x.shape[2]}"
            )
        return apply_mask(x, mask).flatten(start_dim=1).float()

    def fit(self, x: Tensor, mask: Tensor | None = None, *, seed: int) -> None:
        """Fit the centroids on windows ``(N, 1, T, M)``; needs at least K windows."""
        vectors = self.latent(x, mask).cpu().numpy().astype(np.float64)  # (N, T * M)
        if vectors.shape[0] < self._n_clusters:
            raise ValueError(
                f"K-means with {self._n_clusters} clusters needs at least that many windows, "
                f"got {vectors.shape[0]}"
            )
        kmeans = KMeans(n_clusters=self._n_clusters, n_init=10, random_state=seed)
        kmeans.fit(vectors)
        centroids = torch.from_numpy(kmeans.cluster_centers_).to(self.centroids)
        with torch.no_grad():
            self.centroids.copy_(centroids)
            self.fitted.fill_(True)

    def squared_distances(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Squared Euclidean distance of each window to each centroid, ``(B, K)``."""
        vectors = self.latent(x, mask)  # (B, D)
        return torch.cdist(vectors, self.centroids.float()).square()

    def cluster_probabilities(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if not bool(self.fitted):
            raise RuntimeError("the K-means model has not been fitted")
        nearest = self.squared_distances(x, mask).argmin(dim=1)  # (B,)
        return one_hot_probabilities(nearest, self._n_clusters, dtype=torch.float32)
