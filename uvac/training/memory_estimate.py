"""How much memory a training run will need, known before any recording is read.

A job is accepted or refused on this estimate when it is submitted, so that a job that was
accepted can run within the worker's memory (rather than fail there minutes later, or take
the worker down). Four parts:

- the data set's windows, as the trainer holds them (float32 features and their masks);
- the model: its parameters, their gradients and Adam's two moments;
- one optimisation step: every tensor the forward pass and the backward pass produce, counted
  on PyTorch's meta device, which computes shapes and allocates nothing; times the extra views
  of the consistency and self-labelling terms, each a forward and backward of its own;
- reading one recording, the longest (`recording_bytes`): its decoded samples and, with an
  encoder front-end, the encoder itself (weights, one call's activations at its batch size,
  its inputs and outputs for the recording's windows; `uvac.audio.Encoder.memory_bytes`).
  Every job kind reads recordings this way, so every kind's estimate has this part
  (`uvac.training.job_memory`, `uvac.edge.distillation_memory`).

The step is counted on probes of two or four windows of at most `PROBE_FRAMES` frames and
extrapolated to the real batch and window (parts that are fixed, grow with the window, with
the batch, and with both: the layers' activations are linear in each); the meta device's own
cost grows with the frames (the GRU runs one step per 16), so a request for a window of a
million frames is answered in milliseconds too. The model's and the step's parts depend on
the model's shape alone (not on the data set, the batch, the window's length beyond the
probes, or the rates and loss weights), so they are kept per shape (`_SHAPE_CACHE`): a client
repeating a refused request, or varying only those, costs a dictionary lookup; shapes not yet
counted are counted one at a time. It counts
every intermediate tensor as if all were alive at once, so it errs on the high side. The
model is built from the same arguments as the trainer's, so an option the model refuses is
found here too (``ValueError``).
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from uvac.audio import ENCODERS, FeatureConfig
from uvac.models import VariationalClusterModel, build_model
from uvac.tensor_bytes import TensorBytesCounter
from uvac.training.config import TrainConfig

__all__ = [
    "PROBE_FRAMES",
    "TrainingMemory",
    "estimate_training_memory",
    "recording_bytes",
    "window_count",
]

_FLOAT32 = 4
# Parameters, gradients and Adam's first and second moments.
_COPIES_PER_PARAMETER = 4
# K-means runs on the flattened windows; scikit-learn works on a float64 copy and distances.
_KMEANS_COPIES = 3
PROBE_FRAMES = 64  # a multiple of 16, as the networks' inputs are
_PROBE_WINDOWS = (2, 4)
# A decoded recording, and the frames or windows cut from it, are alive at once.
_DECODED_COPIES = 2


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes each part of a training run needs (see the module docstring)."""

    dataset_bytes: int
    model_bytes: int
    step_bytes: int
    recording_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.dataset_bytes + self.model_bytes + self.step_bytes + self.recording_bytes

    def parts(self) -> tuple[tuple[str, int], ...]:
        """(what, bytes) of each part, for a refusal to name."""
        return (
            ("the data set's windows", self.dataset_bytes),
            ("the model and its optimiser state", self.model_bytes),
            ("one step of a batch", self.step_bytes),
            ("reading the longest recording (decoder and encoder)", self.recording_bytes),
        )


def window_count(durations_s: Iterable[float], features: FeatureConfig) -> int:
    """How many time-context windows the clips of these durations give."""
    total = 0
    for duration in durations_s:
        if features.time_fit:
            total += 1
            continue
        frames = 1 + max(0, round(duration * features.sample_rate) - features.n_fft) // max(
            1, features.hop_length
        )
        extra = max(0, frames - features.span_frames)
        total += 1 + math.ceil(extra / features.window_hop_frames)
    return total


def recording_bytes(features: FeatureConfig, *, longest_s: float) -> int:
    """What reading one recording of ``longest_s`` seconds takes: its samples at the features'
    rate (and the frames or windows cut from them) and, with an encoder front-end, the
    encoder's weights, activations and per-window inputs and outputs."""
    samples = math.ceil(max(0.0, longest_s) * features.sample_rate)
    total = _DECODED_COPIES * samples * _FLOAT32
    if features.uses_encoder:
        encoder = ENCODERS[features.frontend]
        windows = window_count([longest_s], features)
        total += encoder.memory_bytes(window_seconds=features.window_seconds, windows=windows)
    return total


def estimate_training_memory(
    config: TrainConfig, features: FeatureConfig, *, windows: int, longest_s: float
) -> TrainingMemory:
    """The memory a run of ``config`` on ``windows`` windows of ``features`` needs, the
    longest recording lasting ``longest_s`` seconds.

    Raises ``ValueError`` (or ``TypeError``) when the model cannot be built from these
    settings, as the trainer would.
    """
    channels, frames, bins = features.input_shape  # (1, T, F)
    window_values = channels * frames * bins
    dataset_bytes = windows * (window_values + frames) * _FLOAT32  # features and masks
    reading = recording_bytes(features, longest_s=longest_s)
    if config.model_type == "kmeans":
        return TrainingMemory(
            dataset_bytes=dataset_bytes,
            model_bytes=config.n_clusters * window_values * _FLOAT32,
            step_bytes=_KMEANS_COPIES * dataset_bytes,
            recording_bytes=reading,
        )
    batch = max(1, min(config.batch_size, windows))
    parameters, step = _model_and_step(config, features, batch=batch)
    views = 1 + (config.consistency_weight > 0) + (config.self_label_weight > 0)
    return TrainingMemory(
        dataset_bytes=dataset_bytes,
        model_bytes=parameters * _FLOAT32 * _COPIES_PER_PARAMETER,
        step_bytes=step * views,
        recording_bytes=reading,
    )


@dataclass(frozen=True)
class _StepFit:
    """One step's bytes as ``a + a' T + b B + c B T`` (see `_fit_step`), never below the
    largest probe measured."""

    fixed: float  # a
    per_frame: float  # a'
    per_window: float  # b
    per_window_frame: float  # c
    floor: int

    def bytes(self, *, batch: int, frames: int) -> int:
        per_window = self.per_window + self.per_window_frame * frames
        estimate = self.fixed + self.per_frame * frames + per_window * batch
        return max(self.floor, math.ceil(estimate))


_SHAPE_CACHE: OrderedDict[str, tuple[int, _StepFit]] = OrderedDict()
_SHAPE_CACHE_SIZE = 256
_SHAPE_CACHE_LOCK = threading.Lock()
# One count at a time: each holds the interpreter for about a second, so requests of new
# shapes arriving together wait for each other instead of all starving the serving threads,
# and a shape counted meanwhile is then found in the cache.
_COUNTING_LOCK = threading.Lock()


def _shape_key(config: TrainConfig, *, bins: int, frames: int) -> str:
    """What decides the counted sizes: the model and its inputs' probe lengths. The batch, the
    real window length (beyond the probes), the seed, rates and loss weights are not in it
    (they enter the fitted formula or change no tensor's size), so requests that differ
    only in those share one count."""
    short, long = min(frames, PROBE_FRAMES // 2), min(frames, PROBE_FRAMES)
    tied_to_length = config.model_type != "cat-uvac"  # built for one window length
    shape = [
        config.model_type,
        config.n_clusters,
        config.model_hyperparameters,
        bins,
        short,
        long,
        frames if tied_to_length else None,
    ]
    return json.dumps(shape, sort_keys=True, default=str)


def _model_and_step(config: TrainConfig, features: FeatureConfig, *, batch: int) -> tuple[int, int]:
    """(parameters, one step's bytes) of this shape; the model is counted once per shape."""
    channels, frames, bins = features.input_shape  # (1, T, F)
    key = _shape_key(config, bins=bins, frames=frames)
    counted = _cached(key)
    if counted is None:
        with _COUNTING_LOCK:
            counted = _cached(key)
            if counted is None:
                with torch.device("meta"):
                    model = _model(config, bins=bins, frames=frames)
                    parameters = sum(parameter.numel() for parameter in model.parameters())
                    fit = _fit_step(config, model, channels=channels, frames=frames, bins=bins)
                counted = (parameters, fit)
                with _SHAPE_CACHE_LOCK:
                    _SHAPE_CACHE[key] = counted
                    while len(_SHAPE_CACHE) > _SHAPE_CACHE_SIZE:
                        _SHAPE_CACHE.popitem(last=False)
    parameters, fit = counted
    return parameters, fit.bytes(batch=batch, frames=frames)


def _cached(key: str) -> tuple[int, _StepFit] | None:
    with _SHAPE_CACHE_LOCK:
        if key in _SHAPE_CACHE:
            _SHAPE_CACHE.move_to_end(key)
            return _SHAPE_CACHE[key]
    return None


def _fit_step(
    config: TrainConfig, model: Any, *, channels: int, frames: int, bins: int
) -> _StepFit:
    """One step's bytes as ``a + a' T + b B + c B T``, fitted on four small probes.

    ``a`` is what the weights' gradients take, ``a'`` what grows with the window alone,
    ``b`` what each window's latent values take and ``c`` the activations along time; the
    probes have 2 or 4 windows of at most `PROBE_FRAMES` frames (the real T when shorter).
    """
    short = min(frames, PROBE_FRAMES // 2)
    long = min(frames, PROBE_FRAMES)
    models = {frames: model}

    def measure(windows: int, probe_frames: int) -> int:
        if probe_frames not in models:
            models[probe_frames] = _model(config, bins=bins, frames=probe_frames)
        probe = torch.zeros(windows, channels, probe_frames, bins)
        return _step_bytes(models[probe_frames], probe, config)

    # Two and four windows: with one, some tensors are broadcast rather than made.
    small, large = _PROBE_WINDOWS
    small_short, large_short = measure(small, short), measure(large, short)
    per_window_short = (large_short - small_short) / (large - small)
    if long == short:  # the window is short: T is the real one, only B is extrapolated
        return _StepFit(
            fixed=small_short - per_window_short * small,
            per_frame=0.0,
            per_window=per_window_short,
            per_window_frame=0.0,
            floor=large_short,
        )
    small_long, large_long = measure(small, long), measure(large, long)
    per_window_long = (large_long - small_long) / (large - small)
    span = long - short
    per_window_frame = (per_window_long - per_window_short) / span  # c
    per_window = per_window_short - per_window_frame * short  # b
    per_frame = (small_long - small_short) / span - small * per_window_frame  # a'
    fixed = small_short - per_frame * short - small * (per_window + per_window_frame * short)
    return _StepFit(
        fixed=fixed,
        per_frame=per_frame,
        per_window=per_window,
        per_window_frame=per_window_frame,
        floor=large_long,
    )


def _model(config: TrainConfig, *, bins: int, frames: int) -> Any:
    arguments: dict[str, Any] = {
        "n_clusters": config.n_clusters,
        "n_features": bins,
        **config.model_hyperparameters,
    }
    if config.model_type != "cat-uvac":  # the others are built for one window length
        arguments["n_frames"] = frames
    return build_model(config.model_type, **arguments)


def _step_bytes(model: Any, batch: torch.Tensor, config: TrainConfig) -> int:
    if not isinstance(model, VariationalClusterModel):  # pragma: no cover (no such type yet)
        return int(batch.numel() * batch.element_size())
    # As after the optimiser's zero_grad: each step makes its gradients anew.
    model.zero_grad(set_to_none=True)
    counting = TensorBytesCounter()
    with counting:
        parts = model.loss(
            batch,
            None,
            temperature=config.temperature_start,
            lambda_kl=config.lambda_kl,
            cluster_balance=config.cluster_balance,
        )
        parts.total.backward()
    return counting.bytes
