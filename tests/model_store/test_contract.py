"""The model store's contract, run on the folder store and on the object store (SeaweedFS)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from model_store import AliasConflict, Corrupted, ModelVersion, NotFound
from model_store.object_layout import blob_key
from model_store.object_store import ObjectModelStore
from model_store.opening import AnyModelStore, open_model_store
from object_storage import S3Options

CACHE_BYTES = 64 * 1024 * 1024


@pytest.fixture(params=["file", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AnyModelStore:
    if request.param == "file":
        return open_model_store(
            (tmp_path / "models").as_uri(), cache_dir=tmp_path / "cache", cache_max_bytes=0
        )
    url: str = request.getfixturevalue("s3_url")
    options: S3Options = request.getfixturevalue("s3_options")
    return open_model_store(
        url, s3=options, cache_dir=tmp_path / "cache", cache_max_bytes=CACHE_BYTES
    )


def _publish(
    store: AnyModelStore, name: str = "scenes", *, payload: bytes = b"weights", **metadata: object
) -> ModelVersion:
    with store.publish(name, metadata=dict(metadata)) as staging:
        (staging / "weights.safetensors").write_bytes(payload)
        (staging / "sub").mkdir()
        (staging / "sub" / "model.json").write_text('{"model_type": "cat-uvac"}')
    return staging.version


def test_publish_resolve_and_identity(any_store: AnyModelStore) -> None:
    first = _publish(any_store, payload=b"one", seed=1)
    second = _publish(any_store, payload=b"two", seed=2)
    assert (first.version, second.version) == (1, 2)
    assert any_store.get("scenes:v1").metadata == {"seed": 1}
    assert any_store.get("scenes") == any_store.get("scenes@latest") == any_store.get("scenes:v2")
    assert any_store.get("scenes").aliases == ["latest"]
    loaded = any_store.load_verified("scenes:v1")
    assert (loaded.path / "weights.safetensors").read_bytes() == b"one"
    assert (loaded.path / "sub" / "model.json").read_text() == '{"model_type": "cat-uvac"}'
    manifest_bytes = (loaded.path / "MANIFEST.json").read_bytes()
    assert loaded.sha256 == first.sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    # Both stores pin the publisher's metadata by digest and list only the model's files, so
    # a model's identity leaves out when and where it was published.
    assert set(json.loads(manifest_bytes)["files"]) == {"weights.safetensors", "sub/model.json"}
    assert json.loads((loaded.path / "metadata.json").read_text())["ref"] == "scenes:v1"


def test_same_content_twice_gets_two_versions(any_store: AnyModelStore) -> None:
    first, second = _publish(any_store, payload=b"same"), _publish(any_store, payload=b"same")
    assert (first.version, second.version) == (1, 2)
    # The same model has the same identity whenever it is published, and two versions of it
    # still read back their own number and publish time.
    assert first.sha256 == second.sha256
    assert any_store.load_verified("scenes:v1").created_at == first.created_at
    assert any_store.load_verified("scenes:v2").created_at == second.created_at
    assert any_store.get("scenes:v2").metadata == {}
    different = _publish(any_store, payload=b"same", seed=1)
    assert different.sha256 != first.sha256  # the metadata is part of the identity


def test_one_model_has_one_digest_on_both_backends(
    tmp_path: Path, s3_url: str, s3_options: S3Options
) -> None:
    folder = open_model_store((tmp_path / "models").as_uri(), cache_dir=tmp_path, cache_max_bytes=0)
    bucket = open_model_store(
        s3_url, s3=s3_options, cache_dir=tmp_path / "cache", cache_max_bytes=CACHE_BYTES
    )
    _publish(folder, payload=b"earlier")  # so the two version numbers differ too
    on_disk = _publish(folder, payload=b"model", seed=7)
    on_s3 = _publish(bucket, payload=b"model", seed=7)
    assert (on_disk.version, on_s3.version) == (2, 1)
    assert on_disk.sha256 == on_s3.sha256
    assert bucket.load_verified("scenes:v1").sha256 == folder.load_verified("scenes:v2").sha256


def test_failed_publish_block_leaves_nothing(any_store: AnyModelStore) -> None:
    with pytest.raises(RuntimeError), any_store.publish("scenes", metadata={}) as staging:
        (staging / "weights.safetensors").write_bytes(b"partial")
        raise RuntimeError("training blew up")
    assert any_store.list_models() == []
    with pytest.raises(NotFound):
        any_store.get("scenes")
    assert _publish(any_store).version == 1


def test_promote_rollback_and_history(any_store: AnyModelStore) -> None:
    for seed in range(3):
        _publish(any_store, seed=seed)
    any_store.promote("scenes:v1", "production")
    any_store.promote("scenes:v2", "production")
    any_store.promote("scenes:v3", "production")
    assert any_store.get("scenes@production").version == 3
    assert any_store.rollback("scenes", "production").version == 2
    assert any_store.rollback("scenes", "production").version == 1
    with pytest.raises(AliasConflict):
        any_store.rollback("scenes", "production")
    actions = [(e["alias"], e["action"], e["version"]) for e in any_store.alias_history("scenes")]
    assert actions[-2:] == [("production", "rollback", 2), ("production", "rollback", 1)]
    any_store.remove_alias("scenes", "production")
    with pytest.raises(NotFound):
        any_store.get("scenes@production")


def test_aliases_per_model_are_bounded_on_either_store(any_store: AnyModelStore) -> None:
    from model_store.aliases import MAX_ALIASES_PER_MODEL

    _publish(any_store, seed=1)
    _publish(any_store, seed=2)
    # `latest` is one of them; promotions add the others up to the bound.
    for index in range(MAX_ALIASES_PER_MODEL - 1):
        any_store.promote("scenes:v1", f"a{index}")
    with pytest.raises(AliasConflict, match=f"{MAX_ALIASES_PER_MODEL} aliases"):
        any_store.promote("scenes:v1", "one-too-many")
    assert "one-too-many" not in any_store.list_models()[0].aliases
    # Existing aliases still move, and a removed one frees its place; publishing still works.
    assert any_store.promote("scenes:v2", "a0").version == 2
    any_store.remove_alias("scenes", "a1")
    assert any_store.promote("scenes:v2", "one-too-many").version == 2
    assert _publish(any_store, seed=3).version == 3


def test_unknown_things_are_not_found(any_store: AnyModelStore) -> None:
    with pytest.raises(NotFound):
        any_store.get("nothing")
    _publish(any_store)
    for ref in ["scenes:v9", "scenes@staging", "other:v1"]:
        with pytest.raises(NotFound):
            any_store.get(ref)
    with pytest.raises(NotFound):
        any_store.promote("scenes:v9", "production")
    with pytest.raises(NotFound):
        any_store.list_versions("other")


def test_delete_refused_while_aliased_and_listing(any_store: AnyModelStore) -> None:
    for seed in range(3):
        _publish(any_store, seed=seed)
    _publish(any_store, "words")
    any_store.promote("scenes:v1", "production")
    with pytest.raises(AliasConflict):
        any_store.delete("scenes:v1")
    any_store.delete("scenes:v2")
    with pytest.raises(NotFound):
        any_store.get("scenes:v2")
    page, total = any_store.list_versions("scenes", limit=1)
    assert total == 2 and [v.version for v in page] == [3]
    summaries = {s.name: s for s in any_store.list_models()}
    assert set(summaries) == {"scenes", "words"}
    assert summaries["scenes"].aliases == {"latest": 3, "production": 1}
    assert any_store.apply_retention("scenes", keep=0) == []  # v1, v3 are aliased


def test_reports_are_replaced_whole(any_store: AnyModelStore) -> None:
    _publish(any_store)
    assert any_store.report_path("scenes:v1") is None
    any_store.write_report("scenes:v1", files={"report.json": b"{}", "figures/a.png": b"png"})
    any_store.write_report("scenes:v1", files={"report.json": b'{"v": 2}'})
    path = any_store.report_path("scenes:v1")
    assert path is not None
    assert (path / "report.json").read_bytes() == b'{"v": 2}'
    assert not (path / "figures" / "a.png").exists()


def test_a_changed_blob_is_refused_on_load(any_store: AnyModelStore, tmp_path: Path) -> None:
    version = _publish(any_store, payload=b"good weights")
    if isinstance(any_store, ObjectModelStore):
        # Another host's cache is empty, and the stored bytes were changed behind the store.
        key = blob_key("scenes", hashlib.sha256(b"good weights").hexdigest())
        any_store.backend.delete(key)
        any_store.backend.create(key, b"evil weights")
        other_host = ObjectModelStore(
            any_store.backend,
            cache=type(any_store._cache)(tmp_path / "other-cache", max_bytes=CACHE_BYTES),
            staging_root=tmp_path / "other-staging",
        )
        with pytest.raises(Corrupted) as caught:
            other_host.load_verified("scenes:v1")
        assert caught.value.bad_files == ["weights.safetensors"]
        # This host's cached copy damaged on disk is fetched again, and still refused.
        (version.path / "weights.safetensors").chmod(0o644)
        (version.path / "weights.safetensors").write_bytes(b"rotten")
        with pytest.raises(Corrupted):
            any_store.load_verified("scenes:v1")
    else:
        (version.path / "weights.safetensors").write_bytes(b"evil weights")
        with pytest.raises(Corrupted):
            any_store.load_verified("scenes:v1")
