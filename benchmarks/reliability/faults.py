"""Fault injection with real processes. Each fault returns ``{"name", "survived", "checks"}``
where ``checks`` lists every condition that was verified with its observed value.

- ``worker-sigkill``: SIGKILL a worker mid-training; another worker resumes the job from its
  checkpoint (the worker's recovery sweep) and it finishes.
- ``redis-restart``: restart a private append-only Redis (the compose file's persistence)
  under a queued backlog; no job is lost and ``/v1/cluster`` answers throughout.
- ``corrupt-weights``: promote a version whose weights file has one byte flipped; it is
  refused, the previous version keeps serving, ``/readyz`` says why.
- ``huge-upload``: a request declaring a 10 GB body (and one streaming without a length) is
  refused early with 413 and the server's memory stays flat.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import socket
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import redis

from benchmarks.reliability.harness import (
    MODEL_NAME,
    ApiServer,
    RedisServer,
    publish_tiny_model,
    running_api,
    start_worker,
    tone_wav,
)

logger = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024


class Checks:
    """Collects named checks; the fault survived when every one passed."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, what: str, ok: bool, observed: Any = None) -> bool:
        self.items.append({"check": what, "ok": bool(ok), "observed": observed})
        logger.info("  [%s] %s (%s)", "ok" if ok else "FAILED", what, observed)
        return bool(ok)

    @property
    def survived(self) -> bool:
        return bool(self.items) and all(item["ok"] for item in self.items)


def _wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


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

        reached = _wait_for(lambda: epoch() >= 3 and any(checkpoint_dir.glob("*")), timeout=180)
        checks.add("training reached epoch 3 with a checkpoint on disk", reached, epoch())
        horse_pids = [child.pid for child in psutil.Process(worker_a.pid).children(recursive=True)]
        epoch_at_kill = epoch()
        os.kill(worker_a.pid, signal.SIGKILL)
        worker_a.wait(timeout=10)
        gone = _wait_for(lambda: not any(psutil.pid_exists(pid) for pid in horse_pids), timeout=10)
        checks.add("the work horse died with its worker (no duplicate training)", gone, horse_pids)

        worker_b = start_worker(
            data_dir=data_dir, redis_url=redis_server.url, log_path=work_dir / "worker-b.log",
            env=_WORKER_ENV,
        )  # fmt: skip
        started = time.monotonic()

        def finished() -> dict[str, Any] | None:
            info = get_job_info(client, job_id)
            return info if info and info["status"] in ("finished", "failed", "canceled") else None

        info = _wait_for(finished, timeout=300, interval=0.5) or get_job_info(client, job_id) or {}
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


# --- (c) a corrupted weights file in the promoted version -----------------------------


def _served_ref(server: ApiServer) -> str | None:
    response = httpx.post(
        f"{server.url}/v1/cluster", files={"file": ("a.wav", tone_wav(1.0))}, timeout=10
    )
    return response.json()["model"]["ref"] if response.status_code == 200 else None


def corrupt_weights(*, server: ApiServer, store_root: Path) -> dict[str, Any]:
    checks = Checks()
    previous = _served_ref(server)
    checks.add("a version serves before the fault", previous is not None, previous)
    version = publish_tiny_model(store_root, seed=1, alias=None)
    weights = next(version.path.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    position = len(data) - 7  # inside the tensor data, past the JSON header
    os.chmod(weights, 0o644)  # versions are published read-only; a disk does not ask
    data[position] ^= 0x01
    weights.write_bytes(bytes(data))
    response = httpx.put(
        f"{server.url}/v1/models/{MODEL_NAME}/aliases/production",
        json={"version": version.version},
        timeout=10,
    )
    checks.add("the promotion itself is recorded", response.status_code == 200,
               response.status_code)  # fmt: skip

    def refused() -> dict[str, Any] | None:
        body = httpx.get(f"{server.url}/readyz", timeout=10).json()
        model = body.get("model") or body.get("checks", {}).get("model") or {}
        return body if model.get("last_refused") else None

    readiness = _wait_for(refused, timeout=15) or {}
    model_check = readiness.get("model") or {}
    reason = str(model_check.get("last_refused") or "")
    checks.add("the corrupted version is refused and /readyz says why",
               version.ref in reason, reason[:300])  # fmt: skip
    checks.add("/readyz still reports the previous version as served",
               model_check.get("ref") == previous, model_check.get("ref"))  # fmt: skip
    still = _served_ref(server)
    checks.add("/v1/cluster keeps answering with the previous version", still == previous, still)
    return {
        "name": "corrupt-weights",
        "what": f"flip one byte of {weights.name} in {version.ref}, promote it",
        "survived": checks.survived,
        "checks": checks.items,
    }


# --- (d) a 10 GB upload ---------------------------------------------------------------


def _raw_upload(
    server: ApiServer, *, path: str, declared: int | None, send_bytes: int, chunk: int = 64 * 1024
) -> dict[str, Any]:
    """Send headers, then the body slowly, until the server answers; never reads the body."""
    boundary = "reliabilityboundary"
    headers = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        "Connection: close",
    ]
    headers.append(
        f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    )
    started = time.monotonic()
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        part_head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="huge.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        ).encode()
        payload = part_head + bytes(chunk - len(part_head))
        connection.setblocking(False)
        while sent < send_bytes:
            body = payload if sent == 0 else bytes(chunk)
            frame = body if declared is not None else f"{len(body):x}\r\n".encode() + body + b"\r\n"
            try:
                connection.sendall(frame)
                sent += len(body)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            try:
                answer += connection.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            time.sleep(0.002)
        connection.setblocking(True)
        connection.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer:
                more = connection.recv(65536)
                if not more:
                    break
                answer += more
        except (TimeoutError, ConnectionResetError):
            pass
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 else None
    return {
        "status": status,
        "bytes_sent_before_answer": sent,
        "seconds_to_answer": round(time.monotonic() - started, 2),
    }


def huge_upload(*, server: ApiServer) -> dict[str, Any]:
    checks = Checks()
    rss_before = server.rss_bytes()
    declared = _raw_upload(
        server, path="/v1/cluster", declared=10 * 1024**3, send_bytes=8 * MEGABYTE
    )
    checks.add("10 GB declared on /v1/cluster: 413 before 8 MB were sent",
               declared["status"] == 413, declared)  # fmt: skip
    dataset = _raw_upload(
        server, path="/v1/datasets", declared=10 * 1024**3, send_bytes=8 * MEGABYTE
    )
    checks.add("10 GB declared on /v1/datasets: 413 before 8 MB were sent",
               dataset["status"] == 413, dataset)  # fmt: skip
    chunked = _raw_upload(server, path="/v1/cluster", declared=None, send_bytes=64 * MEGABYTE)
    checks.add("undeclared (chunked) 64 MB stream on /v1/cluster: 413 at the 20 MB cap",
               chunked["status"] == 413 and chunked["bytes_sent_before_answer"] < 64 * MEGABYTE,
               chunked)  # fmt: skip
    time.sleep(0.5)
    rss_after = server.rss_bytes()
    growth_mb = (rss_after - rss_before) / MEGABYTE
    checks.add("server RSS stays flat (< 32 MB growth)", growth_mb < 32, round(growth_mb, 1))
    still = httpx.post(
        f"{server.url}/v1/cluster", files={"file": ("a.wav", tone_wav(1.0))}, timeout=10
    )
    checks.add("the server still clusters afterwards", still.status_code == 200, still.status_code)
    return {
        "name": "huge-upload",
        "what": "Content-Length: 10737418240 then a slow stream; a chunked 64 MB stream",
        "survived": checks.survived,
        "checks": checks.items,
        "rss_before_mb": round(rss_before / MEGABYTE, 1),
        "rss_after_mb": round(rss_after / MEGABYTE, 1),
    }


# --- all of them ----------------------------------------------------------------------


def run_faults(*, work_dir: Path, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the named faults (default: all four), each isolated; a fault that raises fails."""
    wanted = names or ["worker-sigkill", "redis-restart", "corrupt-weights", "huge-upload"]
    results: list[dict[str, Any]] = []
    work_dir.mkdir(parents=True, exist_ok=True)

    def guarded(name: str, body: Callable[[], dict[str, Any]]) -> None:
        if name not in wanted:
            return
        logger.info("fault: %s", name)
        try:
            results.append(body())
        except Exception as error:  # a harness failure is reported, not hidden
            logger.exception("fault %s raised", name)
            results.append({"name": name, "survived": False, "checks": [],
                            "error": f"{type(error).__name__}: {error}"})  # fmt: skip

    redis_server = RedisServer(directory=work_dir / "redis").start()
    try:
        guarded("worker-sigkill", lambda: worker_sigkill(
            work_dir=work_dir / "sigkill", redis_server=redis_server))  # fmt: skip
        guarded("redis-restart", lambda: redis_restart(
            work_dir=work_dir / "redis-restart", redis_server=redis_server))  # fmt: skip
    finally:
        redis_server.stop()

    if "corrupt-weights" in wanted or "huge-upload" in wanted:
        data_dir = work_dir / "api" / "data"
        publish_tiny_model(data_dir / "models")
        api_redis = RedisServer(directory=work_dir / "api-redis").start()
        try:
            with running_api(
                data_dir=data_dir, redis_url=api_redis.url, log_path=work_dir / "api.log"
            ) as server:
                guarded("huge-upload", lambda: huge_upload(server=server))
                guarded("corrupt-weights", lambda: corrupt_weights(
                    server=server, store_root=data_dir / "models"))  # fmt: skip
        finally:
            api_redis.stop()
    return results
