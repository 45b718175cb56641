"""A running job's side channel: progress written to ``job.meta``, the cancel flag read back.

Two processes write the same ``meta`` field of a job hash: the job (progress) and the API
(``cancel_requested``). RQ's ``save_meta`` writes the whole field, so a progress write could
erase a cancel request that arrived a millisecond earlier. `update_job_meta` therefore merges
inside a WATCH/MULTI transaction, and everyone in this package writes meta through it.

Progress writes are best effort: a Redis hiccup must not kill hours of training, so a failed
write is logged and retried at the next report.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import redis
from rq.job import Job

from uvac.training import Progress

__all__ = ["ProgressReporter", "stamped_progress", "update_job_meta", "utc_now_iso"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


def stamped_progress(progress: Progress) -> dict[str, Any]:
    """``progress`` as the JSON document kept in ``job.meta["progress"]``, stamped now."""
    return dataclasses.replace(progress, updated_at=utc_now_iso()).to_document()


def update_job_meta(job: Job, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``changes`` into the job's stored meta atomically; returns the merged meta.

    The job object's ``meta`` is updated too, so RQ's own later ``job.save()`` (on retry)
    writes the merged version back rather than a stale one. A job whose hash is gone (expired
    or deleted) is left alone rather than resurrected as a hash holding only meta.
    """
    serializer = job.serializer
    with job.connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(job.key)
                if not pipe.exists(job.key):
                    pipe.reset()
                    return dict(job.meta)
                raw = cast(bytes | None, pipe.hget(job.key, "meta"))
                meta: dict[str, Any] = serializer.loads(raw) if raw else {}
                meta.update(changes)
                pipe.multi()
                pipe.hset(job.key, "meta", serializer.dumps(meta))
                pipe.execute()
                job.meta = meta
                return meta
            except redis.WatchError:
                continue  # the hash changed under us (a heartbeat, a cancel): merge again


class ProgressReporter:
    """The training loop's ``progress`` and ``should_stop`` callbacks for one RQ job.

    ``should_stop`` answers True for a cancel request (``meta["cancel_requested"]``, set by
    the API) and for an interrupt (``meta["interrupt_requested"]``, set by the job's worker
    when it is asked to shut down, so the job can go back to its queue at once).

    Progress reaches Redis at every epoch end and otherwise at most every
    ``interval_seconds``. ``should_stop`` is asked before every batch, so it reads the cancel
    flag from Redis at most every ``cancel_poll_seconds`` and answers from memory in between.
    The first report after a start records which epoch the run resumed from (a run resumed
    from a checkpoint after epoch E reports epoch E + 1 first).
    """

    def __init__(
        self,
        job: Job,
        *,
        interval_seconds: float,
        cancel_poll_seconds: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.job = job
        self.interval_seconds = interval_seconds
        self.cancel_poll_seconds = cancel_poll_seconds
        self.clock = clock
        self._last_write: float | None = None
        self._last_poll: float | None = None
        self._cancel_requested = False
        self._interrupt_requested = False
        self._first_report = True
        self.resumed_from_epoch: int | None = None

    # -- progress -------------------------------------------------------------------------

    def encoding(self, done: int, total: int) -> None:
        """The encoder's pass over the training files, before the first epoch."""
        self._store(Progress.encoding(done, total), force=done == total)

    def evaluating(self, done: int, total: int, *, elapsed_seconds: float) -> None:
        """An evaluation's clips; at the last one always."""
        self._store(Progress.evaluating(done, total, elapsed_seconds=elapsed_seconds),
                    force=done == total)  # fmt: skip

    def __call__(self, progress: Progress) -> None:
        """The training loop's report."""
        changes: dict[str, Any] = {}
        if self._first_report and progress.epoch is not None:
            self._first_report = False
            self.resumed_from_epoch = max(progress.epoch - 1, 0)
            changes["resumed_from_epoch"] = self.resumed_from_epoch
        # A phase's first and last reports always reach Redis (the start's clustering runs
        # for a while after step 0).
        phase_edge = progress.phase == "partition" and progress.step in (0, progress.steps)
        force = progress.epoch_done or phase_edge or bool(changes)
        self._store(progress, force=force, changes=changes)

    def _store(
        self, progress: Progress, *, force: bool, changes: Mapping[str, Any] | None = None
    ) -> None:
        """Write ``progress`` (and ``changes``) when forced or due (every interval)."""
        now = self.clock()
        due = self._last_write is None or now - self._last_write >= self.interval_seconds
        if not (due or force):
            return
        if self.write({**(changes or {}), "progress": stamped_progress(progress)}):
            self._last_write = now

    def write(self, changes: Mapping[str, Any]) -> bool:
        """Merge ``changes`` into the job's meta; False (logged) when Redis is unreachable."""
        try:
            meta = update_job_meta(self.job, changes)
        except redis.RedisError as error:
            logger.warning("job %s: progress not written (%s); will retry", self.job.id, error)
            return False
        self._read_flags(meta)
        return True

    # -- cancellation ---------------------------------------------------------------------

    def _read_flags(self, meta: Mapping[str, Any]) -> None:
        self._cancel_requested = bool(meta.get("cancel_requested"))
        self._interrupt_requested = bool(meta.get("interrupt_requested"))

    @property
    def interrupted(self) -> bool:
        """Stopped because the worker is shutting down (the job goes back to its queue),
        not because someone cancelled it. Reads the flags afresh: a cancel that arrived
        after the interrupt still wins."""
        self._poll()
        return self._interrupt_requested and not self._cancel_requested

    def _poll(self) -> None:
        try:
            raw = cast(bytes | None, self.job.connection.hget(self.job.key, "meta"))
        except redis.RedisError as error:
            logger.warning("job %s: cancel flag not read (%s)", self.job.id, error)
            return
        self._read_flags(self.job.serializer.loads(raw) if raw else {})

    def should_stop(self) -> bool:
        """True once the job was cancelled, or its worker asked it to stop for a shutdown."""
        if self._cancel_requested or self._interrupt_requested:
            return True
        now = self.clock()
        if self._last_poll is not None and now - self._last_poll < self.cancel_poll_seconds:
            return False
        self._last_poll = now
        self._poll()
        if self._cancel_requested:
            logger.info("job %s: cancellation requested", self.job.id)
        elif self._interrupt_requested:
            logger.info("job %s: its worker is shutting down; stopping at this batch", self.job.id)
        return self._cancel_requested or self._interrupt_requested
