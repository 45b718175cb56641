"""Named training recipes: the paper's, the encoder recipes the service ships, and log-mel ones.

A preset is only a set of overrides on `FeatureConfig` and `TrainConfig` defaults, kept in this
one dict so that a quality study can change a recipe in one place. Explicit values (CLI flags,
job parameters) win over the preset, which wins over the dataclass defaults.

- ``"scenes"`` (the default, `DEFAULT_PRESET`): acoustic environments and sound events, what
  the fitting backend sends. The sound encoder's embeddings (aiSFX, `uvac.audio.encoders.sound`) of
  5 s windows every 2.5 s at 44.1 kHz, and Cat. UVAC with perceptron networks on them
  (`uvac.models.mlp`): h starts from a spectral clustering of the training windows, then
  trains with SCAN's neighbour consistency (the same cluster for a window and an augmented
  nearest neighbour), self-labelling and the cluster-balance term.
- ``"speech"``: spoken words. The same training, from a K-means start, on the speech
  encoder's embeddings (EfficientWord-Net, `uvac.audio.encoders.speech`) of 1.5 s windows every
  0.75 s at 16 kHz.
- ``"paper"``: the recipe as the paper states it (the model spec, docs/model-spec.md):
  log-mel, 960-sample STFT window, hop 480, 128 mel bins, Adam 5e-4 -> 5e-5, temperature 1.0 -> 0.5,
  lambda 0.5 (the spoken-digit value), 500 epochs. The paper's time-context window is the clip
  length, which depends on the data set: pass ``window_seconds`` for it (1 s here, the digit
  length).
- ``"words-logmel"``: the log-mel recipe for short utterance-like clips, learnt from scratch:
  16 cepstral coefficients with per-clip mean-variance normalisation, each clip trimmed to its
  active region and fitted to one 32-frame window, a narrower conv-GRU network, a Ward start,
  augmentation consistency, self-labelling and cluster balance.
- ``"scenes-logmel"``: the same training without self-labelling, 30 epochs, on log-mel
  features of whole clips (5 s windows, 128 ms STFT window, 80 ms hop), for sound scenes.

The study behind each choice and its figures: benchmarks/README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from uvac.audio import FeatureConfig
from uvac.training.config import TrainConfig

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "build_configs"]


@dataclass(frozen=True)
class Preset:
    """Overrides of `FeatureConfig` (``features``) and `TrainConfig` (``training``) fields."""

    description: str
    features: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)


_WORDS_LOGMEL = Preset(
    description=(
        "log-mel recipe for short utterance-like clips: 16 cepstra with per-clip "
        "mean-variance normalisation, each clip trimmed and fitted to one 32-frame window, "
        "a narrower network, Ward initialisation of h, augmentation consistency, "
        "self-labelling and cluster balance, lambda 0.05"
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
        "init_epochs": 5,
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
# no self-labelling and 30 epochs (each measured on ESC-10, see benchmarks/README.md).
_SCENES_LOGMEL = Preset(
    description=(
        "the words-logmel recipe without self-labelling, 30 epochs, on log-mel features of the "
        "whole clip (64 mels up to 8 kHz, 128 ms window, 80 ms hop, 5 s windows, no per-clip "
        "normalisation, no time fitting) for sound scenes and events, whose stationary "
        "spectral shape and texture words-logmel's cepstra and time fitting would remove"
    ),
    features={
        **_WORDS_LOGMEL.features,
        "n_fft": 2048,
        "win_length": 2048,  # 128 ms
        "hop_length": 1280,  # 80 ms: a 5 s window is 61 frames, padded to 64
        "f_max": 8000.0,
        "cepstral_coefficients": None,
        "utterance_norm": False,
        "time_fit": False,
        "fit_frames": None,
    },
    training={**_WORDS_LOGMEL.training, "self_label_weight": 0.0, "epochs": 30},
)

# Training on embeddings: one standardised vector per window, so the log-mel recipes' time
# augmentation has nothing to warp (the embedding view is noise and dropout, see
# uvac.training.consistency.augment_windows), and the networks are perceptrons.
_EMBEDDING_TRAINING: dict[str, Any] = {
    "epochs": 60,
    # The partition settles within a few epochs; training on moves no window and tightens h's
    # fit to the training windows (the held-out comparison: benchmarks/README.md).
    "stop_after_stable_epochs": 5,
    "batch_size": 64,
    "lambda_kl": 0.05,
    "init_epochs": 5,
    "init_clustering": "kmeans",
    "consistency_weight": 5.0,
    "consistency_neighbours": 5,
    "self_label_weight": 1.0,
    "cluster_balance": 1.0,
    "model_hyperparameters": {"architecture": "mlp", "hidden_units": [512, 256], "latent_dim": 32},
}

_SCENES = Preset(
    description=(
        "acoustic environments and sound events: the sound encoder's (aiSFX) embeddings of 5 s "
        "windows every 2.5 s at 44.1 kHz, Cat. UVAC with perceptron networks, a spectral "
        "clustering start, neighbour consistency, self-labelling and cluster balance"
    ),
    features={
        "frontend": "sound-encoder",
        "sample_rate": 44100,
        "window_seconds": 5.0,
        "window_hop_seconds": 2.5,
    },
    # Sound classes form chains of similar clips in the embedding space, which a graph cut
    # follows and K-means or Ward cut across (ESC-10 training split, benchmarks/README.md).
    training={**_EMBEDDING_TRAINING, "init_clustering": "spectral"},
)

_SPEECH = Preset(
    description=(
        "spoken words: the speech encoder's (EfficientWord-Net) embeddings of 1.5 s windows "
        "every 0.75 s at 16 kHz, with the scenes preset's training from a K-means start"
    ),
    features={
        "frontend": "speech-encoder",
        "sample_rate": 16000,
        "window_seconds": 1.5,
        "window_hop_seconds": 0.75,
    },
    training=_EMBEDDING_TRAINING,
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
            "init_epochs": 0,
            "self_label_weight": 0.0,
        },
    ),
    "scenes": _SCENES,
    "speech": _SPEECH,
    "words-logmel": _WORDS_LOGMEL,
    "scenes-logmel": _SCENES_LOGMEL,
}
DEFAULT_PRESET = "scenes"


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
