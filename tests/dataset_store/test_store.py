"""DatasetStore: safe ingestion of zip and tar uploads, manifests, digests."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dataset_store import DatasetManifest, DatasetStore, IngestLimits
from dataset_store.errors import (
    ArchiveRejected,
    ArchiveTooLarge,
    DatasetNotFound,
    UnsupportedArchive,
)
from tests.worker.audio_samples import wav_bytes, write_tone_folder


def make_zip(entries: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def make_tar(entries: dict[str, bytes], *, mode: str = "w:gz") -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def tar_with_member(member: tarfile.TarInfo) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(tarfile.TarInfo("ok.wav"), io.BytesIO(b""))
        archive.addfile(member)
    buffer.seek(0)
    return buffer


GOOD_ENTRIES = {
    "low/a.wav": wav_bytes(220.0, seed=1),
    "low/b.wav": wav_bytes(230.0, seed=2),
    "high/c.wav": wav_bytes(1760.0, seed=3),
    "notes.txt": b"these are my recordings",
    "high/broken.wav": b"RIFF\x10\x00\x00\x00WAVEjunk",
}


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "datasets")


def test_zip_upload_keeps_audio_and_lists_other_files_as_rejected(store: DatasetStore) -> None:
    manifest = store.ingest_archive(make_zip(GOOD_ENTRIES), filename="upload.zip")

    assert manifest.id.startswith("ds_") and len(manifest.id) == 15
    assert [item.path for item in manifest.files] == ["high/c.wav", "low/a.wav", "low/b.wav"]
    assert {item.label for item in manifest.files} == {"low", "high"}
    assert manifest.labels == ["high", "low"]
    assert all(item.duration_s == pytest.approx(0.5, abs=1e-3) for item in manifest.files)
    rejected = {item.path: item.reason for item in manifest.rejected}
    assert set(rejected) == {"notes.txt", "high/broken.wav"}
    assert all(reason for reason in rejected.values())
    # Only the accepted recordings stay on disk.
    on_disk = sorted(
        p.relative_to(store.path(manifest.id)).as_posix()
        for p in store.path(manifest.id).rglob("*.*")
    )
    assert on_disk == ["high/c.wav", "low/a.wav", "low/b.wav"]
    assert store.get(manifest.id) == manifest


def test_same_content_gives_same_digest_and_a_new_id(store: DatasetStore) -> None:
    first = store.ingest_archive(make_zip(GOOD_ENTRIES), filename="a.zip")
    second = store.ingest_archive(make_tar(GOOD_ENTRIES), filename="b.tar.gz")
    changed = dict(GOOD_ENTRIES, **{"low/a.wav": wav_bytes(221.0, seed=1)})
    third = store.ingest_archive(make_zip(changed), filename="c.zip")

    assert first.id != second.id
    assert first.digest == second.digest
    assert third.digest != first.digest


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_formats_are_detected_by_content_not_name(store: DatasetStore, mode: str) -> None:
    manifest = store.ingest_archive(make_tar(GOOD_ENTRIES, mode=mode), filename="misnamed.zip")
    assert len(manifest.files) == 3


def test_labels_csv_overrides_folder_names_and_single_top_folder_is_lifted(
    store: DatasetStore,
) -> None:
    entries = {
        "mydata/labels.csv": b"path,label\nx/one.wav,speech\ntwo.wav,music\n",
        "mydata/x/one.wav": wav_bytes(300.0),
        "mydata/two.wav": wav_bytes(900.0),
        "mydata/three.wav": wav_bytes(500.0),
    }
    manifest = store.ingest_archive(make_zip(entries), filename="labelled.zip")

    labels = {item.path: item.label for item in manifest.files}
    assert labels == {"x/one.wav": "speech", "two.wav": "music", "three.wav": None}
    assert manifest.labels == ["music", "speech"]
    assert (store.path(manifest.id) / "labels.csv").is_file()


def test_hidden_files_are_rejected_and_a_bad_labels_csv_refuses_the_upload(
    store: DatasetStore,
) -> None:
    entries = {
        "a.wav": wav_bytes(220.0),
        "__MACOSX/._a.wav": b"apple double",
        ".hidden.wav": wav_bytes(440.0),
    }
    manifest = store.ingest_archive(make_zip(entries), filename="mac.zip")
    assert [item.path for item in manifest.files] == ["a.wav"]
    assert {item.path: item.reason for item in manifest.rejected} == {
        "__MACOSX/._a.wav": "hidden file",
        ".hidden.wav": "hidden file",
    }

    bad_csv = {"a.wav": wav_bytes(220.0), "labels.csv": b"file;class\na.wav;x\n"}
    with pytest.raises(ArchiveRejected, match=r"labels\.csv"):
        store.ingest_archive(make_zip(bad_csv), filename="bad.zip")


def test_a_stream_that_cannot_seek_is_accepted(store: DatasetStore) -> None:
    class ForwardOnly(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    stream = ForwardOnly(make_zip(GOOD_ENTRIES).getvalue())
    manifest = store.ingest_archive(stream, filename="piped.zip")  # type: ignore[arg-type]
    assert len(manifest.files) == 3


# --- hostile archives ------------------------------------------------------------------


def assert_nothing_left(store: DatasetStore) -> None:
    assert store.list() == ([], 0)
    staging = store.root / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


@pytest.mark.parametrize(
    "name",
    [
        "../escape.wav",
        "low/../../escape.wav",
        "/tmp/absolute.wav",
        "C:\\windows\\x.wav",
        "..\\up.wav",
    ],
)
def test_zip_with_escaping_path_is_rejected(store: DatasetStore, tmp_path: Path, name: str) -> None:
    archive = make_zip({"low/a.wav": wav_bytes(220.0), name: wav_bytes(440.0)})
    with pytest.raises(ArchiveRejected, match=r"absolute|outside"):
        store.ingest_archive(archive, filename="evil.zip")
    assert_nothing_left(store)
    assert not (tmp_path / "escape.wav").exists()
    assert not Path("/tmp/absolute.wav").exists()


@pytest.mark.parametrize("name", ["../escape.wav", "/tmp/absolute-tar.wav"])
def test_tar_with_escaping_path_is_rejected(store: DatasetStore, name: str) -> None:
    with pytest.raises(ArchiveRejected, match=r"absolute|outside"):
        store.ingest_archive(make_tar({name: wav_bytes(440.0)}), filename="evil.tgz")
    assert_nothing_left(store)


def test_zip_symlink_is_rejected(store: DatasetStore) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.wav", wav_bytes(220.0))
        link = zipfile.ZipInfo("link.wav")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    buffer.seek(0)
    with pytest.raises(ArchiveRejected, match="symbolic link"):
        store.ingest_archive(buffer, filename="link.zip")
    assert_nothing_left(store)


def test_tar_links_and_devices_are_rejected(store: DatasetStore) -> None:
    symlink = tarfile.TarInfo("link.wav")
    symlink.type = tarfile.SYMTYPE
    symlink.linkname = "/etc/passwd"
    hardlink = tarfile.TarInfo("hard.wav")
    hardlink.type = tarfile.LNKTYPE
    hardlink.linkname = "ok.wav"
    device = tarfile.TarInfo("dev.wav")
    device.type = tarfile.CHRTYPE
    fifo = tarfile.TarInfo("fifo.wav")
    fifo.type = tarfile.FIFOTYPE

    for member, reason in [
        (symlink, "symbolic link"),
        (hardlink, "hard link"),
        (device, "not a regular file"),
        (fifo, "not a regular file"),
    ]:
        with pytest.raises(ArchiveRejected, match=reason):
            store.ingest_archive(tar_with_member(member), filename="links.tar")
    assert_nothing_left(store)


def test_zip_bomb_by_size_stops_at_the_limit(store: DatasetStore) -> None:
    # 64 MiB of zeros deflate to ~64 KiB; the limit is counted on bytes written.
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("bomb.wav", "w") as entry,
    ):
        for _ in range(64):
            entry.write(bytes(1 << 20))
    assert buffer.tell() < 1 << 20
    buffer.seek(0)
    limits = IngestLimits(max_total_bytes=8 << 20, max_file_bytes=4 << 20)
    with pytest.raises(ArchiveTooLarge, match="more than"):
        store.ingest_archive(buffer, filename="bomb.zip", limits=limits)
    assert_nothing_left(store)


def test_total_size_limit_applies_across_files(store: DatasetStore) -> None:
    entries = {f"f{index}.wav": bytes(300_000) for index in range(5)}
    limits = IngestLimits(max_total_bytes=1_000_000, max_file_bytes=400_000)
    with pytest.raises(ArchiveTooLarge, match="1000000 bytes"):
        store.ingest_archive(make_tar(entries), filename="big.tgz", limits=limits)
    assert_nothing_left(store)


def test_gzip_bomb_tar_stops_at_the_limit(store: DatasetStore) -> None:
    archive = make_tar({"zeros.wav": bytes(32 << 20)}, mode="w:gz")
    assert len(archive.getvalue()) < 1 << 20
    limits = IngestLimits(max_total_bytes=4 << 20, max_file_bytes=64 << 20)
    with pytest.raises(ArchiveTooLarge):
        store.ingest_archive(archive, filename="bomb.tgz", limits=limits)
    assert_nothing_left(store)


@pytest.mark.parametrize("make", [make_zip, make_tar])
def test_archive_bomb_by_file_count_is_rejected(
    store: DatasetStore, make: Callable[[dict[str, bytes]], io.BytesIO]
) -> None:
    entries = {f"tiny{index}.txt": b"x" for index in range(50)}
    with pytest.raises(ArchiveTooLarge, match="more than 10 files"):
        store.ingest_archive(make(entries), filename="many", limits=IngestLimits(max_files=10))
    assert_nothing_left(store)


@pytest.mark.parametrize(
    "payload",
    [b"just some text, not an archive", wav_bytes(220.0), b"", b"PK\x03\x04truncated zip"],
)
def test_not_an_archive_is_unsupported(store: DatasetStore, payload: bytes) -> None:
    with pytest.raises(UnsupportedArchive):
        store.ingest_archive(io.BytesIO(payload), filename="data.zip")
    assert_nothing_left(store)


def test_archive_without_decodable_audio_is_rejected_with_reasons(store: DatasetStore) -> None:
    archive = make_zip({"readme.txt": b"hello", "fake.wav": b"not a wav"})
    with pytest.raises(ArchiveRejected, match=r"no decodable audio.*fake\.wav"):
        store.ingest_archive(archive, filename="empty.zip")
    assert_nothing_left(store)


def test_duplicate_entries_are_rejected(store: DatasetStore) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning, match="Duplicate"):
        archive.writestr("a.wav", wav_bytes(220.0))
        archive.writestr("a.wav", wav_bytes(440.0))
    buffer.seek(0)
    with pytest.raises(ArchiveRejected, match="clashes"):
        store.ingest_archive(buffer, filename="dup.zip")
    assert_nothing_left(store)


# --- the store -------------------------------------------------------------------------


def test_list_get_delete(store: DatasetStore) -> None:
    first = store.ingest_archive(make_zip(GOOD_ENTRIES), filename="a.zip")
    second = store.ingest_archive(make_zip(GOOD_ENTRIES), filename="b.zip")

    listed, total = store.list(offset=0, limit=10)
    assert total == 2
    assert [manifest.id for manifest in listed] == [second.id, first.id]
    assert store.list(offset=1, limit=10)[0] == [first]

    store.delete(first.id)
    assert store.list() == ([second], 1)
    with pytest.raises(DatasetNotFound):
        store.get(first.id)
    with pytest.raises(DatasetNotFound):
        store.delete(first.id)


@pytest.mark.parametrize("dataset_id", ["../etc", "ds_0123456789ab/../x", "ds_XYZ", ""])
def test_malformed_ids_are_not_found(store: DatasetStore, dataset_id: str) -> None:
    with pytest.raises(DatasetNotFound):
        store.get(dataset_id)


def test_manifest_round_trips_through_json(store: DatasetStore) -> None:
    manifest = store.ingest_archive(make_zip(GOOD_ENTRIES), filename="a.zip")
    assert DatasetManifest.from_dict(manifest.to_dict()) == manifest


def test_register_folder_copies_recordings(store: DatasetStore, tmp_path: Path) -> None:
    source = write_tone_folder(tmp_path / "tones", per_class=2)
    (source / "link.wav").symlink_to(source / "low" / "low_0.wav")
    manifest = store.register_folder(source)

    assert len(manifest.files) == 4
    assert manifest.labels == ["high", "low"]
    assert all((store.path(manifest.id) / item.path).is_file() for item in manifest.files)
