"""The requests of the fuzz families (see `benchmarks.reliability.fuzz_families`), drawn from a
seeded `random.Random`:

- `archive_header_case`: tars with huge GNU long-name or PAX headers, chains of extended
  headers, folder entries with data, zips whose central directory is huge or lies;
- `member_name_case`: zip and tar members with names that are not UTF-8, too long, too deep,
  control characters, ``..``, absolute paths and clashes;
- `multipart_case`: odd boundaries, part counts and part headers, cut framing, odd content
  types on the three upload routes;
- `labelled_archive`: a zip of clips with a ``labels.csv`` of awkward labels (``report-text``).

Big hostile archives are built once per run (`_cached`).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.reliability.harness import MODEL_SAMPLE_RATE, tone_wav
from benchmarks.reliability.hostile_inputs import (
    AWKWARD_TEXTS,
    awkward_text,
    file_part,
    multipart_body,
    tar_gz_with_directory_data,
    tar_gz_with_long_name,
    tar_gz_with_pax_record,
    tar_with_chained_headers,
    tar_with_members,
    zip_with_central_directory,
    zip_with_members,
)

MEGABYTE = 1024 * 1024
_UPLOAD_ROUTES = {"/v1/cluster": "file", "/v1/cluster/batch": "files", "/v1/datasets": "file"}


@dataclass(frozen=True)
class Case:
    """One request: a data set upload (``archive``) or a raw body for ``path``."""

    kind: str
    path: str = "/v1/datasets"
    archive: bytes | None = None
    body: bytes = b""
    content_type: str = ""


_BUILT: dict[tuple[Any, ...], bytes] = {}


def _cached(key: tuple[Any, ...], build: Callable[[], bytes]) -> bytes:
    """Big hostile archives take a while to compress; each is built once per run."""
    if key not in _BUILT:
        _BUILT[key] = build()
    return _BUILT[key]


def _one_of(rng: random.Random, *choices: Any) -> Any:
    return choices[rng.randrange(len(choices))]


def archive_header_case(rng: random.Random) -> Case:
    wav = tone_wav(0.2, sample_rate=MODEL_SAMPLE_RATE)
    declared = _one_of(rng, 100, 4096, 64 * 1024, 64 * 1024 + 1, MEGABYTE, 16 * MEGABYTE)
    if rng.random() < 0.04:
        declared = 400 * MEGABYTE
    kind = _one_of(rng, "long-name", "pax", "pax-path", "chain", "folder-data", "zip-directory")
    if kind == "long-name":
        archive = _cached((kind, declared), lambda: tar_gz_with_long_name(declared, member=wav))
    elif kind in ("pax", "pax-path"):
        key = "path" if kind == "pax-path" else _one_of(rng, "comment", "size", "hdrcharset")
        archive = _cached(
            (kind, declared, key),
            lambda: tar_gz_with_pax_record(declared, key=key, member=wav),
        )
    elif kind == "chain":
        links = _one_of(rng, 2, 8, 9, 100, 20_000)
        archive = _cached((kind, links), lambda: tar_with_chained_headers(links))
    elif kind == "folder-data":
        archive = _cached((kind, declared), lambda: tar_gz_with_directory_data(declared))
    else:
        entries = _one_of(rng, 10, 1000, 40_001, 300_000)
        lie = _one_of(rng, None, 0, 10, 0xFFFF)
        archive = _cached(
            (kind, entries, lie), lambda: zip_with_central_directory(entries, declared=lie)
        )
    if rng.random() < 0.2:  # cut short somewhere
        archive = archive[: rng.randrange(1, max(2, len(archive)))]
    return Case(kind=kind, archive=archive)


_NAME_MAKERS: dict[str, Callable[[random.Random], str | bytes]] = {
    "not-utf8": lambda rng: (
        bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(1, 40))) + b".wav"
    ),
    "long-component": lambda rng: "n" * rng.randint(200, 5000) + ".wav",
    "long-multibyte": lambda rng: (
        "\u00e9\u4e2d\U0001f600"[rng.randrange(3)] * rng.randint(70, 300) + ".wav"
    ),
    "deep": lambda rng: "d/" * rng.randint(20, 5000) + "x.wav",
    "control": lambda rng: "".join(rng.choice("a\n\t\r\x01\x7f ") for _ in range(12)) + ".wav",
    "unicode": lambda rng: rng.choice(
        ["\u202eevil.wav", "e\u0301.wav", "\ufeffbom.wav", "\u00a0.wav"]
    ),
    "dots": lambda rng: rng.choice(
        ["../up.wav", "a/../../x.wav", "./././a.wav", "a/./b.wav", "..."]
    ),
    "absolute": lambda rng: rng.choice(["/etc/x.wav", "C:\\x.wav", "\\\\server\\x.wav", "//x.wav"]),
    "backslash": lambda rng: "a\\b\\" * rng.randint(1, 50) + "c.wav",
    "empty": lambda rng: rng.choice(["", "/", "./", "a//"]),
    "hidden": lambda rng: rng.choice([".x.wav", "__MACOSX/._x.wav", ".git/config"]),
}


def member_name_case(rng: random.Random) -> Case:
    wav = tone_wav(0.2, sample_rate=MODEL_SAMPLE_RATE)
    kinds = rng.sample(sorted(_NAME_MAKERS), rng.randint(1, 3))
    members: list[tuple[str | bytes, bytes]] = [
        (_NAME_MAKERS[kind](rng), wav if rng.random() < 0.5 else b"x") for kind in kinds
    ]
    if rng.random() < 0.2:  # a clash: a file and a folder of one name
        members += [("clash", b"x"), ("clash/x.wav", wav)]
    members.append(("ok/good.wav", wav))
    rng.shuffle(members)
    archive_format = _one_of(rng, "zip", "tar", "tar-pax")
    if archive_format == "zip":
        text_members = [
            (name.decode("cp437") if isinstance(name, bytes) else name, data)
            for name, data in members
        ]
        try:
            archive = zip_with_members(text_members)
        except (ValueError, UnicodeError, IndexError):  # zipfile refuses some names itself
            archive = zip_with_members([("ok/good.wav", wav)])
    else:
        try:
            archive = tar_with_members(members, gnu=archive_format == "tar")
        except (ValueError, UnicodeError, IndexError):
            archive = tar_with_members([("ok/good.wav", wav)])
    return Case(kind="+".join(sorted(kinds)) + f"@{archive_format}", archive=archive)


def _boundary(rng: random.Random) -> str:
    length = _one_of(rng, 0, 1, 70, 255, 256, 257, 300, 1000, 6000)
    alphabet = _one_of(rng, "abc123", "-_'()+,./:=? ", '"; \\', "\u00e9\u00ff")
    # A header value cannot begin or end with white space; the client would not send it.
    return "".join(rng.choice(alphabet) for _ in range(length)).strip(" \t")


def multipart_case(rng: random.Random) -> Case:
    path = _one_of(rng, *_UPLOAD_ROUTES)
    field_name = _UPLOAD_ROUTES[path]
    wav = tone_wav(0.2, sample_rate=MODEL_SAMPLE_RATE)
    kind = _one_of(rng, "boundary", "parts", "headers", "framing", "content-type")
    boundary = _boundary(rng) if kind == "boundary" else "frame"
    parts: list[tuple[dict[str, str], bytes]] = [file_part(field_name, "a.wav", wav)]
    if kind == "parts":
        count = _one_of(rng, 0, 1, 33, 41, 100, 5000)
        same_name = rng.random() < 0.5
        parts = [
            ({"Content-Disposition": f'form-data; name="{"n" if same_name else f"n{i}"}"'}, b"v")
            for i in range(count)
        ] + (parts if rng.random() < 0.5 else [])
    elif kind == "headers":
        size = _one_of(rng, 0, 100, 4000, 4300, 20_000)
        count = _one_of(rng, 1, 7, 8, 9, 40)
        extra = {f"X-H{i}": "v" * (size // count) for i in range(count)}
        parts = [file_part(field_name, "a.wav", wav, **extra)]
    body, content_type = multipart_body(parts, boundary=boundary.replace("\r", ""))
    if kind == "framing":
        cut = rng.randrange(0, len(body) + 1)
        body = _one_of(rng, body[:cut], body.replace(b"\r\n", b"\n"), body + b"trailing", b"--")
    if kind == "content-type":
        content_type = _one_of(
            rng,
            "multipart/form-data",
            "multipart/form-data; boundary=",
            'multipart/form-data; boundary=""',
            "multipart/form-data; boundary=a; boundary=b",
            "multipart/form-data; charset=nope; boundary=frame",
            "multipart/mixed; boundary=frame",
            "",
        )
    return Case(kind=kind, path=path, body=body, content_type=content_type)


def labelled_archive(rng: random.Random, index: int) -> tuple[bytes, list[str]]:
    # Every known troublemaker in turn, beside a random one.
    labels = [AWKWARD_TEXTS[index % len(AWKWARD_TEXTS)], awkward_text(rng)]
    if labels[0] == labels[1]:
        labels[1] += "'"
    members: list[tuple[str, bytes]] = []
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["path", "label"])
    for index in range(6):
        name = f"clip{index}.wav"
        members.append((name, tone_wav(0.6, sample_rate=MODEL_SAMPLE_RATE, hz=200.0 * (1 + index))))
        writer.writerow([name, labels[index % 2]])
    members.append(("labels.csv", table.getvalue().encode("utf-8")))
    return zip_with_members(members), labels
