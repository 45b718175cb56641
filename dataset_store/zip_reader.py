"""The zip path of `dataset_store.archives.unpack_archive`: the central directory is measured
and counted (`MAX_ZIP_DIRECTORY_BYTES`, ``UnpackLimits.max_entries``) before `zipfile` parses
it, and every entry goes through an `Unpacking` (names, types, budget).
"""

from __future__ import annotations

import io
import lzma
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dataset_store.errors import ArchiveRejected, ArchiveTooLarge, UnsupportedArchive
from dataset_store.unpacking import (
    Unpacking,
    UnpackLimits,
    UnpackResult,
    safe_relative_path,
    shown_name,
)

__all__ = ["MAX_ZIP_DIRECTORY_BYTES", "unpack_zip"]

# A zip's central directory takes about 100 bytes per entry; zipfile reads it whole and
# builds an object per entry, so its size and entry count are checked first.
MAX_ZIP_DIRECTORY_BYTES = 32 * 1024 * 1024

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


def unpack_zip(stream: BinaryIO, *, destination: Path, limits: UnpackLimits) -> UnpackResult:
    misnamed = _check_zip_directory(stream, limits)
    readable = _FlagsCleared(stream, misnamed) if misnamed else stream
    try:
        archive = zipfile.ZipFile(readable)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise UnsupportedArchive(f"The zip archive cannot be read: {error}") from error
    unpacking = Unpacking(destination, limits)
    misnamed_entries = {entry.index: entry.name for entry in misnamed}
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
        for index, info in enumerate(entries):
            if index in misnamed_entries:
                # As in a tar: a name that is not text skips its file (a link or device with
                # one still refuses the archive, below).
                printable = misnamed_entries[index].decode("utf-8", "backslashreplace")
                _check_zip_entry_type(info, shown=printable)
                if not info.is_dir():
                    unpacking.skip(
                        printable, "not unpacked: its name is marked as UTF-8 but is not UTF-8 text"
                    )
                continue
            relative = safe_relative_path(info.filename)
            _check_zip_entry_type(info, shown=info.filename)
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
# General purpose bit 11: the entry's name is UTF-8 (else cp437). The flag bits are the
# record's 9th and 10th bytes, little-endian, so bit 11 is in the 10th.
_UTF8_NAME_FLAG = 0x800
_FLAGS_HIGH_BYTE = 9
_ZIP_MAX_COMMENT = 0xFFFF


@dataclass(frozen=True)
class _MisnamedEntry:
    """A central directory entry flagged as having a UTF-8 name that is not UTF-8."""

    index: int  # its place in the directory, as in `ZipFile.infolist()`
    flags_at: int  # the stream offset of the high byte of its flag bits
    flags_byte: int  # that byte as stored
    name: bytes


def _check_zip_directory(stream: BinaryIO, limits: UnpackLimits) -> list[_MisnamedEntry]:
    """Refuse a zip whose central directory is over `MAX_ZIP_DIRECTORY_BYTES` or lists more
    than ``limits.max_entries`` entries, reading it in place of zipfile's whole parse; answer
    the entries whose name is flagged UTF-8 but is not (zipfile would refuse the whole
    archive for one of them).

    What this cannot make sense of is left to zipfile, which then refuses the archive.
    """
    located = _zip_directory_location(stream)
    if located is None:
        return []
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
    misnamed = []
    while position + _ZIP_CENTRAL_ENTRY.size <= len(directory):
        record = _ZIP_CENTRAL_ENTRY.unpack_from(directory, position)
        if record[0] != b"PK\x01\x02":
            break
        entries += 1
        if entries > limits.max_entries:
            raise ArchiveTooLarge(f"The archive holds more than {limits.max_files} files.")
        flags, name_length, extra_length, comment_length = record[5], *record[12:15]
        name_at = position + _ZIP_CENTRAL_ENTRY.size
        name = directory[name_at : name_at + name_length]
        if flags & _UTF8_NAME_FLAG and not _is_utf8(name):
            flags_at = position + _FLAGS_HIGH_BYTE
            misnamed.append(
                _MisnamedEntry(entries - 1, start + flags_at, directory[flags_at], bytes(name))
            )
        position = name_at + name_length + extra_length + comment_length
    stream.seek(0)
    return misnamed


def _is_utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _FlagsCleared:
    """The zip's bytes as read, with the UTF-8 flag of each misnamed entry's directory record
    cleared: zipfile then reads those names as cp437 instead of refusing the archive, and
    `unpack_zip` skips those entries by their place in the directory."""

    def __init__(self, raw: BinaryIO, misnamed: list[_MisnamedEntry]) -> None:
        self._raw = raw
        self._patches = {
            entry.flags_at: entry.flags_byte & ~(_UTF8_NAME_FLAG >> 8) for entry in misnamed
        }
        self._first, self._last = min(self._patches), max(self._patches)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        start = self._raw.tell()
        data = self._raw.read(size)
        if start > self._last or start + len(data) <= self._first:
            return data
        patched = bytearray(data)
        for offset in range(max(start, self._first), min(start + len(data), self._last + 1)):
            if offset in self._patches:
                patched[offset - start] = self._patches[offset]
        return bytes(patched)


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


def _check_zip_entry_type(info: zipfile.ZipInfo, *, shown: str) -> None:
    # Unix tools store st_mode in the high 16 bits of external_attr. No file-type bits means
    # "not recorded" (Windows tools, Python's writestr): a regular file or a directory.
    mode = info.external_attr >> 16
    if stat.S_IFMT(mode) == 0:
        return
    if stat.S_ISLNK(mode):
        raise ArchiveRejected(f"Entry {shown_name(shown)} is a symbolic link.")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ArchiveRejected(f"Entry {shown_name(shown)} is not a regular file or folder.")
