"""The BentoML peer of the serving benchmark: `benchmarks.peers.bentoml_service` served by
``bentoml serve`` in a Python of its own (BentoML is not a dependency of the service's
environment; benchmarks/README.md says how to make that environment).

`measure_bentoml` runs both variants (``batched``: adaptive batching on; ``unbatched``: off),
one server at a time; `running_bentoml` starts one on the benchmark's model store with the
API's thread count and encoder precision, waits for ``/readyz`` and yields a `PeerServer`,
which the load generator drives like the API's server: its CPU time counts every process of
the server's tree (BentoML serves from child processes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load import load_point
from benchmarks.server_harness import free_port, process_cpu_seconds, wait_ready

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SERVICES = {"batched": "BatchedCluster", "unbatched": "UnbatchedCluster"}
PEER_PYTHON_ENV = "UVAC_BENCH_BENTOML_PYTHON"


def bentoml_in(python: str) -> tuple[str | None, str | None]:
    """(BentoML's version, None) when ``python`` imports bentoml, else (None, why not)."""
    try:
        probe = subprocess.run(
            [python, "-c", "import bentoml; print(bentoml.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except OSError as error:
        return None, f"{python}: {error}"
    if probe.returncode != 0:
        return None, f"{python} cannot import bentoml: {probe.stderr.strip()[-300:]}"
    return probe.stdout.strip(), None


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    tree, index = [pid], 0
    while index < len(tree):
        for task in Path(f"/proc/{tree[index]}/task").glob("*"):
            with contextlib.suppress(OSError):
                tree.extend(int(child) for child in (task / "children").read_text().split())
        index += 1
    return tree


@dataclass
class PeerServer:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's live processes, all threads."""
        total = 0.0
        for pid in _process_tree(self.process.pid):
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                total += process_cpu_seconds(pid)
        return total

    def batch_counters(self) -> tuple[float, float]:
        """(sum, count) of BentoML's adaptive batch size histogram (zeros when unbatched)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        values = {}
        for suffix in ("sum", "count"):
            pattern = rf"^bentoml_service_adaptive_batch_size_{suffix}(?:{{[^}}]*}})? (\S+)$"
            values[suffix] = sum(float(value) for value in re.findall(pattern, text, re.M))
        return values["sum"], values["count"]


@contextlib.contextmanager
def running_bentoml(
    *,
    python: str,
    variant: str,
    store_dir: Path,
    serve_ref: str,
    torch_threads: int,
    encoder_precision: str,
    log_dir: Path,
) -> Iterator[PeerServer]:
    """``bentoml serve`` of one variant, ready (``/readyz`` 200) on entry, stopped on exit."""
    port = free_port()
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "UVAC_MODEL_STORE_DIR": str(store_dir),
        "UVAC_SERVE_MODEL": serve_ref,
        "UVAC_TORCH_THREADS": str(torch_threads),
        "UVAC_ENCODER_PRECISION": encoder_precision,
        "BENTOML_HOME": str(log_dir / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    command = [
        python, "-m", "bentoml", "serve",
        f"benchmarks.peers.bentoml_service:{SERVICES[variant]}",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log_path = log_dir / f"bentoml-{variant}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = PeerServer(
        process=process, url=f"http://127.0.0.1:{port}", port=port, log_path=log_path
    )
    try:
        wait_ready(server, timeout_s=180.0)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def measure_bentoml(
    *,
    python: str,
    store_dir: Path,
    serve_ref: str,
    wav: bytes,
    n_clusters: int,
    concurrency: Sequence[int],
    warmup_s: float,
    seconds: float,
    torch_threads: int,
    encoder_precision: str,
    log_dir: Path,
) -> dict[str, Any]:
    """Both variants, one server at a time, at each concurrency; the best variant (by its
    throughput at the highest concurrency) is repeated at the top as ``c1``, ``c16``, ..."""
    version, problem = bentoml_in(python)
    if version is None:
        logger.warning("the BentoML peer is not measured: %s", problem)
        return {"measured": False, "reason": problem}
    variants: dict[str, dict[str, Any]] = {}
    for variant in SERVICES:
        with running_bentoml(
            python=python, variant=variant, store_dir=store_dir, serve_ref=serve_ref,
            torch_threads=torch_threads, encoder_precision=encoder_precision, log_dir=log_dir,
        ) as server:  # fmt: skip
            points = variants.setdefault(variant, {})
            for clients in concurrency:
                points[f"c{clients}"] = load_point(
                    server, wav=wav, n_clusters=n_clusters, concurrency=clients,
                    warmup_s=warmup_s, seconds=seconds,
                )  # fmt: skip
                logger.info("bentoml %s c%d: %s", variant, clients, points[f"c{clients}"])
    top = f"c{max(concurrency)}"
    best = max(variants, key=lambda name: variants[name][top]["throughput"])
    return {
        "measured": True,
        "bentoml_version": version,
        "service": "benchmarks/peers/bentoml_service.py",
        "settings": {
            "workers": 1,
            "request_threads": 1,
            "torch_threads": torch_threads,
            "encoder_precision": encoder_precision,
            "batched": {"max_batch_size": 64, "max_latency_ms": 10_000},
            "access_log": False,
        },
        "best_variant": best,
        **variants[best],
        "variants": variants,
    }
