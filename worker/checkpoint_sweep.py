"""Delete the checkpoint folders that nothing will resume: those of jobs Redis has forgotten.

A training run keeps its checkpoints in ``UVAC_CHECKPOINTS_DIR/<job id>`` while it may still
be resumed (a retry, a re-run after its worker died or shut down) and deletes them when it
ends for good (`worker.jobs`). A folder stays behind when the run never got that far: its
retries ran out during a Redis outage, or its work horse died and RQ failed the job rather
than `worker.recovery`. Such a job's record expires (``UVAC_JOB_FAILURE_TTL``); its folder,
until this sweep, stayed forever.

A folder goes when (1) Redis holds no record of its job and no queue or started registry
lists its id, and (2) nothing in it changed for ``UVAC_ORPHAN_CHECKPOINT_GRACE_SECONDS``.
A job that still exists, in any state, keeps its folder: a failed job may yet be taken
back by the recovery sweep, a scheduled one waits for its retry. The grace covers a work
horse that still writes while its record is gone (deleted by hand, evicted).

Every worker runs this sweep (`worker.recovery.RecoveryThread`) on the shared volume, so a
folder is first renamed to a hidden name beside it, which exactly one sweeper manages, and
only then deleted; a hidden leftover of a sweep killed mid-delete goes on the next pass.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from redis import Redis
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from service_config import Settings
from worker.queues import QUEUE_NAMES, queue_for

__all__ = ["sweep_orphan_checkpoints"]

logger = logging.getLogger(__name__)

# Job ids are uuid4 strings. Anything else in the folder is not ours to delete (a volume's
# own lost+found, a dotfile, an operator's notes).
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_REMOVING_PREFIX = ".removing-"


def sweep_orphan_checkpoints(
    redis: Redis, *, settings: Settings, now: float | None = None
) -> list[str]:
    """One pass over the checkpoints folder; returns the job ids whose folders were deleted."""
    root = settings.checkpoints_path
    moment = time.time() if now is None else now
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except FileNotFoundError:  # no training has run here yet
        return []
    for entry in entries:
        if entry.name.startswith(_REMOVING_PREFIX) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)  # claimed earlier, not finished
    grace = settings.orphan_checkpoint_grace_seconds
    old_enough = [
        Path(entry.path)
        for entry in entries
        if _JOB_ID.fullmatch(entry.name)
        and entry.is_dir(follow_symlinks=False)
        and moment - _last_change(Path(entry.path), default=moment) >= grace
    ]
    if not old_enough:
        return []  # the usual case: no Redis round trip
    listed = _listed_job_ids(redis)
    removed = []
    for folder in old_enough:
        job_id = folder.name
        if job_id in listed or Job.exists(job_id, connection=redis):
            continue
        if _remove(folder):
            removed.append(job_id)
            logger.info(
                "deleted the checkpoints of job %s: no such job in Redis, unchanged for %d s "
                "or more",
                job_id,
                grace,
            )
    return removed


def _last_change(folder: Path, *, default: float) -> float:
    """The newest modification time of the folder and its entries (checkpoint files are
    replaced by rename, which touches the folder; one written in place would not)."""
    newest = None
    for path in (folder, *_children(folder)):
        try:
            modified = path.lstat().st_mtime
        except FileNotFoundError:  # replaced or deleted while we looked
            continue
        newest = modified if newest is None else max(newest, modified)
    return default if newest is None else newest


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _listed_job_ids(redis: Redis) -> set[str]:
    """Ids some queue still holds or some worker still runs, whatever their records say."""
    listed: set[str] = set()
    for name in QUEUE_NAMES:
        listed.update(queue_for(redis, name).get_job_ids())
        started = StartedJobRegistry(name, connection=redis, serializer=JSONSerializer)
        # cleanup=False: expired entries are the recovery sweep's to handle, not ours.
        listed.update(job_id for job_id, _ in started.get_job_and_execution_ids(cleanup=False))
    return listed


def _remove(folder: Path) -> bool:
    """Claim the folder by renaming it, then delete it; False when another sweeper won."""
    claimed = folder.with_name(f"{_REMOVING_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        folder.rename(claimed)
    except FileNotFoundError:
        return False
    try:
        shutil.rmtree(claimed)
    except OSError as error:
        logger.warning("checkpoints of %s only partly deleted (%s); retrying later", folder, error)
    return True
