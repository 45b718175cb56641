"""Training jobs whose ``n_clusters`` is a range: sweep the candidates, publish the chosen one.

Job parameters (beside the usual training ones, `worker.jobs`)::

    "n_clusters": {"min": 3, "max": 15},
    "sweep": {"seeds": [0, 1, 2], "temperature_end": [0.5, 0.3], "lambda_kl": [0.05],
              "stability_threshold": 0.8, "subsample": 0.8}     # every key optional

The recordings are read (and embedded) once; every candidate is trained with every seed on
the same windows (`uvac.selection.sweep.run_sweep`), scored without labels and chosen by the rule of
`uvac.selection.rule`. The chosen candidate's representative run is the model `worker.jobs`
publishes, with every candidate's scores in its metadata (``selection``).

Progress (``job.meta["progress"]``): ``{"phase": "sweep", "candidates_done", "candidates",
"runs_done", "runs", "candidate": {"n_clusters", ...}, "seed", and the running training's
"epoch", "epochs", "loss", ..., "updated_at"}``. Cancellation and resumption are those of
training: the cancel flag is asked before every batch, and each run keeps its checkpoints and
results under the job's checkpoint folder, so a re-run after a lost worker skips finished
runs and resumes the one in progress from its last epoch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uvac.selection import SweepSpec

if TYPE_CHECKING:
    from uvac.audio import DatasetItem, EmbeddingCache, FeatureConfig
    from uvac.device import ThreadPolicy
    from uvac.selection import SweepProgress
    from uvac.training import TrainConfig, TrainedModel

__all__ = ["sweep_train_function"]


class _SweepReporter:
    """Sweep progress into ``job.meta["progress"]``, at most every ``interval`` seconds and
    whenever a run starts or ends."""

    def __init__(self, write: Callable[[Mapping[str, Any]], object], interval: float) -> None:
        self._write = write
        self._interval = interval
        self._last: float | None = None
        self._last_runs_done = -1

    def __call__(self, progress: SweepProgress) -> None:
        from uvac.training import Progress
        from worker.progress import utc_now_iso

        now = time.monotonic()
        training = progress.training
        boundary = (
            training is None
            or training.epoch_done
            or (training.phase == "partition" and training.step in (0, training.steps))
        )
        if not boundary and self._last is not None and now - self._last < self._interval:
            return
        record = dataclasses.replace(
            progress.training or Progress(),
            phase="sweep",
            run_phase=progress.training.phase if progress.training else None,
            job_eta_seconds=progress.eta_seconds,
            candidates_done=progress.candidates_done,
            candidates=progress.candidates,
            runs_done=progress.runs_done,
            runs=progress.runs,
            candidate=progress.candidate.to_dict(),
            seed=progress.seed,
            updated_at=utc_now_iso(),
        )
        self._write({"progress": record.to_document()})
        self._last = now


def sweep_train_function(
    spec: SweepSpec,
    *,
    write_progress: Callable[[Mapping[str, Any]], object] | None,
    progress_interval_seconds: float,
) -> Callable[..., TrainedModel]:
    """A `worker.jobs` train function that runs the sweep and returns the chosen model, with
    the sweep's summary in its ``info["selection"]``."""

    def train(
        items: Sequence[DatasetItem],
        *,
        config: TrainConfig,
        feature_config: FeatureConfig,
        progress: object = None,
        should_stop: Callable[[], bool] | None = None,
        checkpoint_dir: Path | None = None,
        dataset_digest: str | None = None,
        encoding_progress: Callable[[int, int], None] | None = None,
        held_out_items: Sequence[DatasetItem] = (),
        embedding_cache: EmbeddingCache | None = None,
        threads: ThreadPolicy | None = None,
    ) -> TrainedModel:
        # The held-out recordings are scored by the job once the sweep has chosen its model;
        # the sweep's many runs do not score them epoch by epoch.
        del held_out_items
        from uvac.selection import DEFAULT_STABILITY_THRESHOLD, DEFAULT_SUBSAMPLE, run_sweep
        from uvac.training import phase_threads, training_workload, windows_for_training

        with phase_threads(threads, "encoder"):
            data = windows_for_training(
                items,
                feature_config=feature_config,
                should_stop=should_stop,
                progress=encoding_progress,
                embedding_cache=embedding_cache,
            )
        reporter = (
            _SweepReporter(write_progress, progress_interval_seconds)
            if write_progress is not None
            else None
        )
        with phase_threads(threads, training_workload(feature_config)):
            result = run_sweep(
                data,
                base_config=config,
                feature_config=feature_config,
                candidates=spec.candidates(),
                seeds=spec.seeds,
                stability_threshold=spec.stability_threshold or DEFAULT_STABILITY_THRESHOLD,
                progress=reporter,
                should_stop=should_stop,
                checkpoint_dir=checkpoint_dir / "sweep" if checkpoint_dir is not None else None,
                dataset_digest=dataset_digest,
                subsample=spec.subsample or DEFAULT_SUBSAMPLE,
            )
        info = {**result.model.info, "selection": result.summary()}
        return dataclasses.replace(result.model, info=info)

    return train
