"""Safe unpacking of uploaded zip and tar archives.

An upload is hostile until proven otherwise. This module never calls ``extractall``; it walks
the entries itself and refuses the whole archive (`ArchiveRejected`) when an entry

- has an absolute path (``/etc/passwd``, ``C:\\x``) or a ``..`` component (zip-slip),
- is a symbolic link, a hard link, a device, a FIFO or a socket,
- would push the unpacked size or the file count over `UnpackLimits` (`ArchiveTooLarge`).

An entry whose name cannot become a file here (not UTF-8, a component over 255 bytes, a path
over `MAX_ENTRY_PATH_BYTES` or deeper than `MAX_ENTRY_DEPTH` folders) is skipped and reported
with the reason (`UnpackResult.skipped`): it says nothing about the safety of the others.

Memory does not depend on what the archive declares. Sizes are counted on the bytes actually
written, so a zip bomb with lying headers stops at the limit. A zip's central directory is
counted and measured (`MAX_ZIP_DIRECTORY_BYTES`) before `zipfile` parses it. Tars are read by
`dataset_store.tar_stream`, which caps extended headers (long names, PAX records) before reading
them, through a reader that counts every decompressed byte, headers included, against a
fixed budget. The format is detected from the first bytes (magic numbers), not from the
file name.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import logging
import lzma
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from dataset_store.errors import ArchiveRejected, ArchiveTooLarge, UnsupportedArchive
from dataset_store.tar_stream import (
    MAX_EXTENDED_HEADER_BYTES,
    MAX_EXTENDED_HEADERS,
    Readable,
    iter_tar_entries,
)

__all__ = [
    "MAX_ENTRY_DEPTH",
    "MAX_ENTRY_PATH_BYTES",
    "MAX_NAME_COMPONENT_BYTES",
    "MAX_ZIP_DIRECTORY_BYTES",
    "SkippedEntry",
    "UnpackLimits",
    "UnpackResult",
    "detect_format",
    "unpack_archive",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
# Headers and padding of a tar are a few hundred bytes per entry; the decompression budget
# allows that on top of the content limit.
_TAR_OVERHEAD_PER_ENTRY = 4096
# What a name may be to become a file: NAME_MAX of Linux file systems per component, and a
# relative path short and shallow enough to stay far below PATH_MAX under the data folder.
MAX_NAME_COMPONENT_BYTES = 255
MAX_ENTRY_PATH_BYTES = 1024
MAX_ENTRY_DEPTH = 32
# A zip's central directory takes about 100 bytes per entry; zipfile reads it whole and
# builds an object per entry, so its size and entry count are checked first.
MAX_ZIP_DIRECTORY_BYTES = 32 * 1024 * 1024
# Longest entry name quoted in a reason or an error message.
_SHOWN_NAME_CHARS = 120


@dataclass(frozen=True)
class UnpackLimits:
    """Caps on what one archive may unpack to."""

    max_total_bytes: int
    max_file_bytes: int
    max_files: int

    @property
    def max_entries(self) -> int:
        """Entries of any kind (folders too) an archive may list."""
        return 2 * self.max_files


@dataclass(frozen=True)
class SkippedEntry:
    """An entry left out because its name cannot become a file; ``name`` is printable."""

    name: str
    reason: str


@dataclass
class UnpackResult:
    """The files written (relative to the destination) and the entries skipped."""

    files: list[Path] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)


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


def unpack_archive(stream: BinaryIO, *, destination: Path, limits: UnpackLimits) -> UnpackResult:
    """Unpack ``stream`` into the empty folder ``destination``.

    Returns the files written (relative to ``destination``) and the entries skipped for
    their names. On any rejection the caller discards ``destination`` (it may hold part of
    the archive).
    """
    with _seekable(stream) as seekable:
        archive_format = detect_format(seekable)
        logger.info("unpacking a %s archive", archive_format)
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


def shown_name(name: str) -> str:
    """An entry name as quoted in messages: printable, and cut short when it is long."""
    if len(name) > _SHOWN_NAME_CHARS:
        name = f"{name[: _SHOWN_NAME_CHARS // 2]}...{name[-_SHOWN_NAME_CHARS // 4 :]}"
    return repr(name)


def safe_relative_path(name: str) -> PurePosixPath | None:
    """The entry name as a relative path inside the archive root, or None for the root.

    Raises `ArchiveRejected` for absolute paths and ``..`` components. Backslashes count as
    separators because zip tools on Windows write them.
    """
    if "\x00" in name:
        raise ArchiveRejected(f"Entry {shown_name(name)} has a NUL byte in its name.")
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or _WINDOWS_DRIVE.match(normalised):
        raise ArchiveRejected(f"Entry {shown_name(name)} has an absolute path.")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveRejected(f"Entry {shown_name(name)} points outside the archive folder ('..').")
    if not parts:
        return None
    return PurePosixPath(*parts)


def unstorable_name(relative: PurePosixPath) -> str | None:
    """Why a (safe) relative path cannot become a file here, or None when it can."""
    if any(len(part.encode("utf-8")) > MAX_NAME_COMPONENT_BYTES for part in relative.parts):
        return f"a folder or file name in it is longer than {MAX_NAME_COMPONENT_BYTES} bytes"
    if len(relative.parts) > MAX_ENTRY_DEPTH:
        return f"it is more than {MAX_ENTRY_DEPTH} folders deep"
    if len(str(relative).encode("utf-8")) > MAX_ENTRY_PATH_BYTES:
        return f"its path is longer than {MAX_ENTRY_PATH_BYTES} bytes"
    return None


class _Budget:
    """Counts files and bytes written across one archive, and stops at the limits."""

    def __init__(self, limits: UnpackLimits) -> None:
        self.limits = limits
        self.files = 0
        self.total_bytes = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise ArchiveTooLarge(f"The archive holds more than {self.limits.max_files} files.")

    def add_bytes(self, name: str, file_bytes: int, count: int) -> None:
        self.total_bytes += count
        if file_bytes > self.limits.max_file_bytes:
            raise ArchiveTooLarge(
                f"Entry {shown_name(name)} unpacks to more than {self.limits.max_file_bytes} bytes."
            )
        if self.total_bytes > self.limits.max_total_bytes:
            raise ArchiveTooLarge(
                f"The archive unpacks to more than {self.limits.max_total_bytes} bytes."
            )


class _Unpacking:
    """What one archive has written and skipped so far, under one budget."""

    def __init__(self, destination: Path, limits: UnpackLimits) -> None:
        self.destination = destination
        self.budget = _Budget(limits)
        self.result = UnpackResult()

    def skip(self, name: str, reason: str) -> None:
        self.budget.add_file()
        self.result.skipped.append(SkippedEntry(name=name, reason=reason))

    def add_file(self, source: Readable, *, name: str, relative: PurePosixPath) -> None:
        """Write one entry's data, or skip it when its name cannot be a file here."""
        reason = unstorable_name(relative)
        if reason is not None:
            self.skip(name, f"not unpacked: {reason}")
            return
        target = self.destination.joinpath(*relative.parts)
        # Belt and braces: the name check already rules out escapes, and we never create links.
        if not target.resolve().is_relative_to(self.destination.resolve()):
            raise ArchiveRejected(f"Entry {shown_name(name)} points outside the archive folder.")
        self.budget.add_file()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # "x": a second entry with the same path must not silently replace the first.
            with open(target, "xb") as sink:
                written = 0
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    self.budget.add_bytes(name, written, len(chunk))
                    sink.write(chunk)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
            raise ArchiveRejected(
                f"Entry {shown_name(name)} clashes with another entry's path."
            ) from error
        except OSError as error:
            if error.errno != errno.ENAMETOOLONG:
                raise
            # Within the name rules yet too long for this file system: the data folder's own
            # path is long. The error's text would show that path, so it is not quoted.
            target.unlink(missing_ok=True)
            self.result.skipped.append(
                SkippedEntry(name=name, reason="not unpacked: its path is too long to store")
            )
            return
        self.result.files.append(Path(*relative.parts))

    def add_directory(self, relative: PurePosixPath | None) -> None:
        if relative is None or unstorable_name(relative) is not None:
            return  # the files inside, if any, are skipped with the reason
        try:
            self.destination.joinpath(*relative.parts).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as error:
            raise ArchiveRejected(
                f"Directory {shown_name(str(relative))} clashes with a file."
            ) from error


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


def _unpack_zip(stream: BinaryIO, *, destination: Path, limits: UnpackLimits) -> UnpackResult:
    _check_zip_directory(stream, limits)
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise UnsupportedArchive(f"The zip archive cannot be read: {error}") from error
    unpacking = _Unpacking(destination, limits)
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
        for info in entries:
            relative = safe_relative_path(info.filename)
            _check_zip_entry_type(info)
            if info.is_dir():
                unpacking.add_directory(relative)
                continue
            if relative is None:
                raise ArchiveRejected(f"Entry {shown_name(info.filename)} has no name.")
            if info.flag_bits & 0x1:
                raise ArchiveRejected(f"Entry {shown_name(info.filename)} is encrypted.")
            try:
                with archive.open(info) as source:
                    unpacking.add_file(source, name=info.filename, relative=relative)
            except _ZIP_READ_ERRORS as error:
                raise ArchiveRejected(
                    f"Entry {shown_name(info.filename)} cannot be read: {error}"
                ) from error
    return unpacking.result


_ZIP_END = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP_CENTRAL_ENTRY = struct.Struct("<4s4B4HL2L5H2L")
_ZIP_MAX_COMMENT = 0xFFFF


def _check_zip_directory(stream: BinaryIO, limits: UnpackLimits) -> None:
    """Refuse a zip whose central directory is over `MAX_ZIP_DIRECTORY_BYTES` or lists more
    than ``limits.max_entries`` entries, reading it in place of zipfile's whole parse.

    What this cannot make sense of is left to zipfile, which then refuses the archive.
    """
    located = _zip_directory_location(stream)
    if located is None:
        return
    start, size, declared_entries = located
    if declared_entries > limits.max_entries:
        raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
    if size > MAX_ZIP_DIRECTORY_BYTES:
        raise ArchiveTooLarge(
            f"The zip's central directory is {size} bytes; at most {MAX_ZIP_DIRECTORY_BYTES} "
            "are accepted."
        )
    stream.seek(start)
    directory = stream.read(size)
    # The declared count may lie; zipfile walks the bytes, so count what it would find.
    position = entries = 0
    while position + _ZIP_CENTRAL_ENTRY.size <= len(directory):
        record = _ZIP_CENTRAL_ENTRY.unpack_from(directory, position)
        if record[0] != b"PK\x01\x02":
            break
        entries += 1
        if entries > limits.max_entries:
            raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
        name_length, extra_length, comment_length = record[12], record[13], record[14]
        position += _ZIP_CENTRAL_ENTRY.size + name_length + extra_length + comment_length
    stream.seek(0)


def _zip_directory_location(stream: BinaryIO) -> tuple[int, int, int] | None:
    """(offset, size, declared entry count) of the central directory, or None."""
    end = stream.seek(0, io.SEEK_END)
    tail_length = min(end, _ZIP_END.size + _ZIP_MAX_COMMENT)
    stream.seek(end - tail_length)
    tail = stream.read(tail_length)
    stream.seek(0)
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or found + _ZIP_END.size > len(tail):
        return None
    record = _ZIP_END.unpack_from(tail, found)
    entries, size = record[4], record[5]
    directory_end = end - tail_length + found
    record64_at = directory_end - _ZIP64_LOCATOR.size - _ZIP64_END.size
    if (entries == 0xFFFF or size == 0xFFFFFFFF or record[6] == 0xFFFFFFFF) and record64_at >= 0:
        # Maybe zip64: its own end record, where zipfile looks for it, says the true values.
        # Without one, zipfile takes the plain values as they are, and so does this.
        stream.seek(record64_at)
        raw = stream.read(_ZIP64_END.size + _ZIP64_LOCATOR.size)
        stream.seek(0)
        if len(raw) == _ZIP64_END.size + _ZIP64_LOCATOR.size:
            record64 = _ZIP64_END.unpack_from(raw)
            locator = _ZIP64_LOCATOR.unpack_from(raw, _ZIP64_END.size)
            if record64[0] == b"PK\x06\x06" and locator[0] == b"PK\x06\x07":
                entries, size = record64[7], record64[8]
                directory_end = record64_at
    start = directory_end - size
    if start < 0:
        return None
    return start, size, entries


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


class _LimitedReader:
    """A read-only file object that fails once more than ``limit`` bytes were read."""

    def __init__(self, raw: Readable, *, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._read += len(chunk)
        if self._read > self._limit:
            raise ArchiveTooLarge(f"The archive unpacks to more than {self._limit} bytes.")
        return chunk


def _decompressed(stream: BinaryIO, archive_format: str) -> Readable:
    if archive_format == "tar.gz":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if archive_format == "tar.bz2":
        return bz2.BZ2File(stream, mode="rb")
    if archive_format == "tar.xz":
        return lzma.LZMAFile(stream, mode="rb")
    return stream


def _tar_budget(limits: UnpackLimits) -> int:
    """Every decompressed byte a tar may hold: contents plus headers of every entry."""
    per_entry = _TAR_OVERHEAD_PER_ENTRY + MAX_EXTENDED_HEADERS * MAX_EXTENDED_HEADER_BYTES
    return limits.max_total_bytes + (limits.max_entries + 16) * per_entry


def _unpack_tar(
    stream: BinaryIO, archive_format: str, *, destination: Path, limits: UnpackLimits
) -> UnpackResult:
    unpacking = _Unpacking(destination, limits)
    reader = _LimitedReader(_decompressed(stream, archive_format), limit=_tar_budget(limits))
    entries = 0
    try:
        for entry, data in iter_tar_entries(reader, chunk_size=_CHUNK):
            entries += 1
            if entries > limits.max_entries:
                raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
            try:
                name = entry.name.decode("utf-8")
            except UnicodeDecodeError:
                printable = entry.name.decode("utf-8", "backslashreplace")
                if entry.kind == "file":
                    unpacking.skip(printable, "not unpacked: its name is not UTF-8 text")
                continue
            relative = safe_relative_path(name)
            if entry.kind == "symlink":
                raise ArchiveRejected(f"Entry {shown_name(name)} is a symbolic link.")
            if entry.kind == "hardlink":
                raise ArchiveRejected(f"Entry {shown_name(name)} is a hard link.")
            if entry.kind == "other":
                raise ArchiveRejected(f"Entry {shown_name(name)} is not a regular file or folder.")
            if entry.kind == "directory":
                unpacking.add_directory(relative)
                continue
            if relative is None:
                raise ArchiveRejected(f"Entry {shown_name(name)} has no name.")
            unpacking.add_file(data, name=name, relative=relative)
    except (EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as error:
        raise UnsupportedArchive(
            f"The {archive_format} archive cannot be decompressed ({type(error).__name__})."
        ) from error
    except OSError as error:
        if error.filename is not None:
            raise  # a failure of our own folder, not of the upload
        # bz2 reports corrupt data as an OSError without a file name.
        raise UnsupportedArchive(
            f"The {archive_format} archive cannot be decompressed ({error.strerror or error})."
        ) from error
    return unpacking.result
