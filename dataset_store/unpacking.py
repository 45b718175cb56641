"""Writing an archive's entries under limits: which names may become files, the budget, the result.

The zip and tar readers (`dataset_store.zip_reader`, `dataset_store.tar_reader`) walk their
entries and hand each one to an `Unpacking`, which

- refuses absolute paths, ``..`` components and NUL bytes (`safe_relative_path`),
- skips, with the reason, a name that cannot become a file here (`unstorable_name`),
- counts files and the bytes actually written against `UnpackLimits` (`Budget`), so a zip
  bomb with lying headers stops at the limit.
"""

from __future__ import annotations

import errno
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dataset_store.errors import ArchiveRejected, ArchiveTooLarge
from dataset_store.tar_stream import Readable

__all__ = [
    "CHUNK",
    "MAX_ECHOED_NAME_CHARS",
    "MAX_ENTRY_DEPTH",
    "MAX_ENTRY_PATH_BYTES",
    "MAX_NAME_COMPONENT_BYTES",
    "MAX_SKIPPED_LISTED",
    "Budget",
    "SkippedEntry",
    "UnpackLimits",
    "UnpackResult",
    "Unpacking",
    "echoed_name",
    "safe_relative_path",
    "shown_name",
    "unstorable_name",
]

CHUNK = 1 << 20
# "C:\\x" and "C:/x" are absolute; "C:meeting.wav" is a name with a colon in it.
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
# What a name may be to become a file: NAME_MAX of Linux file systems per component, and a
# relative path short and shallow enough to stay far below PATH_MAX under the data folder.
MAX_NAME_COMPONENT_BYTES = 255
MAX_ENTRY_PATH_BYTES = 1024
MAX_ENTRY_DEPTH = 32
# Longest entry name quoted in a reason or an error message.
_SHOWN_NAME_CHARS = 120
# A skipped entry's name is kept (in the manifest, in answers) cut to this many characters,
# and only this many skipped entries are listed: an archive of long names must not turn into
# a manifest many times its own size. The rest are counted.
MAX_ECHOED_NAME_CHARS = 200
MAX_SKIPPED_LISTED = 1_000


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
    """The files written (relative to the destination) and the entries skipped: the first
    `MAX_SKIPPED_LISTED` of them listed with a short form of their name, all counted."""

    files: list[Path] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    skipped_count: int = 0

    def add_skipped(self, name: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < MAX_SKIPPED_LISTED:
            self.skipped.append(SkippedEntry(name=echoed_name(name), reason=reason))


def echoed_name(name: str, *, limit: int = MAX_ECHOED_NAME_CHARS) -> str:
    """A name as it may be stored and echoed back: characters that are not printable
    (controls, line breaks, bidi overrides) escaped as Python writes them (``\\n``,
    ``\\u202e``), and cut to about ``limit`` characters, ending with how many were cut
    ("... (100 more characters)").
    """
    head = name[:limit]
    escaped = "".join(char if char.isprintable() else ascii(char)[1:-1] for char in head)
    kept = len(head)
    if len(escaped) > limit:  # escapes lengthened it: cut on a character boundary
        escaped, kept = "", 0
        for char in head:
            piece = char if char.isprintable() else ascii(char)[1:-1]
            if len(escaped) + len(piece) > limit:
                break
            escaped += piece
            kept += 1
    cut = len(name) - kept
    return escaped if cut == 0 else f"{escaped}... ({cut} more characters)"


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
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in str(relative)):
        return "its name holds control, line-break or format characters (such as bidi overrides)"
    if any(len(part.encode("utf-8")) > MAX_NAME_COMPONENT_BYTES for part in relative.parts):
        return f"a folder or file name in it is longer than {MAX_NAME_COMPONENT_BYTES} bytes"
    if len(relative.parts) > MAX_ENTRY_DEPTH:
        return f"it is more than {MAX_ENTRY_DEPTH} folders deep"
    if len(str(relative).encode("utf-8")) > MAX_ENTRY_PATH_BYTES:
        return f"its path is longer than {MAX_ENTRY_PATH_BYTES} bytes"
    return None


class Budget:
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


class Unpacking:
    """What one archive has written and skipped so far, under one budget."""

    def __init__(self, destination: Path, limits: UnpackLimits) -> None:
        self.destination = destination
        self.budget = Budget(limits)
        self.result = UnpackResult()

    def skip(self, name: str, reason: str) -> None:
        self.budget.add_file()
        self.result.add_skipped(name, reason)

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
                while chunk := source.read(CHUNK):
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
            self.result.add_skipped(name, "not unpacked: its path is too long to store")
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
