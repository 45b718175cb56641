"""A forward-only tar reader whose memory does not depend on what the archive declares.

Python's `tarfile` reads a GNU long-name or PAX extended header whole, however large its
header says it is, before anyone can look at it: a few hundred kilobytes of gzip can then
declare hundreds of megabytes of "file name". This reader parses the headers itself (ustar,
GNU and PAX, the formats GNU tar, bsdtar and Python write) and

- refuses an extended header larger than `MAX_EXTENDED_HEADER_BYTES` before reading it,
- refuses more than `MAX_EXTENDED_HEADERS` extended headers in front of one entry,
- hands out entry data through a reader that returns at most what was asked for,

so every read is bounded by the caller's chunk size, and every byte goes through the caller's
(budgeted) source. Names come out as bytes: what they mean as text is the caller's decision.

Errors: `ArchiveRejected` for an extended header over the caps, `UnsupportedArchive` for a
block that is not a tar header (bad checksum, bad number) or an archive cut short.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from dataset_store.errors import ArchiveRejected, UnsupportedArchive

__all__ = [
    "MAX_EXTENDED_HEADERS",
    "MAX_EXTENDED_HEADER_BYTES",
    "MAX_NUMBER_DIGITS",
    "EntryData",
    "Readable",
    "TarEntry",
    "iter_tar_entries",
]

BLOCK = 512
# A PAX record set or GNU long name of a real archive is a few hundred bytes; names that
# fit a file system are at most 4096.
MAX_EXTENDED_HEADER_BYTES = 64 * 1024
# Decimal digits of the longest number a header may hold: 2**63 has 19. Every numeric field
# is checked against it before conversion, since int() of a long digit string is slow and,
# past 4300 digits, refused with a ValueError.
MAX_NUMBER_DIGITS = 20
# GNU tar writes at most a PAX header, a long name and a long link name before an entry.
MAX_EXTENDED_HEADERS = 8

EntryKind = Literal["file", "directory", "symlink", "hardlink", "other"]

_FILE_TYPES = frozenset({b"0", b"\x00", b"7"})
_KINDS: dict[bytes, EntryKind] = {b"5": "directory", b"2": "symlink", b"1": "hardlink"}
_GNU_LONG_NAME = b"L"
_GNU_LONG_LINK = b"K"
_PAX_TYPES = frozenset({b"x", b"X"})  # X: Solaris's spelling of x
_PAX_GLOBAL = b"g"
_POSIX_MAGIC = b"ustar\x00"


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


@dataclass(frozen=True)
class TarEntry:
    """One member: its name as stored (bytes), what it is, and how many data bytes it has."""

    name: bytes
    kind: EntryKind
    size: int
    type_flag: bytes


class EntryData:
    """The data of the current entry; `read(n)` returns at most n bytes, b"" at its end."""

    def __init__(self, source: _BlockReader, size: int) -> None:
        self._source = source
        self._left = size

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        wanted = self._left if size < 0 else min(size, self._left)
        chunk = self._source.read_exactly(wanted)
        self._left -= len(chunk)
        return chunk

    def discard(self, chunk_size: int) -> None:
        while self.read(chunk_size):
            pass


class _BlockReader:
    def __init__(self, raw: Readable) -> None:
        self._raw = raw

    def read_exactly(self, size: int) -> bytes:
        parts = []
        missing = size
        while missing > 0:
            chunk = self._raw.read(missing)
            if not chunk:
                raise UnsupportedArchive("The tar archive is truncated (it ends inside an entry).")
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def read_block_or_eof(self) -> bytes | None:
        first = self._raw.read(BLOCK)
        if not first:
            return None
        if len(first) == BLOCK:
            return first
        return first + self.read_exactly(BLOCK - len(first))


def iter_tar_entries(
    raw: Readable, *, chunk_size: int = 1 << 20
) -> Iterator[tuple[TarEntry, EntryData]]:
    """Yield each entry with its data reader, in archive order.

    Data the consumer leaves unread is read and discarded (in ``chunk_size`` pieces) before
    the next header. Stops at the end-of-archive block or at the end of the stream.
    """
    source = _BlockReader(raw)
    index = 0
    while True:
        entry = _next_entry(source, index=index)
        if entry is None:
            return
        index += 1
        data = EntryData(source, entry.size)
        yield entry, data
        data.discard(chunk_size)
        padding = -entry.size % BLOCK
        if padding:
            source.read_exactly(padding)


def _next_entry(source: _BlockReader, *, index: int) -> TarEntry | None:
    long_name: bytes | None = None
    pax: dict[bytes, bytes] = {}
    for _ in range(MAX_EXTENDED_HEADERS + 1):
        block = source.read_block_or_eof()
        if block is None or block == bytes(BLOCK):
            return None
        header = _Header.parse(block, index=index)
        if header.type_flag in (_GNU_LONG_NAME, _GNU_LONG_LINK, _PAX_GLOBAL) or (
            header.type_flag in _PAX_TYPES
        ):
            payload = _read_extended(source, header)
            if header.type_flag == _GNU_LONG_NAME:
                long_name = payload.split(b"\x00", 1)[0]
            elif header.type_flag in _PAX_TYPES:
                pax.update(_pax_records(payload))
            # A long link name or a global header changes nothing we keep: links are refused
            # and global records apply to no name or size here.
            continue
        size = header.size
        if b"size" in pax:
            size = _pax_number(pax[b"size"])
        name = pax.get(b"path") or long_name or header.name
        kind: EntryKind
        if header.type_flag in _FILE_TYPES:
            kind = "directory" if header.type_flag == b"\x00" and name.endswith(b"/") else "file"
        else:
            kind = _KINDS.get(header.type_flag, "other")
        return TarEntry(name=name, kind=kind, size=size, type_flag=header.type_flag)
    raise ArchiveRejected(
        f"Entry {index + 1} of the tar archive has more than {MAX_EXTENDED_HEADERS} extended "
        "headers in front of it."
    )


def _read_extended(source: _BlockReader, header: _Header) -> bytes:
    if header.size > MAX_EXTENDED_HEADER_BYTES:
        raise ArchiveRejected(
            f"The tar archive declares an extended header (long name or PAX records) of "
            f"{header.size} bytes; at most {MAX_EXTENDED_HEADER_BYTES} are accepted."
        )
    payload = source.read_exactly(header.size)
    padding = -header.size % BLOCK
    if padding:
        source.read_exactly(padding)
    return payload


@dataclass(frozen=True)
class _Header:
    name: bytes
    size: int
    type_flag: bytes

    @classmethod
    def parse(cls, block: bytes, *, index: int) -> _Header:
        stored = _number(block[148:156], index=index, field="checksum")
        unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
        # Some old tars summed the bytes as signed chars.
        signed = unsigned - 256 * sum(1 for byte in block[:148] + block[156:] if byte > 127)
        if stored not in (unsigned, signed):
            raise UnsupportedArchive(
                f"The tar archive cannot be read: entry {index + 1} has a bad header checksum."
            )
        size = _number(block[124:136], index=index, field="size")
        name = _field(block[0:100])
        prefix = _field(block[345:500]) if block[257:263] == _POSIX_MAGIC else b""
        if prefix:
            name = prefix + b"/" + name
        return cls(name=name, size=size, type_flag=block[156:157])


def _field(raw: bytes) -> bytes:
    return raw.split(b"\x00", 1)[0]


def _number(raw: bytes, *, index: int, field: str) -> int:
    """An octal ASCII field, or GNU's base-256 form (high bit set) for large values."""
    if raw and raw[0] & 0x80:
        if raw[0] != 0x80:  # 0xff: a negative number, never valid here
            raise UnsupportedArchive(
                f"The tar archive cannot be read: entry {index + 1} has a negative {field}."
            )
        return int.from_bytes(raw[1:], "big")
    text = raw.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    if len(text) > MAX_NUMBER_DIGITS:  # ustar fields are 12 bytes; a caller may pass more
        raise UnsupportedArchive(
            f"The tar archive cannot be read: entry {index + 1} has an invalid {field} field."
        )
    try:
        return int(text, 8)
    except ValueError:
        raise UnsupportedArchive(
            f"The tar archive cannot be read: entry {index + 1} has an invalid {field} field."
        ) from None


def _pax_records(payload: bytes) -> dict[bytes, bytes]:
    """``"<length> <key>=<value>\\n"`` records (POSIX pax format)."""
    records: dict[bytes, bytes] = {}
    position = 0
    while position < len(payload):
        space = payload.find(b" ", position)
        digits = payload[position:space] if space > position else b""
        length = _decimal(digits) if digits else 0
        if length is None:
            raise UnsupportedArchive("The tar archive cannot be read: a PAX record is malformed.")
        end = position + length
        if space < 0 or length <= space - position or end > len(payload):
            raise UnsupportedArchive("The tar archive cannot be read: a PAX record is malformed.")
        record = payload[space + 1 : end]
        key, equals, value = record.partition(b"=")
        if not equals or not record.endswith(b"\n"):
            raise UnsupportedArchive("The tar archive cannot be read: a PAX record is malformed.")
        records[key] = value[:-1]
        position = end
    return records


def _pax_number(raw: bytes) -> int:
    number = _decimal(raw)
    if number is None:
        raise UnsupportedArchive(
            "The tar archive cannot be read: a PAX size is not a number of at most "
            f"{MAX_NUMBER_DIGITS} digits."
        )
    return number


def _decimal(raw: bytes) -> int | None:
    """ASCII decimal digits as a number, or None when they are not that or too many."""
    if not raw or len(raw) > MAX_NUMBER_DIGITS or not raw.isdigit():
        return None
    return int(raw)
