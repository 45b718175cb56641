"""Builders of hostile inputs: archives with lying headers and awkward names, odd multipart
framing, user text that means something to matplotlib or HTML.

Each builder writes the bytes by hand (or through `tarfile`/`zipfile` where those can say it),
so a case says exactly what it tries. The regression tests and the fuzz families of
`benchmarks/reliability/family_cases.py` share them.
"""

from __future__ import annotations

import io
import random
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator

BLOCK = 512
_FILLER_CHUNK = 1 << 20


def gzip_stream(chunks: Iterable[bytes]) -> bytes:
    """Gzip ``chunks`` as they come, so a huge but repetitive payload never sits in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(chunk) for chunk in chunks]
    parts.append(compressor.flush())
    return b"".join(parts)


def _repeat(byte: bytes, count: int) -> Iterator[bytes]:
    block = byte * _FILLER_CHUNK
    while count > 0:
        yield block[: min(count, _FILLER_CHUNK)]
        count -= _FILLER_CHUNK


def _header(name: str | bytes, *, size: int, type_flag: bytes) -> bytes:
    info = tarfile.TarInfo(name if isinstance(name, str) else "placeholder")
    info.size = size
    info.type = type_flag
    block = info.tobuf(
        format=tarfile.USTAR_FORMAT if len(str(info.name)) <= 100 else tarfile.GNU_FORMAT
    )
    if isinstance(name, bytes):
        block = _with_raw_name(block, name)
    return block


def _with_raw_name(block: bytes, name: bytes) -> bytes:
    """A header block whose name field holds ``name`` (at most 100 bytes) as raw bytes."""
    raw = bytearray(block[:BLOCK])
    raw[0:100] = name[:100].ljust(100, b"\x00")
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\x00 " % sum(raw)
    return bytes(raw)


def _padding(size: int) -> bytes:
    return b"\x00" * (-size % BLOCK)


def _member(name: str | bytes, data: bytes) -> list[bytes]:
    return [_header(name, size=len(data), type_flag=tarfile.REGTYPE), data, _padding(len(data))]


def _end() -> bytes:
    return b"\x00" * (2 * BLOCK)


def tar_gz_with_long_name(declared_bytes: int, *, member: bytes = b"") -> bytes:
    """A GNU long-name header (``L``) whose name is ``declared_bytes`` long, then a file."""
    head = _header("././@LongLink", size=declared_bytes, type_flag=tarfile.GNUTYPE_LONGNAME)

    def chunks() -> Iterator[bytes]:
        yield head
        yield from _repeat(b"a", declared_bytes)
        yield _padding(declared_bytes)
        yield from _member("after.wav", member)
        yield _end()

    return gzip_stream(chunks())


def tar_gz_with_pax_record(
    record_bytes: int, *, key: str = "comment", member: bytes = b""
) -> bytes:
    """A PAX extended header holding one ``key`` record of about ``record_bytes``, then a file."""
    value_length = max(1, record_bytes)
    body = f" {key}=".encode() + b"\n"
    digits = len(str(value_length + len(body)))
    length = value_length + len(body) + digits
    if len(str(length)) != digits:
        length += 1
    prefix = f"{length} {key}=".encode()
    head = _header("././@PaxHeader", size=length, type_flag=tarfile.XHDTYPE)

    def chunks() -> Iterator[bytes]:
        yield head
        yield prefix
        yield from _repeat(b"p", length - len(prefix) - 1)
        yield b"\n"
        yield _padding(length)
        yield from _member("after.wav", member)
        yield _end()

    return gzip_stream(chunks())


def pax_record(key: bytes, value: bytes) -> bytes:
    """One ``"<length> <key>=<value>\\n"`` PAX record, its length counting itself."""
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    if len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def tar_with_pax_records(records: Iterable[tuple[bytes, bytes]], *, member: bytes = b"") -> bytes:
    """A PAX extended header with ``records`` verbatim (numbers of any length), then a file."""
    payload = b"".join(pax_record(key, value) for key, value in records)
    return tar_with_pax_payload(payload, member=member)


def tar_with_pax_payload(payload: bytes, *, member: bytes = b"") -> bytes:
    """A PAX extended header carrying ``payload`` as its records, malformed or not, then a file."""
    head = _header("././@PaxHeader", size=len(payload), type_flag=tarfile.XHDTYPE)
    return b"".join([head, payload, _padding(len(payload)), *_member("after.wav", member), _end()])


def tar_gz_with_directory_data(declared_bytes: int) -> bytes:
    """A folder entry that carries ``declared_bytes`` of data, which nothing writes out."""

    def chunks() -> Iterator[bytes]:
        yield _header("folder/", size=declared_bytes, type_flag=tarfile.DIRTYPE)
        yield from _repeat(b"d", declared_bytes)
        yield _padding(declared_bytes)
        yield _end()

    return gzip_stream(chunks())


def tar_with_chained_headers(count: int, *, type_flag: bytes = tarfile.GNUTYPE_LONGNAME) -> bytes:
    """``count`` small extended headers in a row in front of one file."""
    name = b"x.wav\x00"
    parts = []
    for _ in range(count):
        parts += [
            _header("././@LongLink", size=len(name), type_flag=type_flag),
            name,
            _padding(len(name)),
        ]
    parts += _member("x.wav", b"")
    parts.append(_end())
    return b"".join(parts)


def tar_with_members(members: Iterable[tuple[str | bytes, bytes]], *, gnu: bool = True) -> bytes:
    """A plain tar of (name, data); names over 100 bytes use GNU long names (or PAX)."""
    buffer = io.BytesIO()
    archive_format = tarfile.GNU_FORMAT if gnu else tarfile.PAX_FORMAT
    with tarfile.open(
        fileobj=buffer, mode="w", format=archive_format, encoding="utf-8", errors="surrogateescape"
    ) as archive:
        for name, data in members:
            text = name if isinstance(name, str) else name.decode("utf-8", "surrogateescape")
            info = tarfile.TarInfo(text)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_with_members(members: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_with_misflagged_names(
    members: Iterable[tuple[str, bytes]], *, raw_names: dict[str, bytes]
) -> bytes:
    """A zip of ``members`` in which each name of ``raw_names`` (non-ASCII, so zipfile flags it
    UTF-8) is replaced by the raw bytes given, of the same length: flagged UTF-8, yet not."""
    archive = zip_with_members(members)
    for name, raw in raw_names.items():
        encoded = name.encode("utf-8")
        assert len(raw) == len(encoded) and not encoded.isascii()
        archive = archive.replace(encoded, raw)
    return archive


_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")


def zip_with_central_directory(entries: int, *, declared: int | None = None) -> bytes:
    """A zip whose central directory lists ``entries`` empty files, all pointing at the one
    local entry at its start; the end record declares ``declared`` entries (default: the
    truth)."""
    local_name = b"f0000000.wav"
    local = _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 0, len(local_name), 0) + local_name
    records = []
    for index in range(entries):
        name = b"f%07d.wav" % index
        records.append(
            _CENTRAL.pack(
                b"PK\x01\x02", 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0
            )
            + name
        )
    directory = b"".join(records)
    count = entries if declared is None else declared
    count = min(count, 0xFFFF)
    end = _END.pack(b"PK\x05\x06", 0, 0, count, count, len(directory), len(local), 0)
    return local + directory + end


# --- multipart ---------------------------------------------------------------------------


def multipart_body(
    parts: Iterable[tuple[dict[str, str], bytes]], *, boundary: str
) -> tuple[bytes, str]:
    """(body, content type) for parts given as (headers, data)."""
    chunks = []
    for headers, data in parts:
        chunks.append(f"--{boundary}\r\n".encode("latin-1"))
        for name, value in headers.items():
            chunks.append(f"{name}: {value}\r\n".encode("latin-1"))
        chunks.append(b"\r\n" + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode("latin-1"))
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def file_part(field: str, filename: str, data: bytes, **extra: str) -> tuple[dict[str, str], bytes]:
    headers = {"Content-Disposition": f'form-data; name="{field}"; filename="{filename}"'}
    headers.update(extra)
    return headers, data


# --- user text ---------------------------------------------------------------------------

# Text that means something to mathtext, TeX, HTML, format strings or terminals.
AWKWARD_TEXTS = (
    "$$",
    r"$\frac{1}{0$",
    "$5 and $10",
    "$",
    r"\$ escaped \$",
    "50% off {0} {name} %s %(x)s",
    "<script>alert(1)</script>",
    '" onmouseover="x',
    "&amp; &lt;",
    "a_b^c ~ # &",
    "line\nbreak\ttab",
    "\u202eevil\u202c",
    "\u0000nul",
    "emoji \U0001f600 and \u4e2d\u6587",
    " ",
    "-1",
    "x" * 300,
)


def awkward_text(rng: random.Random) -> str:
    """A random label: a known troublemaker, or a mix of their characters."""
    if rng.random() < 0.5:
        return rng.choice(AWKWARD_TEXTS)
    alphabet = "$\\{}%_^&<>\"'~#\n\t \u202e\U0001f600aZ09-/"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
