"""Presets: overrides on top of a recipe on top of the dataclass defaults."""

from __future__ import annotations

import pytest

from uvac.audio.feature_config import FeatureConfig
from uvac.training import presets
from uvac.training.config import TrainConfig
from uvac.training.presets import DEFAULT_PRESET, PRESETS, Preset, build_configs


def test_paper_preset_is_the_papers_recipe() -> None:
    features, training = build_configs("paper")

    assert (features.win_length, features.hop_length, features.n_mels) == (960, 480, 128)
    assert training.lambda_kl == 0.5 and training.epochs == 500
    assert (training.learning_rate, training.final_learning_rate) == (5e-4, 5e-5)
    assert (training.temperature_start, training.temperature_end) == (1.0, 0.5)


def test_default_preset_falls_back_to_the_dataclass_defaults() -> None:
    features, training = build_configs()

    expected_features = FeatureConfig(**PRESETS[DEFAULT_PRESET].features)
    assert features == expected_features
    assert training.epochs == PRESETS[DEFAULT_PRESET].training.get("epochs", TrainConfig().epochs)


def test_explicit_overrides_win_and_none_is_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = Preset(
        description="test",
        features={"activity_threshold_db": 40.0, "n_mels": 32},
        training={"epochs": 7, "model_hyperparameters": {"gru_hidden": 8, "gru_layers": 1}},
    )
    monkeypatch.setitem(presets.PRESETS, "test", recipe)

    features, training = build_configs(
        "test",
        feature_overrides={"activity_threshold_db": None},
        train_overrides={"epochs": 2, "model_hyperparameters": {"gru_hidden": 4}},
    )

    assert features.activity_threshold_db is None  # explicitly switched off
    assert features.n_mels == 32  # kept from the preset
    assert training.epochs == 2
    assert training.model_hyperparameters == {"gru_hidden": 4, "gru_layers": 1}


def test_unknown_preset_field_or_invalid_value_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        build_configs("fastest")
    with pytest.raises(ValueError, match="unknown"):
        build_configs(feature_overrides={"n_mel": 64})
    with pytest.raises(ValueError, match="n_mels"):
        build_configs(feature_overrides={"n_mels": 20})
