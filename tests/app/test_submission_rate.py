"""Job submissions are rate-limited per caller: a 429 problem with Retry-After beyond the
allowance, counted for each API key (or client address) on its own."""

from __future__ import annotations

from pathlib import Path

import redis
from fastapi.testclient import TestClient

from app.main import create_app
from model_store import ModelStore
from tests.app.conftest import make_settings, publish_tiny_model
from tests.app.helpers import assert_problem, train_body, two_clip_dataset

KEYS = ["first-key-0123456789abcdef", "second-key-0123456789abcdef"]


def test_submissions_beyond_the_allowance_are_429_with_retry_after(
    tmp_path: Path, redis_db: redis.Redis
) -> None:
    settings = make_settings(tmp_path, job_submissions_per_minute=3, api_keys=KEYS)
    publish_tiny_model(ModelStore(settings.model_store_path))
    dataset = two_clip_dataset(settings.datasets_path, tmp_path)
    first, second = ({"X-API-Key": key} for key in KEYS)
    with TestClient(create_app(settings)) as client:
        body = train_body(dataset, n_clusters=2)
        for _ in range(3):
            assert client.post("/v1/train", json=body, headers=first).status_code == 202
        queued = redis_db.keys("rq:job:*")
        # Every kind counts against the same allowance, refused requests included.
        for path, job in [
            ("/v1/train", body),
            ("/train", body),
            ("/v1/evaluate", {"model_ref": "scenes:v1", "dataset_id": dataset}),
            ("/v1/distill", {"teacher_ref": "scenes:v1", "dataset_id": dataset}),
            ("/v1/prepare", {"dataset_id": dataset}),
            ("/v1/train", {"not": "a training"}),
        ]:
            response = client.post(path, json=job, headers=first)
            problem = assert_problem(response, status=429, slug="too-many-submissions")
            assert "3 job submissions a minute" in problem["detail"]
            assert 1 <= int(response.headers["retry-after"]) <= 60
        assert redis_db.keys("rq:job:*") == queued
        # Another key has its own allowance, and reading jobs is not a submission.
        assert client.post("/v1/train", json=body, headers=second).status_code == 202
        assert client.get("/v1/jobs", headers=first).status_code == 200


def test_zero_turns_the_limit_off(tmp_path: Path, redis_db: redis.Redis) -> None:
    settings = make_settings(tmp_path, job_submissions_per_minute=0)
    publish_tiny_model(ModelStore(settings.model_store_path))
    dataset = two_clip_dataset(settings.datasets_path, tmp_path)
    with TestClient(create_app(settings)) as client:
        for _ in range(5):
            response = client.post("/v1/train", json=train_body(dataset, n_clusters=2))
            assert response.status_code == 202
