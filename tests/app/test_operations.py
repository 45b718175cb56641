"""Liveness, readiness, health and metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from model_store import ModelVersion
from tests.app.helpers import assert_problem, noise_wav


def test_livez(empty_client: TestClient) -> None:
    assert empty_client.get("/livez").json() == {"status": "ok"}


def test_readyz_with_a_model_and_redis(client: TestClient, served_version: ModelVersion) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["model"]["ok"] is True and body["model"]["ref"] == served_version.ref
    assert body["redis"]["ok"] is True


def test_readyz_without_a_model_says_why(empty_client: TestClient) -> None:
    response = empty_client.get("/readyz")
    body = assert_problem(response, status=503, slug="not-ready")
    assert "scenes@production" in body["detail"]
    assert body["checks"]["model"]["ok"] is False
    health = empty_client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "not-ready"


def test_metrics_cover_routes_batches_and_the_model(
    client: TestClient, served_version: ModelVersion
) -> None:
    client.post("/v1/cluster", files={"file": ("a.wav", noise_wav(0.5))})
    client.get("/v1/jobs/does-not-exist")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    count = "uvac_http_request_duration_seconds_count"
    assert f'{count}{{method="POST",route="/v1/cluster",status="200"}} 1.0' in text
    assert 'route="/v1/jobs/{job_id}",status="404"' in text
    assert "uvac_inference_batch_size_count 1.0" in text
    assert (
        f'uvac_model_info{{name="scenes",ref="{served_version.ref}",'
        f'sha256="{served_version.sha256}",version="1"}} 1.0' in text
    )
    assert 'uvac_jobs{status="queued"} 0.0' in text


def test_job_counts_in_metrics(client: TestClient, redis_db, settings) -> None:
    from worker import queues

    for _ in range(2):
        queues.enqueue_training(
            redis_db, {"dataset_id": "ds_000000000000", "n_clusters": 2}, settings=settings
        )
    text = client.get("/metrics").text
    assert 'uvac_jobs{status="queued"} 2.0' in text
    assert 'uvac_jobs{status="failed"} 0.0' in text


def test_cors_is_closed_by_default_and_opens_for_configured_origins(
    client: TestClient, tmp_path, redis_db, served_version
) -> None:
    from app.main import create_app
    from tests.app.conftest import make_settings

    preflight = {
        "Origin": "https://fitting.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key",
    }
    closed = client.options("/v1/cluster", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    settings = make_settings(tmp_path, cors_origins="https://fitting.example")
    with TestClient(create_app(settings)) as open_client:
        opened = open_client.options("/v1/cluster", headers=preflight)
        assert opened.status_code == 200
        assert opened.headers["access-control-allow-origin"] == "https://fitting.example"
        other = open_client.options(
            "/v1/cluster", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
