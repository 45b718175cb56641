"""Functions run in spawned child processes by the concurrency tests (must be importable)."""

from __future__ import annotations

import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from model_store import ModelStore
from model_store.locking import model_lock

HANG_S = 120.0


def weights_payload(worker: int, round_index: int) -> bytes:
    return f"worker={worker} round={round_index};".encode() * 2000


def publish_many(root: str, worker: int, rounds: int, start: Event, results: Queue[Any]) -> None:
    store = ModelStore(Path(root))
    start.wait(timeout=60)
    for round_index in range(rounds):
        metadata = {"worker": worker, "round": round_index}
        with store.publish("scenes", metadata=metadata) as staging:
            (staging / "weights.safetensors").write_bytes(weights_payload(worker, round_index))
            (staging / "model.json").write_text('{"model_type": "kmeans"}')
        results.put((worker, round_index, staging.version.version, staging.version.sha256))


def hang_during_publish(root: str, flag_path: str, stage: str) -> None:
    """Get to ``stage`` of a publish, raise the flag file, then block until killed."""
    store = ModelStore(Path(root))

    def raise_flag_and_hang(*_args: object) -> None:
        Path(flag_path).write_text(stage)
        time.sleep(HANG_S)

    if stage == "holding-lock":
        with model_lock(Path(root) / "scenes", timeout_s=10):
            raise_flag_and_hang()
        return
    if stage == "before-rename":
        # Stop inside the commit: lock held, metadata.json and MANIFEST.json written.
        import model_store.store as store_module

        store_module.rename_no_replace = raise_flag_and_hang  # type: ignore[assignment]
    with (
        store.publish("scenes", metadata={"stage": stage}) as staging,
        (staging / "weights.safetensors").open("wb") as stream,
    ):
        stream.write(b"\x00" * 4096)
        stream.flush()
        if stage == "writing":
            raise_flag_and_hang()
        stream.write(b"\x01" * 4096)


def publish_many_to_url(
    url: str, options: Any, cache_dir: str, worker: int, rounds: int, start: Event
) -> list[tuple[int, int, int, str]]:
    """Publish ``rounds`` versions of "scenes" to the store at ``url`` (another "host": its
    own cache folder); returns (worker, round, version, sha256) for each."""
    from model_store.opening import open_model_store

    store = open_model_store(
        url, s3=options, cache_dir=Path(cache_dir), cache_max_bytes=64 * 1024 * 1024
    )
    start.wait(timeout=60)
    published = []
    for round_index in range(rounds):
        with store.publish("scenes", metadata={"worker": worker, "round": round_index}) as staging:
            (staging / "weights.safetensors").write_bytes(weights_payload(worker, round_index))
        published.append((worker, round_index, staging.version.version, staging.version.sha256))
    return published
