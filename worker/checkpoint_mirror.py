"""A running job's checkpoint folder, kept in step with the object store.

Training writes checkpoints into a local folder (`uvac.training.checkpoint`: a tensors file
named by its epoch, then ``checkpoint.json`` naming it and its SHA-256, each renamed into
place). With ``UVAC_CHECKPOINTS_URL`` on S3, `CheckpointMirror` uploads that folder every
``interval_s`` seconds and when the job stops, tensors files before the ``checkpoint.json``
that names them, so the stored JSON never names a file that is not stored. A job started
again on another host (after a worker was lost, or handed back on shutdown) first downloads
what was stored and resumes from its last uploaded epoch; a finished or cancelled job's
stored checkpoints are deleted with the local folder.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from types import TracebackType

from object_storage import ObjectBackend, StorageError

__all__ = ["CheckpointMirror"]

logger = logging.getLogger(__name__)

_COMMIT_FILE = "checkpoint.json"


class CheckpointMirror:
    """Mirror ``local_dir`` to ``<job_id>/`` in ``backend`` while the block runs."""

    def __init__(
        self, backend: ObjectBackend, *, job_id: str, local_dir: Path, interval_s: float = 10.0
    ) -> None:
        self._backend = backend
        self._prefix = f"{job_id}/"
        self._local = Path(local_dir)
        self._interval_s = interval_s
        self._uploaded: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def restore(self) -> int:
        """Download the stored checkpoints when this host has none; returns the files fetched."""
        if self._local_files():
            return 0
        keys = self._backend.list_keys(self._prefix)
        # The commit files last, so a folder read while this runs never names a missing file.
        keys.sort(key=lambda key: key.rsplit("/", 1)[-1] == _COMMIT_FILE)
        for key in keys:
            relative = key[len(self._prefix) :]
            target = self._local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.download")
            partial.unlink(missing_ok=True)
            self._backend.download(key, partial)
            os.replace(partial, target)
            stat = target.stat()
            self._uploaded[relative] = (stat.st_size, stat.st_mtime_ns)
        if keys:
            logger.info("restored %d checkpoint files of %s", len(keys), self._prefix)
        return len(keys)

    def sync(self) -> int:
        """Upload what changed since the last sync, commit files last; returns files sent."""
        with self._lock:
            sent = 0
            files = sorted(self._local_files(), key=lambda r: r.rsplit("/", 1)[-1] == _COMMIT_FILE)
            for relative in files:
                path = self._local / relative
                try:
                    stat = path.stat()
                    state = (stat.st_size, stat.st_mtime_ns)
                    if self._uploaded.get(relative) == state:
                        continue
                    self._backend.upload(self._prefix + relative, path)
                except FileNotFoundError:
                    continue  # replaced by a newer checkpoint meanwhile
                self._uploaded[relative] = state
                sent += 1
            for relative in sorted(set(self._uploaded) - set(files)):
                self._backend.delete(self._prefix + relative)
                del self._uploaded[relative]
            return sent

    def remove(self) -> None:
        for key in self._backend.list_keys(self._prefix):
            self._backend.delete(key)
        self._uploaded.clear()

    def _local_files(self) -> list[str]:
        if not self._local.is_dir():
            return []
        found = []
        for current, _dirs, names in os.walk(self._local):
            for name in names:
                if not name.startswith("."):  # temporaries of atomic writes
                    found.append((Path(current) / name).relative_to(self._local).as_posix())
        return found

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.sync()
            except (StorageError, OSError) as error:  # the next sync tries again
                logger.warning("checkpoint upload of %s failed: %s", self._prefix, error)

    def __enter__(self) -> CheckpointMirror:
        self.restore()
        self._thread = threading.Thread(target=self._run, name="checkpoint-mirror", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if self._local.is_dir():
                self.sync()  # kept for a later run (handed back, or a transient failure)
            else:
                self.remove()  # the job settled and dropped its checkpoints
        except (StorageError, OSError) as error:
            logger.warning("checkpoints of %s not settled in storage: %s", self._prefix, error)
