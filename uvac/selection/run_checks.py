"""The warnings of a training run: what a person deciding on the model should read first.

Each warning is a JSON-able record ``{"code", "message", ...the figures it quotes}``; a job
result and the version's metadata (so its report) carry the same list
(`run_warnings`). The codes:

- ``"small-data"``: fewer than `MIN_RECORDINGS_PER_CLUSTER` training recordings per cluster.
  Training still runs; with so few recordings a cluster is shaped by a handful of them, and
  its held-out figures rest on fewer still.
- ``"no-stable-k"``: a sweep in which no candidate reached the stability threshold
  (`uvac.selection.rule.DEFAULT_STABILITY_THRESHOLD` unless the job set another); the rule
  then published the most stable one.
- ``"cluster-disappeared"``: an earlier version's cluster that no cluster of the new one
  continues (`uvac.selection.cluster_identity.match_clusters`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "MIN_RECORDINGS_PER_CLUSTER",
    "disappeared_warnings",
    "run_warnings",
    "small_data_warning",
    "sweep_warning",
]

# Below this many training recordings per cluster a run is flagged (not refused).
MIN_RECORDINGS_PER_CLUSTER = 10


def small_data_warning(*, recordings: int, n_clusters: int) -> dict[str, Any] | None:
    """A ``small-data`` warning when ``recordings / n_clusters`` is under the minimum."""
    if n_clusters <= 0 or recordings >= MIN_RECORDINGS_PER_CLUSTER * n_clusters:
        return None
    per_cluster = recordings / n_clusters
    return {
        "code": "small-data",
        "message": (
            f"{recordings} training recordings for {n_clusters} clusters: {per_cluster:.1f} "
            f"per cluster, under the {MIN_RECORDINGS_PER_CLUSTER} this service asks for. "
            "Clusters and their figures rest on very few recordings."
        ),
        "recordings": recordings,
        "n_clusters": n_clusters,
        "recordings_per_cluster": round(per_cluster, 2),
        "minimum_per_cluster": MIN_RECORDINGS_PER_CLUSTER,
    }


def sweep_warning(selection: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A ``no-stable-k`` warning for a sweep summary (`SweepResult.summary`) without a stable K."""
    if not selection or selection.get("stable", True):
        return None
    threshold = selection.get("stability_threshold")
    chosen_k = selection.get("chosen_k")
    stabilities = [
        float(candidate["stability"])
        for candidate in selection.get("candidates") or []
        if isinstance(candidate, Mapping) and isinstance(candidate.get("stability"), int | float)
    ]
    best = max(stabilities) if stabilities else None
    best_text = f"{best:.2f}" if best is not None else "unknown"
    return {
        "code": "no-stable-k",
        "message": (
            f"No K of the sweep was stable: the best stability was {best_text} against the "
            f"threshold {threshold}; the most stable candidate (K = {chosen_k}) was published. "
            "The data may not hold the clusters asked for."
        ),
        "best_stability": best,
        "stability_threshold": threshold,
        "chosen_k": chosen_k,
    }


def disappeared_warnings(identity: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One ``cluster-disappeared`` warning per earlier cluster without a successor."""
    if not identity:
        return []
    previous = identity.get("previous")
    warnings = []
    for entry in identity.get("disappeared") or []:
        if not isinstance(entry, Mapping):
            continue
        share = entry.get("share")
        share_text = f"{100 * share:.0f}%" if isinstance(share, int | float) else "most"
        warnings.append(
            {
                "code": "cluster-disappeared",
                "message": (
                    f"Cluster {entry.get('number')} of {previous} ({entry.get('size')} "
                    f"recordings) has no successor: {share_text} of its recordings went to "
                    f"cluster {entry.get('merged_into')}."
                ),
                "previous": previous,
                "number": entry.get("number"),
                "merged_into": entry.get("merged_into"),
            }
        )
    return warnings


def run_warnings(
    *,
    recordings: int,
    n_clusters: int,
    selection: Mapping[str, Any] | None = None,
    identity: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every warning of a run that trained on ``recordings`` recordings into ``n_clusters``."""
    found = [
        small_data_warning(recordings=recordings, n_clusters=n_clusters),
        sweep_warning(selection),
    ]
    return [warning for warning in found if warning is not None] + disappeared_warnings(identity)
