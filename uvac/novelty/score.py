"""The novelty score of a window: a relative Mahalanobis distance to the nearest cluster centre.

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
squared distance to the nearest centre under Sigma^-1 minus the squared distance to the
training vectors' mean under their own covariance, shrunk the same way (the background),
weighted by w:

    score(x) = min_k |x - c_k|^2_Sigma - w |x - mu|^2_Sigma0

With w = 1 this is the relative Mahalanobis distance of Ren et al. (2021, "A Simple Fix to
Mahalanobis Distance for Improving Near-OOD Detection"). The background term takes away what
every sound's distance shares, its spread along the directions in which all training windows
vary, so that what is left is how far a window lies from the clusters relative to the data as
a whole: environments close to the known ones separate better. It also takes away part of
what sets a far sound (speech, for an environment model) apart, so the default weight is
below 1; benchmarks/README.md has both tests for each weight. Larger is more novel; the score
can be negative. Its cost does not grow with the training set: two (D, D) whitening matrices
and K centres, two (D, D) products and K distances per window.

A score stored by an earlier version (method `LEGACY_METHOD`, without the background) still
loads and scores as it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from sklearn.cluster import KMeans
from torch import Tensor

__all__ = [
    "DEFAULT_BACKGROUND_WEIGHT",
    "DEFAULT_SHRINKAGE",
    "LEGACY_METHOD",
    "METHOD",
    "NoveltyScore",
    "window_vectors",
]

METHOD = "relative-mahalanobis-nearest-centre"
LEGACY_METHOD = "mahalanobis-nearest-centre"  # no background term
# The weight of the identity in both covariances, and the background's weight w; chosen by
# benchmarks/novelty.py.
DEFAULT_SHRINKAGE = 0.95
DEFAULT_BACKGROUND_WEIGHT = 0.85
_MIN_STD = 1e-6
_TENSOR_NAMES = ("mean", "std", "centres", "whitening")
_BACKGROUND = "background_whitening"


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
    """A fitted score: ``scores(vectors)`` -> one number per window, larger is more novel."""

    mean: Tensor  # (D,) of the training vectors
    std: Tensor  # (D,)
    centres: Tensor  # (K, D) in whitened coordinates
    whitening: Tensor  # (D, D): x @ whitening has the identity as shared covariance
    shrinkage: float
    # (D, D): standardised x @ background_whitening has the identity as covariance of all the
    # training vectors; None for a score stored without the background (`LEGACY_METHOD`).
    background_whitening: Tensor | None = None
    background_weight: float = 0.0

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
        background_weight: float = DEFAULT_BACKGROUND_WEIGHT,
        start: Tensor | None = None,
    ) -> NoveltyScore:
        """Fit on training vectors ``(N, D)`` (N >= 2); ``background_weight=0`` leaves out the
        background term (the plain distance to the nearest centre). ``start`` ``(K, D)``:
        centres (in the vectors' own units) that K-means starts from, once, instead of its
        own four seeded starts (`centres_of` gives a fitted score's)."""
        if vectors.ndim != 2 or vectors.shape[0] < 2:
            raise ValueError(f"need at least two vectors (N, D), got {tuple(vectors.shape)}")
        if not 0.0 < shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage}")
        if not 0.0 <= background_weight <= 1.0:
            raise ValueError(f"background_weight must be in [0, 1], got {background_weight}")
        values = vectors.to(torch.float64)
        mean = values.mean(dim=0)
        std = values.std(dim=0, correction=0)
        std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
        # float32 from here: the matrix products and factorisations of (D, D) matrices are the
        # cost, and the shrunk covariances are far too well conditioned to need float64.
        standard = ((values - mean) / std).float()  # (N, D)
        k = max(1, min(n_clusters, standard.shape[0] - 1))
        if start is not None and start.shape[0] == k:
            initial = ((start.to(torch.float64) - mean) / std).float().numpy()
            kmeans = KMeans(n_clusters=k, init=initial, n_init=1, random_state=seed)
        else:
            kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed)
        kmeans.fit(standard.numpy())
        centres = torch.from_numpy(kmeans.cluster_centers_).float()  # (K, D)
        labels = torch.from_numpy(kmeans.labels_).long()
        whitening = _shrunk_whitening(standard - centres[labels], shrinkage)
        # The standardised vectors have mean 0, so the background's centre is the origin.
        background = _shrunk_whitening(standard, shrinkage) if background_weight > 0 else None
        return cls(
            mean=mean.float(),
            std=std.float(),
            centres=centres @ whitening,
            whitening=whitening,
            shrinkage=float(shrinkage),
            background_whitening=background,
            background_weight=float(background_weight) if background is not None else 0.0,
        )

    def centres_of(self) -> Tensor:
        """The K centres ``(K, D)`` in the vectors' own units (a start for another fit)."""
        standard = torch.linalg.solve(self.whitening.T, self.centres.T).T  # undo the whitening
        return standard * self.std + self.mean

    def scores(self, vectors: Tensor) -> Tensor:
        """``(N, D)`` -> ``(N,)``: the squared Mahalanobis distance to the nearest centre, less
        w times the squared distance to the training mean under the background covariance."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dimensions:
            raise ValueError(
                f"novelty score expects (N, {self.dimensions}) vectors, got {tuple(vectors.shape)}"
            )
        standard = (vectors.float() - self.mean) / self.std  # (N, D)
        distances = torch.cdist(standard @ self.whitening, self.centres) ** 2  # (N, K)
        nearest = distances.min(dim=1).values
        if self.background_whitening is None:
            return nearest
        background = ((standard @ self.background_whitening) ** 2).sum(dim=1)
        return nearest - self.background_weight * background

    def to_tensors(self, prefix: str) -> dict[str, Tensor]:
        tensors = {prefix + name: getattr(self, name).contiguous() for name in _TENSOR_NAMES}
        if self.background_whitening is not None:
            tensors[prefix + _BACKGROUND] = self.background_whitening.contiguous()
        return tensors

    def to_dict(self) -> dict[str, Any]:
        relative = self.background_whitening is not None
        return {
            "method": METHOD if relative else LEGACY_METHOD,
            "shrinkage": self.shrinkage,
            **({"background_weight": self.background_weight} if relative else {}),
            "dimensions": self.dimensions,
            "n_centres": int(self.centres.shape[0]),
        }

    @classmethod
    def from_stored(
        cls, tensors: Mapping[str, Tensor], document: Mapping[str, Any], *, prefix: str
    ) -> NoveltyScore:
        """Rebuild from `to_tensors` and `to_dict`; `ValueError` names what does not fit."""
        method = document.get("method")
        if method not in (METHOD, LEGACY_METHOD):
            raise ValueError(f"unknown novelty method {method!r}")
        names = (*_TENSOR_NAMES, _BACKGROUND) if method == METHOD else _TENSOR_NAMES
        try:
            values = {name: tensors[prefix + name].float() for name in names}
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
            and (_BACKGROUND not in values or values[_BACKGROUND].shape == (d, d))
        )
        if not shapes_fit:
            raise ValueError("the novelty tensors' shapes disagree with each other")
        weight: Any = document.get("background_weight") if method == METHOD else 0.0
        if method == METHOD and not (isinstance(weight, int | float) and 0.0 < weight <= 1.0):
            raise ValueError(f"background_weight must be in (0, 1], got {weight!r}")
        return cls(
            shrinkage=float(document.get("shrinkage", DEFAULT_SHRINKAGE)),
            background_weight=float(weight),
            **values,
        )


def _shrunk_whitening(residuals: Tensor, shrinkage: float) -> Tensor:
    """``(N, D)`` residuals -> W ``(D, D)`` with ``|r @ W|^2`` the squared distance under their
    covariance shrunk towards its mean variance (in the residuals' dtype)."""
    covariance = residuals.T @ residuals / residuals.shape[0]  # (D, D)
    scale = float(torch.trace(covariance)) / covariance.shape[0]
    scale = scale if scale > 0 else 1.0
    identity = torch.eye(covariance.shape[0], dtype=residuals.dtype)
    shrunk = (1.0 - shrinkage) * covariance + shrinkage * scale * identity
    # Sigma^-1 = W W^T with W = L^-T for Sigma = L L^T, so |(x - c) W|^2 is the distance.
    cholesky = torch.linalg.cholesky(shrunk)
    return torch.linalg.solve_triangular(cholesky, identity, upper=False).T
