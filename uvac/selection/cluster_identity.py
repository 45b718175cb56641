"""Cluster identities across model versions: match a new model's clusters to an earlier one's.

A fitting backend maps each cluster number to a hearing-aid program, so a retrained model must
keep a cluster's number when the cluster keeps its meaning. `match_clusters` takes both
models' sharp assignments of the same recordings and pairs the clusters by the Hungarian
algorithm (`scipy.optimize.linear_sum_assignment`, maximising the recordings the two clusters
share). A pair is *kept* when it holds the majority of the earlier cluster's recordings: the
new cluster then takes the earlier cluster's number.

Numbers stay ``0..K-1`` (so ``probabilities[assignment]`` holds for every client): a cluster
without a kept partner (*new*) takes the lowest number that no earlier cluster had, and reuses
the number of a vanished earlier cluster only when the K numbers leave no other; a kept
cluster whose earlier number is K or more (the new model has fewer clusters) is renumbered the
same way and reported as such. An earlier cluster without a kept partner is reported as
*disappeared*, with the new cluster that holds most of its recordings (``merged_into``).

A name follows meaning more strictly than a number: `carried_names` gives a kept cluster the
earlier cluster's name only when it holds at least `NAME_CARRY_SHARE` of the earlier cluster's
recordings (``kept_share``). A kept cluster below that share keeps the number but not the name;
`name_suggestions` offers the earlier name for a person to confirm (the clusters listing marks
such a cluster ``needs_name``).

The design choice: the numbering is stored as a mapping (``order[number] = model output
index``) in the version's metadata and applied when the model is loaded (`renumbered`), rather
than by permuting the output weights of each model type. Every model type is served through
the same wrapper, the artifact stays the bytes training wrote, and the evaluation report, the
clusters listing and ``/v1/cluster`` all see the numbers through the one function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from uvac.models import ClusterModel
from uvac.training import TrainedModel

__all__ = [
    "NAME_CARRY_SHARE",
    "ClusterMatch",
    "RenumberedModel",
    "cluster_order_from",
    "match_clusters",
    "name_suggestions",
    "renumbered",
]

# A name carries over when the new cluster keeps at least this share of the earlier
# cluster's recordings: a majority keeps a number, a name asks for more.
NAME_CARRY_SHARE = 0.8


@dataclass(frozen=True)
class ClusterMatch:
    """How a new model's clusters map onto an earlier model's numbers.

    ``numbers[i]`` is the number of the new model's output ``i``; ``order`` is its inverse
    (``order[number] = output index``), what inference applies. ``clusters`` has one entry
    per number: ``{"number", "output", "previous" (the earlier number it kept, or None),
    "new", "renumbered", "agreement" (share of this cluster's recordings that the earlier
    model put in the same number; None for an empty cluster), "size", "kept_share" (share of
    the earlier cluster's recordings this one holds; None for a new cluster)}``.
    ``agreement`` is the share of all recordings whose number did not change.
    """

    numbers: list[int]
    order: list[int]
    clusters: list[dict[str, Any]]
    disappeared: list[dict[str, Any]]
    agreement: float
    n_recordings: int
    previous_k: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "order": list(self.order),
            "clusters": [dict(entry) for entry in self.clusters],
            "disappeared": [dict(entry) for entry in self.disappeared],
            "agreement": self.agreement,
            "n_recordings": self.n_recordings,
            "previous_k": self.previous_k,
            **self.extra,
        }

    def renumber(self, assignments: Sequence[int] | np.ndarray) -> np.ndarray:
        """Model output indices -> cluster numbers."""
        return np.asarray(self.numbers, dtype=np.int64)[np.asarray(assignments, dtype=np.int64)]


def match_clusters(
    previous: Sequence[int] | np.ndarray,
    current: Sequence[int] | np.ndarray,
    *,
    previous_k: int,
    current_k: int,
) -> ClusterMatch:
    """Match ``current`` (new model output indices) to ``previous`` (earlier numbers).

    Both are the sharp assignments of the same recordings, in the same order.

    >>> match = match_clusters([0, 0, 1, 1, 2], [2, 2, 0, 0, 1], previous_k=3, current_k=3)
    >>> match.numbers, match.agreement
    ([1, 2, 0], 1.0)
    """
    before = np.asarray(previous, dtype=np.int64)
    after = np.asarray(current, dtype=np.int64)
    if before.ndim != 1 or before.shape != after.shape:
        raise ValueError(f"assignments differ in shape: {before.shape} != {after.shape}")
    if before.size == 0:
        raise ValueError("matching clusters needs at least one recording")
    for name, values, k in (("previous", before, previous_k), ("current", after, current_k)):
        if values.min() < 0 or values.max() >= k:
            raise ValueError(f"{name} assignments must lie in [0, {k})")
    counts = np.zeros((previous_k, current_k), dtype=np.int64)  # (K_prev, K_new)
    np.add.at(counts, (before, after), 1)
    previous_sizes = counts.sum(axis=1)
    current_sizes = counts.sum(axis=0)

    rows, cols = linear_sum_assignment(counts, maximize=True)
    # Kept: the pair holds most of the earlier cluster's recordings (so it keeps its meaning).
    kept = {
        int(col): int(row)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True)
        if previous_sizes[row] > 0 and 2 * counts[row, col] > previous_sizes[row]
    }
    numbers: list[int | None] = [None] * current_k
    for output, earlier in kept.items():
        if earlier < current_k:
            numbers[output] = earlier
    taken = {number for number in numbers if number is not None}
    kept_earlier = set(kept.values())
    fresh = [n for n in range(current_k) if n not in taken and n >= previous_k]
    vanished = [n for n in range(current_k) if n not in taken and n < previous_k]
    free = iter(fresh + vanished)
    for output in range(current_k):
        if numbers[output] is None:
            numbers[output] = next(free)
    final = [int(number) for number in numbers if number is not None]
    order = [0] * current_k
    for index, number in enumerate(final):
        order[number] = index

    clusters = []
    for number in range(current_k):
        output = order[number]
        continued = kept.get(output)
        size = int(current_sizes[output])
        same = int(counts[number, output]) if number < previous_k else 0
        clusters.append(
            {
                "number": number,
                "output": output,
                "previous": continued,
                "new": continued is None,
                "renumbered": continued is not None and continued != number,
                "agreement": same / size if size else None,
                "size": size,
                "kept_share": (
                    None
                    if continued is None
                    else float(counts[continued, output] / previous_sizes[continued])
                ),
            }
        )
    disappeared = []
    for earlier in range(previous_k):
        if earlier in kept_earlier or previous_sizes[earlier] == 0:
            continue
        holder = int(counts[earlier].argmax())
        disappeared.append(
            {
                "number": earlier,
                "size": int(previous_sizes[earlier]),
                "merged_into": final[holder],
                "share": float(counts[earlier, holder] / previous_sizes[earlier]),
            }
        )
    unchanged = sum(int(counts[n, order[n]]) for n in range(min(previous_k, current_k)))
    return ClusterMatch(
        numbers=final,
        order=order,
        clusters=clusters,
        disappeared=disappeared,
        agreement=unchanged / int(before.size),
        n_recordings=int(before.size),
        previous_k=previous_k,
    )


def carried_names(
    match: ClusterMatch,
    previous_names: Mapping[str, str] | None,
    *,
    min_share: float = NAME_CARRY_SHARE,
) -> dict[str, str]:
    """The earlier version's names for the clusters that kept at least ``min_share`` of the
    earlier cluster's recordings, by new number."""
    return {
        number: suggestion["name"]
        for number, suggestion in _named_successors(match, previous_names).items()
        if suggestion["kept_share"] >= min_share
    }


def name_suggestions(
    match: ClusterMatch,
    previous_names: Mapping[str, str] | None,
    *,
    min_share: float = NAME_CARRY_SHARE,
) -> dict[str, dict[str, Any]]:
    """For the kept clusters whose earlier cluster had a name that does not carry over (under
    ``min_share``): ``{number: {"name", "previous", "kept_share"}}``."""
    return {
        number: suggestion
        for number, suggestion in _named_successors(match, previous_names).items()
        if suggestion["kept_share"] < min_share
    }


def _named_successors(
    match: ClusterMatch, previous_names: Mapping[str, str] | None
) -> dict[str, dict[str, Any]]:
    if not previous_names:
        return {}
    successors = {}
    for entry in match.clusters:
        earlier = entry["previous"]
        if earlier is not None and str(earlier) in previous_names:
            successors[str(entry["number"])] = {
                "name": previous_names[str(earlier)],
                "previous": earlier,
                "kept_share": float(entry["kept_share"]),
            }
    return successors


# ----------------------------------------------------------------- applying a numbering


class RenumberedModel(ClusterModel):
    """A model whose pi columns are put in cluster-number order: ``pi[:, order]``.

    Only for serving and evaluation (never saved: the artifact keeps the trained model).
    ``model_type`` and ``hyperparameters`` are the inner model's.
    """

    model_type: ClassVar[str] = "renumbered"

    def __init__(self, inner: ClusterModel, order: Sequence[int]) -> None:
        super().__init__()
        if sorted(order) != list(range(inner.n_clusters)):
            raise ValueError(f"a cluster order must be a permutation of 0..{inner.n_clusters - 1}")
        self.inner = inner
        self.order: Tensor
        self.register_buffer("order", torch.tensor(list(order), dtype=torch.int64))

    @property
    def n_clusters(self) -> int:
        return self.inner.n_clusters

    def cluster_probabilities(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        probabilities = self.inner.cluster_probabilities(x, mask)  # (B, K) by output index
        return probabilities[:, self.order]  # (B, K) by cluster number

    def latent(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.inner.latent(x, mask)

    def hyperparameters(self) -> dict[str, Any]:
        return self.inner.hyperparameters()


_RENUMBERED_TYPES: dict[str, type[RenumberedModel]] = {}


def _renumbered_type(model_type: str) -> type[RenumberedModel]:
    # A subclass per model type, so code that reads `model.model_type` sees the inner one's.
    if model_type not in _RENUMBERED_TYPES:
        _RENUMBERED_TYPES[model_type] = type(
            "RenumberedModel", (RenumberedModel,), {"model_type": model_type}
        )
    return _RENUMBERED_TYPES[model_type]


def cluster_order_from(metadata: Mapping[str, Any] | None, *, n_clusters: int) -> list[int] | None:
    """The numbering recorded in a version's metadata (``cluster_identity.order``), if valid."""
    identity = (metadata or {}).get("cluster_identity")
    order = identity.get("order") if isinstance(identity, Mapping) else None
    if not isinstance(order, list) or sorted(order) != list(range(n_clusters)):
        return None
    if order == list(range(n_clusters)):
        return None
    return [int(index) for index in order]


def renumbered(trained: TrainedModel, metadata: Mapping[str, Any] | None) -> TrainedModel:
    """``trained`` with its version's cluster numbering applied (unchanged when none)."""
    order = cluster_order_from(metadata, n_clusters=int(trained.model.n_clusters))
    if order is None:
        return trained
    model = _renumbered_type(trained.model.model_type)(trained.model, order).eval()
    return dataclasses.replace(trained, model=model)
