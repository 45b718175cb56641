"""The object store against a real S3 server (SeaweedFS): how long a load trusts what it
read, records written before the record format, and blobs collected after a delete."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from model_store import NotFound, ObjectModelStore
from model_store.fsutil import canonical_json
from model_store.manifest import FileEntry, manifest_document
from model_store.object_layout import blob_key, blobs_prefix, manifest_key
from model_store.version_files import metadata_digest
from object_storage import ContentCache, ObjectBackend, S3Options, open_backend

CACHE_BYTES = 64 * 1024 * 1024


def _host(
    backend: ObjectBackend, folder: Path, *, revalidate_s: float = 5.0, gc_grace_s: float = 0.0
) -> ObjectModelStore:
    """One host's store: its own cache folder, the shared bucket."""
    return ObjectModelStore(
        backend,
        cache=ContentCache(folder / "versions", max_bytes=CACHE_BYTES),
        staging_root=folder / "staging",
        revalidate_s=revalidate_s,
        gc_grace_s=gc_grace_s,
    )


def _publish(store: ObjectModelStore, payload: bytes, *, shared: bytes = b"{}") -> int:
    with store.publish("scenes", metadata={}) as staging:
        (staging / "weights.safetensors").write_bytes(payload)
        (staging / "model.json").write_bytes(shared)
    return staging.version.version


def _blobs(backend: ObjectBackend) -> set[str]:
    return {key.rsplit("/", 1)[1] for key in backend.list_keys(blobs_prefix("scenes"))}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def backend(s3_url: str, s3_options: S3Options) -> ObjectBackend:
    return open_backend(s3_url, s3=s3_options)


def test_a_load_trusts_its_read_of_a_version_only_for_revalidate_s(
    backend: ObjectBackend, tmp_path: Path
) -> None:
    publisher = _host(backend, tmp_path / "a")
    trusting = _host(backend, tmp_path / "b", revalidate_s=3600)
    checking = _host(backend, tmp_path / "c", revalidate_s=0)
    for store in (publisher, trusting, checking):
        _publish(store, b"one")
        _publish(store, b"two")
    for store in (trusting, checking):
        assert store.load_verified("scenes:v1").version == 1
    publisher.delete("scenes:v1")
    # Within its window a host loads what it read (and checked) without asking S3 ...
    assert (trusting.load_verified("scenes:v1").path / "weights.safetensors").exists()
    # ... but get, which the API calls for every request naming a version, always asks.
    with pytest.raises(NotFound):
        trusting.get("scenes:v1")
    # The get just now read the deletion: the load no longer trusts its earlier read.
    with pytest.raises(NotFound):
        trusting.load_verified("scenes:v1")
    with pytest.raises(NotFound):
        checking.load_verified("scenes:v1")
    # A deletion through the store itself is seen at once.
    trusting.load_verified("scenes:v2")
    trusting.delete("scenes:v2")
    with pytest.raises(NotFound):
        trusting.load_verified("scenes:v2")


def test_a_trusted_copy_damaged_on_disk_is_fetched_again(
    backend: ObjectBackend, tmp_path: Path
) -> None:
    store = _host(backend, tmp_path / "a", revalidate_s=3600)
    _publish(store, b"weights")
    path = store.load_verified("scenes:v1").path
    (path / "weights.safetensors").chmod(0o644)
    (path / "weights.safetensors").write_bytes(b"rotten!")
    again = store.load_verified("scenes:v1")
    assert (again.path / "weights.safetensors").read_bytes() == b"weights"


def test_a_record_written_before_the_record_format_still_loads(
    backend: ObjectBackend, tmp_path: Path
) -> None:
    """Such a version's manifest listed metadata.json as a blob, and was its whole record."""
    weights, metadata = b"old weights", {"seed": 3}
    document = canonical_json(
        {"format": 1, "name": "scenes", "version": 1, "ref": "scenes:v1",
         "created_at": "2026-01-01T00:00:00.000+00:00", "metadata": metadata}
    )  # fmt: skip
    entries = {
        "weights.safetensors": FileEntry(_digest(weights), len(weights)),
        "metadata.json": FileEntry(_digest(document), len(document)),
    }
    backend.create(blob_key("scenes", _digest(weights)), weights)
    backend.create(blob_key("scenes", _digest(document)), document)
    manifest = canonical_json(manifest_document(entries, metadata_sha256=metadata_digest(metadata)))
    backend.create(manifest_key("scenes", 1), manifest)

    loaded = _host(backend, tmp_path / "a").load_verified("scenes:v1")
    assert loaded.sha256 == _digest(manifest)
    assert loaded.metadata == metadata
    assert loaded.created_at == "2026-01-01T00:00:00.000+00:00"
    assert (loaded.path / "weights.safetensors").read_bytes() == weights


def test_deleting_a_version_deletes_the_blobs_no_other_version_lists(
    backend: ObjectBackend, tmp_path: Path
) -> None:
    store = _host(backend, tmp_path / "a")
    for payload in (b"one", b"two", b"three"):
        _publish(store, payload)
    store.write_report("scenes:v1", files={"report.json": b"{}"})
    shared = _digest(b"{}")
    assert _blobs(backend) == {_digest(b"one"), _digest(b"two"), _digest(b"three"), shared}
    store.delete("scenes:v1")
    assert _blobs(backend) == {_digest(b"two"), _digest(b"three"), shared}
    assert backend.list_keys("scenes/reports/v1/") == []
    assert store.apply_retention("scenes", keep=0) == [2]  # v3 is latest
    assert _blobs(backend) == {_digest(b"three"), shared}
    assert (store.load_verified("scenes:v3").path / "model.json").read_bytes() == b"{}"


def test_blobs_younger_than_the_grace_are_kept(backend: ObjectBackend, tmp_path: Path) -> None:
    """A blob no record lists yet may belong to a publish still running on another host."""
    store = _host(backend, tmp_path / "a", gc_grace_s=3600)
    _publish(store, b"one")
    _publish(store, b"two")
    store.delete("scenes:v1")
    assert _digest(b"one") in _blobs(backend)
    backend.create(blob_key("scenes", _digest(b"half")), b"half")  # a publish under way
    assert store.collect_garbage("scenes") == []
    assert sorted(store.collect_garbage("scenes", grace_s=0)) == sorted(
        [_digest(b"one"), _digest(b"half")]
    )
    assert _blobs(backend) == {_digest(b"two"), _digest(b"{}")}
    assert store.load_verified("scenes:v2").version == 2
