"""The bundled default model: published once into an empty store, the same model everywhere."""

from __future__ import annotations

import time
from pathlib import Path

from app.default_model import publish_default_model
from model_store import ModelStore
from uvac.training import load_trained_model


def test_the_bundled_model_has_the_same_identity_in_every_deployment(tmp_path: Path) -> None:
    staging_ref = publish_default_model(store_root=tmp_path / "a", serve_ref="scenes@production")
    time.sleep(0.01)  # another publish time
    production_ref = publish_default_model(store_root=tmp_path / "b", serve_ref="scenes@staging")
    assert staging_ref == production_ref == "scenes:v1"
    staging = ModelStore(tmp_path / "a").get("scenes@production")
    production = ModelStore(tmp_path / "b").get("scenes@staging")
    assert staging.created_at != production.created_at
    assert staging.sha256 == production.sha256
    # And it is published only into an empty store.
    assert publish_default_model(store_root=tmp_path / "a", serve_ref="scenes@production") is None


def test_the_bundled_model_carries_its_novelty_score(tmp_path: Path) -> None:
    publish_default_model(store_root=tmp_path, serve_ref="scenes@production")
    version = ModelStore(tmp_path).get("scenes@production")
    trained = load_trained_model(version.path)
    assert trained.novelty is not None
    assert trained.novelty.score.to_dict()["method"] == "relative-mahalanobis-nearest-centre"
    assert trained.novelty.score.dimensions == 512
    assert 0.0 < trained.novelty.calibration.false_alarm_rate <= 0.5
