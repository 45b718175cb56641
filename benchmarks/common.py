"""Shared helpers of the performance benchmarks (`serving.py`, `training_speed.py`).

- what machine a figure was taken on (`machine_info`) and how busy it was meanwhile
  (`LoadMonitor`: load averages and whole-machine CPU use sampled during the run): on the
  2-core development machine any other process halves a figure, so every results file says
  how idle the machine was;
- the network the service runs by default: an untrained Cat. UVAC built from the project's default
  preset (``DEFAULT_PRESET``) exactly as training builds it (`preset_model`), with normalisation
  statistics fitted on synthetic clips (`synthetic_trained_model`); it costs what a trained one
  does;
- synthetic test audio (noise plus tones) and its 16-bit WAV encoding;
- percentiles, timing loops and the results JSON writer.
"""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from uvac.audio import Audio, FeatureConfig, FeatureExtractor, fit_embedding_stats, fit_norm_stats
from uvac.models import CatUVAC
from uvac.training import DEFAULT_PRESET, TrainConfig, TrainedModel, build_configs

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
BUNDLE_DIR = REPO_ROOT / "app" / "default_model" / "bundle"
BUNDLE_MODEL_FILES = ("weights.safetensors", "model.json")


# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags_of_interest() -> list[str]:
    """The matrix-multiply instruction sets that decide fp32 and bf16 rates."""
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return []


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """CPU, core counts, software versions and this process's torch thread settings."""
    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable_cores = os.cpu_count() or 1
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags_of_interest(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "git_commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [float(value) for value in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    total = sum(values[:8])  # user..steal; guest time is already inside user
    return total - idle, total


@dataclass
class LoadMonitor:
    """Samples the machine's load while a benchmark runs (a daemon thread, every second).

    ``machine_cpu_busy`` is the share of all cores busy over the run, *including* the
    benchmark itself; ``own_cpu_s`` is what this process (and its reaped children) used, so
    the rest is what other processes took.
    """

    interval_s: float = 1.0
    _samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _start_load: list[float] = field(default_factory=list)
    _start_cpu: tuple[float, float] = (0.0, 0.0)
    _start_wall: float = 0.0

    def __enter__(self) -> LoadMonitor:
        self._start_load = load_average()
        self._start_cpu = _cpu_times()
        self._start_wall = time.monotonic()
        self._thread = threading.Thread(target=self._sample, name="load-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._samples.append(os.getloadavg()[0])

    def summary(self, *, extra_own_cpu_s: float = 0.0) -> dict[str, Any]:
        """Load averages at start and now, the 1-minute range seen, and CPU use so far."""
        busy_start, total_start = self._start_cpu
        busy_now, total_now = _cpu_times()
        share = (busy_now - busy_start) / max(total_now - total_start, 1e-9)
        usage = os.times()
        own = usage.user + usage.system + usage.children_user + usage.children_system
        samples = self._samples or [os.getloadavg()[0]]
        cores = os.cpu_count() or 1
        wall = time.monotonic() - self._start_wall
        return {
            "load_average_start": self._start_load,
            "load_average_end": load_average(),
            "load_1m_min": round(min(samples), 2),
            "load_1m_max": round(max(samples), 2),
            "machine_cpu_busy": round(share, 3),
            "wall_s": round(wall, 1),
            "own_cpu_s": round(own + extra_own_cpu_s, 1),
            "others_cpu_share": round(
                max(0.0, share - (own + extra_own_cpu_s) / max(wall * cores, 1e-9)), 3
            ),
            "idle_enough": max(samples) < 0.5 and self._start_load[0] < 0.5,
        }


# ----------------------------------------------------------------------------- model


def preset_model(
    feature_config: FeatureConfig, train_config: TrainConfig, *, seed: int = 0
) -> CatUVAC:
    """An untrained Cat. UVAC exactly as `uvac.training.pipeline` builds one for these configs."""
    torch.manual_seed(seed)
    return CatUVAC(
        n_clusters=train_config.n_clusters,
        n_features=feature_config.feature_bins,
        **train_config.model_hyperparameters,
    )


def default_configs(preset: str = DEFAULT_PRESET) -> tuple[FeatureConfig, TrainConfig]:
    return build_configs(preset)


def synthetic_trained_model(preset: str = DEFAULT_PRESET, *, seed: int = 0) -> TrainedModel:
    """An untrained model of ``preset`` with normalisation statistics fitted on synthetic
    clips (so the features land where they do in production); it costs what a trained one does."""
    feature_config, train_config = default_configs(preset)
    if train_config.model_type != "cat-uvac":
        raise ValueError(
            f"preset {preset!r} trains {train_config.model_type}; this benchmark builds cat-uvac"
        )
    model = preset_model(feature_config, train_config, seed=seed).eval()
    extractor = FeatureExtractor(feature_config)
    clips = [
        Audio.from_samples(
            synthetic_clip(seconds=1.0, sample_rate=feature_config.sample_rate, seed=index),
            sample_rate=feature_config.sample_rate,
        )
        for index in range(8)
    ]
    if extractor.embedder is not None:  # an encoder front-end: statistics of embeddings
        raw, _ = extractor.embedder.raw_windows_batch(clips)
        stats = fit_embedding_stats(raw.features[:, 0, 0, :])
    else:
        stats = fit_norm_stats((extractor.log_mel(clip) for clip in clips), feature_config)
    return TrainedModel(
        model=model,
        feature_config=feature_config,
        norm_stats=stats,
        info={"note": f"untrained, preset {preset!r}, for benchmarks"},
    )


def bundled_model_available() -> bool:
    return all((BUNDLE_DIR / name).is_file() for name in BUNDLE_MODEL_FILES)


def describe_model(trained: TrainedModel) -> dict[str, Any]:
    model = trained.model
    return {
        "model_type": model.model_type,
        "hyperparameters": model.hyperparameters(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "input_shape": list(trained.feature_config.input_shape),
        "frontend": trained.feature_config.frontend,
        "feature_config": trained.feature_config.to_dict(),
    }


# ----------------------------------------------------------------------------- audio


def synthetic_clip(*, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Noise plus three tones with a slow amplitude wobble, float32 in [-1, 1], ``(N,)``."""
    generator = np.random.default_rng(seed)
    n_samples = round(seconds * sample_rate)
    t = np.arange(n_samples) / sample_rate
    signal = 0.05 * generator.standard_normal(n_samples)
    for _ in range(3):
        frequency = generator.uniform(100.0, 0.4 * sample_rate)
        wobble = 0.5 + 0.5 * np.sin(2 * np.pi * generator.uniform(0.5, 3.0) * t)
        signal += 0.2 * wobble * np.sin(2 * np.pi * frequency * t + generator.uniform(0, 6.28))
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


def wav_bytes(samples: np.ndarray, *, sample_rate: int) -> bytes:
    """16-bit PCM WAV encoding of mono float samples."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- statistics


def percentile_ms(latencies_s: Sequence[float], q: float) -> float | None:
    if not latencies_s:
        return None
    return round(float(np.percentile(np.asarray(latencies_s), q)) * 1000.0, 3)


def rate_per_s(
    step: Callable[[], object],
    *,
    items_per_step: int,
    seconds: float,
    warmup_steps: int = 2,
    min_steps: int = 3,
) -> dict[str, float]:
    """Run ``step`` for about ``seconds`` after a warm-up.

    Returns items per second over the measured time (``per_s``), the fastest single step's
    rate (``best_step_per_s``, the figure least disturbed by other processes), the median
    step, and this process's CPU time per step (``cpu_ms_per_step``: with one torch thread,
    much less sensitive to other processes than wall time; with more it includes OpenMP's
    spin-waiting).
    """
    for _ in range(warmup_steps):
        step()
    durations: list[float] = []
    cpu_started = time.process_time()
    started = time.perf_counter()
    while len(durations) < min_steps or time.perf_counter() - started < seconds:
        step_started = time.perf_counter()
        step()
        durations.append(time.perf_counter() - step_started)
    cpu = time.process_time() - cpu_started
    total = sum(durations)
    return {
        "per_s": round(items_per_step * len(durations) / total, 2),
        "best_step_per_s": round(items_per_step / min(durations), 2),
        "median_step_ms": round(float(np.median(durations)) * 1000.0, 3),
        "cpu_ms_per_step": round(cpu / len(durations) * 1000.0, 3),
        "steps": len(durations),
    }


def write_results(path: Path, document: dict[str, Any]) -> None:
    """Write the results JSON (indented, keys in insertion order) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    logger.info("wrote %s", path)
