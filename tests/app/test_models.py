"""Model routes: list, versions, one version, reports, aliases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dataset_store import DatasetStore
from model_store import ModelStore, ModelVersion
from service_config import Settings
from tests.app.conftest import publish_tiny_model
from tests.app.helpers import assert_problem
from tests.worker.audio_samples import write_unlabelled_recordings
from tests.worker.test_held_out import unlabelled_params
from uvac.training.pipeline import train_model
from worker.jobs import run_training


def test_list_models(client: TestClient, store: ModelStore, served_version: ModelVersion) -> None:
    publish_tiny_model(store, seed=2, alias=None)
    body = client.get("/v1/models").json()
    assert body["count"] == 1
    (model,) = body["data"]
    assert model["name"] == "scenes"
    assert model["version_count"] == 2
    assert model["latest_version"] == 2
    assert model["aliases"] == {"latest": 2, "production": 1}


def test_versions_are_paginated_newest_first(client: TestClient, store: ModelStore) -> None:
    for seed in range(1, 4):
        publish_tiny_model(store, seed=seed, alias=None)
    page = client.get("/v1/models/scenes/versions", params={"limit": 2}).json()
    assert page["count"] == 4
    assert [item["version"] for item in page["data"]] == [4, 3]
    rest = client.get("/v1/models/scenes/versions", params={"offset": 2, "limit": 2}).json()
    assert [item["version"] for item in rest["data"]] == [2, 1]
    assert_problem(client.get("/v1/models/nothing/versions"), status=404, slug="model-not-found")
    store.write_report("scenes:v3", files={"report.json": b"{}"})
    listed = client.get("/v1/models/scenes/versions").json()["data"]
    assert [item["has_report"] for item in listed] == [False, True, False, False]
    assert all(item["metrics"] is None for item in listed)


def test_one_version_with_metadata_aliases_and_metrics(
    client: TestClient, store: ModelStore, served_version: ModelVersion
) -> None:
    body = client.get(f"/v1/models/scenes/versions/{served_version.version}").json()
    assert body["ref"] == served_version.ref
    assert body["sha256"] == served_version.sha256
    assert "production" in body["aliases"]
    assert body["metadata"] == {"seed": 0}
    assert body["metrics"] is None and body["has_report"] is False
    store.write_report(
        served_version.ref,
        files={"report.json": json.dumps({"metrics": {"nmi": 0.5}}).encode()},
    )
    body = client.get(f"/v1/models/scenes/versions/{served_version.version}").json()
    assert body["metrics"] == {"evaluation": {"nmi": 0.5}} and body["has_report"] is True
    assert_problem(client.get("/v1/models/scenes/versions/9"), status=404, slug="model-not-found")
    assert_problem(client.get("/v1/models/scenes/versions/0"), status=422, slug="validation-error")


def test_reports_and_their_files(
    client: TestClient, store: ModelStore, served_version: ModelVersion
) -> None:
    base = f"/v1/models/scenes/versions/{served_version.version}/report"
    body = assert_problem(client.get(base), status=404, slug="report-not-found")
    assert "POST /v1/evaluate" in body["detail"]
    # A version that does not exist is still the model's problem, not the report's.
    missing = client.get("/v1/models/scenes/versions/9/report")
    assert_problem(missing, status=404, slug="model-not-found")
    png = b"\x89PNG\r\n\x1a\nfake"
    store.write_report(
        served_version.ref,
        files={
            "report.json": b'{"metrics": {"accuracy": 0.9}}',
            "report.html": b"<html><img src='confusion.png'></html>",
            "confusion.png": png,
        },
    )
    assert client.get(base).json() == {"metrics": {"accuracy": 0.9}}
    html = client.get(f"{base}/report.html")
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in html.headers["content-security-policy"]
    image = client.get(f"{base}/confusion.png")
    assert image.headers["content-type"] == "image/png" and image.content == png
    for bad in ("missing.png", "..%2F..%2Fmetadata.json", ".hidden.png", "report.exe"):
        response = client.get(f"{base}/{bad}")
        assert response.status_code == 404, bad
        assert response.headers["content-type"].startswith("application/problem+json")
    assert_problem(client.get(f"{base}/missing.png"), status=404, slug="report-not-found")


def test_alias_validation(client: TestClient, served_version: ModelVersion) -> None:
    both = client.put("/v1/models/scenes/aliases/production", json={"version": 1, "rollback": True})
    assert_problem(both, status=422, slug="validation-error")
    neither = client.put("/v1/models/scenes/aliases/production", json={})
    assert_problem(neither, status=422, slug="validation-error")
    unknown = client.put("/v1/models/scenes/aliases/production", json={"version": 7})
    assert_problem(unknown, status=404, slug="model-not-found")
    unset = client.put("/v1/models/scenes/aliases/staging", json={"rollback": True})
    assert_problem(unset, status=404, slug="model-not-found")
    no_history = client.put("/v1/models/scenes/aliases/production", json={"rollback": True})
    assert_problem(no_history, status=409, slug="alias-conflict")
    bad_alias = client.put("/v1/models/scenes/aliases/Prod!", json={"version": 1})
    assert_problem(bad_alias, status=422, slug="validation-error")


def test_promoting_a_new_alias(client: TestClient, store: ModelStore, served_version) -> None:
    response = client.put("/v1/models/scenes/aliases/staging", json={"version": 1})
    assert response.status_code == 200
    assert store.get("scenes@staging").version == 1


def test_an_alias_beyond_the_bound_is_a_409_naming_it(
    client: TestClient, store: ModelStore, served_version
) -> None:
    from model_store.aliases import MAX_ALIASES_PER_MODEL

    for index in range(MAX_ALIASES_PER_MODEL - len(store.get("scenes:v1").aliases)):
        store.promote("scenes:v1", f"a{index}")
    response = client.put("/v1/models/scenes/aliases/extra", json={"version": 1})
    problem = assert_problem(response, status=409, slug="alias-conflict")
    assert f"{MAX_ALIASES_PER_MODEL} aliases" in problem["detail"]
    assert client.put("/v1/models/scenes/aliases/a0", json={"version": 1}).status_code == 200


def test_metrics_from_training_metadata_and_a_worker_report(
    client: TestClient, store: ModelStore
) -> None:
    version = publish_tiny_model(
        store,
        seed=4,
        alias=None,
        metadata={"training": {"final": {"loss": 12.5, "accuracy": 0.7, "nmi": 0.4}}},
    )
    report = {
        "dataset": {"id": "ds_0123456789ab"},
        "rows": [
            {"method": "model", "n_clips": 20, "accuracy": 0.8, "nmi": 0.6, "clusters_used": 3},
            {"method": "kmeans", "n_clips": 20, "accuracy": 0.5, "nmi": 0.3, "clusters_used": 3},
        ],
    }
    store.write_report(version.ref, files={"report.json": json.dumps(report).encode()})
    body = client.get(f"/v1/models/scenes/versions/{version.version}").json()
    training, evaluation = body["metrics"]["training"], body["metrics"]["evaluation"]
    assert set(body["metrics"]) == {"training", "evaluation"}
    assert training.pop("computed_on").startswith("the recordings the model was trained on")
    assert training == {"loss": 12.5, "accuracy": 0.7, "nmi": 0.4}
    # A report without `evaluated_on` (written before reports said so) is marked as such.
    assert evaluation.pop("computed_on").startswith("not recorded")
    assert evaluation == {
        "n_clips": 20,
        "accuracy": 0.8,
        "nmi": 0.6,
        "clusters_used": 3,
        "dataset_id": "ds_0123456789ab",
    }


def test_the_alias_body_is_exactly_one_of_version_or_rollback_in_the_schema(
    client: TestClient, served_version: ModelVersion
) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/models/{name}/aliases/{alias}"]["put"]["requestBody"]
    branches = body["content"]["application/json"]["schema"]["oneOf"]
    schemas = document["components"]["schemas"]
    resolved = [schemas[branch["$ref"].rsplit("/", 1)[-1]] for branch in branches]
    assert sorted(tuple(schema["required"]) for schema in resolved) == [("rollback",), ("version",)]
    assert all(schema["additionalProperties"] is False for schema in resolved)
    assert all(schema.get("examples") for schema in resolved)
    rollback = next(schema for schema in resolved if schema["required"] == ["rollback"])
    assert rollback["properties"]["rollback"]["const"] is True


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"version": 1, "rollback": True}, "give either"),
        ({}, "give either"),
        ({"rollback": False}, "rollback"),
        ({"version": 1, "surprise": 1}, "surprise"),
    ],
)
def test_alias_bodies_outside_the_schema_are_problems_that_say_why(
    client: TestClient, served_version: ModelVersion, body: dict[str, object], says: str
) -> None:
    response = client.put("/v1/models/scenes/aliases/production", json=body)
    problem = assert_problem(response, status=422, slug="validation-error")
    assert says in problem["detail"], problem


def _held_out(accuracy: float | None, nmi: float | None, **more: float) -> dict:
    metrics = {"recordings": 8, "accuracy": accuracy, "nmi": nmi, "clusters_used": 2, **more}
    return {"held_out": {"share": 0.2, "files": ["a.wav"], "metrics": metrics}}


def test_a_promotion_to_a_version_worse_on_held_out_recordings_needs_force(
    client: TestClient, store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    current = publish_tiny_model(store, seed=1, metadata=_held_out(0.75, 0.80))
    worse = publish_tiny_model(store, seed=2, metadata=_held_out(0.70, 0.81), alias=None)
    url = "/v1/models/scenes/aliases/production"

    refused = client.put(url, json={"version": worse.version})
    body = assert_problem(refused, status=409, slug="promotion-worsens-model")
    assert "held-out accuracy 0.700 against 0.750" in body["detail"]
    assert "nmi" not in body["detail"]  # better on NMI: not a reason
    assert body["figures"] == [
        {"figure": "accuracy", "new": 0.70, "current": 0.75, "higher_is_better": True}
    ]
    assert store.get("scenes@production").version == current.version  # unchanged

    with caplog.at_level("WARNING", logger="model_store.promotion"):
        forced = client.put(url, json={"version": worse.version, "force": True})
    assert forced.status_code == 200, forced.text
    assert forced.json()["worse_figures"][0]["figure"] == "accuracy"
    assert store.get("scenes@production").version == worse.version
    logged = f"forced promotion of {worse.ref} to @production over {current.ref}"
    assert any(logged in record.getMessage() for record in caplog.records)


def test_without_labels_a_version_answering_more_held_out_recordings_unknown_needs_force(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    datasets = DatasetStore(settings.datasets_path)
    # The same recordings' names, so the same ones are held out: noise in both data sets, but
    # in the second the held-out ones are tones, which its model answers as unknown.
    familiar = datasets.register_folder(write_unlabelled_recordings(tmp_path / "familiar")).id
    foreign = datasets.register_folder(
        write_unlabelled_recordings(tmp_path / "foreign", tones_held_out=True)
    ).id
    for dataset_id in (familiar, foreign):
        run_training(
            unlabelled_params(dataset_id), job=None, settings=settings, train_function=train_model
        )
    store = ModelStore(settings.model_store_path)
    current, new = store.get("hum:v1"), store.get("hum:v2")
    current_rate = current.metadata["held_out"]["metrics"]["novelty_rate"]
    new_rate = new.metadata["held_out"]["metrics"]["novelty_rate"]
    assert new.metadata["held_out"]["metrics"]["accuracy"] is None  # no labels to compare
    assert new_rate > current_rate
    url = "/v1/models/hum/aliases/production"
    assert client.put(url, json={"version": 1}).status_code == 200

    refused = client.put(url, json={"version": 2})

    body = assert_problem(refused, status=409, slug="promotion-worsens-model")
    assert body["figures"] == [
        {"figure": "novelty_rate", "new": new_rate, "current": current_rate,
         "higher_is_better": False}
    ]  # fmt: skip
    assert f"held-out novelty_rate {new_rate:.3f} against {current_rate:.3f}" in body["detail"]
    assert store.get("hum@production").version == 1
    forced = client.put(url, json={"version": 2, "force": True})
    assert forced.status_code == 200, forced.text
    assert [figure["figure"] for figure in forced.json()["worse_figures"]] == ["novelty_rate"]
    assert store.get("hum@production").version == 2


def test_a_promotion_that_is_not_worse_or_cannot_be_compared_goes_through(
    client: TestClient, store: ModelStore
) -> None:
    publish_tiny_model(store, seed=1, metadata=_held_out(None, None, novelty_rate=0.10))
    better = publish_tiny_model(
        store, seed=2, metadata=_held_out(None, None, novelty_rate=0.05), alias=None
    )
    unknown = publish_tiny_model(store, seed=3, metadata={"seed": 3}, alias=None)
    url = "/v1/models/scenes/aliases/production"
    # Without labels the held-out novelty rate decides (lower is better).
    assert client.put(url, json={"version": better.version}).json()["worse_figures"] == []
    worse = publish_tiny_model(
        store, seed=4, metadata=_held_out(None, None, novelty_rate=0.20), alias=None
    )
    refused = client.put(url, json={"version": worse.version})
    assert "novelty_rate 0.200 against 0.050 (lower is better)" in refused.json()["detail"]
    # A version without held-out figures has nothing to compare.
    assert client.put(url, json={"version": unknown.version}).status_code == 200
