"""What a training request may ask of a worker, checked when it is submitted.

Each number of a `TrainRequest` has a range of its own; what they cost together (the data
set's windows, the model, one step of a batch) is estimated by `uvac.training.memory_estimate` and
compared with `Settings.max_training_memory_bytes`, so that a job that is accepted can run
within a worker's memory. The number of clusters must not exceed the windows the run trains
on: the data set's windows once its held-out recordings are set aside (`held_out_share`, the
same rule the worker applies). Refusals are 422 validation problems, like any other request
the engine would not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from fastapi.exceptions import RequestValidationError

from app.schemas import TrainRequest
from app.schemas.jobs import ClusterRange
from dataset_store import DatasetManifest
from uvac.audio import DEFAULT_HELD_OUT_SHARE, DatasetItem, held_out_split
from uvac.selection import MIN_SWEEP_RECORDINGS
from uvac.training import estimate_training_memory, window_count

__all__ = ["check_fits", "check_training_fits", "manifest_items", "refusal"]

_GIB = 1024**3
# The request fields that make a run larger, named in the refusal.
_SIZE_FIELDS = "batch_size, model_hyperparameters (widths, layers), features (window_seconds, "
_SIZE_FIELDS += "window_hop_seconds, hop_length, n_mels), or the longest recordings"


class _Sized(Protocol):
    @property
    def total_bytes(self) -> int: ...

    def parts(self) -> tuple[tuple[str, int], ...]: ...


def refusal(location: tuple[str, ...], message: str, kind: str) -> RequestValidationError:
    error: dict[str, Any] = {"loc": ("body", *location), "msg": message, "type": kind}
    return RequestValidationError([error])


def check_training_fits(
    request: TrainRequest, manifest: DatasetManifest, *, max_bytes: int
) -> None:
    """Raise a 422 `RequestValidationError` when the run would need more than ``max_bytes``,
    when its model cannot be built from the request's settings, when it asks for more
    clusters (the largest K of a range) than the windows it would train on, or for a sweep
    on fewer recordings than a sweep compares."""
    features, config = request.configs()
    share = DEFAULT_HELD_OUT_SHARE if request.held_out_share is None else request.held_out_share
    training = {
        item.relpath for item in held_out_split(manifest_items(manifest), share=share).training
    }
    durations = [entry.duration_s for entry in manifest.files if entry.path in training]
    windows = window_count(durations, features)
    try:
        estimate = estimate_training_memory(
            config, features, windows=windows, longest_s=max(durations, default=0.0)
        )
    except (TypeError, ValueError) as error:
        raise refusal(
            ("model_hyperparameters",),
            f"The {config.model_type} model cannot be built from these settings: {error}",
            "model_hyperparameters_invalid",
        ) from error
    check_fits(
        estimate,
        what=f"This training ({windows} windows of the data set)",
        max_bytes=max_bytes,
        lower=_SIZE_FIELDS,
        kind="training_too_large",
    )
    largest_k = (
        request.n_clusters.max
        if isinstance(request.n_clusters, ClusterRange)
        else request.n_clusters
    )
    held = f"after {len(manifest.files) - len(durations)} of {len(manifest.files)} are held out, "
    held += f"held_out_share {share:g}"
    if isinstance(request.n_clusters, ClusterRange) and len(durations) < MIN_SWEEP_RECORDINGS:
        raise refusal(
            ("n_clusters",),
            f"A range of n_clusters runs a sweep, which compares how its runs group the "
            f"recordings and needs at least {MIN_SWEEP_RECORDINGS} training recordings; this "
            f"data set has {len(durations)} ({held}). Ask for one number of clusters, or add "
            "recordings.",
            "sweep_too_few_recordings",
        )
    if largest_k > windows:
        raise refusal(
            ("n_clusters",),
            f"{largest_k} clusters cannot be learnt from {windows} windows: the data set's "
            f"{len(durations)} training recordings ({held}) cut into {windows} windows. Ask "
            f"for at most {windows} clusters, or add recordings.",
            "too_many_clusters",
        )


def check_fits(estimate: _Sized, *, what: str, max_bytes: int, lower: str, kind: str) -> None:
    """Raise the 422 of a job that needs more memory than a worker has, naming each part."""
    if estimate.total_bytes <= max_bytes:
        return
    parts = ", ".join(f"{name}: {size / _GIB:.2f} GiB" for name, size in estimate.parts())
    raise refusal(
        (),
        f"{what} would need about {estimate.total_bytes / _GIB:.2f} GiB ({parts}); a worker "
        f"has {max_bytes / _GIB:.2f} GiB. Lower what sets the size: {lower}.",
        kind,
    )


def manifest_items(manifest: DatasetManifest) -> list[DatasetItem]:
    """The data set's recordings as the engine's items (paths relative: nothing is read)."""
    return [
        DatasetItem(path=Path(entry.path), label=entry.label, relpath=entry.path)
        for entry in manifest.files
    ]
