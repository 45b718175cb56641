"""Jobs on embedded data sets: the embedding cache's first and second job, and small-network
training on a busy host.

    .venv/bin/python benchmarks/embedding_jobs.py cache --dataset esc10   # about 3 minutes
    .venv/bin/python benchmarks/embedding_jobs.py cache --dataset fsdd    # about 4 minutes
    .venv/bin/python benchmarks/embedding_jobs.py busy                    # about 4 minutes

``cache``: a data set is registered in a fresh data folder (the service's `DatasetStore`, not
timed), then two training jobs run as the worker runs them (`worker.jobs.run_training`, the
data set's preset, the thread policy of a 2-core host with one service process): the first
embeds every recording into the cache beside the data sets, trains and records its clusters;
the second trains with another seed and matches its clusters to the first version's, both
models' embeddings read from the cache. Each job's wall time and its encoder calls (counted
on the encoder instance) go to ``embedding_cache.<esc10|large>`` in ``training_speed.json``,
with an evaluation's work (`evaluate_with_baselines` on the data set) timed once embedding
every recording, as before the cache, and once reading the cache (``evaluation``).

``busy``: Cat. UVAC (the speech preset's perceptrons, 60 epochs) on 3,000 embedded windows
(FSDD's speech-encoder embeddings, from the embedding cache the ``cache`` run filled, or
embedded here once), timed on the otherwise idle host and again while another process keeps
both cores busy (two processes spinning in plain Python, `_spin`), each with the policy's
thread count (1 for a small network); the old setting (2 threads) is timed for one epoch
on the same busy host for comparison. Goes to ``busy_host``.

Both merge their keys into ``benchmarks/results/training_speed.json`` with the machine's
load during the run (`benchmarks.common.LoadMonitor`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from benchmarks.common import RESULTS_DIR, LoadMonitor, machine_info, write_results  # noqa: E402
from dataset_store import DatasetStore, IngestLimits  # noqa: E402
from model_store import ModelStore  # noqa: E402
from service_config import Settings  # noqa: E402
from uvac.audio import (  # noqa: E402
    AudioFolder,
    EmbeddingWindower,
    configure_encoder_precision,
    embed_items,
    load_encoder,
)
from uvac.device import choose_thread_policy, configure_threads  # noqa: E402
from uvac.evaluation import evaluate_with_baselines  # noqa: E402
from uvac.training import (  # noqa: E402
    build_configs,
    load_trained_model,
    train_model,
    train_on_windows,
    training_windows_from_embeddings,
)
from worker import jobs as worker_jobs  # noqa: E402
from worker.job_support import dataset_items, embedding_cache  # noqa: E402
from worker.jobs import run_training  # noqa: E402

logger = logging.getLogger("benchmarks.embedding_jobs")

DATASETS = {
    # name: (folder, preset, key in the results, n_clusters)
    "esc10": (REPO_ROOT.parent / "shared" / "data" / "esc10", "scenes", "esc10", 10),
    "fsdd": (REPO_ROOT.parent / "shared" / "data" / "fsdd" / "recordings", "speech", "large", 10),
}
HOST_CORES = 2  # the machine the service was sized for
BUSY_EPOCHS = 60
OLD_THREADS_EPOCHS = 1
BUSY_CLUSTERS = 10


@contextmanager
def counted_encoder_calls(name: str) -> Iterator[list[int]]:
    """Each call of encoder ``name``'s ``embed`` (the windows it got) while the block runs."""
    encoder = load_encoder(name)
    original = encoder.embed
    calls: list[int] = []

    def embed(windows: Sequence[Tensor]) -> Tensor:
        calls.append(len(windows))
        return original(windows)

    encoder.embed = embed  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del encoder.embed


@contextmanager
def phase_clock() -> Iterator[list[tuple[str, float]]]:
    """(phase, time) each time the training job announces a phase (`worker.jobs.record`,
    which does nothing for a job run without RQ), so a job's seconds split by phase."""
    original = worker_jobs.record
    marks: list[tuple[str, float]] = []

    def record(job: Any, meta: dict[str, Any]) -> None:
        if "phase" in meta:
            marks.append((str(meta["phase"]), time.perf_counter()))
        original(job, meta)

    worker_jobs.record = record  # type: ignore[assignment]
    try:
        yield marks
    finally:
        worker_jobs.record = original


def timed_job(params: dict[str, Any], settings: Settings, encoder: str) -> dict[str, Any]:
    policy = choose_thread_policy(cores=HOST_CORES, processes=1)
    store = ModelStore(settings.model_store_path)
    with counted_encoder_calls(encoder) as calls, phase_clock() as marks:
        started = time.perf_counter()
        result = run_training(
            params, job=None, settings=settings, train_function=train_model, threads=policy
        )
        ended = time.perf_counter()
    # Each phase runs until the next one is announced; the first mark follows set-up.
    bounds = [("set-up", started), *marks, ("end", ended)]
    phases: dict[str, float] = {}
    for (phase, begun), (_, until) in itertools.pairwise(bounds):
        phases[phase] = round(phases.get(phase, 0.0) + until - begun, 2)
    return {
        "model": result["model"],
        "seconds": round(ended - started, 2),
        "phases_s": phases,
        "epochs_run": (store.get(result["model"]).metadata.get("training") or {}).get(
            "epochs_completed"
        ),
        "encoder_calls": len(calls),
        "windows_embedded": sum(calls),
    }


def timed_evaluations(model_ref: str, dataset_id: str, settings: Settings) -> dict[str, Any]:
    """The evaluation job's work (the model and the baselines' rows) on the training set,
    once embedding every recording as before the cache, once reading the cache."""
    datasets = DatasetStore(settings.datasets_path)
    items = dataset_items(datasets, datasets.get(dataset_id))
    store = ModelStore(settings.model_store_path)
    trained = load_trained_model(store.verify(model_ref).path)
    result: dict[str, Any] = {}
    configure_threads(choose_thread_policy(cores=HOST_CORES, processes=1).encoder)
    for name, cache in (("without_cache", None), ("with_cache", embedding_cache(settings))):
        with counted_encoder_calls(trained.feature_config.frontend) as calls:
            started = time.perf_counter()
            evaluate_with_baselines(trained, items, embedding_cache=cache)
            result[f"{name}_s"] = round(time.perf_counter() - started, 2)
        result[f"{name}_encoder_calls"] = len(calls)
    return result


def run_cache(dataset: str, data_dir: Path, *, with_evaluation: bool = True) -> dict[str, Any]:
    folder, preset, _, n_clusters = DATASETS[dataset]
    feature_config, _ = build_configs(preset)
    settings = Settings(data_dir=data_dir, device="cpu")
    datasets = DatasetStore(settings.datasets_path)
    started = time.perf_counter()
    manifest = datasets.register_folder(folder, limits=IngestLimits(max_audio_seconds=None))
    logger.info("registered %d files in %.1f s", len(manifest.files), time.perf_counter() - started)
    params = {"dataset_id": manifest.id, "preset": preset, "n_clusters": n_clusters}
    with LoadMonitor() as monitor:
        first = timed_job({**params, "seed": 0}, settings, feature_config.frontend)
        logger.info("first job: %s", first)
        second = timed_job({**params, "seed": 1}, settings, feature_config.frontend)
        logger.info("second job: %s", second)
        evaluation = None
        if with_evaluation:
            evaluation = timed_evaluations(second["model"], manifest.id, settings)
            logger.info("evaluation: %s", evaluation)
    entries = list(datasets.embeddings_path.glob("*/*.safetensors"))
    return {
        "dataset": dataset,
        "recordings": len(manifest.files),
        "preset": preset,
        "encoder": feature_config.frontend,
        "job": "training (the preset's epochs) + cluster facts; the second: another seed, "
        "matched to the first version",
        "threads": dict(encoder=2, small_network=1),
        "first_job_s": first["seconds"],
        "second_job_s": second["seconds"],
        "second_over_first": round(second["seconds"] / first["seconds"], 3),
        "first_job_phases_s": first["phases_s"],
        "second_job_phases_s": second["phases_s"],
        "epochs_run": {"first_job": first["epochs_run"], "second_job": second["epochs_run"]},
        "first_job_encoder_calls": first["encoder_calls"],
        "first_job_windows_embedded": first["windows_embedded"],
        "second_job_encoder_calls": second["encoder_calls"],
        "evaluation": evaluation,
        "cache_entries": len(entries),
        "cache_bytes": sum(path.stat().st_size for path in entries),
        "load": monitor.summary(),
    }


def _spin(stop: Any, parent: int) -> None:
    """Pure Python arithmetic until told to stop, or until the benchmark that started it is
    gone (a killed run must not leave cores busy under the next one): one busy core."""
    while not stop.is_set() and os.getppid() == parent:
        total = 0
        for value in range(200_000):
            total += value * value


@contextmanager
def busy_cores(count: int) -> Iterator[None]:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    spinners = [
        context.Process(target=_spin, args=(stop, os.getpid()), daemon=True) for _ in range(count)
    ]
    for spinner in spinners:
        spinner.start()
    time.sleep(1.0)
    try:
        yield
    finally:
        stop.set()
        for spinner in spinners:
            spinner.join(timeout=10)


def fsdd_windows(data_dir: Path) -> Any:
    """FSDD's speech-encoder embeddings as training windows, read through a cache."""
    folder, preset, _, _ = DATASETS["fsdd"]
    feature_config, _ = build_configs(preset)
    settings = Settings(data_dir=data_dir, device="cpu")
    datasets = DatasetStore(settings.datasets_path)
    listed, _ = datasets.list(limit=1)
    items = dataset_items(datasets, listed[0]) if listed else AudioFolder.scan(folder).items
    configure_threads(2)
    embedded = list(
        embed_items(
            items, embedder=EmbeddingWindower(feature_config), cache=embedding_cache(settings)
        )
    )
    usable = [clip for clip in embedded if clip.windows is not None]
    return training_windows_from_embeddings(
        [clip.item for clip in usable],
        [clip.windows.features for clip in usable if clip.windows is not None],
    )


def timed_training(data: Any, *, threads: int, epochs: int) -> dict[str, Any]:
    # Every epoch runs (no stop once the partition settles): the same work idle and busy.
    overrides = {
        "epochs": epochs, "n_clusters": BUSY_CLUSTERS, "device": "cpu",
        "stop_after_stable_epochs": 0,
    }  # fmt: skip
    feature_config, train_config = build_configs("speech", train_overrides=overrides)
    torch.set_num_threads(threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    train_on_windows(data, config=train_config, feature_config=feature_config)
    seconds = time.perf_counter() - started
    return {
        "threads": threads,
        "epochs": epochs,
        "seconds": round(seconds, 2),
        "cpu_s": round(time.process_time() - cpu_started, 2),
        "s_per_epoch": round(seconds / epochs, 3),
    }


def run_busy(data_dir: Path) -> dict[str, Any]:
    data = fsdd_windows(data_dir)
    windows = int(data.features.shape[0])
    policy = choose_thread_policy(cores=HOST_CORES, processes=1)
    threads = policy.small_network
    logger.info("%d windows; training with %d thread(s)", windows, threads)
    with LoadMonitor() as idle_monitor:
        idle = timed_training(data, threads=threads, epochs=BUSY_EPOCHS)
    idle_load = idle_monitor.summary()
    logger.info("idle: %s", idle)
    with busy_cores(HOST_CORES), LoadMonitor() as busy_monitor:
        busy = timed_training(data, threads=threads, epochs=BUSY_EPOCHS)
        busy_load = busy_monitor.summary()
        logger.info("busy: %s", busy)
        old_busy = timed_training(data, threads=2, epochs=OLD_THREADS_EPOCHS)
        logger.info("busy, 2 threads: %s", old_busy)
    old_idle = timed_training(data, threads=2, epochs=OLD_THREADS_EPOCHS)
    return {
        "model": "cat-uvac, the speech preset's perceptrons (512, 256; latent 32), K = 10",
        "windows": windows,
        "epochs": BUSY_EPOCHS,
        "threads": threads,
        "busy_load": f"{HOST_CORES} processes spinning in pure Python beside the training",
        "idle_s": idle["seconds"],
        "busy_s": busy["seconds"],
        # The training's own CPU time: on a shared host, what its wall time would be alone.
        "idle_cpu_s": idle["cpu_s"],
        "busy_cpu_s": busy["cpu_s"],
        "busy_over_idle": round(busy["seconds"] / idle["seconds"], 2),
        "idle_load": idle_load,
        "busy_load_seen": busy_load,
        "two_threads": {
            "epochs": OLD_THREADS_EPOCHS,
            "idle_s_per_epoch": old_idle["s_per_epoch"],
            "busy_s_per_epoch": old_busy["s_per_epoch"],
            "busy_over_idle": round(old_busy["s_per_epoch"] / old_idle["s_per_epoch"], 2),
        },
    }


def merge_results(path: Path, update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    update(document)
    write_results(path, document)
    return document


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("part", choices=["cache", "busy"])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="esc10")
    parser.add_argument(
        "--data-dir", type=Path, help="keep the service's data here (default: a temporary one)"
    )
    parser.add_argument(
        "--no-evaluation", action="store_true", help="cache: skip timing the evaluations"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "training_speed.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    configure_encoder_precision("fp32")  # training embeds in float32
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="uvac-embedding-jobs-"))
    if args.part == "cache" and args.data_dir is not None and args.data_dir.exists():
        shutil.rmtree(args.data_dir)  # a first job must find the cache empty
    try:
        if args.part == "cache":
            result = run_cache(args.dataset, data_dir, with_evaluation=not args.no_evaluation)
            key = DATASETS[args.dataset][2]

            def update(document: dict[str, Any]) -> None:
                document.setdefault("embedding_cache", {})[key] = {
                    **result,
                    "machine": machine_info(),
                }

        else:
            result = run_busy(data_dir)

            def update(document: dict[str, Any]) -> None:
                document["busy_host"] = {**result, "machine": machine_info()}

        merge_results(args.output, update)
        print(json.dumps(result, indent=2))
    finally:
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
