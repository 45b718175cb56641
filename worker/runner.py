"""The RQ worker class that runs our jobs: RQ's forking `Worker` with these changes.

1. Heartbeat time-to-live: RQ adds a fixed 60 s to the monitoring interval; ours adds
   ``worker_heartbeat_grace``, so a dead worker is noticed as quickly as configured
   (see `worker.recovery`).
2. Children die with their worker. RQ forks the work horse into its own process group (and
   the scheduler into another process), so a SIGKILL of the worker alone would leave the
   horse training on while the job is re-queued and run a second time elsewhere. On Linux
   every child forked by the worker asks the kernel for SIGKILL when its parent dies
   (``PR_SET_PDEATHSIG``, installed by `tie_children_to_this_process`).
3. A training run that stopped on a cancel request returns normally (so it is not failed or
   retried); once RQ has recorded that, the job is marked canceled.
4. A warm shutdown (SIGTERM, as ``docker stop`` sends) does not wait for hours of training:
   the running job is asked to stop at its next batch, returns ``{"interrupted": true}``
   with its checkpoints kept, and goes back to the front of its queue for another worker.
   Once the horse has put it back, the worker does not also fail it: RQ's monitor sometimes
   finds the horse already reaped after a warm shutdown (``waitpid returned None``) and would
   fail the job and schedule a retry, so a handed-back job would come back "scheduled", with a
   retry spent, instead of "queued" (tests/worker/test_runner.py pins both cases). Nor may the
   horse monitor's alarm cut a stop handler short (`_monitor_alarm_deferred`).
5. A job that fails on the caller's input (a domain error whose ``status`` is a 4xx: a data
   set without audio, unknown parameters) is logged in one line without a traceback; a
   traceback is for a bug. RQ keeps the traceback in the job's record either way.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any

from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus
from rq.job_lifecycle import call_exception_handlers
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.worker import WorkerStatus

from worker.progress import update_job_meta
from worker.rq_failures import is_horse_lost

__all__ = ["UvacWorker", "is_user_error", "tie_children_to_this_process"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

_forking_pid: int | None = None
_libc: ctypes.CDLL | None = None  # loaded in the parent: a fork hook should not search for it


def _remember_forking_pid() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _die_with_parent() -> None:
    parent_pid = _forking_pid
    if _libc is None:
        return
    if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        logger.warning("PR_SET_PDEATHSIG failed (errno %d)", ctypes.get_errno())
    # The parent may have died between fork() and prctl(): then nobody would kill us.
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def tie_children_to_this_process() -> None:
    """Make every process forked from now on die (SIGKILL) when its parent dies (Linux).

    Installed once by the worker's entry point, not at import time. The signal follows the
    thread that forked, so fork from the main thread (RQ does).
    """
    global _libc
    if _libc is not None or not sys.platform.startswith("linux"):
        return
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError as error:
        logger.warning("children cannot be tied to the worker (no libc: %s)", error)
        return
    os.register_at_fork(before=_remember_forking_pid, after_in_child=_die_with_parent)


class UvacWorker(Worker):
    def __init__(self, *args: Any, heartbeat_grace: int = 60, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_grace = heartbeat_grace

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        if job.timeout and job.timeout > 0:
            remaining = job.timeout - working_time
            return int(min(remaining, self.job_monitoring_interval)) + self.heartbeat_grace
        return int(self.job_monitoring_interval) + self.heartbeat_grace

    def handle_job_success(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry,
        execution: Any,
    ) -> None:
        super().handle_job_success(job, queue, started_job_registry, execution)
        if job.meta.get("interrupted"):
            self._requeue_interrupted(job, queue)
        elif job.meta.get("canceled"):
            # InvalidJobOperation: the API's own cancel got there first; canceled either way.
            with contextlib.suppress(InvalidJobOperation):
                job.cancel()
            logger.info("job %s stopped on request and marked canceled", job.id)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
        execution: Any = None,
    ) -> None:
        if is_horse_lost(exc_string) and _is_queued(job):
            # The horse finished and handed the job back (`_requeue_interrupted`) before the
            # worker lost track of it: it is waiting in its queue, not failed.
            logger.info(
                "job %s is back on its queue; not failing it for a horse the worker could not "
                "wait for (%s)", job.id, exc_string.strip(),
            )  # fmt: skip
            return
        super().handle_job_failure(
            job,
            queue=queue,
            started_job_registry=started_job_registry,
            exc_string=exc_string,
            execution=execution,
        )

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        error = exc_info[1] if len(exc_info) > 1 else None
        if not is_user_error(error):
            super().handle_exception(job, *exc_info)
            return
        logger.warning(
            "job %s failed on its input: %s: %s",
            job.id, getattr(error, "title", type(error).__name__), error,
        )  # fmt: skip
        call_exception_handlers(self._exc_handlers, job, *exc_info)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's warm-shutdown handler (first SIGTERM or SIGINT), see `_monitor_alarm_deferred`.

        Cut short, it would leave the shutdown half done: the job asked to go back to its
        queue but the worker not told to stop, so it would take the job straight back."""
        with _monitor_alarm_deferred():
            super().request_stop(signum, frame)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """RQ's cold-shutdown handler (a second signal): kill the horse, then exit. Cut short
        while it waits for the horse, the worker would fail the job and carry on."""
        with _monitor_alarm_deferred():
            super().request_force_stop(signum, frame)

    def handle_warm_shutdown_request(self) -> None:
        """Ask the running job (if any) to stop at its next batch and go back to its queue."""
        super().handle_warm_shutdown_request()
        job_id = self.get_current_job_id()
        if job_id is None or self.get_state() != WorkerStatus.BUSY:
            return
        job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
        if job.get_status() != JobStatus.STARTED:  # a finished job's id can linger
            return
        update_job_meta(job, {"interrupt_requested": True})
        logger.info("worker %s shutting down: asked job %s to stop and requeue", self.name, job_id)

    def _requeue_interrupted(self, job: Job, queue: Queue) -> None:
        handoffs = int(job.meta.get("handoffs", 0)) + 1
        update_job_meta(
            job, {"interrupted": False, "interrupt_requested": False, "handoffs": handoffs}
        )
        FinishedJobRegistry(
            queue.name, connection=self.connection, serializer=self.serializer
        ).remove(job)
        job.started_at = None
        job.ended_at = None
        queue.enqueue_job(job, at_front=True)
        logger.info(
            "job %s back on %s after a worker shutdown (handoff %d)", job.id, queue.name, handoffs
        )


@contextlib.contextmanager
def _monitor_alarm_deferred() -> Iterator[None]:
    """Hold RQ's horse-monitor alarm back while a stop handler runs, and raise it after.

    While a job runs, RQ's monitor loop is woken every ``job_monitoring_interval`` by a
    SIGALRM whose handler raises; raised inside a stop handler, that exception would cut the
    handler short. Masking the signal cannot prevent that (another thread of this process may
    take it, and the main thread still runs the handler), so an alarm that comes meanwhile is
    recorded and raised once the handler is done, unless the handler itself raised (a cold
    stop's SystemExit, an idle worker's StopRequested).
    """
    alarms: list[FrameType | None] = []
    monitor_alarm = signal.signal(signal.SIGALRM, lambda _signum, at: alarms.append(at))
    try:
        yield
    finally:
        signal.signal(signal.SIGALRM, monitor_alarm)
    if alarms and callable(monitor_alarm):
        monitor_alarm(signal.SIGALRM, alarms[0])


def is_user_error(error: BaseException | None) -> bool:
    """A domain error that says the caller's input was at fault: its ``status`` is a 4xx
    (uvac, the stores and the worker all give their errors one)."""
    status = getattr(error, "status", None)
    return isinstance(status, int) and 400 <= status < 500


def _is_queued(job: Job) -> bool:
    """Whether Redis says ``job`` waits in a queue now (False for a job that is gone)."""
    try:
        return job.get_status(refresh=True) == JobStatus.QUEUED
    except InvalidJobOperation:
        return False
