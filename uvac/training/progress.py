"""`Progress`: the one record of where long work stands, from the loop to the caller.

The training loop, the encoder's pass over the training files and an evaluation all report a
`Progress`. The CLI draws it as a progress bar; a worker writes `to_document()` to the job's
meta; the API's job schema is this record (`app.schemas.jobs.JobProgress`), so the fields are
named once, here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from uvac.training.history import EpochRecord

__all__ = ["Phase", "Progress"]

Phase = Literal[
    "encoding",
    "partition",
    "training",
    "evaluating",
    "sweep",
    "teacher",
    "distilling",
    "matching",
    "publishing",
]


@dataclass(frozen=True)
class Progress:
    """Where a job stands. Fields that do not apply to its phase are ``None``."""

    # encoding: a pretrained encoder embeds the training files once (files_done of files);
    # partition: the start clusters the training windows, then teaches h that partition
    # (step of steps batches; step 0 while the clustering itself runs); training: the epochs;
    # evaluating: step of steps clips; sweep: runs_done of runs (candidates x seeds), with
    # the running training's fields beside and its phase in run_phase; teacher: a teacher's
    # pi of each file (files_done of files); distilling: a student's epochs; matching: the
    # new and the earlier version assign the recordings (files_done of files); publishing:
    # the version is written to the store.
    phase: Phase | None = None
    run_phase: Phase | None = None
    files_done: int | None = None
    files: int | None = None
    epoch: int | None = None  # from 1
    epochs: int | None = None
    step: int | None = None  # batches of this epoch, or clips of an evaluation
    steps: int | None = None
    loss: float | None = None
    reconstruction: float | None = None
    kl_z: float | None = None
    kl_y: float | None = None
    balance: float | None = None  # KL(batch-mean pi || uniform): near log K when collapsed
    temperature: float | None = None
    learning_rate: float | None = None
    accuracy: float | None = None  # on the training labels, at epoch ends, when labelled
    nmi: float | None = None
    agreement: float | None = None  # distilling: share of the batch's windows in the teacher's
    elapsed_seconds: float | None = None  # since this run (not a resumed one) started
    eta_seconds: float | None = None  # None while there is nothing yet to estimate from
    # The whole job's estimate where it is more than this phase's (a sweep: every run left).
    job_eta_seconds: float | None = None
    epoch_done: bool = False
    candidates_done: int | None = None  # a sweep's candidates (settings of K) fully trained
    candidates: int | None = None
    runs_done: int | None = None  # a sweep's trainings (candidates x seeds) done
    runs: int | None = None
    candidate: dict[str, Any] | None = None  # the candidate being trained: n_clusters, ...
    seed: int | None = None
    updated_at: str | None = None  # ISO 8601, set by whoever stores the record

    @classmethod
    def encoding(cls, files_done: int, files: int) -> Progress:
        return cls(phase="encoding", files_done=files_done, files=files)

    @classmethod
    def counted(
        cls, phase: Phase, done: int, total: int, *, elapsed_seconds: float, unit: str = "steps"
    ) -> Progress:
        """``done`` of ``total`` in ``phase`` (``unit`` "steps": step/steps, "files":
        files_done/files), with the time left extrapolated from the time so far."""
        eta = elapsed_seconds / done * (total - done) if done else None
        timing = cls(phase=phase, elapsed_seconds=elapsed_seconds, eta_seconds=eta)
        if unit == "files":
            return dataclasses.replace(timing, files_done=done, files=total)
        return dataclasses.replace(timing, step=done, steps=total)

    @classmethod
    def partition(cls, done: int, total: int, *, elapsed_seconds: float) -> Progress:
        """``done`` of ``total`` batches teaching h the start's partition (0 while the
        clustering runs, which has no steps to count)."""
        return cls.counted("partition", done, total, elapsed_seconds=elapsed_seconds)

    @classmethod
    def matching(cls, done: int, total: int, *, elapsed_seconds: float) -> Progress:
        """``done`` of ``total`` recordings assigned by the new and the earlier version."""
        return cls.counted("matching", done, total, elapsed_seconds=elapsed_seconds, unit="files")

    @classmethod
    def evaluating(cls, done: int, total: int, *, elapsed_seconds: float) -> Progress:
        return cls.counted("evaluating", done, total, elapsed_seconds=elapsed_seconds)

    @classmethod
    def training(
        cls,
        record: EpochRecord,
        *,
        epochs: int,
        step: int,
        steps: int,
        elapsed_seconds: float,
        eta_seconds: float | None,
        epoch_done: bool,
    ) -> Progress:
        """The report after ``step`` of ``steps`` batches of ``record``'s epoch: its loss
        means, schedule values and label metrics, with where the run stands."""
        return cls(
            phase="training",
            epoch=record.epoch,
            epochs=epochs,
            step=step,
            steps=steps,
            loss=record.loss,
            reconstruction=record.reconstruction,
            kl_z=record.kl_z,
            kl_y=record.kl_y,
            balance=record.balance,
            temperature=record.temperature,
            learning_rate=record.learning_rate,
            accuracy=record.accuracy,
            nmi=record.nmi,
            elapsed_seconds=elapsed_seconds,
            eta_seconds=eta_seconds,
            epoch_done=epoch_done,
        )

    def to_document(self) -> dict[str, Any]:
        """JSON-able: non-finite numbers become ``None`` (JSON has no NaN), times are
        rounded to 0.1 s, and a negative estimate is 0."""
        document: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            if name in ("elapsed_seconds", "eta_seconds", "job_eta_seconds") and value is not None:
                value = round(max(float(value), 0.0), 1)
            document[name] = value
        return document
