"""Request bodies take each value as the JSON type their schema says: no `true` or `"0"` for a
number, no `1` for a boolean, no `8.0` for an integer (README, "The API")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.schemas.stream import StreamConfig
from service_config import Settings
from tests.app.helpers import LONG_CLIP_SECONDS, assert_problem, train_body, two_clip_dataset

DATASET = "ds_0123456789ab"
ALIAS = "/v1/models/scenes/aliases/production"
TRAIN = {"dataset_id": DATASET, "n_clusters": 4}


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", "/v1/train", {**TRAIN, "seed": True}, ["seed"]),
        ("POST", "/v1/train", {**TRAIN, "seed": "0"}, ["seed"]),
        ("POST", "/v1/train", {**TRAIN, "epochs": True}, ["epochs"]),
        ("POST", "/v1/train", {**TRAIN, "epochs": 8.0}, ["epochs"]),
        ("POST", "/v1/train", {**TRAIN, "learning_rate": "0.001"}, ["learning_rate"]),
        ("POST", "/v1/train", {**TRAIN, "held_out_share": False}, ["held_out_share"]),
        ("POST", "/v1/train", {**TRAIN, "features": {"n_mels": 64.0}}, ["features", "n_mels"]),
        ("POST", "/v1/train", {**TRAIN, "features": {"time_fit": 1}}, ["features", "time_fit"]),
        ("POST", "/v1/train", {**TRAIN, "n_clusters": {"min": 2, "max": "4"}}, ["n_clusters"]),
        (
            "POST",
            "/v1/train",
            {**TRAIN, "n_clusters": {"min": 2, "max": 4}, "sweep": {"seeds": [True, 2]}},
            ["sweep", "seeds", "0"],
        ),
        (
            "POST",
            "/v1/distill",
            {"teacher_ref": "scenes", "dataset_id": DATASET, "epochs": True},
            ["epochs"],
        ),
        (
            "POST",
            "/v1/distill",
            {"teacher_ref": "scenes", "dataset_id": DATASET, "seed": "0"},
            ["seed"],
        ),
        (
            "POST",
            "/v1/prepare",
            {"dataset_id": DATASET, "features": {"n_mels": "64"}},
            ["features", "n_mels"],
        ),
        ("PUT", ALIAS, {"version": True}, ["version", "version"]),
        ("PUT", ALIAS, {"version": "3"}, ["version", "version"]),
        ("PUT", ALIAS, {"version": 3, "force": 1}, ["version", "force"]),
        ("PUT", ALIAS, {"rollback": 1}, ["rollback", "rollback"]),
        (
            "PUT",
            "/v1/models/scenes/versions/1/novelty",
            {"false_alarm_rate": True},
            ["false_alarm_rate"],
        ),
        (
            "PUT",
            "/v1/models/scenes/versions/1/novelty",
            {"false_alarm_rate": "0.1"},
            ["false_alarm_rate"],
        ),
    ],
)
def test_a_value_of_another_json_type_is_a_422_at_its_field(
    client: TestClient, method: str, path: str, body: dict[str, Any], where: list[Any]
) -> None:
    response = client.request(method, path, json=body)
    problem = assert_problem(response, status=422, slug="validation-error")
    locations = [error["loc"] for error in problem["errors"]]
    assert ["body", *where] in locations, locations


def test_numbers_may_be_integers_and_presets_are_named_by_string(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    dataset_id = two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)
    body = train_body(dataset_id, lambda_kl=1, temperature_start=1, temperature_end=1)
    response = client.post("/v1/train", json={**body, "preset": "paper"})
    assert response.status_code == 202, response.text
    assert response.json()["params"]["lambda_kl"] == 1


@pytest.mark.parametrize(
    "config",
    [
        '{"type": "config", "sample_rate": 16000.0}',
        '{"type": "config", "sample_rate": true}',
        '{"type": "config", "hold_s": "1"}',
    ],
)
def test_a_stream_config_is_strict_too(config: str) -> None:
    with pytest.raises(ValidationError):
        StreamConfig.model_validate_json(config)
    assert StreamConfig.model_validate_json('{"type": "config", "hold_s": 1}').hold_s == 1.0
