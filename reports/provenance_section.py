"""The report's first section: which recordings its figures come from, and the warnings.

A reader must not mistake figures on training recordings for figures on new ones, so the page
opens with the report document's ``evaluated_on`` description (`uvac.evaluation.
EvaluationRecordings.describe`) and, when any of the recordings trained the model (or that
is not known), a warning box. Below it: the version's figures on its held-out recordings from
training (``held_out``), a student's agreement with its teacher on held-out recordings
(``distillation``), and the run's warnings (``warnings``, `uvac.selection.run_checks`).
Every text is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

__all__ = ["provenance_section"]

_WARNING_STYLE = (
    "border: 2px solid #b00; background: #fee; padding: 0.5rem 1rem; margin: 1rem 0; "
    "font-weight: bold;"
)
_NOTE_STYLE = "border: 1px solid #c90; background: #ffd; padding: 0.5rem 1rem; margin: 1rem 0;"


def _figure(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value:.3g}"


def provenance_section(document: Mapping[str, Any]) -> str:
    """HTML for the page's opening section."""
    escape = html.escape
    parts = []
    evaluated_on = document.get("evaluated_on")
    if isinstance(evaluated_on, Mapping):
        parts.append(f'<p class="evaluated-on">{escape(str(evaluated_on["description"]))}</p>')
        if evaluated_on.get("warning"):
            parts.append(
                f'<div class="warning" role="alert" style="{_WARNING_STYLE}">Warning: '
                f"{escape(str(evaluated_on['warning']))}</div>"
            )
    held_out = document.get("held_out")
    if isinstance(held_out, Mapping) and isinstance(held_out.get("metrics"), Mapping):
        metrics = held_out["metrics"]
        novelty_rate = metrics.get("novelty_rate")
        parts.append(
            f"<p>At training: {escape(str(held_out.get('description', '')))} Accuracy "
            f"{_figure(metrics.get('accuracy'))}, NMI {_figure(metrics.get('nmi'))}, "
            f"{metrics.get('clusters_used')} clusters used on {metrics.get('recordings')} "
            "recordings"
            + (f", novelty rate {_figure(novelty_rate)}" if novelty_rate is not None else "")
            + ".</p>"
        )
    distillation = document.get("distillation")
    held_agreement = distillation.get("held_out") if isinstance(distillation, Mapping) else None
    if isinstance(held_agreement, Mapping):
        parts.append(
            "<p>Agreement of this student with its teacher on "
            f"{held_agreement.get('recordings')} held-out recordings: "
            f"{_figure(held_agreement.get('agreement'))}.</p>"
        )
    warnings = [w for w in document.get("warnings") or [] if isinstance(w, Mapping)]
    if warnings:
        items = "".join(f"<li>{escape(str(w.get('message', '')))}</li>" for w in warnings)
        parts.append(
            f'<div class="run-warnings" style="{_NOTE_STYLE}">Warnings of the training run:'
            f"<ul>{items}</ul></div>"
        )
    return "\n".join(parts)
