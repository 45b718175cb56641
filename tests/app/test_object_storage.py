"""The API on S3 (a real SeaweedFS): settings by URL, serving, aliases, names, uploads, and
readiness when the object store cannot be reached."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from model_store import open_model_store
from object_storage import S3Options
from service_config import Settings
from tests.app.conftest import make_settings, publish_tiny_model
from tests.app.helpers import assert_problem, noise_wav, tone_wav


def _s3_settings(tmp_path: Path, url: str, options: S3Options) -> Settings:
    return make_settings(
        tmp_path / "host",
        storage_url=url,
        s3_endpoint_url=options.endpoint_url,
        s3_region=options.region,
        s3_access_key_id=options.access_key_id,
        s3_secret_access_key=options.secret_access_key,
    )


def test_storage_urls_derive_from_one_base_or_stay_folders(tmp_path: Path) -> None:
    folders = Settings(data_dir=tmp_path)
    assert folders.model_store_location == (tmp_path / "models").as_uri()
    assert folders.cache_path == tmp_path / "cache"
    based = Settings(
        data_dir=tmp_path, storage_url="s3://bucket/uvac/", checkpoints_url="file:///c"
    )
    assert based.model_store_location == "s3://bucket/uvac/models"
    assert based.datasets_location == "s3://bucket/uvac/datasets"
    assert based.checkpoints_location == "file:///c"
    secret = Settings(s3_secret_access_key="hush", s3_access_key_id="id")
    assert "hush" not in repr(secret)
    assert secret.s3_options().secret_access_key == "hush"


@pytest.fixture
def s3_client(
    tmp_path: Path, s3_url: str, s3_options: S3Options, redis_db: redis.Redis
) -> Iterator[TestClient]:
    settings = _s3_settings(tmp_path, s3_url, s3_options)
    publisher = open_model_store(
        f"{s3_url}/models", s3=s3_options, cache_dir=tmp_path / "publisher", cache_max_bytes=1 << 26
    )
    publish_tiny_model(publisher, seed=0)
    publish_tiny_model(publisher, seed=1, alias=None)
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_api_serves_promotes_and_names_from_s3(s3_client: TestClient) -> None:
    assert s3_client.get("/readyz").status_code == 200
    answer = s3_client.post("/v1/cluster", files={"file": ("a.wav", noise_wav(0.5))})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["ref"] == "scenes:v1"

    listed = s3_client.get("/v1/models").json()
    assert listed["data"][0]["aliases"] == {"latest": 2, "production": 1}
    promoted = s3_client.put("/v1/models/scenes/aliases/production", json={"version": 2})
    assert promoted.status_code == 200, promoted.text
    back = s3_client.put("/v1/models/scenes/aliases/production", json={"rollback": True})
    assert back.status_code == 200 and back.json()["version"] == 1

    named = s3_client.put("/v1/models/scenes/versions/1/clusters/0", json={"name": "Rain"})
    assert named.status_code == 200, named.text
    clusters = s3_client.get("/v1/models/scenes/versions/1/clusters").json()
    assert clusters["data"][0]["name"] == "Rain"


def test_an_upload_goes_to_s3(s3_client: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/one.wav", tone_wav(0.5, hz=300.0))
        archive.writestr("b/two.wav", tone_wav(0.5, hz=3000.0))
    uploaded = s3_client.post("/v1/datasets", files={"file": ("d.zip", buffer.getvalue())})
    assert uploaded.status_code == 201, uploaded.text
    dataset_id = uploaded.json()["id"]
    assert s3_client.get(f"/v1/datasets/{dataset_id}").status_code == 200


def test_s3_unreachable_at_start_is_not_ready_with_the_reason(
    tmp_path: Path, redis_db: redis.Redis
) -> None:
    secret = "the-secret-that-must-not-show"
    settings = make_settings(
        tmp_path,
        storage_url="s3://uvac-models/prod",
        s3_endpoint_url="http://127.0.0.1:9",
        s3_region="us-east-1",
        s3_access_key_id="someone",
        s3_secret_access_key=secret,
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    body = assert_problem(response, status=503, slug="not-ready")
    assert "s3://uvac-models/prod/models" in body["detail"]
    assert "127.0.0.1:9" in body["detail"]
    assert secret not in response.text
