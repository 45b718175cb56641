"""The sweep: train every candidate with every seed on windows cut once, score, choose.

`run_sweep` trains ``len(candidates) x len(seeds)`` models with
`uvac.training.pipeline.train_on_windows` on the same `TrainingWindows` (the recordings are decoded
and, for an encoder front-end, embedded once), computes each run's clip assignments on the training
clips (clip pi = mean of its windows' pi), scores each candidate and applies the rule of
`uvac.selection.rule`.

Stability is measured under resampling (``subsample``, default `DEFAULT_SUBSAMPLE`): each
seed trains on its own random share of the clips (drawn with that seed) and assigns all of
them, and the seeds' assignments of all clips are compared. Seeds alone hardly move the
partition, because training starts from a clustering of the windows (K-means or spectral)
that is nearly the same for every seed, so a K that cuts a group in two would look as
reproducible as one that does not; which points a resample holds moves such an arbitrary cut
(Ben-Hur, Elisseeff and Guyon 2002; Lange, Roth, Braun and Buhmann 2004). The published model
is then trained once more, on all clips, with the chosen candidate's representative seed.
``subsample=None`` compares seeds on all the data (and publishes the representative run).

Progress: ``progress(SweepProgress)`` after every training report, with how many runs and
candidates are done and an estimate for the whole sweep (`_SweepClock`). Cancellation:
``should_stop`` is passed to every training run.
Resumption: with ``checkpoint_dir``, each run trains under ``<dir>/<candidate key>-s<seed>/``
(the training's own checkpoints, so an interrupted run continues from its last epoch) and,
when it is done, leaves its model and clip probabilities there; a resumed sweep reads finished
runs back instead of training them again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from uvac.audio import FeatureConfig
from uvac.models import ClusterModel
from uvac.selection.rule import (
    DEFAULT_STABILITY_THRESHOLD,
    Candidate,
    CandidateScores,
    SweepChoice,
    choose,
    score_candidate,
)
from uvac.training import (
    Progress,
    TrainConfig,
    TrainedModel,
    TrainingWindows,
    load_trained_model,
    save_trained_model,
    train_on_windows,
)

__all__ = [
    "MIN_SWEEP_RECORDINGS",
    "SweepProgress",
    "SweepResult",
    "clip_probabilities",
    "clip_representation",
    "run_sweep",
]

logger = logging.getLogger(__name__)

DEFAULT_SUBSAMPLE = 0.8
# Stability compares the seeds' assignments of recordings, and the subsampled run keeps at
# least two of them: fewer recordings leave nothing to compare.
MIN_SWEEP_RECORDINGS = 2
_DONE_FILE = "run.json"
_PROBABILITIES_FILE = "clip_probabilities.safetensors"


@dataclass(frozen=True)
class SweepProgress:
    """Where a sweep is: runs and candidates done, and the run in progress."""

    candidates_done: int
    candidates: int
    runs_done: int
    runs: int
    candidate: Candidate
    seed: int
    training: Progress | None
    # Seconds until every run is done; None until one run has trained in this process.
    eta_seconds: float | None = None


class _SweepClock:
    """The whole sweep's estimate: the mean time of the runs trained in this process (runs
    read back after a resume take no time and are left out) times the runs left, less the
    time the current run has had."""

    def __init__(self) -> None:
        self.trained_runs = 0
        self.trained_seconds = 0.0
        self.run_started = time.perf_counter()

    def start_run(self) -> None:
        self.run_started = time.perf_counter()

    def end_run(self, *, trained: bool) -> None:
        if trained:
            self.trained_runs += 1
            self.trained_seconds += time.perf_counter() - self.run_started

    def eta(self, runs_left: int) -> float | None:
        if not self.trained_runs:
            return None
        mean = self.trained_seconds / self.trained_runs
        return max(mean * runs_left - (time.perf_counter() - self.run_started), 0.0)


@dataclass(frozen=True)
class SweepResult:
    """Every candidate's scores, the choice, and the chosen candidate's representative run."""

    scores: list[CandidateScores]
    choice: SweepChoice
    model: TrainedModel
    probabilities: np.ndarray  # (n_clips, K) training clips' pi of the published model
    run_probabilities: dict[str, np.ndarray]  # "<candidate key>-s<seed>" -> (n_clips, K)
    subsample: float | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-able record for the published model's metadata."""
        return {
            **self.choice.to_dict(),
            "subsample": self.subsample,
            "candidates": [scores.to_dict() for scores in self.scores],
        }


def clip_probabilities(model: ClusterModel, data: TrainingWindows) -> np.ndarray:
    """Each training clip's pi ``(n_clips, K)``: the mean of its windows' pi."""
    window_pi = []
    with torch.inference_mode():
        for start in range(0, data.features.shape[0], 1024):
            chunk = slice(start, start + 1024)
            window_pi.append(
                model.cluster_probabilities(data.features[chunk], data.mask[chunk]).float()
            )
    return _clip_means(torch.cat(window_pi), data).numpy()


def clip_representation(data: TrainingWindows) -> np.ndarray:
    """Each training clip's mean normalised window, flattened: the common feature space."""
    flat = data.features.reshape(data.features.shape[0], -1).float()  # (N, T*M)
    return _clip_means(flat, data).numpy()


def _clip_means(values: Tensor, data: TrainingWindows) -> Tensor:
    sums = torch.zeros(data.n_clips, values.shape[1], dtype=values.dtype)
    sums.index_add_(0, data.clip_index, values)
    counts = torch.bincount(data.clip_index, minlength=data.n_clips).clamp_min(1)
    return sums / counts[:, None].to(values.dtype)


def clip_labels(data: TrainingWindows) -> list[int] | None:
    """Each clip's label id (every window of a clip carries its clip's label)."""
    if data.labels is None:
        return None
    labels: list[int | None] = [None] * data.n_clips
    for clip, label in zip(data.clip_index.tolist(), data.labels, strict=True):
        labels[clip] = label
    return [int(label) for label in labels if label is not None]


def run_sweep(
    data: TrainingWindows,
    *,
    base_config: TrainConfig,
    feature_config: FeatureConfig,
    candidates: Sequence[Candidate],
    seeds: Sequence[int],
    stability_threshold: float = DEFAULT_STABILITY_THRESHOLD,
    progress: Callable[[SweepProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: Path | None = None,
    dataset_digest: str | None = None,
    subsample: float | None = DEFAULT_SUBSAMPLE,
) -> SweepResult:
    """Train and score every candidate x seed; returns the scores, choice and chosen model."""
    if subsample is not None and not 0 < subsample < 1:
        raise ValueError(f"subsample is a share of the clips in (0, 1), got {subsample}")
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError("a sweep needs at least two different seeds to measure stability")
    if not candidates:
        raise ValueError("a sweep needs at least one candidate")
    if data.n_clips < MIN_SWEEP_RECORDINGS:
        raise ValueError(
            f"a sweep needs at least {MIN_SWEEP_RECORDINGS} training recordings to compare "
            f"its runs' assignments, got {data.n_clips}"
        )
    representation = clip_representation(data)
    labels = clip_labels(data)
    total_runs = len(candidates) * len(seeds) + (1 if subsample is not None else 0)
    runs_done = 0
    clock = _SweepClock()
    scores: list[CandidateScores] = []
    models: dict[tuple[str, int], TrainedModel] = {}
    probabilities: dict[tuple[str, int], np.ndarray] = {}
    for candidate_index, candidate in enumerate(candidates):
        config = TrainConfig.from_dict({**base_config.to_dict(), **candidate.overrides()})
        for seed in seeds:

            def report(
                training: Progress | None,
                *,
                _candidate: Candidate = candidate,
                _seed: int = seed,
                _done: int = runs_done,
                _candidates_done: int = candidate_index,
            ) -> None:
                if progress is not None:
                    progress(
                        SweepProgress(
                            candidates_done=_candidates_done,
                            candidates=len(candidates),
                            runs_done=_done,
                            runs=total_runs,
                            candidate=_candidate,
                            seed=_seed,
                            training=training,
                            eta_seconds=clock.eta(total_runs - _done),
                        )
                    )

            clock.start_run()
            report(None)
            name = f"{candidate.key}-s{seed}" + (f"-sub{subsample:g}" if subsample else "")
            run_dir = checkpoint_dir / name if checkpoint_dir else None
            trained, pi = _one_run(
                data,
                train_data=_resample(data, subsample, seed) if subsample else data,
                config=TrainConfig.from_dict({**config.to_dict(), "seed": seed}),
                feature_config=feature_config,
                run_dir=run_dir,
                progress=report,
                should_stop=should_stop,
                dataset_digest=dataset_digest,
            )
            clock.end_run(trained=trained is not None)
            if trained is not None and subsample is None:
                models[(candidate.key, seed)] = trained
            probabilities[(candidate.key, seed)] = pi
            runs_done += 1
        candidate_scores = score_candidate(
            candidate,
            seeds=list(seeds),
            assignments=[probabilities[(candidate.key, s)].argmax(axis=1) for s in seeds],
            representation=representation,
            labels=labels,
        )
        scores.append(candidate_scores)
        logger.info(
            "sweep %s: stability %s, silhouette %s, clusters used >= %d",
            candidate.key, candidate_scores.stability, candidate_scores.silhouette,
            candidate_scores.clusters_used_min,
        )  # fmt: skip
    choice = choose(scores, stability_threshold=stability_threshold)
    key = (choice.chosen.candidate.key, choice.chosen.representative_seed)
    chosen_pi = probabilities[key]
    model: TrainedModel | None
    if subsample is not None:  # the published model learns from every clip
        chosen = choice.chosen.candidate

        def final_report(training: Progress | None) -> None:
            if progress is not None:
                progress(
                    SweepProgress(
                        candidates_done=len(candidates),
                        candidates=len(candidates),
                        runs_done=total_runs - 1,
                        runs=total_runs,
                        candidate=chosen,
                        seed=key[1],
                        training=training,
                        eta_seconds=clock.eta(1),
                    )
                )

        clock.start_run()
        final_config = {**base_config.to_dict(), **chosen.overrides(), "seed": key[1]}
        final_dir = checkpoint_dir / f"final-{key[0]}-s{key[1]}" if checkpoint_dir else None
        model, chosen_pi = _one_run(
            data,
            train_data=data,
            config=TrainConfig.from_dict(final_config),
            feature_config=feature_config,
            run_dir=final_dir,
            progress=final_report,
            should_stop=should_stop,
            dataset_digest=dataset_digest,
        )
        if model is None:  # trained before a resume
            assert final_dir is not None
            model = load_trained_model(final_dir / "model")
    else:
        model = models.get(key)
        if model is None:  # a run finished before a resume: read back from its folder
            assert checkpoint_dir is not None
            model = load_trained_model(checkpoint_dir / f"{key[0]}-s{key[1]}" / "model")
    if progress is not None:
        progress(
            SweepProgress(
                candidates_done=len(candidates),
                candidates=len(candidates),
                runs_done=total_runs,
                runs=total_runs,
                candidate=choice.chosen.candidate,
                seed=key[1],
                training=None,
                eta_seconds=0.0,
            )
        )
    return SweepResult(
        scores=scores,
        choice=choice,
        model=model,
        probabilities=chosen_pi,
        subsample=subsample,
        run_probabilities={f"{k}-s{s}": pi for (k, s), pi in probabilities.items()},
    )


def _resample(data: TrainingWindows, share: float, seed: int) -> TrainingWindows:
    """The windows of a random ``share`` of the clips, drawn with ``seed``."""
    rng = np.random.default_rng([seed, 1])
    n_keep = max(MIN_SWEEP_RECORDINGS, round(share * data.n_clips))
    clips = np.sort(rng.choice(data.n_clips, size=n_keep, replace=False))
    keep = torch.from_numpy(np.isin(data.clip_index.numpy(), clips))
    renumbered = torch.from_numpy(np.searchsorted(clips, data.clip_index[keep].numpy()))
    labels = None
    if data.labels is not None:
        labels = [label for label, kept in zip(data.labels, keep.tolist(), strict=True) if kept]
    return TrainingWindows(
        features=data.features[keep],
        mask=data.mask[keep],
        clip_index=renumbered.to(torch.int64),
        labels=labels,
        label_names=data.label_names,
        norm_stats=data.norm_stats,
        n_clips=n_keep,
        skipped=data.skipped,
    )


def _one_run(
    data: TrainingWindows,
    *,
    train_data: TrainingWindows,
    config: TrainConfig,
    feature_config: FeatureConfig,
    run_dir: Path | None,
    progress: Callable[[Progress | None], None],
    should_stop: Callable[[], bool] | None,
    dataset_digest: str | None,
) -> tuple[TrainedModel | None, np.ndarray]:
    """Train one candidate with one seed, or read it back when a previous attempt finished.

    Returns the model (None when read back: only the chosen one is loaded, at the end) and
    the pi of every clip of ``data`` (``train_data`` is ``data`` or a resample of it).
    """
    if run_dir is not None and (run_dir / _DONE_FILE).is_file():
        document = json.loads((run_dir / _DONE_FILE).read_text())
        if document.get("train_config") == config.to_dict():
            tensors = load_file(str(run_dir / _PROBABILITIES_FILE))
            return None, tensors["probabilities"].numpy()
    trained = train_on_windows(
        train_data,
        config=config,
        feature_config=feature_config,
        progress=progress,
        should_stop=should_stop,
        checkpoint_dir=run_dir / "training" if run_dir is not None else None,
        dataset_digest=dataset_digest,
    )
    pi = clip_probabilities(trained.model, data)
    if run_dir is not None:
        save_trained_model(run_dir / "model", trained)
        save_file(
            {"probabilities": torch.from_numpy(pi).contiguous()}, str(run_dir / _PROBABILITIES_FILE)
        )
        (run_dir / _DONE_FILE).write_text(json.dumps({"train_config": config.to_dict()}))
    return trained, pi
