"""The backend contract, run against a folder and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from object_storage import (
    ObjectBackend,
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    S3Options,
    StorageAccessDenied,
    StorageUnavailable,
    open_backend,
)
from tests import seaweedfs_server

from ._workers import append_many, create_once

SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=["file", "s3"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, S3Options | None]:
    if request.param == "file":
        return (tmp_path / "objects").as_uri(), None
    return request.getfixturevalue("s3_url"), request.getfixturevalue("s3_options")


@pytest.fixture
def backend(location: tuple[str, S3Options | None]) -> ObjectBackend:
    url, options = location
    return open_backend(url, s3=options)


def test_create_is_create_only(backend: ObjectBackend) -> None:
    etag = backend.create("a/b/one.json", b"first")
    with pytest.raises(ObjectExists):
        backend.create("a/b/one.json", b"second")
    stored = backend.read("a/b/one.json")
    assert stored.data == b"first"
    assert stored.etag == etag


def test_create_from_file_streams_and_is_create_only(
    backend: ObjectBackend, tmp_path: Path
) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(bytes(range(256)) * 5000)
    backend.create_from_file("blobs/w", source)
    with pytest.raises(ObjectExists):
        backend.create_from_file("blobs/w", source)
    target = tmp_path / "copy.bin"
    backend.download("blobs/w", target)
    assert target.read_bytes() == source.read_bytes()
    source.write_bytes(b"newer")
    backend.upload("blobs/w", source)  # unconditional: one writer's own data
    assert backend.read("blobs/w").data == b"newer"


def test_replace_is_compare_and_swap_on_the_etag(backend: ObjectBackend) -> None:
    first = backend.replace("aliases.json", b"1", etag=None)
    with pytest.raises(PreconditionFailed):
        backend.replace("aliases.json", b"again", etag=None)  # exists already
    second = backend.replace("aliases.json", b"2", etag=first)
    with pytest.raises(PreconditionFailed):
        backend.replace("aliases.json", b"stale", etag=first)
    with pytest.raises(PreconditionFailed):
        backend.replace("missing.json", b"x", etag=second)
    assert backend.read("aliases.json") == backend.read("aliases.json")
    assert backend.read("aliases.json").data == b"2"
    assert not backend.exists("missing.json")


def test_missing_objects_and_listing(backend: ObjectBackend, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        backend.read("nothing")
    with pytest.raises(ObjectNotFound):
        backend.download("nothing", tmp_path / "x")
    assert backend.list_keys("m/") == []
    for key in ["m/versions/v1/MANIFEST.json", "m/versions/v2/MANIFEST.json", "m/blobs/ab", "n/x"]:
        backend.create(key, b"-")
    assert backend.list_keys("m/") == [
        "m/blobs/ab",
        "m/versions/v1/MANIFEST.json",
        "m/versions/v2/MANIFEST.json",
    ]
    assert backend.list_folders("m/versions/") == ["v1", "v2"]
    assert backend.list_folders("") == ["m", "n"]
    written = backend.list_written("m/blobs/")
    assert [key for key, _at in written] == ["m/blobs/ab"]
    assert abs(written[0][1] - time.time()) < 120  # the storage's clock, near this one
    backend.delete("m/blobs/ab")
    backend.delete("m/blobs/ab")  # already gone: nothing happens
    assert not backend.exists("m/blobs/ab")
    with pytest.raises(ValueError):
        backend.read("../escape")


def test_two_processes_creating_one_key_one_wins(location: tuple[str, S3Options | None]) -> None:
    url, options = location
    start = SPAWN.Manager().Event()
    with ProcessPoolExecutor(2, mp_context=SPAWN) as pool:
        results = [
            pool.submit(create_once, url, options, "race/key", worker, start) for worker in (0, 1)
        ]
        start.set()
        outcomes = sorted(result.result(timeout=120) for result in results)
    assert outcomes == [False, True]


def test_two_processes_compare_and_swap_lose_no_update(
    location: tuple[str, S3Options | None],
) -> None:
    url, options = location
    backend = open_backend(url, s3=options)
    backend.create("counter.json", b"[]")
    start = SPAWN.Manager().Event()
    rounds = 15
    with ProcessPoolExecutor(2, mp_context=SPAWN) as pool:
        results = [
            pool.submit(append_many, url, options, "counter.json", worker, rounds, start)
            for worker in (0, 1)
        ]
        start.set()
        [result.result(timeout=120) for result in results]
    entries = json.loads(backend.read("counter.json").data)
    assert sorted(map(tuple, entries)) == [(w, r) for w in (0, 1) for r in range(rounds)]


def test_wrong_credentials_name_endpoint_and_bucket_never_the_secret(
    s3_options: S3Options, s3_url: str
) -> None:
    secret = "not-the-right-secret-value"
    wrong = S3Options(
        endpoint_url=s3_options.endpoint_url,
        region=s3_options.region,
        access_key_id=s3_options.access_key_id,
        secret_access_key=secret,
        max_attempts=1,
    )
    backend = open_backend(s3_url, s3=wrong)
    with pytest.raises(StorageAccessDenied) as caught:
        backend.check()
    message = str(caught.value)
    assert seaweedfs_server.BUCKET in message
    assert str(s3_options.endpoint_url) in message
    assert secret not in message


def test_an_unreachable_server_is_unavailable(s3_url: str) -> None:
    closed = seaweedfs_server._free_port_block()  # nothing listens there
    backend = open_backend(
        s3_url,
        s3=S3Options(
            endpoint_url=f"http://127.0.0.1:{closed}",
            access_key_id="a",
            secret_access_key="b",
            region="us-east-1",
            connect_timeout_s=0.5,
            max_attempts=1,
        ),
    )
    with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{closed}"):
        backend.check()
