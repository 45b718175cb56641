"""`ObjectBackend` on a local folder: what ``file://`` URLs open.

Create-only writes write a temporary file and ``link(2)`` it to the key (the link refuses an
existing target, atomically). A compare-and-swap takes a per-key ``flock``, compares the
digest of the current bytes (the ETag here) and renames a temporary over the key. Readers
take no lock: every write becomes visible through one link or rename.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from filelock import FileLock

from object_storage.backend import StoredObject, check_key
from object_storage.errors import ObjectExists, ObjectNotFound, PreconditionFailed

__all__ = ["FileBackend"]

_TEMPORARY_DIR = ".tmp"
_LOCKS_DIR = ".locks"
_CHUNK_BYTES = 1 << 20


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileBackend:
    """Objects as files under ``root`` (``.tmp`` and ``.locks`` are the backend's own)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"file://{self.root}"

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _temporary(self) -> Path:
        folder = self.root / _TEMPORARY_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return folder / uuid.uuid4().hex

    def _write_temporary(self, data: bytes) -> Path:
        temporary = self._temporary()
        with temporary.open("xb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        return temporary

    def _link_new(self, temporary: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(temporary, target)
        except FileExistsError as error:
            raise ObjectExists(f"{key} already exists in {self.describe()}") from error
        finally:
            temporary.unlink(missing_ok=True)

    def read(self, key: str) -> StoredObject:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as error:
            raise ObjectNotFound(f"{key} not found in {self.describe()}") from error
        return StoredObject(data=data, etag=_etag(data))

    def create(self, key: str, data: bytes) -> str:
        self._link_new(self._write_temporary(data), key)
        return _etag(data)

    def create_from_file(self, key: str, source: Path) -> str:
        temporary = self._temporary()
        digest = hashlib.sha256()
        with source.open("rb") as reader, temporary.open("xb") as writer:
            while chunk := reader.read(_CHUNK_BYTES):
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        self._link_new(temporary, key)
        return digest.hexdigest()

    def upload(self, key: str, source: Path) -> str:
        temporary = self._temporary()
        shutil.copyfile(source, temporary)
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, target)
        return _etag(target.read_bytes())

    def replace(self, key: str, data: bytes, *, etag: str | None) -> str:
        target = self._path(key)
        locks = self.root / _LOCKS_DIR
        locks.mkdir(parents=True, exist_ok=True)
        lock_name = hashlib.sha256(key.encode()).hexdigest()
        with FileLock(locks / lock_name, fallback_to_soft=False):
            try:
                current: str | None = _etag(target.read_bytes())
            except FileNotFoundError:
                current = None
            if current != etag:
                raise PreconditionFailed(f"{key} changed in {self.describe()}; read it again")
            temporary = self._write_temporary(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)
        return _etag(data)

    def download(self, key: str, destination: Path) -> None:
        try:
            with self._path(key).open("rb") as reader, destination.open("xb") as writer:
                shutil.copyfileobj(reader, writer, _CHUNK_BYTES)
        except FileNotFoundError as error:
            if not destination.parent.is_dir():
                raise
            raise ObjectNotFound(f"{key} not found in {self.describe()}") from error

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        folder = self.root / prefix.rstrip("/") if prefix else self.root
        if not folder.is_dir():
            return []
        keys = []
        for current, dir_names, file_names in os.walk(folder):
            dir_names[:] = [name for name in dir_names if name not in (_TEMPORARY_DIR, _LOCKS_DIR)]
            for file_name in file_names:
                keys.append((Path(current) / file_name).relative_to(self.root).as_posix())
        return sorted(keys)

    def list_written(self, prefix: str) -> list[tuple[str, float]]:
        written = []
        for key in self.list_keys(prefix):
            try:
                written.append((key, self._path(key).stat().st_mtime))
            except FileNotFoundError:
                continue  # deleted since the listing
        return written

    def list_folders(self, prefix: str) -> list[str]:
        folder = self.root / prefix.rstrip("/") if prefix else self.root
        if not folder.is_dir():
            return []
        return sorted(
            entry.name
            for entry in folder.iterdir()
            if entry.is_dir() and entry.name not in (_TEMPORARY_DIR, _LOCKS_DIR)
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
