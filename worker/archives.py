"""Safe unpacking of uploaded zip and tar archives.

An upload is hostile until proven otherwise. This module never calls ``extractall``; it walks
the entries itself and refuses the whole archive (`ArchiveRejected`) when an entry

- has an absolute path (``/etc/passwd``, ``C:\\x``) or a ``..`` component (zip-slip),
- is a symbolic link, a hard link, a device, a FIFO or a socket,
- would push the unpacked size or the file count over `UnpackLimits` (`ArchiveTooLarge`).

Sizes are counted on the bytes actually written, never on what the archive declares, so a
zip bomb with lying headers stops at the limit. Compressed tars are decompressed through a
reader that stops after a fixed budget, so even tar headers cannot inflate without bound.
The format is detected from the first bytes (magic numbers), not from the file name.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import logging
import lzma
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Protocol

from worker.errors import ArchiveRejected, ArchiveTooLarge, UnsupportedArchive

__all__ = ["UnpackLimits", "detect_format", "unpack_archive"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# Headers and padding of a tar are a few hundred bytes per entry; the decompression budget
# allows that on top of the content limit.
_TAR_OVERHEAD_PER_ENTRY = 4096


@dataclass(frozen=True)
class UnpackLimits:
    """Caps on what one archive may unpack to."""

    max_total_bytes: int
    max_file_bytes: int
    max_files: int


def detect_format(stream: BinaryIO) -> str:
    """``"zip"``, ``"tar"``, ``"tar.gz"``, ``"tar.bz2"`` or ``"tar.xz"`` from the magic bytes.

    The stream must be seekable; its position is restored. Raises `UnsupportedArchive`.
    """
    start = stream.tell()
    head = stream.read(512)
    stream.seek(start)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "tar.xz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    raise UnsupportedArchive("The upload is not a zip or tar archive (.zip, .tar, .tar.gz, .tgz).")


def unpack_archive(stream: BinaryIO, *, destination: Path, limits: UnpackLimits) -> list[Path]:
    """Unpack ``stream`` into the empty folder ``destination``; return the files written.

    Paths are relative to ``destination``. On any rejection the caller discards
    ``destination`` (it may hold part of the archive).
    """
    with _seekable(stream) as seekable:
        archive_format = detect_format(seekable)
        logger.info("unpacking a %s archive into %s", archive_format, destination)
        if archive_format == "zip":
            return _unpack_zip(seekable, destination=destination, limits=limits)
        return _unpack_tar(seekable, archive_format, destination=destination, limits=limits)


@contextlib.contextmanager
def _seekable(stream: BinaryIO) -> Iterator[BinaryIO]:
    """The stream itself when seekable, else a temporary spooled copy of it."""
    try:
        seekable = stream.seekable()
    except (AttributeError, OSError):
        seekable = False
    if seekable:
        yield stream
        return
    with tempfile.SpooledTemporaryFile(max_size=16 * _CHUNK) as copy:
        shutil.copyfileobj(stream, copy, _CHUNK)
        copy.seek(0)
        yield copy  # type: ignore[misc]


def safe_relative_path(name: str) -> PurePosixPath | None:
    """The entry name as a relative path inside the archive root, or None for the root.

    Raises `ArchiveRejected` for absolute paths and ``..`` components. Backslashes count as
    separators because zip tools on Windows write them.
    """
    if "\x00" in name:
        raise ArchiveRejected(f"Entry {name!r} has a NUL byte in its name.")
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or _WINDOWS_DRIVE.match(normalised):
        raise ArchiveRejected(f"Entry {name!r} has an absolute path.")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveRejected(f"Entry {name!r} points outside the archive folder ('..').")
    if not parts:
        return None
    return PurePosixPath(*parts)


class _Budget:
    """Counts files and bytes written across one archive, and stops at the limits."""

    def __init__(self, limits: UnpackLimits) -> None:
        self.limits = limits
        self.files = 0
        self.total_bytes = 0

    def add_file(self, name: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise ArchiveTooLarge(f"The archive holds more than {self.limits.max_files} files.")

    def add_bytes(self, name: str, file_bytes: int, count: int) -> None:
        self.total_bytes += count
        if file_bytes > self.limits.max_file_bytes:
            raise ArchiveTooLarge(
                f"Entry {name!r} unpacks to more than {self.limits.max_file_bytes} bytes."
            )
        if self.total_bytes > self.limits.max_total_bytes:
            raise ArchiveTooLarge(
                f"The archive unpacks to more than {self.limits.max_total_bytes} bytes."
            )


def _write_entry(
    source: IO[bytes], *, name: str, relative: PurePosixPath, destination: Path, budget: _Budget
) -> Path:
    target = destination.joinpath(*relative.parts)
    # Belt and braces: the name check already rules out escapes, and we never create links.
    if not target.resolve().is_relative_to(destination.resolve()):
        raise ArchiveRejected(f"Entry {name!r} points outside the archive folder.")
    budget.add_file(name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x": a second entry with the same path must not silently replace the first.
        with open(target, "xb") as sink:
            written = 0
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                budget.add_bytes(name, written, len(chunk))
                sink.write(chunk)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
        raise ArchiveRejected(f"Entry {name!r} clashes with another entry's path.") from error
    return Path(*relative.parts)


def _make_directory(relative: PurePosixPath | None, destination: Path) -> None:
    if relative is not None:
        try:
            destination.joinpath(*relative.parts).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as error:
            raise ArchiveRejected(f"Directory {relative} clashes with a file.") from error


# --- zip -------------------------------------------------------------------------------

# What a damaged or exotic zip entry raises while it is decompressed (CRC mismatch, truncated
# data, unsupported method).
_ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
)


def _unpack_zip(stream: BinaryIO, *, destination: Path, limits: UnpackLimits) -> list[Path]:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise UnsupportedArchive(f"The zip archive cannot be read: {error}") from error
    budget = _Budget(limits)
    written: list[Path] = []
    with archive:
        entries = archive.infolist()
        # Cheap early refusal; the real count is enforced while writing.
        if len(entries) > 2 * limits.max_files:
            raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
        for info in entries:
            relative = safe_relative_path(info.filename)
            _check_zip_entry_type(info)
            if info.is_dir():
                _make_directory(relative, destination)
                continue
            if relative is None:
                raise ArchiveRejected(f"Entry {info.filename!r} has no name.")
            if info.flag_bits & 0x1:
                raise ArchiveRejected(f"Entry {info.filename!r} is encrypted.")
            try:
                with archive.open(info) as source:
                    written.append(
                        _write_entry(
                            source,
                            name=info.filename,
                            relative=relative,
                            destination=destination,
                            budget=budget,
                        )
                    )
            except _ZIP_READ_ERRORS as error:
                raise ArchiveRejected(f"Entry {info.filename!r} cannot be read: {error}") from error
    return written


def _check_zip_entry_type(info: zipfile.ZipInfo) -> None:
    # Unix tools store st_mode in the high 16 bits of external_attr. No file-type bits means
    # "not recorded" (Windows tools, Python's writestr): a regular file or a directory.
    mode = info.external_attr >> 16
    if stat.S_IFMT(mode) == 0:
        return
    if stat.S_ISLNK(mode):
        raise ArchiveRejected(f"Entry {info.filename!r} is a symbolic link.")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ArchiveRejected(f"Entry {info.filename!r} is not a regular file or folder.")


# --- tar -------------------------------------------------------------------------------


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _LimitedReader:
    """A read-only file object that fails once more than ``limit`` bytes were read."""

    def __init__(self, raw: _Readable, *, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._read += len(chunk)
        if self._read > self._limit:
            raise ArchiveTooLarge(f"The archive unpacks to more than {self._limit} bytes.")
        return chunk


def _decompressed(stream: BinaryIO, archive_format: str) -> _Readable:
    if archive_format == "tar.gz":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if archive_format == "tar.bz2":
        return bz2.BZ2File(stream, mode="rb")
    if archive_format == "tar.xz":
        return lzma.LZMAFile(stream, mode="rb")
    return stream


def _unpack_tar(
    stream: BinaryIO, archive_format: str, *, destination: Path, limits: UnpackLimits
) -> list[Path]:
    budget = _Budget(limits)
    # The whole decompressed stream (headers included) is bounded, not only file contents.
    reader = _LimitedReader(
        _decompressed(stream, archive_format),
        limit=limits.max_total_bytes + (2 * limits.max_files + 16) * _TAR_OVERHEAD_PER_ENTRY,
    )
    written: list[Path] = []
    try:
        # "r|": a forward-only stream; members are handled in archive order.
        with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
            for member in _members(archive, limits):
                relative = safe_relative_path(member.name)
                _check_tar_member_type(member)
                if member.isdir():
                    _make_directory(relative, destination)
                    continue
                if relative is None:
                    raise ArchiveRejected(f"Entry {member.name!r} has no name.")
                source = archive.extractfile(member)
                if source is None:  # pragma: no cover (regular members always have data)
                    raise ArchiveRejected(f"Entry {member.name!r} cannot be read.")
                with source:
                    written.append(
                        _write_entry(
                            source,
                            name=member.name,
                            relative=relative,
                            destination=destination,
                            budget=budget,
                        )
                    )
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as error:
        # OSError: gzip and bz2 report corrupt data this way.
        raise UnsupportedArchive(f"The tar archive cannot be read: {error}") from error
    return written


def _members(archive: tarfile.TarFile, limits: UnpackLimits) -> Iterator[tarfile.TarInfo]:
    for entries, member in enumerate(archive, start=1):
        if entries > 2 * limits.max_files:
            raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
        yield member


def _check_tar_member_type(member: tarfile.TarInfo) -> None:
    if member.issym():
        raise ArchiveRejected(f"Entry {member.name!r} is a symbolic link.")
    if member.islnk():
        raise ArchiveRejected(f"Entry {member.name!r} is a hard link.")
    if not (member.isreg() or member.isdir()):
        raise ArchiveRejected(f"Entry {member.name!r} is not a regular file or folder.")
