"""Named training recipes: the paper's, and the project's default.

A preset is only a set of overrides on `FeatureConfig` and `TrainConfig` defaults, kept in this
one dict so that a quality study can change a recipe in one place. Explicit values (CLI flags,
job parameters) win over the preset, which wins over the dataclass defaults.

- ``"paper"``: the recipe as the paper states it (see docs/model-spec.md): 960-sample STFT
  window, hop 480, 128 mel bins, Adam 5e-4 -> 5e-5, temperature 1.0 -> 0.5, lambda 0.5 (the
  spoken-digit value), 500 epochs. The paper's time-context window is the clip length, which
  depends on the data set: pass ``window_seconds`` for it (1 s here, the spoken-digit length).
- ``"default"``: what the service ships with, the recipe of the quality study
  (``/work/notes/quality_log.md``, ``benchmarks/quality.py``). Beyond the paper: 16 cepstral
  coefficients with per-clip mean-variance normalisation (speaker and channel colouring
  removed), every clip trimmed to its active region and fitted to one 32-frame window (speaking
  rate removed), a narrower network (the paper's is >8x slower on these small inputs and did
  no better), h initialised to predict a Ward-linkage clustering of the training windows, the
  augmentation-consistency term, SCAN's self-labelling and the cluster-balance term (FSDD test,
  3 seeds: see benchmarks/results/quality.md; the Ward start is what lifts it above K-means).
  The paper's recipe collapses (flat pi, KL_y = 0) on FSDD with these features.
- ``"scenes"``: the default's training recipe, without self-labelling and for 30 epochs, on
  log-mel features without per-clip normalisation or time fitting, for sound scenes and
  events: each clip up to 5 s is one window of its own length (the paper's time-context
  window), at a 128 ms STFT window and an 80 ms hop (64 frames). The mean spectrum and the
  texture over time are what tell rain from a helicopter; per-clip normalisation removes the
  first and resampling the active region into 32 frames blurs the second (ESC-10 test NMI,
  3 seeds, K-means on the features: 0.51 with time fitting at a 10 ms hop, 0.61 without at an
  80 ms hop; Cat. UVAC 0.53 -> 0.61 at K=10 and 0.42 -> 0.61 at K=5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from uvac.features import FeatureConfig
from uvac.training import TrainConfig

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "build_configs"]


@dataclass(frozen=True)
class Preset:
    """Overrides of `FeatureConfig` (``features``) and `TrainConfig` (``training``) fields."""

    description: str
    features: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)


_DEFAULT = Preset(
    description=(
        "the quality study's recipe: 16 cepstra with per-clip mean-variance normalisation, "
        "each clip trimmed and fitted to one 32-frame window, a narrower network, Ward "
        "initialisation of h, augmentation consistency, self-labelling and cluster "
        "balance, lambda 0.05"
    ),
    features={
        "n_fft": 512,
        "win_length": 400,  # 25 ms
        "hop_length": 160,  # 10 ms
        "n_mels": 64,
        "f_max": 4000.0,
        "cepstral_coefficients": 16,
        "utterance_norm": "mean_variance",
        "activity_threshold_db": 30.0,
        "time_fit": True,
        "fit_frames": 32,
        # clips up to 5 s (a word, a sound event, an ESC clip) are one fitted window;
        # longer recordings get 5 s windows every 2.5 s, each fitted
        "window_seconds": 5.0,
        "window_hop_seconds": 2.5,
    },
    training={
        "epochs": 15,
        "batch_size": 64,
        "lambda_kl": 0.05,
        "consistency_weight": 5.0,
        "kmeans_init_epochs": 5,
        "init_clustering": "ward",
        "self_label_weight": 1.0,
        "cluster_balance": 1.0,
        "model_hyperparameters": {
            "conv_channels": [8, 16, 32, 64],
            "gru_hidden": 64,
            "deconv_channels": [32, 16, 8],
        },
    },
)

# The same training on log-mel features of whole clips: only the feature-side differences,
# the self-labelling (which cost NMI on ESC-10: K=10 .519 vs .531, K=5 .392 vs .420, 3 seeds
# with time fitting) and 30 epochs (ESC-10 without time fitting, 3 seeds, test NMI at 15 vs
# 30 epochs: K=10 .572 vs .614, K=5 .586 vs .606).
_SCENES = Preset(
    description=(
        "the default recipe without self-labelling, 30 epochs, on log-mel features of the "
        "whole clip (64 mels up to 8 kHz, 128 ms window, 80 ms hop, 5 s windows, no per-clip "
        "normalisation, no time fitting) for sound scenes and events, whose stationary "
        "spectral shape and texture the default's cepstra and time fitting would remove"
    ),
    features={
        **_DEFAULT.features,
        "n_fft": 2048,
        "win_length": 2048,  # 128 ms
        "hop_length": 1280,  # 80 ms: a 5 s window is 61 frames, padded to 64
        "f_max": 8000.0,
        "cepstral_coefficients": None,
        "utterance_norm": False,
        "time_fit": False,
        "fit_frames": None,
    },
    training={**_DEFAULT.training, "self_label_weight": 0.0, "epochs": 30},
)

PRESETS: dict[str, Preset] = {
    "paper": Preset(
        description="the paper's recipe: 960/480 STFT, 128 mels, lambda 0.5, 500 epochs",
        features={
            "n_fft": 960,
            "win_length": 960,
            "hop_length": 480,
            "n_mels": 128,
            "window_seconds": 1.0,
            "utterance_norm": False,
            "activity_threshold_db": None,
            "cepstral_coefficients": None,
            "time_fit": False,
        },
        training={
            "epochs": 500,
            "learning_rate": 5e-4,
            "final_learning_rate": 5e-5,
            "temperature_start": 1.0,
            "temperature_end": 0.5,
            "lambda_kl": 0.5,
            "cluster_balance": 0.0,
            "consistency_weight": 0.0,
            "kmeans_init_epochs": 0,
            "self_label_weight": 0.0,
        },
    ),
    "default": _DEFAULT,
    "scenes": _SCENES,
}
DEFAULT_PRESET = "default"


def build_configs(
    preset: str = DEFAULT_PRESET,
    *,
    feature_overrides: Mapping[str, Any] | None = None,
    train_overrides: Mapping[str, Any] | None = None,
) -> tuple[FeatureConfig, TrainConfig]:
    """The feature and training configuration of ``preset`` with explicit overrides on top.

    Overrides are taken verbatim (None is a value: ``activity_threshold_db=None`` turns the
    activity mask off), so pass only what was set explicitly. Unknown field names and invalid
    values raise ValueError. ``model_hyperparameters`` merge with the preset's, key by key.
    """
    try:
        recipe = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}") from None
    features = {**recipe.features, **(feature_overrides or {})}
    training = {**recipe.training, **(train_overrides or {})}
    # Model options merge key by key, so one explicit option keeps the preset's others.
    training["model_hyperparameters"] = {
        **recipe.training.get("model_hyperparameters", {}),
        **(train_overrides or {}).get("model_hyperparameters", {}),
    }
    return FeatureConfig.from_dict(features), TrainConfig.from_dict(training)
