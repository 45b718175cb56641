"""Real processes (spawn) racing on one store folder, and writers killed with SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from pathlib import Path

import pytest

from model_store import ModelStore, NotFound, StoreBusy

from ._workers import hang_during_publish, publish_many, weights_payload

WORKERS = 8
ROUNDS = 3
SPAWN = multiprocessing.get_context("spawn")


def _wait_for_flag(flag: Path, process: multiprocessing.process.BaseProcess) -> None:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert process.is_alive(), f"child exited early with {process.exitcode}"
        assert time.monotonic() < deadline, "child never reached the point to kill it at"
        time.sleep(0.02)


def test_concurrent_publishers_get_distinct_versions_that_all_verify(tmp_path: Path) -> None:
    root = tmp_path / "models"
    start = SPAWN.Event()
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=publish_many, args=(str(root), worker, ROUNDS, start, results))
        for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    start.set()
    outcomes: list[tuple[int, int, int, str]] = []
    deadline = time.monotonic() + 120
    while len(outcomes) < WORKERS * ROUNDS and time.monotonic() < deadline:
        try:
            outcomes.append(results.get(timeout=0.5))
        except queue.Empty:
            if not any(process.is_alive() for process in processes):
                break  # a child died: fail below instead of waiting out the deadline
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0] * WORKERS

    versions = sorted(version for _worker, _round, version, _sha in outcomes)
    assert versions == list(range(1, WORKERS * ROUNDS + 1))
    store = ModelStore(root)
    for worker, round_index, number, sha256 in outcomes:
        verified = store.load_verified(f"scenes:v{number}")
        assert verified.sha256 == sha256
        assert verified.metadata == {"worker": worker, "round": round_index}
        assert (verified.path / "weights.safetensors").read_bytes() == weights_payload(
            worker, round_index
        )
    assert store.get("scenes").version == WORKERS * ROUNDS
    assert list((root / ".staging").iterdir()) == []


@pytest.mark.parametrize("stage", ["writing", "holding-lock", "before-rename"])
def test_publisher_killed_with_sigkill_leaves_no_version(tmp_path: Path, stage: str) -> None:
    root = tmp_path / "models"
    flag = tmp_path / "flag"
    child = SPAWN.Process(target=hang_during_publish, args=(str(root), str(flag), stage))
    child.start()
    try:
        _wait_for_flag(flag, child)
        store = ModelStore(root, lock_timeout_s=0.3, stale_staging_after_s=None)
        if stage != "writing":
            # The child really holds the lock: a second writer cannot get in.
            with pytest.raises(StoreBusy), store.publish("scenes", metadata={}) as staging:
                (staging / "w").write_bytes(b"x")
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL

    store = ModelStore(root, lock_timeout_s=5, stale_staging_after_s=None)
    assert store.list_models() == []
    with pytest.raises(NotFound):
        store.get("scenes")

    # The kernel dropped the dead writer's lock: the next publish goes straight through.
    with store.publish("scenes", metadata={"after": stage}) as staging:
        (staging / "weights.safetensors").write_bytes(b"fresh")
    assert staging.version.version == 1
    assert store.load_verified("scenes@latest").metadata == {"after": stage}

    leftovers = store.cleanup_staging(max_age_s=0)
    assert leftovers == (0 if stage == "holding-lock" else 1)
    assert list((root / ".staging").iterdir()) == []
