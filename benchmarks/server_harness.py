"""The serving benchmark's server: the served model in a temporary store, and the production
uvicorn command in a child process.

- `build_store` publishes the model as ``bench@production`` (``SERVE_REF``): the bundled
  default model when it is a Cat. UVAC (`bundle_is_cat_uvac`), else an untrained Cat. UVAC of
  the default preset.
- `running_server` starts the production command (`app.serve.uvicorn_command`)
  with ``UVAC_TORCH_THREADS`` at the API's default and ``UVAC_REDIS_URL`` (``REDIS_URL``), and
  waits for ``/readyz``; `ServerProcess` reads the server's CPU time and batch counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from app.default_model import publish_default_model
from app.serve import uvicorn_command
from benchmarks.common import BUNDLE_DIR, bundled_model_available, synthetic_trained_model
from model_store import ModelStore
from service_config import Settings
from uvac.training import TrainedModel, load_trained_model, save_trained_model

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVE_REF = "bench@production"
REDIS_URL = "redis://127.0.0.1:6379/15"
SERVER_TORCH_THREADS = 2  # the API's share of a 2-core host serving alone (uvac.device)
SERVER_ENCODER_PRECISION = Settings.model_fields["encoder_precision"].default


def bundle_is_cat_uvac() -> bool:
    """Whether the bundled default model exists and is a Cat. UVAC (the network the targets
    are about; a K-means placeholder bundle would cost far less to run)."""
    if not bundled_model_available():
        return False
    document = json.loads((BUNDLE_DIR / "model.json").read_text())
    return bool(document.get("model_type") == "cat-uvac")


def build_store(root: Path, *, model_choice: str = "auto") -> tuple[TrainedModel, str, Path]:
    """Publish the served model into a store at ``root``; the model as the server will load
    it, where it came from, and its version folder.

    ``model_choice``: ``"bundle"`` (the bundled default model, whatever its type),
    ``"preset"`` (an untrained Cat. UVAC of the default preset) or ``"auto"`` (the
    bundle when it is a Cat. UVAC, else the preset).
    """
    store = ModelStore(root)
    use_bundle = model_choice == "bundle" or (model_choice == "auto" and bundle_is_cat_uvac())
    if use_bundle:
        if not bundled_model_available():
            raise SystemExit(f"no bundled model in {BUNDLE_DIR}")
        publish_default_model(store_root=root, serve_ref=SERVE_REF)
        source = "bundle"
    else:
        trained, source = synthetic_trained_model(), "preset:default (untrained)"
        name, _, alias = SERVE_REF.partition("@")
        with store.publish(name, metadata={"benchmark": "serving", "source": source}) as staging:
            save_trained_model(Path(staging), trained)
        store.promote(staging.version.ref, alias)
    version = store.get(SERVE_REF)
    return load_trained_model(version.path), source, version.path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class RunningServer(Protocol):
    """What the load generator and `wait_ready` need of a server under test."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path

    def cpu_seconds(self) -> float: ...

    def batch_counters(self) -> tuple[float, float]: ...

    def early_start_counters(self) -> dict[str, float]: ...


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log_path: Path

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process, all threads."""
        return process_cpu_seconds(self.process.pid)

    def batch_counters(self) -> tuple[float, float]:
        """(sum, count) of the server's ``uvac_inference_batch_size`` histogram."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        values = {}
        for suffix in ("sum", "count"):
            match = re.search(rf"^uvac_inference_batch_size_{suffix} (\S+)$", text, re.M)
            values[suffix] = float(match.group(1)) if match else 0.0
        return values["sum"], values["count"]

    def early_start_counters(self) -> dict[str, float]:
        """The server's ``uvac_stream_early_starts_total``, by outcome."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        pattern = r'^uvac_stream_early_starts_total\{outcome="(\w+)"\} (\S+)$'
        return {outcome: float(value) for outcome, value in re.findall(pattern, text, re.M)}


@contextlib.contextmanager
def running_server(
    *, data_dir: Path, store_dir: Path, log_dir: Path, extra_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """The production uvicorn command in a child process, ready (``/readyz`` 200) on entry."""
    port = free_port()
    environment = {
        **os.environ,
        "UVAC_DATA_DIR": str(data_dir),
        "UVAC_MODEL_STORE_DIR": str(store_dir),
        "UVAC_SERVE_MODEL": SERVE_REF,
        "UVAC_REDIS_URL": REDIS_URL,
        "UVAC_TORCH_THREADS": str(SERVER_TORCH_THREADS),
        "UVAC_DEVICE": "cpu",
        **extra_env,
    }
    environment.pop("UVAC_API_KEYS", None)
    log_path = log_dir / f"uvicorn-{port}.log"
    command = uvicorn_command("127.0.0.1", port)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    server = ServerProcess(
        process=process, url=f"http://127.0.0.1:{port}", port=port, log_path=log_path
    )
    try:
        wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(server: RunningServer, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"uvicorn exited:\n{server.log_path.read_text()[-4000:]}")
        try:
            response = httpx.get(f"{server.url}/readyz", timeout=2)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.HTTPError as error:
            last = str(error)
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready after {timeout_s} s: {last}")
