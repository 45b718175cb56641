"""The report's sweep and identity parts: how K was chosen, how clusters map to the earlier
version.

- ``sweep.png`` (`sweep_chart`): each criterion of the sweep (`uvac.selection.rule`) against K,
  one line per setting of the other swept values, the stability threshold dashed and the
  chosen K marked; accuracy and NMI (labels, never used to choose) in a panel of their own.
- `report_sections`: HTML for the page: the rule and the candidates' scores, and the
  cluster-identity table (each cluster's number, the earlier number it continues, its
  agreement, its name). Every text is escaped; names are user text.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from reports.figures import png

__all__ = ["report_sections", "sweep_chart"]

_CRITERIA = (
    ("stability", "stability (mean ARI across seeds)", "higher is steadier"),
    ("silhouette", "silhouette, common space", "higher is better"),
    ("dbi", "Davies-Bouldin, common space", "lower is better"),
    ("chi", "Calinski-Harabasz, common space", "higher is better"),
)


def _settings(candidates: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Candidates grouped by the swept values other than K (one line each)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for candidate in candidates:
        parts = []
        if candidate.get("temperature_end") is not None:
            parts.append(f"tau end {candidate['temperature_end']:g}")
        if candidate.get("lambda_kl") is not None:
            parts.append(f"lambda {candidate['lambda_kl']:g}")
        groups.setdefault(", ".join(parts) or "sweep", []).append(candidate)
    return groups


def _values(candidates: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    ordered = sorted(candidates, key=lambda c: int(c["n_clusters"]))
    ks = [int(c["n_clusters"]) for c in ordered]
    values = [np.nan if c.get(key) is None else float(c[key]) for c in ordered]
    return ks, values


def sweep_chart(selection: Mapping[str, Any] | None) -> bytes | None:
    """Each criterion against K with the choice marked; None without a sweep."""
    if not isinstance(selection, Mapping) or not selection.get("candidates"):
        return None
    candidates = list(selection["candidates"])
    groups = _settings(candidates)
    has_labels = any(c.get("accuracy") is not None for c in candidates)
    panels = len(_CRITERIA) + (1 if has_labels else 0)
    figure = Figure(figsize=(3.6 * panels, 3.6), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    chosen_k = selection.get("chosen_k")
    for index, (key, title, hint) in enumerate(_CRITERIA):
        for name, members in groups.items():
            ks, values = _values(members, key)
            axes[index].plot(ks, values, marker="o", markersize=3, label=name)
        axes[index].set_title(f"{title}\n({hint})", fontsize=9)
        axes[index].set_xlabel("K")
    threshold = selection.get("stability_threshold")
    if isinstance(threshold, int | float):
        axes[0].axhline(threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    if has_labels:
        for name, members in groups.items():
            for key, style in (("accuracy", "-"), ("nmi", ":")):
                ks, values = _values(members, key)
                axes[-1].plot(ks, values, linestyle=style, marker="o", markersize=3,
                              label=f"{key} ({name})" if len(groups) > 1 else key)  # fmt: skip
        axes[-1].set_ylim(0, 1)
        axes[-1].set_title("accuracy and NMI (labels; not used to choose)", fontsize=9)
        axes[-1].set_xlabel("K")
    for panel in axes:
        if isinstance(chosen_k, int):
            panel.axvline(chosen_k, color="red", linewidth=1.2, alpha=0.7)
    axes[0].legend(fontsize="x-small")
    if has_labels:
        axes[-1].legend(fontsize="x-small")
    stable = "" if selection.get("stable", True) else " (no candidate met the threshold)"
    figure.suptitle(f"K sweep: chosen K = {chosen_k}{stable} (red line)", fontsize=10)
    return png(figure)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _names(metadata: Mapping[str, Any]) -> dict[str, str]:
    names = metadata.get("cluster_names")
    if isinstance(names, list):
        return {str(i): str(n) for i, n in enumerate(names)}
    if isinstance(names, Mapping):
        return {str(k): str(v) for k, v in names.items()}
    return {}


def _selection_section(selection: Mapping[str, Any]) -> str:
    rows = []
    for candidate in selection.get("candidates") or []:
        mark = (
            " (chosen)"
            if candidate.get("key") == (selection.get("chosen") or {}).get("key")
            else ""
        )
        cells = [html.escape(str(candidate.get("key"))) + mark] + [
            _cell(candidate.get(key))
            for key in ("stability", "silhouette", "dbi", "chi", "clusters_used_min",
                        "accuracy", "nmi")
        ]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return f"""<h2>Choosing K</h2>
<p>Rule: {html.escape(str(selection.get("rule", "")))}. Chosen:
<strong>K = {_cell(selection.get("chosen_k"))}</strong>, stable: {_cell(selection.get("stable"))}
(resampled share of clips per seed: {_cell(selection.get("subsample"))}).
Accuracy and NMI are shown beside, never used to choose.</p>
<table>
<thead><tr><th>candidate</th><th>stability</th><th>silhouette</th><th>DBI</th><th>CHI</th>
<th>min clusters used</th><th>accuracy</th><th>NMI</th></tr></thead>
<tbody>{"".join(rows)}</tbody>
</table>
"""


def _identity_section(identity: Mapping[str, Any], names: Mapping[str, str]) -> str:
    rows = []
    for cluster in identity.get("clusters") or []:
        number = cluster.get("number")
        cells = [
            _cell(number),
            _cell(names.get(str(number))),
            _cell(cluster.get("previous")),
            _cell(cluster.get("new")),
            _cell(cluster.get("agreement")),
            _cell(cluster.get("size")),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    gone = ", ".join(
        f"{_cell(item.get('number'))} (into {_cell(item.get('merged_into'))}, "
        f"{_cell(item.get('share'))} of its clips)"
        for item in identity.get("disappeared") or []
    )
    return f"""<h2>Cluster identities</h2>
<p>Matched to <code>{_cell(identity.get("previous"))}</code> on
{_cell(identity.get("n_recordings"))} recordings ({_cell(identity.get("recordings"))}):
{_cell(identity.get("agreement"))} of them keep their cluster number.
Disappeared: {gone or "none"}.</p>
<table>
<thead><tr><th>number</th><th>name</th><th>continues</th><th>new</th><th>agreement</th>
<th>size</th></tr></thead>
<tbody>{"".join(rows)}</tbody>
</table>
"""


def report_sections(document: Mapping[str, Any]) -> str:
    """The page's sweep and identity sections (empty for a version that has neither), from
    the report document's ``selection``, ``cluster_identity`` and ``cluster_names``."""
    parts = []
    selection = document.get("selection")
    if isinstance(selection, Mapping):
        parts.append(_selection_section(selection))
    identity = document.get("cluster_identity")
    if isinstance(identity, Mapping):
        parts.append(_identity_section(identity, _names(document)))
    return "\n".join(parts)
