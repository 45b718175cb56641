"""The user's whole journey against `uvac-serve`, the one-command start of the README.

`uvac-serve` runs the real uvicorn server and a real RQ worker process against the real
Redis (database 13), and publishes the bundled default model into an empty store. The test
then does what the fitting backend does: cluster with the default model, upload a data set,
train through the worker while watching progress, evaluate, promote the new version and see
the running server answer with it, then roll back.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.audio_fixtures import noise, tone, wav_bytes
from tests.redis_address import redis_url_for_tests

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
REDIS_URL = redis_url_for_tests(13)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _start_service(data_dir: Path, *, redis_url: str, as_background_job: bool = False) -> Service:
    """Start `uvac-serve`; ``as_background_job``: with SIGINT ignored, as a shell's ``&`` starts
    it (and a CI runner may start the tests)."""
    port = _free_port()
    environment = {
        **os.environ,
        "UVAC_DATA_DIR": str(data_dir),
        "UVAC_REDIS_URL": redis_url,
        "UVAC_DEVICE": "cpu",
        "UVAC_TORCH_THREADS": "1",
        "UVAC_MODEL_POLL_SECONDS": "0.5",
        "UVAC_PROGRESS_INTERVAL_SECONDS": "0.2",
    }
    environment.pop("UVAC_API_KEYS", None)
    log_path = data_dir / "service.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.serve", "--port", str(port)],
            cwd=REPOSITORY,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_ignore_sigint if as_background_job else None,
        )
    service = Service(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    # "API on ..." is printed once the API answers, not while it is still starting.
    _wait_for(lambda: "API on http://" in log_path.read_text(), seconds=90, service=service)
    assert _get(service, "/livez") == 200
    return service


def _get(service: Service, path: str) -> int | None:
    try:
        return httpx.get(service.url + path, timeout=2).status_code
    except httpx.TransportError:
        return None


def _wait_for(condition: Any, *, seconds: float, service: Service) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if service.process.poll() is not None:
            raise AssertionError(f"uvac-serve exited:\n{service.log_path.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; service log:\n{service.log_path.read_text()}")
        time.sleep(0.2)


def _stop(service: Service, *, presses: int = 1) -> None:
    """Ctrl-C, ``presses`` times (a quarter of a second apart), then wait for the exit."""
    for press in range(presses):
        if press:
            time.sleep(0.25)
        service.process.send_signal(signal.SIGINT)
    try:
        service.process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait()


def _tone_archive() -> bytes:
    """Two labelled classes a model can tell apart: low tones and high-pass noise bursts."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(6):
            archive.writestr(f"low/low_{index}.wav", wav_bytes(tone(220 + 10 * index, 0.6)))
            archive.writestr(f"high/high_{index}.wav", wav_bytes(tone(3000 + 50 * index, 0.6)))
        archive.writestr("notes.txt", b"not audio")
    return buffer.getvalue()


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[Service]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    started = _start_service(tmp_path, redis_url=REDIS_URL)
    try:
        yield started
    finally:
        _stop(started)
        client.flushdb()


def _wait_for_job(http: httpx.Client, location: str, service: Service) -> list[dict[str, Any]]:
    """Poll a job until it ends; return every state seen."""
    seen: list[dict[str, Any]] = []

    def ended() -> bool:
        job = http.get(location).json()
        seen.append(job)
        return job["status"] in ("finished", "failed", "canceled")

    _wait_for(ended, seconds=240, service=service)
    return seen


def test_cluster_train_evaluate_promote_and_roll_back(service: Service) -> None:
    http = httpx.Client(base_url=service.url, timeout=30)
    _wait_for(lambda: _get(service, "/readyz") == 200, seconds=60, service=service)

    # The bundled default model answers at once.
    first = http.post("/v1/cluster", files={"file": ("rain.wav", wav_bytes(noise(2.0)))})
    assert first.status_code == 200, first.text
    default_model = first.json()["model"]
    assert default_model["ref"] == "scenes:v1"
    assert abs(sum(first.json()["probabilities"]) - 1) < 1e-4

    uploaded = http.post("/v1/datasets", files={"file": ("tones.zip", _tone_archive())})
    assert uploaded.status_code == 201, uploaded.text
    dataset = uploaded.json()
    assert len(dataset["files"]) == 12
    assert [entry["path"] for entry in dataset["rejected"]] == ["notes.txt"]

    submitted = http.post(
        "/v1/train",
        json={"dataset_id": dataset["id"], "model_type": "cat-uvac", "n_clusters": 2,
              "model_name": "scenes", "epochs": 4, "seed": 1},
    )  # fmt: skip
    assert submitted.status_code == 202, submitted.text
    location = submitted.headers["location"]
    states = _wait_for_job(http, location, service)
    final = states[-1]
    assert final["status"] == "finished", final
    assert final["result"]["model"] == "scenes:v2"
    assert any(state.get("progress") for state in states), "no progress was ever reported"
    trained = [s["progress"] for s in states if (s.get("progress") or {}).get("epochs")]
    assert trained and all(progress["epochs"] == 4 for progress in trained)
    # scenes:v1 exists, so the new version's clusters were matched to it before publishing.
    assert final["progress"]["phase"] == "publishing"

    evaluation = http.post(
        "/v1/evaluate", json={"model_ref": "scenes:v2", "dataset_id": dataset["id"]}
    )
    assert evaluation.status_code == 202, evaluation.text
    assert _wait_for_job(http, evaluation.headers["location"], service)[-1]["status"] == "finished"
    report = http.get("/v1/models/scenes/versions/2/report")
    assert report.status_code == 200, report.text
    page = http.get("/v1/models/scenes/versions/2/report/index.html")
    assert page.status_code == 200 and "<img" in page.text

    promoted = http.put("/v1/models/scenes/aliases/production", json={"version": 2})
    assert promoted.status_code == 200, promoted.text
    answer = http.post("/cluster", files={"file": ("tone.wav", wav_bytes(tone(220, 0.6)))})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["ref"] == "scenes:v2"
    assert answer.json()["n_clusters"] == 2

    rolled_back = http.put("/v1/models/scenes/aliases/production", json={"rollback": True})
    assert rolled_back.status_code == 200, rolled_back.text
    again = http.post("/v1/cluster", files={"file": ("tone.wav", wav_bytes(tone(220, 0.6)))})
    assert again.json()["model"] == default_model


def test_starts_an_embedded_redis_when_none_answers(tmp_path: Path) -> None:
    unused_port = _free_port()
    # The URL's port and database are the ones used.
    wanted = f"redis://127.0.0.1:{unused_port}/3"
    service = _start_service(tmp_path, redis_url=wanted, as_background_job=True)
    try:
        _wait_for(lambda: _get(service, "/readyz") == 200, seconds=60, service=service)
        assert (tmp_path / "redis" / "appendonly.aof").exists() or any(
            (tmp_path / "redis").glob("appendonlydir/*")
        )
        jobs = httpx.get(service.url + "/v1/jobs", timeout=5)
        assert jobs.status_code == 200, jobs.text
    finally:
        _stop(service, presses=2)  # an impatient second Ctrl-C still stops Redis too
    embedded = re.search(r"started an embedded one at (redis://\S+)", service.log_path.read_text())
    assert embedded is not None, service.log_path.read_text()
    assert embedded.group(1) == wanted
    left_running = redis.Redis.from_url(embedded.group(1), socket_timeout=2)
    try:
        assert service.process.returncode == 0
        with pytest.raises(redis.ConnectionError):
            left_running.ping()
    finally:
        with contextlib.suppress(redis.RedisError):
            left_running.shutdown(nosave=True)


def test_a_silent_redis_on_another_host_stops_the_start_with_the_reason(tmp_path: Path) -> None:
    environment = {**os.environ, "UVAC_DATA_DIR": str(tmp_path),
                   "UVAC_REDIS_URL": "redis://192.0.2.1:6379/0"}  # fmt: skip
    finished = subprocess.run(
        [sys.executable, "-m", "app.serve", "--port", str(_free_port())],
        cwd=REPOSITORY, env=environment, capture_output=True, timeout=60, text=True,
    )  # fmt: skip
    assert finished.returncode == 1
    assert "no Redis answers at 192.0.2.1:6379" in finished.stderr
    assert "Traceback" not in finished.stderr
