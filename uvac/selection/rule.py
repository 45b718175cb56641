"""Choosing the number of clusters without labels: score sweep candidates, pick one by a rule.

A *candidate* is one setting of K (and optionally the temperature's end value and lambda),
trained with several seeds. Its scores, all without labels:

- ``stability``: the mean adjusted Rand index (ARI) over every pair of seeds of the training
  clips' assignments. ARI is 1 for identical partitions up to renumbering and about 0 for
  chance agreement, whatever K. `uvac.selection.sweep` trains each seed on its own random share of
  the clips and has it assign all of them, so the stability covers the data as well as the seed.
- ``silhouette``, ``dbi``, ``chi``: the internal metrics of each seed's assignments in the
  common feature space (each clip's mean normalised input window: the standardised encoder
  embeddings, the same for every candidate), averaged over seeds.
- ``clusters_used_min``: the fewest clusters any seed's assignments use.

Labels, when every clip has one, give ``accuracy`` and ``nmi`` beside the scores; the rule
never reads them.

The rule (`choose`), after Tibshirani and Walther's prediction strength (2005), whose
recommendation is "the largest K whose prediction strength is above 0.8 to 0.9": **the largest
K among candidates that are stable (``stability >= stability_threshold``, default 0.8) and
use all K clusters in every seed; among settings of that K, the highest silhouette.** Why the
largest: stability alone favours small K (a coarse split of well-separated groups is easy to
reproduce), and every extra cluster is one more program a device can offer. Why it stops: the
training's balance and self-labelling terms make every model use all K clusters, so a K above
the number of groups the data support must cut a group in two, and where the cut falls changes
with the resample and the seed; that run-to-run disagreement is what the threshold detects.
When no candidate is stable, the most stable one is chosen and the choice says so
(``stable: false``).

The seed whose assignments agree best with the other seeds' (highest mean ARI) is the
candidate's representative: the model that is published.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from uvac import metrics

__all__ = [
    "DEFAULT_STABILITY_THRESHOLD",
    "Candidate",
    "CandidateScores",
    "SweepChoice",
    "candidate_grid",
    "choose",
    "score_candidate",
]

DEFAULT_STABILITY_THRESHOLD = 0.8
RULE = (
    "largest K whose mean pairwise ARI across seeds (each on its own resample of the clips, "
    "when the sweep resamples) is at least {threshold:g} and whose every "
    "seed uses all K clusters; among settings of that K, highest silhouette in the common "
    "feature space; when none is stable, the most stable candidate"
)


@dataclass(frozen=True)
class Candidate:
    """One setting of the sweep; None leaves the training configuration's value."""

    n_clusters: int
    temperature_end: float | None = None
    lambda_kl: float | None = None

    @property
    def key(self) -> str:
        """A stable, file-name-safe identifier, e.g. ``k10`` or ``k10-t0.3-l0.05``."""
        key = f"k{self.n_clusters}"
        if self.temperature_end is not None:
            key += f"-t{self.temperature_end:g}"
        if self.lambda_kl is not None:
            key += f"-l{self.lambda_kl:g}"
        return key

    def overrides(self) -> dict[str, Any]:
        """The training-configuration fields this candidate sets."""
        values: dict[str, Any] = {"n_clusters": self.n_clusters}
        if self.temperature_end is not None:
            values["temperature_end"] = self.temperature_end
        if self.lambda_kl is not None:
            values["lambda_kl"] = self.lambda_kl
        return values

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters,
            "temperature_end": self.temperature_end,
            "lambda_kl": self.lambda_kl,
            "key": self.key,
        }


def candidate_grid(
    k_min: int,
    k_max: int,
    *,
    temperature_ends: Sequence[float] | None = None,
    lambdas: Sequence[float] | None = None,
) -> list[Candidate]:
    """Every combination of K in ``k_min..k_max`` (inclusive) and the optional values."""
    if k_min < 2 or k_max < k_min:
        raise ValueError(f"a K range needs 2 <= min <= max, got {k_min}..{k_max}")
    temperatures: Sequence[float | None] = list(temperature_ends or []) or [None]
    lambda_values: Sequence[float | None] = list(lambdas or []) or [None]
    return [
        Candidate(n_clusters=k, temperature_end=t, lambda_kl=lam)
        for k in range(k_min, k_max + 1)
        for t in temperatures
        for lam in lambda_values
    ]


@dataclass(frozen=True)
class CandidateScores:
    """A candidate's label-free scores (and, beside them, its label metrics)."""

    candidate: Candidate
    stability: float | None
    stability_min: float | None
    silhouette: float | None
    dbi: float | None
    chi: float | None
    clusters_used_min: int
    representative_seed: int
    seeds: list[dict[str, Any]]
    accuracy: float | None = None
    nmi: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_all_clusters(self) -> bool:
        return self.clusters_used_min == self.candidate.n_clusters

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.candidate.to_dict(),
            "stability": self.stability,
            "stability_min": self.stability_min,
            "silhouette": self.silhouette,
            "dbi": self.dbi,
            "chi": self.chi,
            "clusters_used_min": self.clusters_used_min,
            "representative_seed": self.representative_seed,
            "accuracy": self.accuracy,
            "nmi": self.nmi,
            "seeds": [dict(seed) for seed in self.seeds],
            **self.extra,
        }


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(present) if present else None


def score_candidate(
    candidate: Candidate,
    *,
    seeds: Sequence[int],
    assignments: Sequence[np.ndarray],
    representation: np.ndarray,
    labels: Sequence[Any] | None = None,
) -> CandidateScores:
    """Score one candidate from each seed's clip assignments (same clips, same order) and
    the clips' common-space representation ``(N, D)``."""
    if len(seeds) != len(assignments) or not assignments:
        raise ValueError("one assignment array per seed is needed")
    pair_scores: dict[tuple[int, int], float] = {}
    for a, b in itertools.combinations(range(len(assignments)), 2):
        pair_scores[(a, b)] = float(adjusted_rand_score(assignments[a], assignments[b]))
    per_seed: list[dict[str, Any]] = []
    agreement_with_others: list[float] = []
    for index, (seed, clusters) in enumerate(zip(seeds, assignments, strict=True)):
        internal = metrics.internal_metrics(representation, clusters)
        others = [score for pair, score in pair_scores.items() if index in pair]
        agreement_with_others.append(statistics.fmean(others) if others else 1.0)
        entry: dict[str, Any] = {
            "seed": int(seed),
            "clusters_used": metrics.clusters_used(clusters),
            "silhouette": internal["silhouette"],
            "dbi": internal["dbi"],
            "chi": internal["chi"],
            "mean_ari_with_other_seeds": agreement_with_others[-1] if others else None,
        }
        if labels is not None:
            entry["accuracy"] = metrics.unsupervised_accuracy(list(labels), clusters)
            entry["nmi"] = metrics.nmi(list(labels), clusters)
        per_seed.append(entry)
    representative = int(np.argmax(agreement_with_others))
    values = list(pair_scores.values())
    return CandidateScores(
        candidate=candidate,
        stability=statistics.fmean(values) if values else None,
        stability_min=min(values) if values else None,
        silhouette=_mean([s["silhouette"] for s in per_seed]),
        dbi=_mean([s["dbi"] for s in per_seed]),
        chi=_mean([s["chi"] for s in per_seed]),
        clusters_used_min=min(s["clusters_used"] for s in per_seed),
        representative_seed=int(seeds[representative]),
        seeds=per_seed,
        accuracy=_mean([s.get("accuracy") for s in per_seed]) if labels is not None else None,
        nmi=_mean([s.get("nmi") for s in per_seed]) if labels is not None else None,
    )


@dataclass(frozen=True)
class SweepChoice:
    """The chosen candidate, whether it met the stability threshold, and the rule applied."""

    chosen: CandidateScores
    stable: bool
    stability_threshold: float
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.candidate.to_dict(),
            "chosen_k": self.chosen.candidate.n_clusters,
            "representative_seed": self.chosen.representative_seed,
            "stable": self.stable,
            "stability_threshold": self.stability_threshold,
            "rule": self.rule,
        }


def choose(
    scores: Sequence[CandidateScores],
    *,
    stability_threshold: float = DEFAULT_STABILITY_THRESHOLD,
) -> SweepChoice:
    """Apply the module's rule to scored candidates (each needs two or more seeds)."""
    if not scores:
        raise ValueError("nothing to choose from: no candidate was scored")
    rule = RULE.format(threshold=stability_threshold)
    stable = [
        s
        for s in scores
        if s.stability is not None and s.stability >= stability_threshold and s.uses_all_clusters
    ]
    if stable:
        largest = max(s.candidate.n_clusters for s in stable)
        settings = [s for s in stable if s.candidate.n_clusters == largest]
        best = max(
            settings,
            key=lambda s: (
                s.silhouette if s.silhouette is not None else -math.inf,
                s.stability or 0.0,
            ),
        )
        return SweepChoice(
            chosen=best, stable=True, stability_threshold=stability_threshold, rule=rule
        )
    best = max(
        scores,
        key=lambda s: (
            s.stability if s.stability is not None else -math.inf,
            -s.candidate.n_clusters,
        ),
    )
    return SweepChoice(
        chosen=best, stable=False, stability_threshold=stability_threshold, rule=rule
    )
