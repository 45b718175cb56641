"""Choosing K and keeping cluster numbers stable.

The sweep over K and seeds (`sweep`, its request form in `sweep_spec`), the label-free rule that
picks a candidate (`rule`), and the matching of a new version's clusters to an earlier
version's (`cluster_identity`), and the warnings a run carries (`run_checks`).

Imports `uvac.training`, `uvac.models` and the shared leaves.
"""

from __future__ import annotations

from uvac.selection.cluster_identity import (
    NAME_CARRY_SHARE,
    ClusterMatch,
    RenumberedModel,
    carried_names,
    cluster_order_from,
    match_clusters,
    name_suggestions,
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
from uvac.selection.run_checks import (
    MIN_RECORDINGS_PER_CLUSTER,
    run_warnings,
    small_data_warning,
)
from uvac.selection.sweep import (
    DEFAULT_SUBSAMPLE,
    MIN_SWEEP_RECORDINGS,
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
    "MIN_RECORDINGS_PER_CLUSTER",
    "MIN_SWEEP_RECORDINGS",
    "NAME_CARRY_SHARE",
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
    "name_suggestions",
    "parse_sweep",
    "renumbered",
    "run_sweep",
    "run_warnings",
    "score_candidate",
    "small_data_warning",
]
