"""Functions run in spawned child processes by the race tests (must be importable)."""

from __future__ import annotations

import json
from multiprocessing.synchronize import Event

from object_storage import ObjectExists, PreconditionFailed, S3Options, open_backend


def create_once(url: str, options: S3Options | None, key: str, worker: int, start: Event) -> bool:
    backend = open_backend(url, s3=options)
    start.wait(timeout=60)
    try:
        backend.create(key, f"worker {worker}".encode())
    except ObjectExists:
        return False
    return True


def append_many(
    url: str, options: S3Options | None, key: str, worker: int, rounds: int, start: Event
) -> int:
    """Append ``rounds`` entries to a JSON list by compare-and-swap; returns the lost races."""
    backend = open_backend(url, s3=options)
    start.wait(timeout=60)
    lost = 0
    for round_index in range(rounds):
        while True:
            current = backend.read(key)
            entries = json.loads(current.data)
            entries.append([worker, round_index])
            try:
                backend.replace(key, json.dumps(entries).encode(), etag=current.etag)
                break
            except PreconditionFailed:
                lost += 1
    return lost


def fill_cache(root: str, digest: str, worker: int, start: Event) -> tuple[str, bytes, bool]:
    """Fill one cache entry slowly (as a download would), racing another process."""
    import time
    from pathlib import Path

    from object_storage import ContentCache

    cache = ContentCache(root, max_bytes=1 << 30)
    start.wait(timeout=60)

    def fill(folder: Path) -> None:
        for index in range(20):
            (folder / f"part{index}").write_bytes(b"x" * 10_000)
            time.sleep(0.005)

    path, cached = cache.entry(digest, fill)
    data = b"".join((path / f"part{index}").read_bytes() for index in range(20))
    return str(path), data, cached
