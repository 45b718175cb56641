from __future__ import annotations

import json
import os

import pytest

from model_store import Corrupted, ModelStore

from .conftest import PublishFn


def _flip_one_byte(path: os.PathLike[str], offset: int) -> None:
    with open(path, "r+b") as stream:
        stream.seek(offset)
        original = stream.read(1)
        stream.seek(offset)
        stream.write(bytes([original[0] ^ 0x01]))


def test_intact_version_verifies(store: ModelStore, publish: PublishFn) -> None:
    version = publish(payload=os.urandom(50_000))
    assert store.verify("scenes:v1") == version
    assert store.load_verified("scenes") == version


def test_one_flipped_byte_in_the_weights_is_detected_and_refused(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish(payload=os.urandom(50_000))
    _flip_one_byte(version.path / "weights.safetensors", offset=31_337)

    with pytest.raises(Corrupted) as caught:
        store.load_verified("scenes@latest")
    assert caught.value.bad_files == ["weights.safetensors"]
    assert caught.value.ref == "scenes:v1"
    assert (caught.value.status, caught.value.slug) == (422, "model-corrupted")
    assert "sha256 differs" in str(caught.value)
    with pytest.raises(Corrupted):
        store.verify("scenes:v1")


@pytest.mark.parametrize(
    ("tamper", "bad_file", "problem"),
    [
        (lambda path: (path / "model.json").unlink(), "model.json", "missing"),
        (lambda path: (path / "extra.bin").write_bytes(b"x"), "extra.bin", "unexpected file"),
        (
            lambda path: (path / "weights.safetensors").write_bytes(b"weights!"),
            "weights.safetensors",
            "size differs",
        ),
    ],
)
def test_missing_extra_and_resized_files_are_detected(
    store: ModelStore, publish: PublishFn, tamper, bad_file: str, problem: str
) -> None:
    version = publish(payload=b"weights")
    tamper(version.path)
    with pytest.raises(Corrupted, match=problem) as caught:
        store.verify("scenes:v1")
    assert caught.value.bad_files == [bad_file]


def test_edited_metadata_is_detected_even_when_it_still_parses(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish(n_clusters=4)
    document = json.loads((version.path / "metadata.json").read_text())
    document["metadata"]["n_clusters"] = 5
    (version.path / "metadata.json").write_text(json.dumps(document))
    with pytest.raises(Corrupted) as caught:
        store.verify("scenes:v1")
    assert caught.value.bad_files == ["metadata.json"]


def test_publication_fields_are_not_the_identity(store: ModelStore, publish: PublishFn) -> None:
    version = publish(n_clusters=4)
    document = json.loads((version.path / "metadata.json").read_text())
    document["created_at"] = "2000-01-01T00:00:00+00:00"
    (version.path / "metadata.json").write_text(json.dumps(document))
    assert store.verify("scenes:v1").sha256 == version.sha256


def test_a_format_1_manifest_still_verifies(store: ModelStore, publish: PublishFn) -> None:
    """Versions published before the identity left the publication out list metadata.json."""
    import hashlib

    version = publish(n_clusters=4)
    manifest_path = version.path / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    metadata_bytes = (version.path / "metadata.json").read_bytes()
    manifest["format"] = 1
    del manifest["metadata"]
    manifest["files"]["metadata.json"] = {
        "sha256": hashlib.sha256(metadata_bytes).hexdigest(),
        "size": len(metadata_bytes),
    }
    manifest_path.write_text(json.dumps(manifest))
    assert store.verify("scenes:v1").ref == "scenes:v1"
    (version.path / "metadata.json").write_bytes(metadata_bytes.replace(b"4", b"5"))
    with pytest.raises(Corrupted) as caught:
        store.verify("scenes:v1")
    assert caught.value.bad_files == ["metadata.json"]


def test_rewritten_manifest_changes_the_identity(store: ModelStore, publish: PublishFn) -> None:
    version = publish(payload=b"weights")
    manifest_path = version.path / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    (version.path / "weights.safetensors").write_bytes(b"WEIGHTS")
    manifest["files"]["weights.safetensors"]["sha256"] = hashlib.sha256(b"WEIGHTS").hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    # Consistent again, but a client holding the old digest can tell it is not the same model.
    assert store.verify("scenes:v1").sha256 != version.sha256


def test_unreadable_manifest_is_corrupted_not_a_crash(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish()
    (version.path / "MANIFEST.json").write_text("{not json")
    with pytest.raises(Corrupted):
        store.get("scenes:v1")
    (version.path / "MANIFEST.json").write_text('{"algorithm": "md5", "files": {}}')
    with pytest.raises(Corrupted) as caught:
        store.verify("scenes:v1")
    assert caught.value.bad_files == ["MANIFEST.json"]
