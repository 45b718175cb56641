"""Training jobs whose ``n_clusters`` is a range: sweep the candidates, publish the chosen one.

Job parameters (beside the usual training ones, `worker.jobs`)::

    "n_clusters": {"min": 3, "max": 15},
    "sweep": {"seeds": [0, 1, 2], "temperature_end": [0.5, 0.3], "lambda_kl": [0.05],
              "stability_threshold": 0.8, "subsample": 0.8}     # every key optional

The recordings are read (and embedded) once; every candidate is trained with every seed on
the same windows (`uvac.sweep.run_sweep`), scored without labels and chosen by the rule of
`uvac.selection`. The chosen candidate's representative run is the model `worker.jobs`
publishes, with every candidate's scores in its metadata (``selection``).

Progress (``job.meta["progress"]``): ``{"phase": "sweep", "candidates_done", "candidates",
"runs_done", "runs", "candidate": {"n_clusters", ...}, "seed", and the running training's
"epoch", "epochs", "loss", ..., "updated_at"}``. Cancellation and resumption are those of
training: the cancel flag is asked before every batch, and each run keeps its checkpoints and
results under the job's checkpoint folder, so a re-run after a lost worker skips finished
runs and resumes the one in progress from its last epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from worker.errors import WorkerError

if TYPE_CHECKING:
    from uvac.artifact import TrainedModel
    from uvac.datasets import DatasetItem
    from uvac.features import FeatureConfig
    from uvac.selection import Candidate
    from uvac.sweep import SweepProgress
    from uvac.train_config import TrainConfig

__all__ = ["SweepSpec", "is_sweep", "parse_sweep", "sweep_train_function"]

DEFAULT_SEEDS = (0, 1, 2)
_SWEEP_KEYS = frozenset(
    {"seeds", "temperature_end", "lambda_kl", "stability_threshold", "subsample"}
)
MAX_SEEDS = 10


class InvalidSweep(WorkerError):
    status = 422
    slug = "invalid-job-parameters"
    title = "Invalid job parameters"


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep job trains: a K range, seeds, optional temperature ends and lambdas."""

    k_min: int
    k_max: int
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    temperature_ends: tuple[float, ...] = ()
    lambdas: tuple[float, ...] = ()
    stability_threshold: float | None = None
    subsample: float | None = None  # None: uvac.sweep.DEFAULT_SUBSAMPLE

    @property
    def n_candidates(self) -> int:
        return (
            (self.k_max - self.k_min + 1)
            * max(1, len(self.temperature_ends))
            * max(1, len(self.lambdas))
        )

    def candidates(self) -> list[Candidate]:
        from uvac.selection import candidate_grid

        return candidate_grid(
            self.k_min,
            self.k_max,
            temperature_ends=self.temperature_ends,
            lambdas=self.lambdas,
        )


def is_sweep(params: Mapping[str, Any]) -> bool:
    return isinstance(params.get("n_clusters"), Mapping)


def _numbers(value: Any, *, name: str, minimum: float) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidSweep(f"sweep.{name} must be a non-empty list of numbers")
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v >= minimum and v == v
        for v in value
    ):
        raise InvalidSweep(f"sweep.{name} must hold numbers of at least {minimum:g}")
    return tuple(float(v) for v in value)


def parse_sweep(params: Mapping[str, Any], *, max_candidates: int) -> SweepSpec:
    """The sweep a job asks for; `InvalidSweep` (422) for an empty, reversed or too wide one."""
    bounds = params.get("n_clusters")
    if not isinstance(bounds, Mapping) or set(bounds) != {"min", "max"}:
        raise InvalidSweep('a K range is {"min": K1, "max": K2}')
    k_min, k_max = bounds["min"], bounds["max"]
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in (k_min, k_max)):
        raise InvalidSweep("the K range's min and max must be integers")
    if k_min < 2:
        raise InvalidSweep(f"the K range must start at 2 or more, got {k_min}")
    if k_max < k_min:
        raise InvalidSweep(f"the K range {k_min}..{k_max} is reversed (max below min)")
    options = params.get("sweep") or {}
    if not isinstance(options, Mapping):
        raise InvalidSweep("sweep must be an object")
    unknown = sorted(set(options) - _SWEEP_KEYS)
    if unknown:
        raise InvalidSweep(f"unknown sweep options: {', '.join(unknown)}")
    seeds = options.get("seeds", list(DEFAULT_SEEDS))
    if (
        not isinstance(seeds, list)
        or not 2 <= len(seeds) <= MAX_SEEDS
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise InvalidSweep(
            f"sweep.seeds must be 2 to {MAX_SEEDS} different non-negative integers "
            "(stability is measured between seeds)"
        )
    threshold = options.get("stability_threshold")
    if threshold is not None and not (isinstance(threshold, int | float) and 0 < threshold <= 1):
        raise InvalidSweep("sweep.stability_threshold must lie in (0, 1]")
    subsample = options.get("subsample")
    if subsample is not None and not (isinstance(subsample, int | float) and 0 < subsample < 1):
        raise InvalidSweep("sweep.subsample must lie in (0, 1)")
    spec = SweepSpec(
        k_min=k_min,
        k_max=k_max,
        seeds=tuple(seeds),
        temperature_ends=_numbers(options["temperature_end"], name="temperature_end", minimum=1e-6)
        if "temperature_end" in options
        else (),
        lambdas=_numbers(options["lambda_kl"], name="lambda_kl", minimum=0.0)
        if "lambda_kl" in options
        else (),
        stability_threshold=float(threshold) if threshold is not None else None,
        subsample=float(subsample) if subsample is not None else None,
    )
    if spec.n_candidates > max_candidates:
        raise InvalidSweep(
            f"the sweep has {spec.n_candidates} candidates (K {k_min}..{k_max}"
            f"{' x temperatures' if spec.temperature_ends else ''}"
            f"{' x lambdas' if spec.lambdas else ''}); at most {max_candidates} are allowed "
            "(UVAC_MAX_SWEEP_CANDIDATES)"
        )
    return spec


class _SweepReporter:
    """Sweep progress into ``job.meta["progress"]``, at most every ``interval`` seconds and
    whenever a run starts or ends."""

    def __init__(self, write: Callable[[Mapping[str, Any]], object], interval: float) -> None:
        self._write = write
        self._interval = interval
        self._last: float | None = None
        self._last_runs_done = -1

    def __call__(self, progress: SweepProgress) -> None:
        from worker.progress import progress_document

        now = time.monotonic()
        boundary = progress.training is None or progress.training.epoch_done
        if not boundary and self._last is not None and now - self._last < self._interval:
            return
        document: dict[str, Any] = {}
        if progress.training is not None:
            document.update(progress_document(cast(Any, progress.training)))
        document.update(
            {
                "phase": "sweep",
                "candidates_done": progress.candidates_done,
                "candidates": progress.candidates,
                "runs_done": progress.runs_done,
                "runs": progress.runs,
                "candidate": progress.candidate.to_dict(),
                "seed": progress.seed,
            }
        )
        self._write({"progress": document})
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
    ) -> TrainedModel:
        import dataclasses

        from uvac.selection import DEFAULT_STABILITY_THRESHOLD
        from uvac.sweep import DEFAULT_SUBSAMPLE, run_sweep
        from uvac.training_data import windows_for_training

        data = windows_for_training(
            items,
            feature_config=feature_config,
            should_stop=should_stop,
            progress=encoding_progress,
        )
        reporter = (
            _SweepReporter(write_progress, progress_interval_seconds)
            if write_progress is not None
            else None
        )
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
