"""The tar path of `dataset_store.archives.unpack_archive`: plain, gzip, bzip2 or xz tars read
by `dataset_store.tar_stream` through a reader that counts every decompressed byte, headers
included, against a fixed budget (`_tar_budget`), each entry going through an `Unpacking`.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from pathlib import Path
from typing import BinaryIO

from dataset_store.errors import ArchiveRejected, ArchiveTooLarge, UnsupportedArchive
from dataset_store.tar_stream import (
    MAX_EXTENDED_HEADER_BYTES,
    MAX_EXTENDED_HEADERS,
    Readable,
    iter_tar_entries,
)
from dataset_store.unpacking import (
    CHUNK,
    Unpacking,
    UnpackLimits,
    UnpackResult,
    safe_relative_path,
    shown_name,
)

__all__ = ["unpack_tar"]

# Headers and padding of a tar are a few hundred bytes per entry; the decompression budget
# allows that on top of the content limit.
_TAR_OVERHEAD_PER_ENTRY = 4096


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


def unpack_tar(
    stream: BinaryIO, archive_format: str, *, destination: Path, limits: UnpackLimits
) -> UnpackResult:
    unpacking = Unpacking(destination, limits)
    reader = _LimitedReader(_decompressed(stream, archive_format), limit=_tar_budget(limits))
    entries = 0
    try:
        for entry, data in iter_tar_entries(reader, chunk_size=CHUNK):
            entries += 1
            if entries > limits.max_entries:
                raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
            try:
                name = entry.name.decode("utf-8")
            except UnicodeDecodeError:
                printable = entry.name.decode("utf-8", "backslashreplace")
                if entry.kind in ("symlink", "hardlink", "other"):
                    # Whatever its name, a link or device refuses the archive, as below.
                    raise ArchiveRejected(
                        f"Entry {shown_name(printable)} is a link or not a regular file."
                    ) from None
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
