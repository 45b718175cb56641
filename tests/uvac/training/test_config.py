"""uvac.training.config: stored configurations of earlier versions still read."""

from __future__ import annotations

import json
from pathlib import Path

from uvac.training.config import TrainConfig, resume_relevant_fields

BUNDLE = Path(__file__).resolve().parents[3] / "app" / "default_model" / "bundle" / "model.json"


def test_a_renamed_key_is_read_under_its_new_name() -> None:
    stored = TrainConfig().to_dict()
    del stored["init_epochs"]
    stored["kmeans_init_epochs"] = 7  # as a model or checkpoint of an earlier version holds it
    assert TrainConfig.from_dict(stored).init_epochs == 7


def test_a_checkpoint_with_the_old_key_still_matches_its_run() -> None:
    config = TrainConfig(init_epochs=4)
    old = {
        ("kmeans_init_epochs" if key == "init_epochs" else key): value
        for key, value in config.to_dict().items()
    }
    assert resume_relevant_fields(old) == resume_relevant_fields(config.to_dict())
    assert resume_relevant_fields(old) != resume_relevant_fields(
        TrainConfig(init_epochs=5).to_dict()
    )


def test_the_bundled_model_configuration_reads() -> None:
    document = json.loads(BUNDLE.read_text(encoding="utf-8"))
    assert TrainConfig.from_dict(document["info"]["train_config"]).init_epochs > 0
