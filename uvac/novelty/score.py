"""The novelty score of a window: a Mahalanobis distance to the nearest cluster centre.

What it sees is what the model sees: the model's input windows ``(N, 1, T, M)``, summarised
per window as one vector (`window_vectors`: the embedding itself for an encoder front-end,
T = 1; for log-mel windows, the masked mean and standard deviation of every bin over time and
its mean absolute change from frame to frame, which survives a per-clip normalisation that
makes every clip's mean and deviation alike),
standardised with the training vectors' statistics. K centres are found by K-means on the
training vectors (K: the model's cluster count), and one covariance of the vectors around
their centres is shared by all clusters and shrunk towards a multiple of the identity,

    Sigma = (1 - lambda) S + lambda (trace(S) / D) I,

because a data set holds fewer windows than an embedding has dimensions. The score is the
squared distance to the nearest centre under Sigma^-1; larger is more novel. Its cost does not
grow with the training set: a (D, D) whitening matrix and K centres, one (D, D) product and K
distances per window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from sklearn.cluster import KMeans
from torch import Tensor

__all__ = ["DEFAULT_SHRINKAGE", "METHOD", "NoveltyScore", "window_vectors"]

METHOD = "mahalanobis-nearest-centre"
# The weight of the identity in the shared covariance; chosen by benchmarks/novelty.py.
DEFAULT_SHRINKAGE = 0.9
_MIN_STD = 1e-6
_TENSOR_NAMES = ("mean", "std", "centres", "whitening")


def window_vectors(features: Tensor, mask: Tensor | None = None) -> Tensor:
    """One vector per model input window: ``(N, 1, T, M)`` (mask ``(N, T)``) -> ``(N, D)``.

    An embedding window (T = 1) is its embedding (D = M); a log-mel window is the mean, the
    standard deviation and the mean absolute frame-to-frame change of each bin over its real
    frames (D = 3M)."""
    values = features[:, 0].to(torch.float64)  # (N, T, M)
    if values.shape[1] == 1:
        return values[:, 0, :]
    weights = (
        torch.ones(values.shape[:2], dtype=torch.float64)
        if mask is None
        else mask.to(torch.float64)
    )  # (N, T)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)
    mean = (values * weights[:, :, None]).sum(dim=1)  # (N, M)
    variance = (((values - mean[:, None, :]) ** 2) * weights[:, :, None]).sum(dim=1)
    real = weights > 0  # (N, T)
    step_weights = (real[:, 1:] & real[:, :-1]).to(torch.float64)  # both frames real
    step_weights = step_weights / step_weights.sum(dim=1, keepdim=True).clamp_min(1.0)
    change = ((values[:, 1:] - values[:, :-1]).abs() * step_weights[:, :, None]).sum(dim=1)
    return torch.cat([mean, variance.clamp_min(0.0).sqrt(), change], dim=1)  # (N, 3M)


@dataclass(frozen=True)
class NoveltyScore:
    """A fitted score: ``scores(vectors)`` -> one non-negative number per window."""

    mean: Tensor  # (D,) of the training vectors
    std: Tensor  # (D,)
    centres: Tensor  # (K, D) in whitened coordinates
    whitening: Tensor  # (D, D): x @ whitening has the identity as shared covariance
    shrinkage: float

    @property
    def dimensions(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(
        cls,
        vectors: Tensor,
        *,
        n_clusters: int,
        shrinkage: float = DEFAULT_SHRINKAGE,
        seed: int = 0,
    ) -> NoveltyScore:
        """Fit on training vectors ``(N, D)`` (N >= 2)."""
        if vectors.ndim != 2 or vectors.shape[0] < 2:
            raise ValueError(f"need at least two vectors (N, D), got {tuple(vectors.shape)}")
        if not 0.0 < shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
        values = vectors.to(torch.float64)
        mean = values.mean(dim=0)
        std = values.std(dim=0, correction=0)
        std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
        standard = (values - mean) / std  # (N, D)
        k = max(1, min(n_clusters, standard.shape[0] - 1))
        kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(standard.numpy())
        centres = torch.from_numpy(kmeans.cluster_centers_).to(torch.float64)  # (K, D)
        labels = torch.from_numpy(kmeans.labels_).long()
        residuals = standard - centres[labels]
        covariance = residuals.T @ residuals / residuals.shape[0]  # (D, D)
        scale = float(torch.trace(covariance)) / covariance.shape[0]
        scale = scale if scale > 0 else 1.0
        identity = torch.eye(covariance.shape[0], dtype=torch.float64)
        shrunk = (1.0 - shrinkage) * covariance + shrinkage * scale * identity
        # Sigma^-1 = W W^T with W = L^-T for Sigma = L L^T, so |(x - c) W|^2 is the distance.
        cholesky = torch.linalg.cholesky(shrunk)
        whitening = torch.linalg.solve_triangular(cholesky, identity, upper=False).T
        return cls(
            mean=mean.float(),
            std=std.float(),
            centres=(centres @ whitening).float(),
            whitening=whitening.float(),
            shrinkage=float(shrinkage),
        )

    def scores(self, vectors: Tensor) -> Tensor:
        """``(N, D)`` -> ``(N,)`` squared Mahalanobis distance to the nearest centre."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            raise ValueError(
                f"novelty score expects (N, {self.dimensions}) vectors, got {tuple(vectors.shape)}"
            )
        whitened = ((vectors.float() - self.mean) / self.std) @ self.whitening  # (N, D)
        distances = torch.cdist(whitened, self.centres) ** 2  # (N, K)
        return distances.min(dim=1).values

    def to_tensors(self, prefix: str) -> dict[str, Tensor]:
        return {prefix + name: getattr(self, name).contiguous() for name in _TENSOR_NAMES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": METHOD,
            "shrinkage": self.shrinkage,
            "dimensions": self.dimensions,
            "n_centres": int(self.centres.shape[0]),
        }

    @classmethod
    def from_stored(
        cls, tensors: Mapping[str, Tensor], document: Mapping[str, Any], *, prefix: str
    ) -> NoveltyScore:
        """Rebuild from `to_tensors` and `to_dict`; `ValueError` names what does not fit."""
        if document.get("method") != METHOD:
            raise ValueError(f"unknown novelty method {document.get('method')!r}")
        try:
            values = {name: tensors[prefix + name].float() for name in _TENSOR_NAMES}
        except KeyError as error:
            raise ValueError(f"missing tensor {error}") from error
        d = values["mean"].shape[0]
        shapes_fit = (
            values["mean"].shape == (d,)
            and values["std"].shape == (d,)
            and values["whitening"].shape == (d, d)
            and values["centres"].ndim == 2
            and values["centres"].shape[1] == d
            and document.get("dimensions") == d
        )
        if not shapes_fit:
            raise ValueError("the novelty tensors' shapes disagree with each other")
        return cls(shrinkage=float(document.get("shrinkage", DEFAULT_SHRINKAGE)), **values)
