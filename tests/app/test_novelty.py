"""Novelty, silence, level and speech in /v1/cluster, and a version's false-alarm setting."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from model_store import Corrupted, ModelStore, ModelVersion
from service_config import Settings
from tests.app.conftest import SAMPLE_RATE
from tests.app.helpers import assert_problem, noise_wav
from tests.app.novelty_models import model_with_novelty, tone_clip
from tests.audio_fixtures import silence, tone, wav_bytes
from uvac.training import NOVELTY_JSON, save_trained_model


@pytest.fixture
def novel_version(store: ModelStore) -> ModelVersion:
    with store.publish("scenes", metadata={"seed": 0}) as staging:
        save_trained_model(Path(staging), model_with_novelty())
    version = staging.version
    store.promote(version.ref, "production")
    return version


@pytest.fixture
def novel_client(settings: Settings, novel_version: ModelVersion) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _cluster(client: TestClient, data: bytes) -> dict:
    response = client.post("/v1/cluster", files={"file": ("a.wav", data, "audio/wav")})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_known_tone_is_known_and_noise_is_unknown(novel_client: TestClient) -> None:
    known = _cluster(novel_client, wav_bytes(tone_clip(700.0, 99), sample_rate=SAMPLE_RATE))
    assert known["unknown"] is False and 0.0 <= known["novelty"] < 0.95
    unknown = _cluster(novel_client, noise_wav(1.2))
    assert unknown["unknown"] is True and unknown["novelty"] == 1.0
    assert all(window["unknown"] is True for window in unknown["windows"])
    assert len(unknown["probabilities"]) == len(known["probabilities"])  # pi stays as it was


def test_digital_silence_is_reported_as_silence(novel_client: TestClient) -> None:
    body = _cluster(
        novel_client, wav_bytes(silence(1.2, sample_rate=SAMPLE_RATE), sample_rate=SAMPLE_RATE)
    )
    assert body["silence"] is True and body["level_dbfs"] == -120.0
    assert body["novelty"] is None and body["unknown"] is None
    assert all(w["silence"] is True and w["unknown"] is None for w in body["windows"])
    assert body["speech"] == 0.0


def test_level_and_speech_are_in_every_answer(novel_client: TestClient) -> None:
    body = _cluster(
        novel_client,
        wav_bytes(tone(440, 1.2, sample_rate=SAMPLE_RATE, amplitude=0.1), sample_rate=SAMPLE_RATE),
    )
    assert body["level_dbfs"] == pytest.approx(-23.0, abs=0.2)
    assert body["silence"] is False
    assert 0.0 <= body["speech"] <= 0.2
    assert all(isinstance(w["level_dbfs"], float) for w in body["windows"])


def test_a_model_published_before_novelty_answers_null(client: TestClient) -> None:
    body = _cluster(client, noise_wav(1.2))
    assert body["novelty"] is None and body["unknown"] is None
    assert all(w["novelty"] is None and w["unknown"] is None for w in body["windows"])
    assert body["silence"] is False
    response = client.get("/v1/models/scenes/versions/1/novelty")
    assert response.status_code == 200 and response.json()["available"] is False
    refused = client.put("/v1/models/scenes/versions/1/novelty", json={"false_alarm_rate": 0.1})
    assert_problem(refused, status=422, slug="no-novelty-score")


def test_the_false_alarm_rate_changes_without_retraining(
    novel_client: TestClient, novel_version: ModelVersion
) -> None:
    path = f"/v1/models/scenes/versions/{novel_version.version}/novelty"
    before = novel_client.get(path).json()
    assert before["available"] is True
    assert before["false_alarm_rate"] == before["calibrated_false_alarm_rate"] == 0.05
    response = novel_client.put(path, json={"false_alarm_rate": 0.5})
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["false_alarm_rate"] == 0.5 and after["threshold"] < before["threshold"]
    assert novel_client.get(path).json() == after


@pytest.mark.parametrize("rate", [0, -0.1, 0.51, 1, "often", None])
def test_false_alarm_rates_outside_the_range_are_422(
    novel_client: TestClient, novel_version: ModelVersion, rate: object
) -> None:
    path = f"/v1/models/scenes/versions/{novel_version.version}/novelty"
    response = novel_client.put(path, json={"false_alarm_rate": rate})
    body = assert_problem(response, status=422, slug="validation-error")
    assert "false_alarm_rate" in json.dumps(body)


def test_the_novelty_files_are_covered_by_the_checksums(
    store: ModelStore, novel_version: ModelVersion
) -> None:
    manifest = json.loads((novel_version.path / "MANIFEST.json").read_text())
    assert NOVELTY_JSON in json.dumps(manifest)
    store.verify(novel_version.ref)
    target = novel_version.path / NOVELTY_JSON
    os.chmod(target, 0o644)
    target.write_text(
        target.read_text().replace('"false_alarm_rate": 0.05', '"false_alarm_rate": 0.5')
    )
    with pytest.raises(Corrupted):
        store.verify(novel_version.ref)


def test_the_new_fields_are_in_the_openapi_schema_with_examples(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for schema in ("ClusterResult", "WindowPublic"):
        properties = schemas[schema]["properties"]
        for field in ("novelty", "unknown", "level_dbfs", "silence", "speech"):
            assert properties[field]["description"], (schema, field)
            assert properties[field]["examples"], (schema, field)
    example = schemas["ClusterResult"]["examples"][0]
    assert {"novelty", "unknown", "silence", "speech", "level_dbfs"} <= set(example)
    assert (
        "/v1/models/{name}/versions/{version}/novelty"
        in client.get("/openapi.json").json()["paths"]
    )
