"""Serving models whose front-end is a pretrained encoder: they cluster uploads, and an encoder
that is missing or differs from the model's is a readiness failure with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

import uvac.audio.encoders
from model_store import ModelStore
from tests.app.helpers import noise_wav
from uvac.audio.features import NormStats
from uvac.errors import EncoderUnavailableError
from uvac.models import CatUVAC
from uvac.training.artifact import TrainedModel, save_trained_model
from uvac.training.presets import build_configs


def _sound_model() -> TrainedModel:
    feature_config, _ = build_configs("scenes")
    torch.manual_seed(0)
    model = CatUVAC(
        n_clusters=4, n_features=512, architecture="mlp", hidden_units=[16], latent_dim=4
    )
    stats = NormStats(mean=torch.zeros(512), std=torch.ones(512), minimum=0.0, maximum=1.0)
    return TrainedModel(model=model.eval(), feature_config=feature_config, norm_stats=stats)


def _publish(store: ModelStore, *, encoder_sha256: str | None = None) -> str:
    with store.publish("scenes", metadata={}) as staging:
        save_trained_model(Path(staging), _sound_model())
        if encoder_sha256 is not None:
            path = Path(staging) / "model.json"
            document = json.loads(path.read_text())
            document["encoder"]["sha256"] = encoder_sha256
            path.write_text(json.dumps(document))
    store.promote(staging.version.ref, "production")
    return staging.version.ref


def test_an_encoder_model_clusters_an_upload(redis_db, store: ModelStore, settings) -> None:
    from app.main import create_app

    _publish(store)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/cluster", files={"file": ("a.wav", noise_wav(0.7))})
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["probabilities"]) == 4
        assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert body["duration_s"] == pytest.approx(0.7, abs=0.01)


def test_a_model_of_another_encoder_is_refused_with_the_reason(
    redis_db, store: ModelStore, settings
) -> None:
    from app.main import create_app

    ref = _publish(store, encoder_sha256="0" * 64)
    with TestClient(create_app(settings)) as client:
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        reason = json.dumps(readiness.json())
        assert ref in reason and "encoder" in reason and "sha256" in reason
        response = client.post("/v1/cluster", files={"file": ("a.wav", noise_wav(0.5))})
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")


def test_a_missing_encoder_package_is_a_readiness_failure_not_a_500(
    redis_db, store: ModelStore, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.main import create_app

    _publish(store)

    class Missing(uvac.audio.encoders.SoundEncoder):
        def __init__(self) -> None:
            raise EncoderUnavailableError("the package aisfx is not installed")

    monkeypatch.setitem(uvac.audio.encoders.ENCODERS, "sound-encoder", Missing)
    monkeypatch.setattr(uvac.audio.encoders, "_loaded", {})
    with TestClient(create_app(settings)) as client:
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        assert "aisfx is not installed" in json.dumps(readiness.json())
        response = client.post("/v1/cluster", files={"file": ("a.wav", noise_wav(0.5))})
        assert response.status_code == 503
