"""The score's distribution on in-distribution windows the score was not fitted on, and what
follows from it: the novelty of a window and the threshold for a chosen false-alarm rate.

``novelty(score)`` is the share of those held-out windows that score lower (linearly
interpolated between them, 0 at or below the lowest, 1 at or above the highest): 0.5 is a
typical known window, 0.99 is more novel than 99 % of them. A window is unknown when its
novelty exceeds ``1 - false_alarm_rate``, which is the same as its score exceeding the
``1 - false_alarm_rate`` quantile of the held-out scores (`threshold`): about that share of
known recordings is flagged. The rate can change after training because the held-out scores
are kept, not only one threshold.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DEFAULT_FALSE_ALARM_RATE",
    "MAX_FALSE_ALARM_RATE",
    "Calibration",
    "check_false_alarm_rate",
]

DEFAULT_FALSE_ALARM_RATE = 0.05
MAX_FALSE_ALARM_RATE = 0.5


def check_false_alarm_rate(rate: float) -> float:
    """``rate`` when it is in (0, `MAX_FALSE_ALARM_RATE`], else `ValueError`."""
    if not (isinstance(rate, int | float) and 0.0 < float(rate) <= MAX_FALSE_ALARM_RATE):
        raise ValueError(f"a false-alarm rate is in (0, {MAX_FALSE_ALARM_RATE}], got {rate!r}")
    return float(rate)


@dataclass(frozen=True)
class Calibration:
    """Held-out in-distribution scores (sorted) and the false-alarm rate fixed at training."""

    held_out_scores: Tensor  # (H,) ascending
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE

    def __post_init__(self) -> None:
        if self.held_out_scores.ndim != 1 or self.held_out_scores.shape[0] < 2:
            raise ValueError("a calibration needs at least two held-out scores")
        check_false_alarm_rate(self.false_alarm_rate)

    @classmethod
    def from_scores(
        cls, scores: Tensor, *, false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    ) -> Calibration:
        return cls(
            held_out_scores=torch.sort(scores.float().flatten()).values,
            false_alarm_rate=false_alarm_rate,
        )

    def threshold(self, false_alarm_rate: float | None = None) -> float:
        """The score above which a window is unknown at this rate (default: the model's)."""
        rate = check_false_alarm_rate(
            self.false_alarm_rate if false_alarm_rate is None else false_alarm_rate
        )
        # Every answer of a served model asks for it: each rate's quantile is computed once.
        thresholds = self._thresholds
        if rate not in thresholds:
            thresholds[rate] = float(np.quantile(self.held_out_scores.numpy(), 1.0 - rate))
        return thresholds[rate]

    def novelty(self, scores: Tensor) -> Tensor:
        """Raw scores ``(N,)`` -> novelty in [0, 1] ``(N,)`` (see the module docstring)."""
        reference, positions = self._interpolation_points
        values = np.interp(scores.numpy().astype(np.float64), reference, positions)
        return torch.from_numpy(values).float()

    @functools.cached_property
    def _thresholds(self) -> dict[float, float]:
        return {}

    @functools.cached_property
    def _interpolation_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out scores (float64) and their novelty, from 0 to 1 ``(H,)`` each."""
        reference = self.held_out_scores.numpy().astype(np.float64)
        return reference, np.linspace(0.0, 1.0, reference.shape[0])

    def to_tensors(self, prefix: str) -> dict[str, Tensor]:
        return {prefix + "held_out_scores": self.held_out_scores.contiguous()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "false_alarm_rate": self.false_alarm_rate,
            "threshold": self.threshold(),
            "held_out_windows": int(self.held_out_scores.shape[0]),
        }

    @classmethod
    def from_stored(
        cls, tensors: Mapping[str, Tensor], document: Mapping[str, Any], *, prefix: str
    ) -> Calibration:
        try:
            scores = tensors[prefix + "held_out_scores"].float()
        except KeyError as error:
            raise ValueError(f"missing tensor {error}") from error
        if scores.ndim != 1 or bool((scores[1:] < scores[:-1]).any()):
            raise ValueError("held-out scores must be one ascending list")
        return cls(
            held_out_scores=scores,
            false_alarm_rate=float(document.get("false_alarm_rate", DEFAULT_FALSE_ALARM_RATE)),
        )
