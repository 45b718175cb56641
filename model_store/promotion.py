"""The check before an alias moves to another version: is the new one worse?

A promotion replaces what the alias serves, so it compares the figures both versions recorded
on recordings their training held out (metadata ``held_out.metrics``, written by the training
job): accuracy and NMI when both have them (labelled data sets); without labels, a held-out
``stability`` (higher is better) or ``novelty_rate`` (lower is better) where both recorded one.
A figure that only one version has is not compared. `worse_figures` lists every figure on which
the new version is worse by more than `TOLERANCE`; `check_promotion` refuses such a promotion
with `PromotionWorsens` (409), naming the figures, unless ``force`` is set, in which case the
promotion goes ahead and is logged as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from model_store.errors import StoreError
from model_store.records import ModelVersion

__all__ = ["TOLERANCE", "FigureComparison", "PromotionWorsens", "check_promotion", "worse_figures"]

logger = logging.getLogger(__name__)

# Differences this small are noise on the held-out parts the service makes (tens of
# recordings): one recording of 50 moves accuracy by 0.02.
TOLERANCE = 0.005
# figure -> True when higher is better
_FIGURES = {"accuracy": True, "nmi": True, "stability": True, "novelty_rate": False}


@dataclass(frozen=True)
class FigureComparison:
    figure: str
    new: float
    current: float
    higher_is_better: bool


class PromotionWorsens(StoreError):
    """The version to promote did worse on held-out recordings than the one the alias has."""

    status = 409
    slug = "promotion-worsens-model"
    title = "The new version is worse on held-out recordings"

    def __init__(self, message: str, *, figures: list[FigureComparison]) -> None:
        super().__init__(message)
        self.problem_extensions = {"figures": [asdict(figure) for figure in figures]}


def _held_out_metrics(version: ModelVersion) -> Mapping[str, Any]:
    held_out = version.metadata.get("held_out")
    metrics = held_out.get("metrics") if isinstance(held_out, Mapping) else None
    return metrics if isinstance(metrics, Mapping) else {}


def worse_figures(new: ModelVersion, current: ModelVersion) -> list[FigureComparison]:
    """The held-out figures on which ``new`` is worse than ``current``."""
    new_metrics, current_metrics = _held_out_metrics(new), _held_out_metrics(current)
    worse = []
    for figure, higher_is_better in _FIGURES.items():
        a, b = new_metrics.get(figure), current_metrics.get(figure)
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            continue
        loss = (b - a) if higher_is_better else (a - b)
        if loss > TOLERANCE:
            worse.append(FigureComparison(figure, float(a), float(b), higher_is_better))
    return worse


def check_promotion(
    new: ModelVersion, current: ModelVersion | None, *, alias: str, force: bool
) -> list[FigureComparison]:
    """Refuse (`PromotionWorsens`) moving ``alias`` from ``current`` to a worse ``new``
    unless ``force``; returns the worse figures (empty when none, or nothing to compare)."""
    if current is None or current.version == new.version:
        return []
    worse = worse_figures(new, current)
    if not worse:
        return []
    listed = "; ".join(
        f"held-out {c.figure} {c.new:.3f} against {c.current:.3f}"
        + ("" if c.higher_is_better else " (lower is better)")
        for c in worse
    )
    if not force:
        raise PromotionWorsens(
            f"{new.ref} is worse than {current.ref}, which {new.name}@{alias} serves now: "
            f'{listed}. Send "force": true to promote it anyway.',
            figures=worse,
        )
    logger.warning(
        "forced promotion of %s to @%s over %s, worse on: %s", new.ref, alias, current.ref, listed
    )
    return worse
