"""Cluster listings and names (`/v1/models/{name}/versions/{v}/clusters`), the numbering a
version records applied to `/v1/cluster`, and sweep requests refused as 422 problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from model_store import ModelStore
from service_config import Settings
from tests.app.conftest import N_CLUSTERS, make_settings, publish_tiny_model
from tests.app.helpers import LONG_CLIP_SECONDS, assert_problem, noise_wav, two_clip_dataset

CLUSTERS = "/v1/models/scenes/versions/1/clusters"


def _cluster(client: TestClient, path: str = "/v1/cluster") -> dict[str, Any]:
    response = client.post(path, files={"file": ("a.wav", noise_wav(0.5), "audio/wav")})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_version_lists_its_clusters_with_recorded_facts(
    settings: Settings, store: ModelStore
) -> None:
    publish_tiny_model(store, metadata={
        "n_clusters": N_CLUSTERS,
        "cluster_names": {"1": "speech"},
        "clusters": [{"number": 1, "size": 7, "typical_clips": ["a/x.wav", "a/y.wav"]}],
        "cluster_identity": {"previous": "scenes:v0", "agreement": 0.9, "disappeared": [],
                             "clusters": [{"number": 1, "previous": 1, "new": False,
                                           "agreement": 0.95}]},
    })  # fmt: skip
    with TestClient(create_app(settings)) as client:
        body = client.get(CLUSTERS).json()
    assert body["count"] == body["n_clusters"] == N_CLUSTERS
    assert body["previous"] == "scenes:v0" and body["agreement"] == 0.9
    second = body["data"][1]
    assert second == {"number": 1, "name": "speech", "size": 7, "agreement": 0.95,
                      "previous_number": 1, "new": False,
                      "typical_clips": ["a/x.wav", "a/y.wav"], "needs_name": False,
                      "suggested_name": None, "kept_share": None}  # fmt: skip
    assert body["data"][0]["name"] is None and body["data"][0]["size"] is None


def test_a_weakly_matched_cluster_needs_a_name_and_shows_the_earlier_one(
    settings: Settings, store: ModelStore
) -> None:
    publish_tiny_model(store, metadata={
        "n_clusters": N_CLUSTERS,
        "cluster_names": {"0": "Rain"},
        "name_suggestions": {"1": {"name": "Helicopter", "previous": 1, "kept_share": 0.6}},
        "cluster_identity": {"previous": "scenes:v0", "agreement": 0.7, "disappeared": [],
                             "clusters": [{"number": 0, "previous": 0, "new": False,
                                           "kept_share": 0.95},
                                          {"number": 1, "previous": 1, "new": False,
                                           "kept_share": 0.6}]},
    })  # fmt: skip
    with TestClient(create_app(settings)) as client:
        body = client.get(CLUSTERS).json()
        assert body["share_for_name"] == 0.8
        kept, weak = body["data"][0], body["data"][1]
        assert kept["name"] == "Rain" and kept["needs_name"] is False
        assert kept["suggested_name"] is None and kept["kept_share"] == 0.95
        assert weak["name"] is None and weak["needs_name"] is True
        assert weak["suggested_name"] == "Helicopter" and weak["kept_share"] == 0.6
        # Naming it settles it.
        client.put(f"{CLUSTERS}/1", json={"name": "Rain and wind"})
        settled = client.get(CLUSTERS).json()["data"][1]
        assert settled["name"] == "Rain and wind" and settled["needs_name"] is False


def test_a_name_can_be_cleared_even_a_published_one(settings: Settings, store: ModelStore) -> None:
    publish_tiny_model(store, metadata={"n_clusters": N_CLUSTERS, "cluster_names": {"1": "Rain"}})
    with TestClient(create_app(settings)) as client:
        cleared = client.delete(f"{CLUSTERS}/1/name")
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["name"] is None
        assert client.get(CLUSTERS).json()["data"][1]["name"] is None
        client.put(f"{CLUSTERS}/0", json={"name": "Wind"})
        by_put = client.put(f"{CLUSTERS}/0", json={"name": None})
        assert by_put.status_code == 200 and by_put.json()["name"] is None
        assert all(cluster["name"] is None for cluster in client.get(CLUSTERS).json()["data"])
        assert_problem(
            client.delete(f"{CLUSTERS}/{N_CLUSTERS}/name"), status=422, slug="unknown-cluster"
        )


def test_a_name_set_shows_in_the_listing_and_in_cluster_answers(client: TestClient) -> None:
    answer = _cluster(client)
    assert answer["cluster_name"] is None
    number = answer["assignment"]
    response = client.put(f"{CLUSTERS}/{number}", json={"name": "  Café & bar (indoor)  "})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Café & bar (indoor)"
    listed = client.get(CLUSTERS).json()["data"][number]
    assert listed["name"] == "Café & bar (indoor)"
    assert _cluster(client)["cluster_name"] == "Café & bar (indoor)"  # no reload needed
    renamed = client.put(f"{CLUSTERS}/{number}", json={"name": "Bar"})
    assert renamed.json()["name"] == "Bar" and _cluster(client)["cluster_name"] == "Bar"


@pytest.mark.parametrize(
    ("cluster", "body", "slug"),
    [
        (N_CLUSTERS, {"name": "Rain"}, "unknown-cluster"),
        (0, {"name": "x" * 65}, "validation-error"),
        (0, {"name": ""}, "validation-error"),
        (0, {"name": "<script>alert(1)</script>"}, "invalid-cluster-name"),
        (0, {"name": "   "}, "invalid-cluster-name"),
        (0, {"name": "ok", "colour": "red"}, "validation-error"),
    ],
    ids=["no-such-cluster", "too-long", "empty", "markup", "blank", "extra-key"],
)
def test_bad_names_are_422_problems(
    client: TestClient, cluster: int, body: dict[str, Any], slug: str
) -> None:
    response = client.put(f"{CLUSTERS}/{cluster}", json=body)
    assert_problem(response, status=422, slug=slug)


def test_names_of_an_unknown_version_are_404(client: TestClient) -> None:
    assert_problem(client.get("/v1/models/scenes/versions/9/clusters"), status=404,
                   slug="model-not-found")  # fmt: skip
    response = client.put("/v1/models/scenes/versions/9/clusters/0", json={"name": "Rain"})
    assert_problem(response, status=404, slug="model-not-found")


def test_the_recorded_numbering_is_applied_when_serving(tmp_path: Path, redis_db) -> None:
    plain_store, renumbered_store = (
        ModelStore(tmp_path / "a" / "models"),
        ModelStore(tmp_path / "b" / "models"),
    )
    publish_tiny_model(plain_store)
    order = [2, 0, 1]  # number -> model output
    publish_tiny_model(renumbered_store, metadata={"cluster_identity": {"order": order}})
    answers = []
    for root in ("a", "b"):
        with TestClient(create_app(make_settings(tmp_path / root))) as client:
            answers.append(_cluster(client))
    plain, renumbered = answers
    assert renumbered["probabilities"] == [plain["probabilities"][i] for i in order]
    assert order[renumbered["assignment"]] == plain["assignment"]


@pytest.fixture
def dataset_id(settings: Settings, tmp_path: Path) -> str:
    return two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)


@pytest.mark.parametrize(
    ("n_clusters", "extra", "slug", "needle"),
    [
        ({"min": 6, "max": 3}, {}, "validation-error", "empty"),
        ({}, {}, "validation-error", "min"),
        ({"min": 1, "max": 3}, {}, "validation-error", "min"),
        ({"min": 2, "max": 60}, {}, "invalid-job-parameters", "at most 24"),
        ({"min": 2, "max": 14}, {"sweep": {"temperature_end": [0.5, 0.3]}},
         "invalid-job-parameters", "at most 24"),
        (4, {"sweep": {"seeds": [0, 1]}}, "validation-error", "range"),
        ({"min": 2, "max": 3}, {"sweep": {"seeds": [1, 1]}}, "validation-error", "differ"),
        ({"min": 2, "max": 3}, {"sweep": {"seeds": [0]}}, "validation-error", "seeds"),
    ],
    ids=["reversed", "empty-object", "below-two", "too-wide", "too-many-candidates",
         "sweep-without-range", "same-seeds", "one-seed"],
)  # fmt: skip
def test_bad_sweep_requests_are_422_problems(
    client: TestClient,
    dataset_id: str,
    n_clusters: Any,
    extra: dict[str, Any],
    slug: str,
    needle: str,
) -> None:
    body = {"dataset_id": dataset_id, "n_clusters": n_clusters, **extra}
    problem = assert_problem(client.post("/v1/train", json=body), status=422, slug=slug)
    assert needle in str(problem), problem


def test_a_sweep_request_is_queued_with_its_range(client: TestClient, dataset_id: str) -> None:
    body = {"dataset_id": dataset_id, "n_clusters": {"min": 2, "max": 4},
            "sweep": {"seeds": [0, 1], "lambda_kl": [0.05, 0.1]}}  # fmt: skip
    response = client.post("/v1/train", json=body)
    assert response.status_code == 202, response.text
    params = response.json()["params"]
    assert params["n_clusters"] == {"min": 2, "max": 4}
    assert params["sweep"] == {"seeds": [0, 1], "lambda_kl": [0.05, 0.1]}
