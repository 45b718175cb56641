"""ContentCache: bounded, least recently used first, whole entries only, safe across processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from object_storage import ContentCache

from ._workers import fill_cache

SPAWN = multiprocessing.get_context("spawn")
DIGESTS = [f"{index:064x}" for index in range(1, 5)]


def _writer(size: int) -> Callable[[Path], None]:
    def fill(folder: Path) -> None:
        (folder / "blob").write_bytes(b"x" * size)

    return fill


def test_entries_are_reused_and_the_least_recently_used_go_first(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, max_bytes=2500, grace_s=0)
    first, cached = cache.entry(DIGESTS[0], _writer(1000))
    assert not cached
    assert cache.entry(DIGESTS[0], _writer(1000)) == (first, True)
    cache.entry(DIGESTS[1], _writer(1000))
    os.utime(tmp_path / DIGESTS[1], (time.time() - 100, time.time() - 100))
    os.utime(tmp_path / DIGESTS[0], (time.time() - 50, time.time() - 50))
    cache.entry(DIGESTS[2], _writer(1000))  # 3000 bytes: the oldest use goes
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".work") == sorted(
        [DIGESTS[0], DIGESTS[2]]
    )


def test_recently_used_entries_are_never_evicted(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, max_bytes=10, grace_s=60)
    for digest in DIGESTS[:3]:
        cache.entry(digest, _writer(1000))
    assert len([p for p in tmp_path.iterdir() if p.name != ".work"]) == 3  # over, but in use


def test_a_failed_fill_leaves_no_entry(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path, max_bytes=1 << 20)

    def broken(folder: Path) -> None:
        (folder / "half").write_bytes(b"x")
        raise OSError("connection lost")

    with pytest.raises(OSError, match="connection lost"):
        cache.entry(DIGESTS[0], broken)
    assert not (tmp_path / DIGESTS[0]).exists()
    assert list((tmp_path / ".work").iterdir()) == []
    with pytest.raises(ValueError):
        cache.entry("../escape", _writer(1))


def test_two_processes_filling_one_digest_both_read_a_whole_entry(tmp_path: Path) -> None:
    start = SPAWN.Manager().Event()
    with ProcessPoolExecutor(2, mp_context=SPAWN) as pool:
        futures = [pool.submit(fill_cache, str(tmp_path), DIGESTS[0], w, start) for w in (0, 1)]
        start.set()
        outcomes = [future.result(timeout=120) for future in futures]
    assert {path for path, _data, _cached in outcomes} == {str(tmp_path / DIGESTS[0])}
    assert all(data == b"x" * 200_000 for _path, data, _cached in outcomes)
    assert list((tmp_path / ".work").iterdir()) == []
