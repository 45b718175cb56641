"""Safe unpacking of uploaded zip and tar archives.

An upload is hostile until proven otherwise. This module never calls ``extractall``; it walks
the entries itself and refuses the whole archive (`ArchiveRejected`) when an entry

- has an absolute path (``/etc/passwd``, ``C:\\x``; ``C:meeting.wav`` is a plain name with a
  colon) or a ``..`` component (zip-slip),
- is a symbolic link, a hard link, a device, a FIFO or a socket, whatever its name,
- would push the unpacked size or the file count over `UnpackLimits` (`ArchiveTooLarge`).

An entry whose name cannot become a file here (not UTF-8, a zip name flagged UTF-8 that is
not, control, line-break or format characters such as bidi overrides, a component over 255
bytes, a path over `MAX_ENTRY_PATH_BYTES` or deeper than `MAX_ENTRY_DEPTH` folders) is skipped
and reported with the reason (`UnpackResult.skipped`): it says nothing about the safety of the
others.

Memory does not depend on what the archive declares. Sizes are counted on the bytes actually
written, so a zip bomb with lying headers stops at the limit. A zip's central directory is
counted and measured (`MAX_ZIP_DIRECTORY_BYTES`) before `zipfile` parses it. Tars are read by
`dataset_store.tar_stream`, which caps extended headers (long names, PAX records) before reading
them, through a reader that counts every decompressed byte, headers included, against a
fixed budget. The format is detected from the first bytes (magic numbers), not from the
file name.

This module detects the format and hands the archive on: `dataset_store.zip_reader` and
`dataset_store.tar_reader` walk the entries, `dataset_store.unpacking` holds the limits, the
name rules and the budget every entry is written under.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dataset_store.errors import UnsupportedArchive
from dataset_store.tar_reader import unpack_tar
from dataset_store.unpacking import (
    CHUNK,
    MAX_ENTRY_DEPTH,
    MAX_ENTRY_PATH_BYTES,
    MAX_NAME_COMPONENT_BYTES,
    SkippedEntry,
    UnpackLimits,
    UnpackResult,
)
from dataset_store.zip_reader import MAX_ZIP_DIRECTORY_BYTES, unpack_zip

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
            return unpack_zip(seekable, destination=destination, limits=limits)
        return unpack_tar(seekable, archive_format, destination=destination, limits=limits)


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
    with tempfile.SpooledTemporaryFile(max_size=16 * CHUNK) as copy:
        shutil.copyfileobj(stream, copy, CHUNK)
        copy.seek(0)
        yield copy  # type: ignore[misc]
