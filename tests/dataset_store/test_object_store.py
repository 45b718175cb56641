"""Data sets on a folder and on a real S3 server (SeaweedFS): the same manifest and digest,
readable from another host, and nothing visible from an upload that did not finish."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataset_store import (
    DatasetStorageUnavailable,
    DatasetStore,
    ObjectDatasetStore,
    open_dataset_store,
)
from dataset_store.errors import ArchiveRejected, DatasetNotFound, DatasetStoreError
from object_storage import S3Options
from tests.worker.audio_samples import wav_bytes
from uvac.hashing import file_sha256

from .test_store import make_zip

CACHE_BYTES = 64 * 1024 * 1024
ENTRIES = {
    "low/a.wav": wav_bytes(220.0, seed=1),
    "low/b.wav": wav_bytes(230.0, seed=2),
    "high/c.wav": wav_bytes(1760.0, seed=3),
    "notes.txt": b"not audio",
}


@pytest.fixture(params=["file", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, S3Options | None]:
    if request.param == "file":
        return (tmp_path / "datasets").as_uri(), None
    return request.getfixturevalue("s3_url"), request.getfixturevalue("s3_options")


def _open(location: tuple[str, S3Options | None], host: Path) -> DatasetStore:
    url, options = location
    return open_dataset_store(url, s3=options, cache_dir=host, cache_max_bytes=CACHE_BYTES)


def test_an_upload_on_one_host_is_read_on_another(
    location: tuple[str, S3Options | None], tmp_path: Path
) -> None:
    api_host = _open(location, tmp_path / "api")
    manifest = api_host.ingest_archive(make_zip(ENTRIES), filename="rec.zip")
    assert [item.path for item in manifest.files] == ["high/c.wav", "low/a.wav", "low/b.wav"]
    assert manifest.labels == ["high", "low"]

    worker_host = _open(location, tmp_path / "worker")
    assert worker_host.get(manifest.id) == manifest
    files = worker_host.path(manifest.id)
    for item in manifest.files:
        assert file_sha256(files / item.path) == item.sha256
    assert worker_host.path(manifest.id) == files  # read once per host
    listed, total = worker_host.list()
    assert total == 1 and listed[0].id == manifest.id

    worker_host.delete(manifest.id)
    with pytest.raises(DatasetNotFound):
        api_host.get(manifest.id)
    assert api_host.list() == ([], 0)


def test_a_refused_upload_leaves_nothing(
    location: tuple[str, S3Options | None], tmp_path: Path
) -> None:
    store = _open(location, tmp_path / "api")
    with pytest.raises(ArchiveRejected):
        store.ingest_archive(make_zip({"notes.txt": b"no audio"}), filename="x.zip")
    assert store.list() == ([], 0)


def test_a_changed_recording_is_refused_on_another_host(
    s3_url: str, s3_options: S3Options, tmp_path: Path
) -> None:
    api_host = open_dataset_store(
        s3_url, s3=s3_options, cache_dir=tmp_path / "api", cache_max_bytes=CACHE_BYTES
    )
    manifest = api_host.ingest_archive(make_zip(ENTRIES), filename="rec.zip")
    assert isinstance(api_host, ObjectDatasetStore)
    key = f"{manifest.id}/files/low/a.wav"
    api_host.backend.delete(key)
    api_host.backend.create(key, wav_bytes(440.0, seed=9))
    worker_host = open_dataset_store(
        s3_url, s3=s3_options, cache_dir=tmp_path / "worker", cache_max_bytes=CACHE_BYTES
    )
    with pytest.raises(DatasetStoreError, match=r"low/a\.wav does not match"):
        worker_host.path(manifest.id)


def test_an_unreachable_server_is_a_503(s3_url: str, tmp_path: Path) -> None:
    store = open_dataset_store(
        s3_url,
        s3=S3Options(
            endpoint_url="http://127.0.0.1:9",
            access_key_id="a",
            secret_access_key="b",
            region="us-east-1",
            connect_timeout_s=0.5,
            max_attempts=1,
        ),
        cache_dir=tmp_path / "api",
        cache_max_bytes=CACHE_BYTES,
    )
    with pytest.raises(DatasetStorageUnavailable) as caught:
        store.get("ds_0123456789ab")
    assert caught.value.status == 503
