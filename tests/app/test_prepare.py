"""`POST /v1/prepare`: a job that embeds a data set ahead of training."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service_config import Settings
from tests.app.helpers import assert_problem, two_clip_dataset


def test_prepare_answers_202_with_a_prepare_job(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    dataset_id = two_clip_dataset(settings.datasets_path, tmp_path)
    response = client.post("/v1/prepare", json={"dataset_id": dataset_id, "preset": "speech"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "prepare" and job["status"] == "queued"
    assert job["params"] == {"dataset_id": dataset_id, "preset": "speech"}
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert client.get(f"/v1/jobs/{job['id']}").json()["kind"] == "prepare"


def test_prepare_checks_the_data_set_and_the_body(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    dataset_id = two_clip_dataset(settings.datasets_path, tmp_path)
    assert_problem(
        client.post("/v1/prepare", json={"dataset_id": "ds_000000000000"}),
        status=404,
        slug="dataset-not-found",
    )
    for bad in ({"preset": "nope"}, {"epochs": 3}, {"features": {"no_such": 1}}):
        body = {"dataset_id": dataset_id, **bad}
        assert_problem(client.post("/v1/prepare", json=body), status=422, slug="validation-error")
