"""Choosing K and keeping cluster numbers stable.

The sweep over K and seeds (`sweep`, its request form in `sweep_spec`), the label-free rule that
picks a candidate (`rule`), and the matching of a new version's clusters to an earlier
version's (`cluster_identity`).

Imports `uvac.training`, `uvac.models` and the shared leaves.
"""

from __future__ import annotations

from uvac.selection.cluster_identity import (
    ClusterMatch,
    RenumberedModel,
    carried_names,
    cluster_order_from,
    match_clusters,
    renumbered,
)
from uvac.selection.rule import (
    DEFAULT_STABILITY_THRESHOLD,
    Candidate,
    CandidateScores,
    SweepChoice,
    candidate_grid,
    choose,
    score_candidate,
)
from uvac.selection.sweep import (
    DEFAULT_SUBSAMPLE,
    SweepProgress,
    SweepResult,
    clip_probabilities,
    clip_representation,
    run_sweep,
)
from uvac.selection.sweep_spec import InvalidSweep, SweepSpec, is_sweep, parse_sweep

__all__ = [
    "DEFAULT_STABILITY_THRESHOLD",
    "DEFAULT_SUBSAMPLE",
    "Candidate",
    "CandidateScores",
    "ClusterMatch",
    "InvalidSweep",
    "RenumberedModel",
    "SweepChoice",
    "SweepProgress",
    "SweepResult",
    "SweepSpec",
    "candidate_grid",
    "carried_names",
    "choose",
    "clip_probabilities",
    "clip_representation",
    "cluster_order_from",
    "is_sweep",
    "match_clusters",
    "parse_sweep",
    "renumbered",
    "run_sweep",
    "score_candidate",
]
