"""What RQ's failure records say when a job's process died rather than raised.

RQ records such a failure as text only (and a job that raised without recording its own
error, as the traceback text): the registry cleanup writes a note naming
`rq.exceptions.AbandonedJobError`, and a worker whose work horse vanished writes a note that
starts with a fixed phrase. Both are read here and nowhere else. The class name comes from
RQ's own type; the phrase is pinned with RQ's version in pyproject.toml, and
tests/worker/test_rq_failures.py makes RQ itself produce both notes, so an RQ upgrade that
changes them fails there first.
"""

from __future__ import annotations

from rq.exceptions import AbandonedJobError

__all__ = ["HORSE_LOST_PREFIX", "failure_error", "is_abandoned", "is_horse_lost", "is_lost_worker"]

# rq.worker.worker_classes: the note of a horse that exited without reporting its job.
HORSE_LOST_PREFIX = "Work-horse terminated unexpectedly"


def is_abandoned(failure: str) -> bool:
    """The registry cleanup found the job started by a worker that no longer exists."""
    return AbandonedJobError.__name__ in failure


def is_horse_lost(failure: str) -> bool:
    """The worker saw its work horse exit (killed, out of memory) without a result."""
    return failure.startswith(HORSE_LOST_PREFIX)


def is_lost_worker(failure: str) -> bool:
    """The job's process died, so the job itself recorded no error: it may be re-run."""
    return is_abandoned(failure) or is_horse_lost(failure)


def failure_error(failure: str) -> tuple[str, str]:
    """The (type, message) an API client is shown for RQ's failure note: ``WorkerLost`` for
    a dead process, else the exception of a traceback's last line ("module.Type: message")."""
    last_line = next((line for line in reversed(failure.splitlines()) if line.strip()), "")
    if is_lost_worker(failure):
        return "WorkerLost", last_line.strip()
    error_type, _, message = last_line.partition(": ")
    return (
        error_type.strip().rsplit(".", 1)[-1] or "JobFailed",
        message.strip() or last_line.strip() or "The job failed.",
    )
