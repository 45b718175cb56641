"""Archive unpacking against what an archive declares: headers, directories and names.

Memory is measured with tracemalloc: what the unpacking allocates must not grow with what the
archive's headers declare, only with the bounded chunks it reads.
"""

from __future__ import annotations

import io
import stat
import tarfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from benchmarks.reliability.hostile_inputs import (
    tar_gz_with_directory_data,
    tar_gz_with_long_name,
    tar_gz_with_pax_record,
    tar_with_chained_headers,
    tar_with_members,
    tar_with_pax_payload,
    tar_with_pax_records,
    zip_with_central_directory,
    zip_with_members,
    zip_with_misflagged_names,
)
from dataset_store.archives import (
    MAX_ENTRY_DEPTH,
    MAX_NAME_COMPONENT_BYTES,
    UnpackLimits,
    UnpackResult,
    unpack_archive,
)
from dataset_store.errors import ArchiveRejected, ArchiveTooLarge, UnsupportedArchive
from tests.worker.audio_samples import wav_bytes

T = TypeVar("T")
MEGABYTE = 1024 * 1024
LIMITS = UnpackLimits(max_total_bytes=512 * MEGABYTE, max_file_bytes=256 * MEGABYTE, max_files=1000)
# Far below what the hostile headers declare, far above what streaming needs.
MEMORY_CEILING = 12 * MEGABYTE
DECLARED = 96 * MEGABYTE


def _peak_memory(action: Callable[[], T]) -> tuple[T | BaseException, int]:
    tracemalloc.start()
    try:
        outcome: T | BaseException = action()
    except Exception as error:  # the outcome is checked by the caller
        outcome = error
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return outcome, peak


def _unpack(data: bytes, destination: Path, limits: UnpackLimits = LIMITS) -> UnpackResult:
    destination.mkdir(exist_ok=True)
    return unpack_archive(io.BytesIO(data), destination=destination, limits=limits)


@pytest.mark.parametrize(
    "archive",
    [
        pytest.param(lambda: tar_gz_with_long_name(DECLARED), id="gnu-long-name"),
        pytest.param(lambda: tar_gz_with_pax_record(DECLARED), id="pax-record"),
        pytest.param(lambda: tar_gz_with_pax_record(DECLARED, key="path"), id="pax-path"),
    ],
)
def test_a_huge_extended_header_is_refused_without_being_read(
    archive: Callable[[], bytes], tmp_path: Path
) -> None:
    data = archive()
    assert len(data) < DECLARED // 200  # tiny on the wire

    outcome, peak = _peak_memory(lambda: _unpack(data, tmp_path / "out"))

    assert isinstance(outcome, ArchiveRejected), outcome
    assert "extended header" in str(outcome)
    assert peak < MEMORY_CEILING, f"peak {peak / MEGABYTE:.1f} MB"


def test_a_chain_of_extended_headers_is_refused(tmp_path: Path) -> None:
    outcome, _ = _peak_memory(lambda: _unpack(tar_with_chained_headers(5000), tmp_path / "out"))
    assert isinstance(outcome, ArchiveRejected), outcome
    assert "extended headers" in str(outcome)


def test_ordinary_long_names_and_pax_headers_still_unpack(tmp_path: Path) -> None:
    long_folder = "d" * 150
    members = [(f"{long_folder}/a.wav", wav_bytes(220.0)), ("b \u00e9\u4e2d.wav", b"x")]
    for gnu in (True, False):
        result = _unpack(tar_with_members(members, gnu=gnu), tmp_path / f"out-{gnu}")
        assert sorted(str(path) for path in result.files) == sorted(name for name, _ in members)
        assert result.skipped == []
        written = tmp_path / f"out-{gnu}" / long_folder / "a.wav"
        assert written.read_bytes() == wav_bytes(220.0)


def test_the_decompression_budget_counts_bytes_no_file_receives(tmp_path: Path) -> None:
    small = UnpackLimits(max_total_bytes=1024, max_file_bytes=1024, max_files=2)
    outcome, peak = _peak_memory(
        lambda: _unpack(tar_gz_with_directory_data(DECLARED), tmp_path / "out", limits=small)
    )
    assert isinstance(outcome, ArchiveTooLarge), outcome
    assert peak < MEMORY_CEILING


@pytest.mark.parametrize("declared", [None, 10, 0xFFFF], ids=["honest", "lying", "zip64-marker"])
def test_a_zip_directory_over_the_entry_limit_is_refused_before_it_is_parsed(
    declared: int | None, tmp_path: Path
) -> None:
    data = zip_with_central_directory(60_000, declared=declared)

    outcome, peak = _peak_memory(lambda: _unpack(data, tmp_path / "out"))

    assert isinstance(outcome, ArchiveTooLarge), outcome
    # zipfile's parse makes an object per entry; the count needs the directory's bytes only.
    assert peak < 2 * len(data) + MEGABYTE, f"peak {peak / MEGABYTE:.1f} MB"


def test_a_tar_member_name_that_is_not_utf8_is_skipped_with_the_reason(tmp_path: Path) -> None:
    data = tar_with_members([(b"caf\xe9.wav", b"x"), ("ok.wav", b"y")])

    result = _unpack(data, tmp_path / "out")

    assert [str(path) for path in result.files] == ["ok.wav"]
    (skipped,) = result.skipped
    assert skipped.name == "caf\\xe9.wav"
    assert "UTF-8" in skipped.reason
    skipped.name.encode("utf-8")  # what the manifest will hold is text


AWKWARD_NAMES = {
    "component-too-long": "n" * (MAX_NAME_COMPONENT_BYTES + 1) + ".wav",
    "multibyte-component-too-long": "\u00e9" * 200 + ".wav",
    "too-deep": "d/" * (MAX_ENTRY_DEPTH + 1) + "x.wav",
    "thousands-deep": "d/" * 3000 + "x.wav",
}


@pytest.mark.parametrize("archive_format", ["zip", "tar"])
@pytest.mark.parametrize("name", list(AWKWARD_NAMES.values()), ids=list(AWKWARD_NAMES))
def test_a_name_that_cannot_be_a_file_is_skipped_with_the_reason(
    archive_format: str, name: str, tmp_path: Path
) -> None:
    members = [(name, b"x"), ("ok.wav", b"y")]
    data = zip_with_members(members) if archive_format == "zip" else tar_with_members(members)

    result = _unpack(data, tmp_path / "out")

    assert [str(path) for path in result.files] == ["ok.wav"]
    (skipped,) = result.skipped
    assert skipped.reason.startswith("not unpacked:")
    assert str(tmp_path) not in skipped.reason


def test_unsafe_entries_still_refuse_the_whole_archive(tmp_path: Path) -> None:
    link = tarfile.TarInfo("link.wav")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(link)
    with pytest.raises(ArchiveRejected, match="symbolic link"):
        _unpack(buffer.getvalue(), tmp_path / "out")
    with pytest.raises(ArchiveRejected, match=r"\.\."):
        _unpack(tar_with_members([("../up.wav", b"x")]), tmp_path / "out2")


@pytest.mark.parametrize(
    "records",
    [
        pytest.param([(b"size", b"9" * 5_000)], id="size-5000-digits"),
        pytest.param([(b"size", b"1" * 4_301)], id="size-4301-digits"),
        pytest.param([(b"size", b"0" * 21)], id="size-zero-padded-past-the-bound"),
        pytest.param([(b"size", b"-1")], id="size-negative"),
        pytest.param([(b"size", "١٢".encode())], id="size-arabic-indic-digits"),
    ],
)
def test_numeric_header_fields_are_parsed_with_a_bound(
    tmp_path: Path, records: list[tuple[bytes, bytes]]
) -> None:
    archive = tar_with_pax_records(records, member=wav_bytes(440))
    with pytest.raises(UnsupportedArchive, match="PAX size"):
        unpack_archive(io.BytesIO(archive), destination=tmp_path, limits=LIMITS)


def test_a_pax_record_length_of_many_digits_is_malformed_not_a_crash(tmp_path: Path) -> None:
    archive = tar_with_pax_payload(b"9" * 5_000 + b" comment=x\n")
    with pytest.raises(UnsupportedArchive, match="PAX record"):
        unpack_archive(io.BytesIO(archive), destination=tmp_path, limits=LIMITS)


def test_an_ordinary_pax_size_still_unpacks(tmp_path: Path) -> None:
    data = wav_bytes(440)
    archive = tar_with_pax_records([(b"size", str(len(data)).encode())], member=data)
    result = unpack_archive(io.BytesIO(archive), destination=tmp_path, limits=LIMITS)
    assert [path.name for path in result.files] == ["after.wav"]


def test_a_link_with_a_name_that_is_not_utf8_refuses_the_archive(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as archive:  # fmt: skip
        for kind in (tarfile.SYMTYPE, tarfile.FIFOTYPE):
            info = tarfile.TarInfo(b"link\xff".decode("utf-8", "surrogateescape") + str(kind))
            info.type = kind
            info.linkname = "/etc/passwd"
            archive.addfile(info)
            with pytest.raises(ArchiveRejected, match="link or not a regular file"):
                unpack_archive(
                    io.BytesIO(buffer.getvalue() + b"\0" * 1024),
                    destination=tmp_path / str(kind),
                    limits=LIMITS,
                )


def test_a_drive_relative_name_is_a_name_not_an_absolute_path(tmp_path: Path) -> None:
    archive = zip_with_members([("C:meeting.wav", wav_bytes(440))])
    result = unpack_archive(io.BytesIO(archive), destination=tmp_path, limits=LIMITS)
    assert [path.name for path in result.files] == ["C:meeting.wav"]


@pytest.mark.parametrize("name", ["a\rb.wav", "a\nb.wav", "bell\x07.wav", "\u202egnp.wav"])
def test_names_with_control_or_format_characters_are_not_stored(tmp_path: Path, name: str) -> None:
    archive = zip_with_members([(name, wav_bytes(440)), ("ok.wav", wav_bytes(440))])
    result = unpack_archive(io.BytesIO(archive), destination=tmp_path, limits=LIMITS)
    assert [path.name for path in result.files] == ["ok.wav"]
    (skipped,) = result.skipped
    assert "control" in skipped.reason
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ok.wav"]


def test_a_zip_name_flagged_utf8_that_is_not_skips_only_its_entry(tmp_path: Path) -> None:
    archive = zip_with_misflagged_names(
        [("ok.wav", wav_bytes(440)), ("dir/bäd.wav", wav_bytes(440)), ("é.wav", wav_bytes(440))],
        raw_names={"bäd": b"b\xff\xfed", "é.wav": b"\xff\xfe.wav"},
    )
    result = unpack_archive(io.BytesIO(archive), destination=tmp_path, limits=LIMITS)
    assert [str(path) for path in result.files] == ["ok.wav"]
    assert [(entry.name, entry.reason) for entry in result.skipped] == [
        (name, "not unpacked: its name is marked as UTF-8 but is not UTF-8 text")
        for name in ("dir/b\\xff\\xfed.wav", "\\xff\\xfe.wav")
    ]
    assert result.skipped_count == 2


def test_a_misflagged_zip_link_still_refuses_the_archive(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as writer:
        link = zipfile.ZipInfo("lïnk")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        writer.writestr(link, "/etc/passwd")
    archive = buffer.getvalue().replace("ï".encode(), b"\xff\xfe")
    with pytest.raises(ArchiveRejected, match="symbolic link"):
        unpack_archive(io.BytesIO(archive), destination=tmp_path, limits=LIMITS)
