"""End to end: real `python -m worker.main` processes, the real engine, the real Redis (db 11).

Each test trains a tiny Cat. UVAC (K = 2, 16 mel bins, quarter-second windows, a few epochs)
on six generated 0.5 s tones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from dataset_store import DatasetStore
from model_store import ModelStore, NotFound
from service_config import Settings
from tests.worker.audio_samples import write_tone_folder
from tests.worker.conftest import REDIS_URL
from worker import queues

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_FEATURES = {
    "n_mels": 16,
    "n_fft": 256,
    "win_length": 256,
    "hop_length": 128,
    "window_seconds": 0.25,
    "window_hop_seconds": 0.25,
}
TINY_MODEL = {
    "conv_channels": [4, 8, 8, 16],
    "gru_hidden": 16,
    "gru_layers": 1,
    "deconv_channels": [8, 8, 4],
}


def worker_environment(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "UVAC_DATA_DIR": str(settings.data_dir),
        "UVAC_REDIS_URL": REDIS_URL,
        "UVAC_TORCH_THREADS": "1",
        "UVAC_DEVICE": "cpu",
        "UVAC_WORKER_MONITOR_INTERVAL": str(settings.worker_monitor_interval),
        "UVAC_WORKER_HEARTBEAT_GRACE": str(settings.worker_heartbeat_grace),
        "UVAC_RECOVERY_INTERVAL_SECONDS": str(settings.recovery_interval_seconds),
        "UVAC_PROGRESS_INTERVAL_SECONDS": str(settings.progress_interval_seconds),
        "UVAC_CANCEL_POLL_SECONDS": str(settings.cancel_poll_seconds),
    }


class Workers:
    """Starts worker processes and makes sure none outlives the test."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *queue_names: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.main", "--queues", *queue_names],
            cwd=REPO_ROOT,
            env=worker_environment(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.log_dir.glob("worker-*.log"))
        )

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # RQ's warm shutdown
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(settings, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def dataset_id(settings: Settings, tmp_path: Path) -> str:
    tones = write_tone_folder(tmp_path / "tones", per_class=3)
    return DatasetStore(settings.datasets_path).register_folder(tones).id


def train_params(dataset_id: str, *, epochs: int) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "model_type": "cat-uvac",
        "n_clusters": 2,
        "model_name": "tones",
        "epochs": epochs,
        "batch_size": 8,
        "seed": 0,
        "preset": "words-logmel",  # a tiny log-mel network; the default preset's encoder is slower
        "features": TINY_FEATURES,
        "model_hyperparameters": TINY_MODEL,
    }


def wait_for(
    condition: Callable[[], Any], *, timeout: float, what: str, workers: Workers, poll: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{workers.logs()}")


def info_of(redis_conn: Redis, job_id: str) -> dict[str, Any]:
    info = queues.get_job_info(redis_conn, job_id)
    assert info is not None
    return info


def meta_of(redis_conn: Redis, job_id: str) -> dict[str, Any]:
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer).get_meta()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # [state, ppid, ...]: the name may hold spaces


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def test_a_small_train_job_publishes_a_version_and_shows_progress(
    redis_conn: Redis, settings: Settings, workers: Workers, dataset_id: str
) -> None:
    job_id = queues.enqueue_training(
        redis_conn, train_params(dataset_id, epochs=6), settings=settings
    )
    workers.start(queues.TRAINING_QUEUE)

    progress_while_running: list[dict[str, Any]] = []

    def finished() -> dict[str, Any] | None:
        info = info_of(redis_conn, job_id)
        if info["status"] == "started" and info["progress"]:
            progress_while_running.append(info["progress"])
        if info["status"] in ("finished", "failed"):
            return info
        return None

    info = wait_for(finished, timeout=180, what="the training job", workers=workers)

    assert info["status"] == "finished", workers.logs()
    assert info["error"] is None
    result = info["result"]
    assert result["model"] == "tones:v1"
    assert set(result["metrics"]) == {"loss", "accuracy", "nmi", "clusters_used", "computed_on"}
    assert result["metrics"]["accuracy"] is not None
    # Through a real worker too: the held-out part and the run's warnings reach the result.
    assert (
        result["held_out"]["recordings"] == 2 and result["held_out"]["metrics"]["recordings"] == 2
    )
    assert [warning["code"] for warning in result["warnings"]] == ["small-data"]
    assert result["epochs"] == {"run": 6, "most": 6}  # words-logmel trains every epoch
    store = ModelStore(settings.model_store_path)
    version = store.get("tones")  # "latest" moved to the new version
    assert version.ref == "tones:v1"
    assert result["sha256"] == version.sha256
    metadata = version.metadata
    assert metadata["model_type"] == "cat-uvac"
    assert metadata["n_clusters"] == 2
    assert metadata["hyperparameters"]["gru_hidden"] == 16
    assert metadata["feature_config"]["n_mels"] == 16
    assert metadata["seed"] == 0
    manifest = DatasetStore(settings.datasets_path).get(dataset_id)
    assert metadata["dataset"] == {
        "id": dataset_id,
        "digest": manifest.digest,
        "files": 6,
        "labels": ["high", "low"],
    }
    assert metadata["job_id"] == job_id
    assert metadata["code_version"] and metadata["created_at"]
    assert [record["epoch"] for record in metadata["training_history"]] == [1, 2, 3, 4, 5, 6]
    assert not (settings.checkpoints_path / job_id).exists()

    # Progress was visible while the job ran, epoch by epoch, with an estimate of time left.
    assert progress_while_running, "no progress seen while the job was running"
    training = [p for p in progress_while_running if p["phase"] == "training"]
    epochs_seen = {progress["epoch"] for progress in training}
    assert epochs_seen <= set(range(1, 7)) and len(epochs_seen) >= 2, epochs_seen
    assert all(progress["epochs"] == 6 for progress in training)
    assert any(progress["eta_seconds"] is not None for progress in training)
    # After the epochs the job says what it does, not "epoch 6/6, eta 0".
    phases = [progress["phase"] for progress in progress_while_running]
    assert set(phases) <= {"partition", "training", "matching", "publishing"}, phases
    assert info["progress"]["phase"] == "publishing" and info["progress"]["epoch"] is None


def test_cancel_a_queued_job_and_a_running_one(
    redis_conn: Redis, settings: Settings, workers: Workers, dataset_id: str
) -> None:
    queued_id = queues.enqueue_training(
        redis_conn, train_params(dataset_id, epochs=2), settings=settings
    )
    assert queues.cancel_job(redis_conn, queued_id)["status"] == "canceled"

    running_id = queues.enqueue_training(
        redis_conn, train_params(dataset_id, epochs=500), settings=settings
    )
    workers.start(queues.TRAINING_QUEUE)
    wait_for(
        lambda: ((info_of(redis_conn, running_id)["progress"] or {}).get("epoch") or 0) >= 1,
        timeout=120,
        what="the first epoch",
        workers=workers,
    )

    asked = time.monotonic()
    queues.cancel_job(redis_conn, running_id)
    info = wait_for(
        lambda: (
            (i := info_of(redis_conn, running_id))["status"] in ("canceled", "finished", "failed")
            and i
        ),
        timeout=30,
        what="the cancellation",
        workers=workers,
    )
    took = time.monotonic() - asked

    assert info["status"] == "canceled", workers.logs()
    assert took < 5, f"cancellation took {took:.1f} s"
    assert (info["progress"]["epoch"] or 0) < 500  # None: stopped in the partition start
    # RQ's own record agrees once the worker has handled the return.
    wait_for(
        lambda: (
            Job.fetch(running_id, connection=redis_conn, serializer=JSONSerializer)
            .get_status()
            .value
            == "canceled"
        ),
        timeout=10,
        what="RQ's canceled status",
        workers=workers,
    )
    canceled, total = queues.list_jobs(redis_conn, status="canceled")
    assert total == 2 and {item["id"] for item in canceled} == {queued_id, running_id}
    with pytest.raises(NotFound):
        ModelStore(settings.model_store_path).get("tones")
    assert not (settings.checkpoints_path / running_id).exists()
    assert "progress" not in meta_of(redis_conn, queued_id)  # the queued one never ran


def wait_for_checkpoints(
    redis_conn: Redis, settings: Settings, job_id: str, *, workers: Workers
) -> int:
    """Wait until the job trains its third epoch with at least two checkpointed; return the
    checkpoint's epoch."""
    checkpoint = settings.checkpoints_path / job_id / "checkpoint.json"

    def checkpointed_epoch() -> int:
        progress = info_of(redis_conn, job_id)["progress"] or {}
        if (progress.get("epoch") or 0) < 3 or not checkpoint.is_file():
            return 0
        return int(json.loads(checkpoint.read_text())["epoch"])

    return int(
        wait_for(checkpointed_epoch, timeout=120, what="two checkpointed epochs", workers=workers)
    )


def test_sigkill_of_the_worker_mid_training_resumes_from_the_checkpoint(
    redis_conn: Redis, settings: Settings, workers: Workers, dataset_id: str
) -> None:
    epochs = 40
    job_id = queues.enqueue_training(
        redis_conn, train_params(dataset_id, epochs=epochs), settings=settings
    )
    first = workers.start(queues.TRAINING_QUEUE)
    checkpointed_epoch = wait_for_checkpoints(redis_conn, settings, job_id, workers=workers)
    children = children_of(first.pid)  # the work horse (training) and RQ's scheduler
    assert children, "the worker runs its job in a forked work horse"
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert checkpointed_epoch >= 2
    # No orphan trains on: the horse (and the scheduler) die with their worker.
    wait_for(
        lambda: not any(is_running(child) for child in children),
        timeout=5,
        what="the killed worker's children to die",
        workers=workers,
    )
    assert info_of(redis_conn, job_id)["status"] == "started"  # nobody knows yet

    workers.start(queues.TRAINING_QUEUE)
    info = wait_for(
        lambda: (i := info_of(redis_conn, job_id))["status"] in ("finished", "failed") and i,
        timeout=180,
        what="the resumed job",
        workers=workers,
    )

    assert info["status"] == "finished", workers.logs()
    meta = meta_of(redis_conn, job_id)
    assert meta["resumes"] == 1
    assert meta["resumed_from_epoch"] >= checkpointed_epoch >= 2
    store = ModelStore(settings.model_store_path)
    version = store.get("tones")
    assert version.ref == info["result"]["model"] == "tones:v1"  # published once
    assert version.metadata["resumed_from_epoch"] == meta["resumed_from_epoch"]
    history = version.metadata["training_history"]
    assert [record["epoch"] for record in history] == list(range(1, epochs + 1))


def test_an_evaluation_job_writes_the_report_with_its_figures(
    redis_conn: Redis, settings: Settings, workers: Workers, dataset_id: str
) -> None:
    train_id = queues.enqueue_training(
        redis_conn, train_params(dataset_id, epochs=2), settings=settings
    )
    # Every recording (training ones included) so that the figures have clips to show.
    evaluate_params = {"model_ref": "tones@latest", "dataset_id": dataset_id, "split": "all"}
    evaluate_id = queues.enqueue_evaluation(redis_conn, evaluate_params, settings=settings)
    # One worker per queue, as deployed; evaluation waits for the model to exist.
    workers.start(queues.TRAINING_QUEUE)
    wait_for(
        lambda: info_of(redis_conn, train_id)["status"] in ("finished", "failed"),
        timeout=180,
        what="the training job",
        workers=workers,
    )
    workers.start(queues.EVALUATION_QUEUE)
    info = wait_for(
        lambda: (i := info_of(redis_conn, evaluate_id))["status"] in ("finished", "failed") and i,
        timeout=180,
        what="the evaluation job",
        workers=workers,
    )

    assert info["status"] == "finished", workers.logs()
    summary = info["result"]["report"]
    assert info["result"]["model"] == "tones:v1"
    assert summary["n_clips"] == 6
    assert 0.5 <= summary["accuracy"] <= 1.0
    assert summary["evaluated_on"]["split"] == "all"
    assert summary["evaluated_on"]["used_for_training"] == 4
    assert summary["evaluated_on"]["warning"].startswith("4 of these 6 recordings were used")
    report_dir = ModelStore(settings.model_store_path).report_path("tones:v1")
    assert report_dir is not None
    names = {path.name for path in report_dir.iterdir()}
    # A version the worker trained has its cluster map, drawn in place of the latent PCA.
    figures = {
        "cluster_map.png",
        "cluster_sizes.png",
        "confusion_matrix.png",
        "training_curves.png",
    }
    assert names == {"report.json", "index.html", "cluster_map.json", *figures}
    for figure in figures:
        assert (report_dir / figure).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    report = json.loads((report_dir / "report.json").read_text())
    assert [row["method"] for row in report["rows"]] == [
        "cat-uvac",
        "K-means (same features)",
        "labels as clusters",
    ]
    assert len(report["clips"]) == 6
    page = (report_dir / "index.html").read_text()
    assert all(f'src="{figure}"' in page for figure in figures)
    assert 'class="warning" role="alert"' in page


def test_a_warm_shutdown_hands_the_running_job_back_to_the_queue(
    redis_conn: Redis, settings: Settings, workers: Workers, dataset_id: str
) -> None:
    epochs = 40
    job_id = queues.enqueue_training(
        redis_conn, train_params(dataset_id, epochs=epochs), settings=settings
    )
    first = workers.start(queues.TRAINING_QUEUE)
    checkpointed_epoch = wait_for_checkpoints(redis_conn, settings, job_id, workers=workers)

    asked = time.monotonic()
    first.send_signal(signal.SIGTERM)  # what `docker stop` sends
    try:
        exit_code = first.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not stop after SIGTERM\n{workers.logs()}")
    assert exit_code == 0
    assert time.monotonic() - asked < 10, "the worker waited for the whole training run"
    info = info_of(redis_conn, job_id)
    assert info["status"] == "queued", workers.logs()
    assert (info["progress"]["epoch"] or 0) < epochs
    assert meta_of(redis_conn, job_id)["handoffs"] == 1
    assert (settings.checkpoints_path / job_id / "checkpoint.json").is_file()

    workers.start(queues.TRAINING_QUEUE)
    info = wait_for(
        lambda: (i := info_of(redis_conn, job_id))["status"] in ("finished", "failed") and i,
        timeout=180,
        what="the handed-over job",
        workers=workers,
    )
    assert info["status"] == "finished", workers.logs()
    meta = meta_of(redis_conn, job_id)
    assert meta["resumed_from_epoch"] >= checkpointed_epoch
    assert "resumes" not in meta  # handed over, not recovered from a dead worker
    version = ModelStore(settings.model_store_path).get("tones")
    assert version.ref == info["result"]["model"] == "tones:v1"
    history = version.metadata["training_history"]
    assert [record["epoch"] for record in history] == list(range(1, epochs + 1))
