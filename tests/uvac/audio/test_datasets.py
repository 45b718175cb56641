"""uvac.audio.datasets: file discovery, the three label sources, the split rules, manifests.

Scanning never decodes audio, so most files here are empty placeholders."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.audio_fixtures import encode, tone, write_audio
from uvac.audio.datasets import AudioFolder, DatasetItem
from uvac.audio.decoding import load_audio
from uvac.errors import DatasetError

FSDD_SPEAKERS = ("jackson", "theo")


def touch(root: Path, *relpaths: str) -> None:
    for relpath in relpaths:
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def make_fsdd(root: Path, *, takes: int = 8) -> None:
    touch(
        root,
        *(
            f"recordings/{digit}_{speaker}_{take}.wav"
            for digit in range(3)
            for speaker in FSDD_SPEAKERS
            for take in range(takes)
        ),
    )


def make_esc(root: Path) -> None:
    touch(
        root,
        *(
            f"{folder}/{fold}-{1000 + clip}-{take}.ogg"
            for folder in ("001 - Dog bark", "002 - Rain")
            for fold in range(1, 6)
            for clip in range(2)
            for take in "AB"
        ),
    )


# --- labels -----------------------------------------------------------------------------------


def test_labels_from_the_file_name_prefix_fsdd(tmp_path: Path) -> None:
    make_fsdd(tmp_path)
    folder = AudioFolder.scan(tmp_path)
    assert folder.label_source == "filename"
    assert len(folder) == 3 * 2 * 8
    assert folder.labels == ["0", "1", "2"]
    item = next(item for item in folder.items if item.relpath == "recordings/2_theo_5.wav")
    assert item == DatasetItem(
        path=tmp_path.resolve() / item.relpath, label="2", relpath="recordings/2_theo_5.wav"
    )
    assert folder.is_labelled


def test_labels_from_the_parent_folder_esc10(tmp_path: Path) -> None:
    make_esc(tmp_path)
    folder = AudioFolder.scan(tmp_path)
    assert folder.label_source == "folder"
    assert folder.labels == ["001 - Dog bark", "002 - Rain"]
    for item in folder.items:
        assert item.label == item.relpath.split("/")[0]


def test_nested_folders_take_the_immediate_parent(tmp_path: Path) -> None:
    touch(tmp_path, "animals/dog/a.wav", "animals/cat/b.wav")
    labels = {item.relpath: item.label for item in AudioFolder.scan(tmp_path).items}
    assert labels == {"animals/cat/b.wav": "cat", "animals/dog/a.wav": "dog"}


def test_split_named_folders_are_not_labels(tmp_path: Path) -> None:
    touch(tmp_path, "train/7_theo_9.wav", "test/3_theo_1.wav")
    by_name = AudioFolder.scan(tmp_path)
    assert by_name.label_source == "filename"
    assert [item.label for item in by_name.items] == ["3", "7"]
    touch(tmp_path / "other", "train/dog/a.wav", "Test/cat/b.wav", "val/c.wav")
    by_folder = AudioFolder.scan(tmp_path / "other")
    assert by_folder.label_source == "folder"
    labels = {item.relpath: item.label for item in by_folder.items}
    assert labels == {"Test/cat/b.wav": "cat", "train/dog/a.wav": "dog", "val/c.wav": None}


def test_labels_csv_wins_over_folders_and_names(tmp_path: Path) -> None:
    make_esc(tmp_path)
    (tmp_path / "labels.csv").write_text(
        "path,label\n"
        "001 - Dog bark/1-1000-A.ogg,loud\n"
        "./002 - Rain/1-1000-A.ogg , quiet \n"
        "002 - Rain/2-1000-A.ogg,\n"  # empty label: unlabelled
        "missing/file.wav,ghost\n",  # ignored with a warning
        encoding="utf-8",
    )
    folder = AudioFolder.scan(tmp_path)
    assert folder.label_source == "labels.csv"
    labels = {item.relpath: item.label for item in folder.items}
    assert labels["001 - Dog bark/1-1000-A.ogg"] == "loud"
    assert labels["002 - Rain/1-1000-A.ogg"] == "quiet"
    assert labels["002 - Rain/2-1000-A.ogg"] is None
    assert sum(label is not None for label in labels.values()) == 2
    assert folder.labels == ["loud", "quiet"]
    assert not folder.is_labelled
    assert "labels.csv" not in labels


def test_labels_csv_with_extra_columns_and_a_bom(tmp_path: Path) -> None:
    touch(tmp_path, "a.wav", "b.wav")
    (tmp_path / "labels.csv").write_text(
        "\ufefflabel,speaker,path\nx,s1,a.wav\ny,s2,b.wav\n", encoding="utf-8"
    )
    assert [item.label for item in AudioFolder.scan(tmp_path).items] == ["x", "y"]


def test_labels_csv_without_the_columns_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "a.wav")
    (tmp_path / "labels.csv").write_text("file,class\na.wav,x\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="path,label"):
        AudioFolder.scan(tmp_path)


def test_labels_csv_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "a.wav")
    (tmp_path / "labels.csv").write_bytes(b"path,label\na.wav,\xff\xfe\xfa\n")
    with pytest.raises(DatasetError, match="UTF-8"):
        AudioFolder.scan(tmp_path)


def test_no_label_source_means_no_labels(tmp_path: Path) -> None:
    touch(tmp_path, "morning.wav", "evening.flac")
    folder = AudioFolder.scan(tmp_path)
    assert folder.label_source == "none"
    assert [item.label for item in folder.items] == [None, None]
    assert folder.labels == [] and not folder.is_labelled


# --- discovery --------------------------------------------------------------------------------


def test_discovery_is_sorted_case_insensitive_and_skips_hidden_and_other_files(
    tmp_path: Path,
) -> None:
    touch(
        tmp_path,
        "b_x_1.WAV", "a_x_1.flac", "c_x_1.ogg",
        "notes_x_1.txt", "d_x_1.mp3",
        ".hidden_x_1.wav", "._a_x_1.flac", ".cache/e_x_1.wav", "__MACOSX/f_x_1.wav",
    )  # fmt: skip
    folder = AudioFolder.scan(tmp_path)
    assert [item.relpath for item in folder.items] == [
        "a_x_1.flac", "b_x_1.WAV", "c_x_1.ogg", "d_x_1.mp3",
    ]  # fmt: skip
    mp3 = AudioFolder.scan(tmp_path, extensions=(".mp3",))
    assert [item.relpath for item in mp3.items] == ["d_x_1.mp3"]


def test_a_folder_of_mp3_files_is_a_data_set(tmp_path: Path) -> None:
    for digit in range(3):
        write_audio(tmp_path / f"{digit}_theo_0.mp3", tone(300 + 100 * digit, 0.3))
    folder = AudioFolder.scan(tmp_path)
    assert [item.label for item in folder.items] == ["0", "1", "2"]
    assert all(load_audio(item.path, sample_rate=16000).duration_s > 0.25 for item in folder.items)


def test_audio_is_found_by_its_content_whatever_its_extension(tmp_path: Path) -> None:
    write_audio(tmp_path / "a_x_1.wav", tone(440, 0.1))
    (tmp_path / "b_x_1.dat").write_bytes(encode(tone(440, 0.1), format="FLAC"))
    (tmp_path / "c_x_1.bin").write_bytes(b"RIFF but not a wave file at all")
    (tmp_path / "d_x_1.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(32))
    relpaths = [item.relpath for item in AudioFolder.scan(tmp_path).items]
    assert relpaths == ["a_x_1.wav", "b_x_1.dat"]


def test_links_leaving_the_root_are_skipped(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    touch(outside, "secret_x_1.wav")
    root = tmp_path / "data"
    touch(root, "a_x_1.wav", "b_x_1.wav")
    os.symlink(outside / "secret_x_1.wav", root / "c_x_1.wav")
    os.symlink(root / "a_x_1.wav", root / "d_x_1.wav")  # inside: kept
    relpaths = [item.relpath for item in AudioFolder.scan(root).items]
    assert relpaths == ["a_x_1.wav", "b_x_1.wav", "d_x_1.wav"]


def test_items_point_at_real_decodable_files(tmp_path: Path) -> None:
    write_audio(tmp_path / "1_alice_0.wav", tone(440, 0.1))
    write_audio(tmp_path / "2_alice_7.flac", tone(880, 0.1))
    for item in AudioFolder.scan(tmp_path).items:
        assert item.path.is_absolute()
        assert load_audio(item.path, sample_rate=16000).samples.size == 1600


@pytest.mark.parametrize("contents", [(), ("readme.txt", "labels.csv", "sub/notes.md")])
def test_folders_without_audio_are_refused(tmp_path: Path, contents: tuple[str, ...]) -> None:
    touch(tmp_path, *contents)
    with pytest.raises(DatasetError, match="No audio files"):
        AudioFolder.scan(tmp_path)


def test_missing_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        AudioFolder.scan(tmp_path / "absent")


# --- splits -----------------------------------------------------------------------------------


def take(item: DatasetItem) -> int:
    return int(Path(item.relpath).stem.rsplit("_", 1)[1])


def test_fsdd_split_takes_0_to_4_are_test(tmp_path: Path) -> None:
    make_fsdd(tmp_path, takes=12)
    test = AudioFolder.scan(tmp_path, split="test")
    train = AudioFolder.scan(tmp_path, split="train")
    assert test.split_rule == train.split_rule == "fsdd"
    assert {take(item) for item in test.items} == {0, 1, 2, 3, 4}
    assert {take(item) for item in train.items} == set(range(5, 12))
    assert len(test) + len(train) == len(AudioFolder.scan(tmp_path))
    assert test.labels == train.labels == ["0", "1", "2"]


def test_esc_split_fold_1_is_test(tmp_path: Path) -> None:
    make_esc(tmp_path)
    test = AudioFolder.scan(tmp_path, split="test")
    train = AudioFolder.scan(tmp_path, split="train")
    assert test.split_rule == "esc"
    assert {item.relpath.split("/")[1][0] for item in test.items} == {"1"}
    assert {item.relpath.split("/")[1][0] for item in train.items} == {"2", "3", "4", "5"}
    assert len(test) == 2 * 2 * 2 and len(train) == 4 * len(test)


def test_other_names_split_by_hash_deterministically_and_independently(tmp_path: Path) -> None:
    relpaths = [f"scene-{index}.wav" for index in range(300)]
    first, second = tmp_path / "first", tmp_path / "second"
    touch(first, *relpaths)
    touch(second, *relpaths[:150])  # fewer files elsewhere: each file keeps its side
    test = {item.relpath for item in AudioFolder.scan(first, split="test").items}
    train = {item.relpath for item in AudioFolder.scan(first, split="train").items}
    assert AudioFolder.scan(first, split="test").split_rule == "hash"
    assert test | train == set(relpaths) and not test & train
    assert 0.12 < len(test) / len(relpaths) < 0.28  # about 20%
    assert {item.relpath for item in AudioFolder.scan(second, split="test").items} == {
        relpath for relpath in test if relpath in relpaths[:150]
    }
    # the documented rule, spelled out
    for relpath in relpaths:
        bucket = int(hashlib.sha1(relpath.encode()).hexdigest()[:8], 16) % 100
        assert (relpath in test) == (bucket < 20)


def test_mixed_naming_falls_back_to_the_hash_split(tmp_path: Path) -> None:
    touch(tmp_path, *(f"1_bob_{take}.wav" for take in range(10)), "odd-name.wav")
    assert AudioFolder.scan(tmp_path, split="train").split_rule == "hash"


def test_an_empty_split_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "1_bob_7.wav", "1_bob_8.wav")
    with pytest.raises(DatasetError, match='"test" split'):
        AudioFolder.scan(tmp_path, split="test")
    with pytest.raises(ValueError, match="split"):
        AudioFolder.scan(tmp_path, split="validation")  # type: ignore[arg-type]


# --- manifests --------------------------------------------------------------------------------


def test_manifest_and_digest_are_canonical_and_portable(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    make_esc(first)
    make_esc(second)
    folder = AudioFolder.scan(first)
    manifest = folder.manifest()
    assert manifest[0] == {"path": "001 - Dog bark/1-1000-A.ogg", "label": "001 - Dog bark"}
    paths = [str(entry["path"]) for entry in manifest]
    assert paths == sorted(paths)
    empty = hashlib.sha256(b"").hexdigest()  # make_esc writes empty files
    canonical = json.dumps(
        {
            "files": [{**entry, "sha256": empty} for entry in manifest],
            "labels": folder.labels,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert folder.manifest_digest() == hashlib.sha256(canonical.encode()).hexdigest()
    assert AudioFolder.scan(second).manifest_digest() == folder.manifest_digest()
    assert AudioFolder.scan(first, split="test").manifest_digest() != folder.manifest_digest()

    (second / "labels.csv").write_text("path,label\n002 - Rain/1-1000-A.ogg,rain\n")
    assert AudioFolder.scan(second).manifest_digest() != folder.manifest_digest()
