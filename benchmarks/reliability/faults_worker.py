"""Faults of the job pipeline (see `benchmarks.reliability.faults`):

- ``worker-sigkill`` (`worker_sigkill`): SIGKILL a worker mid-training; another worker resumes
  the job from its checkpoint (the worker's recovery sweep) and it finishes.
- ``redis-restart`` (`redis_restart`): restart a private append-only Redis (the compose file's
  persistence) under a queued backlog; no job is lost and ``/v1/cluster`` answers throughout.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from benchmarks.reliability.fault_checks import Checks, wait_for
from benchmarks.reliability.harness import (
    RedisServer,
    publish_tiny_model,
    running_api,
    start_worker,
    tone_wav,
)


def _make_dataset(data_dir: Path, *, clips_per_class: int = 8) -> str:
    """A small two-class data set (low and high tones) ingested through the worker's store."""
    from dataset_store import DatasetStore

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for label, hz in (("low", 220.0), ("high", 1760.0)):
            for index in range(clips_per_class):
                wav = tone_wav(1.0, sample_rate=16000, hz=hz * (1 + 0.03 * index))
                bundle.writestr(f"{label}/{label}_{index}.wav", wav)
    archive.seek(0)
    manifest = DatasetStore(data_dir / "datasets").ingest_archive(archive, filename="tones.zip")
    return manifest.id


# --- (a) SIGKILL a worker during training ---------------------------------------------

_WORKER_ENV = {
    "UVAC_WORKER_MONITOR_INTERVAL": "1",
    "UVAC_WORKER_HEARTBEAT_GRACE": "3",
    "UVAC_RECOVERY_INTERVAL_SECONDS": "1",
    "UVAC_PROGRESS_INTERVAL_SECONDS": "0.5",
    "UVAC_LOG_LEVEL": "INFO",
}
_TINY_TRAINING = {
    "model_type": "cat-uvac",
    "n_clusters": 2,
    "epochs": 30,
    "batch_size": 4,
    "seed": 0,
    "model_name": "resumed",
    "features": {
        "sample_rate": 8000,
        "n_fft": 256,
        "win_length": 200,
        "hop_length": 80,
        "n_mels": 16,
        "window_seconds": 0.5,
        "window_hop_seconds": 0.25,
    },
    "model_hyperparameters": {
        "conv_channels": [4, 4, 4, 4],
        "gru_hidden": 8,
        "gru_layers": 1,
        "deconv_channels": [4, 4, 4],
    },
}


def _kill_session(process: Any) -> None:
    """Kill what is left of a worker we started: it and its work horse (own process group)."""
    try:
        family = [psutil.Process(process.pid)]
        family += family[0].children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    process.wait(timeout=10)


def worker_sigkill(*, work_dir: Path, redis_server: RedisServer) -> dict[str, Any]:
    from worker.queues import enqueue_training, get_job_info

    checks = Checks()
    data_dir = work_dir / "data"
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    dataset_id = _make_dataset(data_dir)
    worker_a = start_worker(
        data_dir=data_dir, redis_url=redis_server.url, log_path=work_dir / "worker-a.log",
        env=_WORKER_ENV,
    )  # fmt: skip
    worker_b = None
    try:
        job_id = enqueue_training(client, {"dataset_id": dataset_id, **_TINY_TRAINING})
        checkpoint_dir = data_dir / "checkpoints" / job_id

        def epoch() -> int:
            info = get_job_info(client, job_id) or {}
            return int((info.get("progress") or {}).get("epoch") or 0)

        reached = wait_for(lambda: epoch() >= 3 and any(checkpoint_dir.glob("*")), timeout=180)
        checks.add("training reached epoch 3 with a checkpoint on disk", reached, epoch())
        horse_pids = [child.pid for child in psutil.Process(worker_a.pid).children(recursive=True)]
        epoch_at_kill = epoch()
        os.kill(worker_a.pid, signal.SIGKILL)
        worker_a.wait(timeout=10)
        gone = wait_for(lambda: not any(psutil.pid_exists(pid) for pid in horse_pids), timeout=10)
        checks.add("the work horse died with its worker (no duplicate training)", gone, horse_pids)

        worker_b = start_worker(
            data_dir=data_dir, redis_url=redis_server.url, log_path=work_dir / "worker-b.log",
            env=_WORKER_ENV,
        )  # fmt: skip
        started = time.monotonic()

        def finished() -> dict[str, Any] | None:
            info = get_job_info(client, job_id)
            return info if info and info["status"] in ("finished", "failed", "canceled") else None

        info = wait_for(finished, timeout=300, interval=0.5) or get_job_info(client, job_id) or {}
        checks.add("the job finished after the kill", info.get("status") == "finished",
                   info.get("status"))  # fmt: skip
        result = info.get("result") or {}
        metadata: dict[str, Any] = {}
        if result.get("model"):
            from model_store import ModelStore

            metadata = ModelStore(data_dir / "models").get(result["model"]).metadata
        resumed_from = metadata.get("resumed_from_epoch")
        checks.add(
            "it resumed from its checkpoint, not from scratch",
            isinstance(resumed_from, int) and resumed_from >= 1,
            {"epoch_at_kill": epoch_at_kill, "resumed_from_epoch": resumed_from},
        )
        checks.add("the job was resumed exactly once", metadata.get("resumes") == 1,
                   metadata.get("resumes"))  # fmt: skip
        return {
            "name": "worker-sigkill",
            "what": "SIGKILL the worker (not its process group) during training",
            "survived": checks.survived,
            "checks": checks.items,
            "recovery_seconds": round(time.monotonic() - started, 1),
            "job_id": job_id,
        }
    finally:
        for process in (worker_a, worker_b):
            if process is not None:
                _kill_session(process)
        client.flushdb()
        client.close()


# --- (b) restart Redis under a queued backlog -----------------------------------------


class _ClusterPoller(threading.Thread):
    """POSTs a 1 s WAV to /v1/cluster in a loop and records every status."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.statuses: list[int | str] = []
        self.stop_event = threading.Event()
        self.wav = tone_wav(1.0)

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop_event.is_set():
                try:
                    response = client.post(
                        f"{self.url}/v1/cluster", files={"file": ("a.wav", self.wav)}
                    )
                    self.statuses.append(response.status_code)
                except httpx.HTTPError as error:
                    self.statuses.append(type(error).__name__)
                time.sleep(0.02)


def redis_restart(
    *, work_dir: Path, redis_server: RedisServer, backlog: int = 50
) -> dict[str, Any]:
    from worker.queues import TRAINING_QUEUE, queue_for

    checks = Checks()
    data_dir = work_dir / "data"
    publish_tiny_model(data_dir / "models")
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    dataset_id = _make_dataset(data_dir, clips_per_class=2)
    with running_api(
        data_dir=data_dir, redis_url=redis_server.url, log_path=work_dir / "api-redis.log"
    ) as server:
        job_ids = []
        for index in range(backlog):
            response = httpx.post(
                f"{server.url}/v1/train",
                json={"dataset_id": dataset_id, "n_clusters": 2, "seed": index},
                timeout=10,
            )
            if response.status_code == 202:
                job_ids.append(response.json()["id"])
        checks.add(f"{backlog} training jobs enqueued through the API", len(job_ids) == backlog,
                   len(job_ids))  # fmt: skip
        time.sleep(1.5)  # past one everysec fsync, as a real backlog would be
        poller = _ClusterPoller(server.url)
        poller.start()
        time.sleep(1.0)
        before = len(poller.statuses)
        down_at = time.monotonic()
        redis_server.stop()  # SIGTERM: what `docker compose restart redis` sends
        time.sleep(2.0)
        during = len(poller.statuses)
        redis_server.start()
        downtime = time.monotonic() - down_at
        time.sleep(2.0)
        poller.stop_event.set()
        poller.join(timeout=15)

        queued = {
            job_id.decode() if isinstance(job_id, bytes) else job_id
            for job_id in queue_for(client, TRAINING_QUEUE).get_job_ids()
        }
        lost = [job_id for job_id in job_ids if job_id not in queued]
        checks.add("no queued job lost across the restart", not lost,
                   {"queued_after": len(queued), "lost": lost[:10]})  # fmt: skip
        statuses = poller.statuses
        not_ok = [status for status in statuses if status != 200]
        checks.add(
            "/v1/cluster answered 200 throughout (before, during and after)",
            not not_ok and during > before and len(statuses) > during,
            {"requests": len(statuses), "during_outage": during - before, "non_200": not_ok[:10]},
        )
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        checks.add("/readyz is ready again after the restart", ready.status_code == 200,
                   ready.status_code)  # fmt: skip
    client.flushdb()
    client.close()
    return {
        "name": "redis-restart",
        "what": f"restart Redis (append-only, everysec) with {backlog} jobs queued",
        "survived": checks.survived,
        "checks": checks.items,
        "redis_downtime_seconds": round(downtime, 1),
    }
