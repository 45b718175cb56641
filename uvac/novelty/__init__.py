"""How far a window lies from what a model was trained on: the novelty score every model
carries, fitted where training builds the artifact and applied where inference runs.

`NoveltyScore` (`score`): a relative Mahalanobis distance, to the nearest of K centres of the
training windows (one shared covariance shrunk towards its mean variance) less a share of the
distance to their mean under their own covariance; `fit_novelty` (`fitting`)
fits it on training windows and calibrates it on cross-fitted held-out windows, so the model
knows its score's distribution on recordings it has not seen (`Calibration`).

Imports only the shared leaves: training fits it, evaluation applies it, both through these
public names.
"""

from __future__ import annotations

from uvac.novelty.calibration import (
    DEFAULT_FALSE_ALARM_RATE,
    MAX_FALSE_ALARM_RATE,
    Calibration,
    check_false_alarm_rate,
)
from uvac.novelty.fitting import CALIBRATION_FOLDS, FittedNovelty, fit_novelty
from uvac.novelty.score import (
    DEFAULT_BACKGROUND_WEIGHT,
    DEFAULT_SHRINKAGE,
    NoveltyScore,
    window_vectors,
)

__all__ = [
    "CALIBRATION_FOLDS",
    "DEFAULT_BACKGROUND_WEIGHT",
    "DEFAULT_FALSE_ALARM_RATE",
    "DEFAULT_SHRINKAGE",
    "MAX_FALSE_ALARM_RATE",
    "Calibration",
    "FittedNovelty",
    "NoveltyScore",
    "check_false_alarm_rate",
    "fit_novelty",
    "window_vectors",
]
