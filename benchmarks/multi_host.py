"""The multi-host simulation: two API processes and two workers that share only Redis and S3.

Each process gets its own empty ``UVAC_DATA_DIR`` (its cache and scratch space) and the same
``UVAC_STORAGE_URL`` (``s3://bucket/prefix`` with models/, datasets/, checkpoints/ beneath);
credentials come from the usual ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``. The bundled
model is published to S3 as ``scenes:v1`` @production first. Then: a data set is uploaded
through API A and listed by API B; a 2-epoch training job is submitted through API A and
watched through API B; whichever worker takes it trains on the data set read from S3 and
publishes ``scenes:v2``; API A promotes it; API B must answer ``/v1/cluster`` with it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from app.default_model import publish_default_model
from benchmarks.server_harness import free_port
from model_store import open_model_store
from tests import seaweedfs_server
from tests.worker.audio_samples import wav_bytes

REPO = Path(__file__).resolve().parent.parent


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(6):
            archive.writestr(f"low/low_{index}.wav", wav_bytes(220 + 10 * index, seconds=0.6))
            archive.writestr(f"high/high_{index}.wav", wav_bytes(3000 + 50 * index, seconds=0.6))
    return buffer.getvalue()


def _wait(condition: Callable[[], Any], *, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = condition()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.3)


def run_multi_host(
    *, storage_url: str, server: seaweedfs_server.SeaweedServer, redis_url: str, work: Path
) -> dict[str, Any]:
    options = server.options()
    seed_store = open_model_store(
        f"{storage_url}/models", s3=options, cache_dir=work / "seed", cache_max_bytes=1 << 30
    )
    publish_default_model(store_root=seed_store, serve_ref="scenes@production")
    base_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "UVAC_STORAGE_URL": storage_url,
        "UVAC_S3_ENDPOINT_URL": str(options.endpoint_url),
        "UVAC_S3_REGION": str(options.region),
        "AWS_ACCESS_KEY_ID": str(options.access_key_id),
        "AWS_SECRET_ACCESS_KEY": str(options.secret_access_key),
        "UVAC_REDIS_URL": redis_url,
        "UVAC_SERVE_MODEL": "scenes@production",
        "UVAC_DEVICE": "cpu",
        "UVAC_TORCH_THREADS": "1",
        "UVAC_MODEL_POLL_SECONDS": "0.5",
        "UVAC_PROGRESS_INTERVAL_SECONDS": "0.5",
    }
    for key in ("UVAC_API_KEYS", "UVAC_S3_ACCESS_KEY_ID", "UVAC_S3_SECRET_ACCESS_KEY"):
        base_env.pop(key, None)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    urls: dict[str, str] = {}
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def start(name: str, command: list[str]) -> None:
        data_dir = work / name
        data_dir.mkdir(parents=True)
        with (logs / f"{name}.log").open("wb") as log:
            processes[name] = subprocess.Popen(
                command, cwd=REPO, env={**base_env, "UVAC_DATA_DIR": str(data_dir)},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    for api in ("api-a", "api-b"):
        port = free_port()
        urls[api] = f"http://127.0.0.1:{port}"
        start(api, [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
                    "--host", "127.0.0.1", "--port", str(port), "--no-access-log"])  # fmt: skip
    for worker in ("worker-a", "worker-b"):
        start(worker, [sys.executable, "-m", "worker.main", "--name", worker])
    steps: dict[str, Any] = {}
    began = time.monotonic()
    try:
        a = httpx.Client(base_url=urls["api-a"], timeout=60)
        b = httpx.Client(base_url=urls["api-b"], timeout=60)
        for client in (a, b):
            _wait(lambda c=client: c.get("/readyz").status_code == 200, seconds=180, what="ready")
        steps["both_apis_ready_s"] = round(time.monotonic() - began, 1)

        uploaded = a.post("/v1/datasets", files={"file": ("tones.zip", _archive())})
        dataset = uploaded.json()
        steps["upload_status_api_a"] = uploaded.status_code
        steps["dataset_seen_by_api_b"] = b.get(f"/v1/datasets/{dataset['id']}").status_code == 200

        submitted = a.post(
            "/v1/train",
            json={"dataset_id": dataset["id"], "model_type": "cat-uvac", "n_clusters": 2,
                  "model_name": "scenes", "epochs": 2, "seed": 1},
        )  # fmt: skip
        steps["train_status_api_a"] = submitted.status_code
        job_path = submitted.headers["location"]
        trained_at = time.monotonic()
        job = _wait(
            lambda: (j := b.get(job_path).json())["status"] in ("finished", "failed") and j,
            seconds=600,
            what="the training job",
        )
        steps["job_status_seen_by_api_b"] = job["status"]
        steps["job_s"] = round(time.monotonic() - trained_at, 1)
        steps["published"] = (job.get("result") or {}).get("model")
        steps["trained_on"] = [
            worker
            for worker in ("worker-a", "worker-b")
            if any((work / worker / "cache" / "datasets" / "recordings").glob("[0-9a-f]*"))
        ]
        promoted = a.put("/v1/models/scenes/aliases/production", json={"version": 2})
        steps["promote_status_api_a"] = promoted.status_code
        promoted_at = time.monotonic()

        def served_by_b() -> str | None:
            answer = b.post("/v1/cluster", files={"file": ("t.wav", wav_bytes(220, seconds=0.6))})
            ref = answer.json().get("model", {}).get("ref") if answer.status_code == 200 else None
            return ref if ref == "scenes:v2" else None

        steps["served_by_api_b"] = _wait(served_by_b, seconds=60, what="API B to serve v2")
        steps["api_b_switched_s"] = round(time.monotonic() - promoted_at, 2)
    except (TimeoutError, KeyError, ValueError) as error:
        steps["error"] = f"{type(error).__name__}: {error}"
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    steps["passed"] = bool(
        "error" not in steps
        and steps.get("upload_status_api_a") == 201
        and steps.get("dataset_seen_by_api_b")
        and steps.get("job_status_seen_by_api_b") == "finished"
        and steps.get("published") == "scenes:v2"
        and len(steps.get("trained_on", [])) == 1
        and steps.get("promote_status_api_a") == 200
        and steps.get("served_by_api_b") == "scenes:v2"
    )
    steps["processes"] = ["api-a", "api-b", "worker-a", "worker-b"]
    steps["logs"] = "kept in the run's temporary folder"
    return steps
