"""The object store under races between processes and with its S3 server lost."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from model_store import NotFound, StoreUnavailable
from model_store.object_store import ObjectModelStore
from model_store.opening import open_model_store
from object_storage import S3Options
from tests import seaweedfs_server

from ._workers import publish_many_to_url, weights_payload

SPAWN = multiprocessing.get_context("spawn")
CACHE_BYTES = 64 * 1024 * 1024
_T = TypeVar("_T")


def test_two_processes_publishing_one_name_get_consecutive_versions(
    s3_url: str, s3_options: S3Options, tmp_path: Path
) -> None:
    rounds = 10
    start = SPAWN.Manager().Event()
    with ProcessPoolExecutor(2, mp_context=SPAWN) as pool:
        futures = [
            pool.submit(
                publish_many_to_url,
                s3_url,
                s3_options,
                str(tmp_path / f"host{w}"),
                w,
                rounds,
                start,
            )
            for w in (0, 1)
        ]
        start.set()
        outcomes = [row for future in futures for row in future.result(timeout=240)]
    assert sorted(version for _w, _r, version, _sha in outcomes) == list(range(1, 2 * rounds + 1))
    reader = open_model_store(
        s3_url, s3=s3_options, cache_dir=tmp_path / "reader", cache_max_bytes=CACHE_BYTES
    )
    for worker, round_index, number, sha256 in outcomes:
        verified = reader.load_verified(f"scenes:v{number}")
        assert verified.sha256 == sha256
        assert verified.metadata == {"worker": worker, "round": round_index}
        assert (verified.path / "weights.safetensors").read_bytes() == weights_payload(
            worker, round_index
        )
    assert reader.get("scenes@latest").version == 2 * rounds


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[seaweedfs_server.SeaweedServer]:
    """A server of this test's own, to stop and start again."""
    server = seaweedfs_server.SeaweedServer(tmp_path / "seaweedfs")
    server.start()
    try:
        yield server
    finally:
        server.remove()


def _store(server: seaweedfs_server.SeaweedServer, cache: Path) -> ObjectModelStore:
    store = open_model_store(
        f"s3://{seaweedfs_server.BUCKET}/models",
        s3=server.options(),
        cache_dir=cache,
        cache_max_bytes=CACHE_BYTES,
    )
    assert isinstance(store, ObjectModelStore)
    return store


def _when_back(load: Callable[[], _T], *, timeout_s: float = 30.0) -> _T:
    """``load()`` once the restarted server serves old objects (its volume server reports
    to its master a moment after the S3 port answers): until then only StoreUnavailable."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return load()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _stop_on_call(
    server: seaweedfs_server.SeaweedServer, target: Any, method: str, *, call: int
) -> None:
    """Make ``target.method`` stop the server just before its ``call``-th call goes out."""
    original = getattr(target, method)
    calls = {"n": 0}

    def stopping(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call:
            server.stop()
        return original(*args, **kwargs)

    setattr(target, method, stopping)


@pytest.mark.parametrize(("method", "call"), [("upload", 2), ("create", 1)])
def test_server_lost_mid_publish_leaves_no_visible_version(
    own_server: seaweedfs_server.SeaweedServer, tmp_path: Path, method: str, call: int
) -> None:
    """Stopped while the files upload (2nd file), or just before the version's record (the
    only create)."""
    store = _store(own_server, tmp_path / "cache")
    _stop_on_call(own_server, store.backend, method, call=call)
    with pytest.raises(StoreUnavailable) as caught, store.publish("scenes", metadata={}) as staging:
        (staging / "a.bin").write_bytes(b"a" * 100_000)
        (staging / "b.bin").write_bytes(b"b" * 100_000)
    assert seaweedfs_server.BUCKET in str(caught.value)

    own_server.start()
    fresh = _store(own_server, tmp_path / "other-cache")
    assert fresh.list_models() == []
    with pytest.raises(NotFound):
        fresh.get("scenes")
    with fresh.publish("scenes", metadata={"after": "restart"}) as staging:
        (staging / "a.bin").write_bytes(b"a" * 100_000)
    assert staging.version.version == 1
    assert fresh.load_verified("scenes@latest").metadata == {"after": "restart"}


def test_server_lost_mid_load_leaves_no_cache_entry(
    own_server: seaweedfs_server.SeaweedServer, tmp_path: Path
) -> None:
    with _store(own_server, tmp_path / "publisher").publish("scenes", metadata={}) as staging:
        (staging / "a.bin").write_bytes(b"a" * 100_000)
        (staging / "b.bin").write_bytes(b"b" * 100_000)
    reader = _store(own_server, tmp_path / "reader")
    _stop_on_call(own_server, reader.backend, "download", call=2)
    with pytest.raises(StoreUnavailable):
        reader.load_verified("scenes:v1")
    assert [p.name for p in (tmp_path / "reader" / "versions").iterdir()] == [".work"]
    assert list((tmp_path / "reader" / "versions" / ".work").iterdir()) == []

    own_server.start()
    loaded = _when_back(lambda: reader.load_verified("scenes:v1"))
    assert (loaded.path / "b.bin").read_bytes() == b"b" * 100_000
