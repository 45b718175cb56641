"""What an archive's rejected entries cost: short escaped names, a bounded list and manifest,
and a listing that parses only the page it answers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from benchmarks.reliability.hostile_inputs import tar_with_members
from dataset_store import DatasetStore, IngestLimits
from dataset_store import store as store_module
from dataset_store.errors import ArchiveTooLarge
from dataset_store.unpacking import MAX_ECHOED_NAME_CHARS, MAX_SKIPPED_LISTED, echoed_name
from tests.worker.audio_samples import wav_bytes

LIMITS = IngestLimits(max_files=5_000)


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore(tmp_path / "datasets")


def test_a_long_rejected_name_is_kept_short_with_the_count_of_what_was_cut(
    store: DatasetStore,
) -> None:
    long_name = "d/" + "n" * 60_000 + ".wav"  # a path over the 1024-byte cap: skipped
    archive = tar_with_members([(long_name, b"x"), ("ok.wav", wav_bytes(440))])
    manifest = store.ingest_archive(io.BytesIO(archive), filename="a.tar", limits=LIMITS)
    (rejected,) = manifest.rejected
    assert len(rejected.path) < MAX_ECHOED_NAME_CHARS + 40
    assert rejected.path.endswith(f"({len(long_name) - MAX_ECHOED_NAME_CHARS} more characters)")
    assert manifest.rejected_count == 1
    on_disk = store.root / manifest.id / "manifest.json"
    assert on_disk.stat().st_size < 10_000


def test_only_the_first_rejected_entries_are_listed_and_all_are_counted(
    store: DatasetStore,
) -> None:
    members = [(f"{i}/" + "n" * 1100, b"") for i in range(MAX_SKIPPED_LISTED + 50)]
    archive = tar_with_members([*members, ("ok.wav", wav_bytes(440))])
    manifest = store.ingest_archive(io.BytesIO(archive), filename="a.tar", limits=LIMITS)
    assert len(manifest.rejected) == MAX_SKIPPED_LISTED
    assert manifest.rejected_count == MAX_SKIPPED_LISTED + 50
    assert store.get(manifest.id).rejected_count == MAX_SKIPPED_LISTED + 50


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("line\nbreak", "line\\nbreak"),
        ("bell\x07", "bell\\x07"),
        ("\u202egnp.wav", "\\u202egnp.wav"),
        ("été", "été"),
    ],
)
def test_unprintable_characters_are_escaped(name: str, shown: str) -> None:
    assert echoed_name(name) == shown


def test_escapes_do_not_lengthen_a_name_past_the_limit() -> None:
    shown = echoed_name("\x01" * 10_000)
    assert shown.startswith("\\x01")
    kept = shown.split("...")[0]
    assert len(kept) <= MAX_ECHOED_NAME_CHARS
    assert shown.endswith(f"({10_000 - len(kept) // 4} more characters)")


def test_a_manifest_over_its_bound_refuses_the_upload(
    store: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_MANIFEST_BYTES", 2_000)
    members = [(f"clip_{i:03d}_" + "x" * 100 + ".wav", wav_bytes(440)) for i in range(20)]
    with pytest.raises(ArchiveTooLarge, match="manifest"):
        store.ingest_archive(io.BytesIO(tar_with_members(members)), filename="a.tar")
    assert [p.name for p in store.root.iterdir() if not p.name.startswith(".")] == []


def test_a_listing_parses_only_the_manifests_of_its_page(
    store: DatasetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [
        store.ingest_archive(
            io.BytesIO(tar_with_members([("a.wav", wav_bytes(440))])), filename="a.tar"
        ).id
        for _ in range(4)
    ]
    parsed: list[str] = []
    real_get = DatasetStore.get

    def counting_get(self: DatasetStore, dataset_id: str):  # type: ignore[no-untyped-def]
        parsed.append(dataset_id)
        return real_get(self, dataset_id)

    monkeypatch.setattr(DatasetStore, "get", counting_get)
    page, total = store.list(offset=1, limit=2)
    assert total == 4
    assert len(page) == 2
    assert len(parsed) == 2
    newest_first = sorted(ids, key=lambda i: (store.get(i).created_at, i), reverse=True)
    assert [m.id for m in page] == newest_first[1:3]


def test_a_data_set_without_a_listing_file_is_listed_and_given_one(store: DatasetStore) -> None:
    manifest = store.ingest_archive(
        io.BytesIO(tar_with_members([("a.wav", wav_bytes(440))])), filename="a.tar"
    )
    listing = store.root / manifest.id / "listing.json"
    listing.unlink()
    page, total = store.list()
    assert (total, [m.id for m in page]) == (1, [manifest.id])
    assert json.loads(listing.read_text())["created_at"] == manifest.created_at
