from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from model_store import (
    AliasConflict,
    ModelStore,
    NotFound,
    StoreError,
)
from model_store.fsutil import rename_no_replace
from model_store.version_files import metadata_digest
from tests.disk_state import snapshot

from .conftest import PublishFn


def test_publish_then_resolve_by_number_alias_and_bare_name(
    store: ModelStore, publish: PublishFn
) -> None:
    first = publish(payload=b"one", seed=1)
    second = publish(payload=b"two", seed=2)

    assert (first.version, second.version) == (1, 2)
    assert second.ref == "scenes:v2"
    assert store.get("scenes:v1").metadata == {"seed": 1}
    assert store.get("scenes") == store.get("scenes@latest") == store.get("scenes:v2")
    assert store.get("scenes").aliases == ["latest"]
    assert store.get("scenes:v1").aliases == []
    assert (second.path / "weights.safetensors").read_bytes() == b"two"
    assert second.path == store.root / "scenes" / "versions" / "v2"


def test_identity_is_the_manifest_digest_and_metadata_is_json(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish(payload=b"abc", n_clusters=4)
    manifest_bytes = (version.path / "MANIFEST.json").read_bytes()
    import hashlib

    assert version.sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    manifest = json.loads(manifest_bytes)
    # The caller's files and the digest of the caller's metadata; nothing of the publication.
    assert set(manifest["files"]) == {"weights.safetensors", "model.json"}
    assert manifest["metadata"]["sha256"] == metadata_digest({"n_clusters": 4})
    assert manifest["files"]["weights.safetensors"] == {
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "size": 3,
    }
    metadata_document = json.loads((version.path / "metadata.json").read_text())
    assert metadata_document["ref"] == "scenes:v1"
    assert metadata_document["metadata"] == {"n_clusters": 4}
    assert version.to_dict()["sha256"] == version.sha256
    json.dumps(version.to_dict())  # JSON-able as is


def test_same_content_published_twice_gets_two_versions_with_the_same_identity(
    publish: PublishFn,
) -> None:
    first, second = publish(payload=b"same"), publish(payload=b"same")
    assert first.version != second.version and first.created_at <= second.created_at
    assert first.sha256 == second.sha256  # the model, not its publication
    assert publish(payload=b"other").sha256 != first.sha256
    assert publish(payload=b"same", seed=1).sha256 != first.sha256  # metadata is the model's


def test_a_model_has_one_identity_in_every_store(tmp_path: Path) -> None:
    staging_store, production = ModelStore(tmp_path / "a"), ModelStore(tmp_path / "b")

    def publish_into(store: ModelStore, name: str) -> str:
        with store.publish(name, metadata={"seed": 3}) as staging:
            (staging / "weights.safetensors").write_bytes(b"w")
        return staging.version.sha256

    publish_into(production, "older")
    first = publish_into(staging_store, "scenes")
    with production.publish("scenes", metadata={"seed": 0}) as other:
        (other / "weights.safetensors").write_bytes(b"x")
    # Another store, another time, another version number: the same model, the same digest.
    assert publish_into(production, "scenes") == first
    assert production.get("scenes@latest").version == 2


def test_failed_publish_block_leaves_nothing(store: ModelStore, publish: PublishFn) -> None:
    with (
        pytest.raises(RuntimeError, match="training blew up"),
        store.publish("scenes", metadata={}) as staging,
    ):
        (staging / "weights.safetensors").write_bytes(b"partial")
        raise RuntimeError("training blew up")
    assert not staging.exists()
    assert store.list_models() == []
    with pytest.raises(NotFound):
        store.get("scenes")
    assert publish().version == 1


def test_publish_refuses_reserved_names_symlinks_and_non_json_metadata(
    store: ModelStore, tmp_path: Path
) -> None:
    with (
        pytest.raises(StoreError, match="written by the store"),
        store.publish("scenes", metadata={}) as staging,
    ):
        (staging / "MANIFEST.json").write_text("{}")
    outside = tmp_path / "secret"
    outside.write_text("not yours")
    with (
        pytest.raises(StoreError, match="regular files"),
        store.publish("scenes", metadata={}) as staging,
    ):
        (staging / "weights.safetensors").symlink_to(outside)
    with (
        pytest.raises(ValueError, match="JSON"),
        store.publish("scenes", metadata={"loss": float("nan")}),
    ):
        pass
    with pytest.raises(ValueError, match="JSON"), store.publish("scenes", metadata={"x": object()}):
        pass
    assert store.list_models() == []


def test_published_metadata_is_a_copy(store: ModelStore) -> None:
    metadata = {"hyperparameters": {"k": 4}}
    with store.publish("scenes", metadata=metadata) as staging:
        (staging / "w").write_bytes(b"x")
    metadata["hyperparameters"]["k"] = 99
    assert store.get("scenes").metadata == {"hyperparameters": {"k": 4}}


def test_promote_and_rollback_walk_back_through_distinct_targets(
    store: ModelStore, publish: PublishFn
) -> None:
    for _ in range(3):
        publish()
    store.promote("scenes:v1", "production")
    store.promote("scenes:v1", "production")  # a repeat is not a new rollback step
    store.promote("scenes:v2", "production")
    assert store.promote("scenes@latest", "production").version == 3
    assert store.get("scenes@production").aliases == ["latest", "production"]

    assert store.rollback("scenes", "production").version == 2
    assert store.rollback("scenes", "production").version == 1
    with pytest.raises(AliasConflict):
        store.rollback("scenes", "production")
    assert store.get("scenes@production").version == 1
    actions = [(e["alias"], e["action"], e["version"]) for e in store.alias_history("scenes")]
    assert actions[-2:] == [("production", "rollback", 2), ("production", "rollback", 1)]


def test_rollback_survives_a_new_store_instance_and_skips_deleted_versions(
    store: ModelStore, publish: PublishFn
) -> None:
    for number in (1, 2, 3):
        publish()
        store.promote(f"scenes:v{number}", "production")
    store.delete("scenes:v2")
    reopened = ModelStore(store.root)
    assert reopened.rollback("scenes", "production").version == 1


def test_rollback_of_latest_undoes_a_bad_publish(store: ModelStore, publish: PublishFn) -> None:
    publish()
    publish()
    assert store.rollback("scenes", "latest").version == 1
    assert store.get("scenes").version == 1
    assert publish().version == 3  # numbers are never reused


def test_unknown_things_are_not_found(store: ModelStore, publish: PublishFn) -> None:
    with pytest.raises(NotFound) as caught:
        store.get("nothing")
    assert (caught.value.status, caught.value.slug) == (404, "model-not-found")
    publish()
    for ref in ("scenes:v9", "scenes@production"):
        with pytest.raises(NotFound):
            store.get(ref)
    with pytest.raises(NotFound):
        store.promote("scenes:v9", "production")
    with pytest.raises(NotFound):
        store.rollback("scenes", "production")
    with pytest.raises(NotFound):
        store.list_versions("nothing")


def test_delete_is_refused_while_an_alias_points_at_the_version(
    store: ModelStore, publish: PublishFn
) -> None:
    publish()
    publish()
    store.promote("scenes:v1", "production")
    with pytest.raises(AliasConflict, match="@production") as caught:
        store.delete("scenes:v1")
    assert caught.value.status == 409
    with pytest.raises(AliasConflict, match="@latest"):
        store.delete("scenes:v2")

    store.remove_alias("scenes", "production")
    store.delete("scenes:v1")
    with pytest.raises(NotFound):
        store.get("scenes:v1")
    assert [v.version for v in store.list_versions("scenes")[0]] == [2]
    assert list((store.root / ".staging").iterdir()) == []  # trash removed too


def test_list_models_and_paginated_versions(store: ModelStore, publish: PublishFn) -> None:
    for _ in range(5):
        publish()
    publish("birds")
    store.promote("scenes:v2", "production")

    summaries = {summary.name: summary for summary in store.list_models()}
    assert list(summaries) == ["birds", "scenes"]
    assert summaries["scenes"].latest_version == 5
    assert summaries["scenes"].version_count == 5
    assert summaries["scenes"].aliases == {"latest": 5, "production": 2}

    page, total = store.list_versions("scenes", offset=1, limit=2)
    assert total == 5
    assert [version.version for version in page] == [4, 3]
    assert store.list_versions("scenes", offset=10)[0] == []
    with pytest.raises(ValueError):
        store.list_versions("scenes", limit=0)


def test_retention_never_deletes_an_aliased_version(store: ModelStore, publish: PublishFn) -> None:
    for _ in range(6):
        publish()
    store.promote("scenes:v2", "production")
    store.promote("scenes:v1", "staging")

    assert store.apply_retention("scenes", keep=2) == [3]  # keeps 5, 4; 6 is @latest
    assert [v.version for v in store.list_versions("scenes")[0]] == [6, 5, 4, 2, 1]
    assert store.apply_retention("scenes", keep=0) == [4, 5]
    assert [v.version for v in store.list_versions("scenes")[0]] == [6, 2, 1]
    assert store.apply_retention("scenes", keep=0) == []
    with pytest.raises(ValueError):
        store.apply_retention("scenes", keep=-1)


def test_retention_property_over_random_alias_layouts(tmp_path: Path) -> None:
    rng = random.Random(7)
    for trial in range(5):
        store = ModelStore(tmp_path / f"trial{trial}")
        count = rng.randint(1, 8)
        for _ in range(count):
            with store.publish("m", metadata={}) as staging:
                (staging / "w").write_bytes(b"x")
        for alias in ("a", "b", "c")[: rng.randint(0, 3)]:
            store.promote(f"m:v{rng.randint(1, count)}", alias)
        aliased = set(summary.aliases.values()) if (summary := store.list_models()[0]) else set()
        keep = rng.randint(0, 3)

        deleted = store.apply_retention("m", keep=keep)

        remaining = {v.version for v in store.list_versions("m", limit=100)[0]}
        assert aliased <= remaining
        assert not set(deleted) & aliased
        unaliased_left = sorted(remaining - aliased, reverse=True)
        assert unaliased_left == sorted(set(range(1, count + 1)) - aliased, reverse=True)[:keep]


def test_report_area_is_mutable_beside_the_immutable_version(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish()
    assert store.report_path("scenes:v1") is None

    path = store.write_report(
        "scenes@latest",
        files={"report.json": b'{"accuracy": 0.5}', "figures/confusion.png": b"\x89PNG"},
    )
    assert path == store.root / "scenes" / "reports" / "v1"
    assert store.report_path("scenes:v1") == path
    assert json.loads((path / "report.json").read_bytes()) == {"accuracy": 0.5}

    store.write_report("scenes:v1", files={"report.json": b'{"accuracy": 0.9}'})
    assert not (path / "figures").exists()  # replaced as a whole, nothing stale
    assert json.loads((path / "report.json").read_bytes()) == {"accuracy": 0.9}
    assert store.verify("scenes:v1").sha256 == version.sha256  # the version did not change

    for bad_name in ("../escape.json", "/abs.json", "a//b", ".hidden", ""):
        with pytest.raises(ValueError):
            store.write_report("scenes:v1", files={bad_name: b"x"})
    assert not (store.root / "scenes" / "escape.json").exists()

    publish()
    store.delete("scenes:v1")
    assert not path.exists()  # a version and its report go together


def test_rename_no_replace_refuses_an_empty_target_directory(tmp_path: Path) -> None:
    import model_store.fsutil as fsutil

    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    (source / "file").write_text("data")
    target.mkdir()
    with pytest.raises(FileExistsError):
        rename_no_replace(source, target)
    # The fallback used where renameat2 is unavailable must refuse too.
    original = fsutil._renameat2
    fsutil._renameat2 = None
    try:
        with pytest.raises(FileExistsError):
            rename_no_replace(source, target)
        os.rmdir(target)
        rename_no_replace(source, target)
    finally:
        fsutil._renameat2 = original
    assert (target / "file").read_text() == "data"


def test_stray_version_folder_is_never_overwritten(store: ModelStore, publish: PublishFn) -> None:
    publish()
    stray = store.root / "scenes" / "versions" / "v2"
    stray.mkdir()
    (stray / "keep.txt").write_text("someone else's")
    assert publish().version == 3
    assert (stray / "keep.txt").read_text() == "someone else's"


def test_cleanup_staging_removes_only_old_leftovers(store: ModelStore) -> None:
    staging_root = store.root / ".staging"
    staging_root.mkdir(parents=True)
    old, fresh = staging_root / "old", staging_root / "fresh"
    old.mkdir()
    fresh.mkdir()
    os.utime(old, (0, 0))
    assert store.cleanup_staging(max_age_s=3600) == 1
    assert not old.exists() and fresh.exists()
    ModelStore(store.root, stale_staging_after_s=0)  # opening a store cleans too
    assert not fresh.exists()


def test_refused_writes_change_nothing_on_disk(store: ModelStore, publish: PublishFn) -> None:
    """A write that is refused leaves no folder, lock or alias file behind, so an unknown
    model never starts to exist by being asked about."""
    publish("scenes")
    before = snapshot(store.root)
    refused = [
        lambda: store.promote("ghost:v1", "production"),
        lambda: store.promote("ghost", "production"),
        lambda: store.rollback("ghost", "production"),
        lambda: store.remove_alias("ghost", "production"),
        lambda: store.delete("ghost:v1"),
        lambda: store.apply_retention("ghost", keep=1),
        lambda: store.write_report("ghost:v1", files={"report.json": b"{}"}),
        lambda: store.promote("scenes:v9", "production"),
        lambda: store.rollback("scenes", "production"),
        lambda: store.remove_alias("scenes", "production"),
        lambda: store.delete("scenes:v9"),
    ]
    for attempt in refused:
        with pytest.raises(NotFound):
            attempt()
    assert snapshot(store.root) == before
    assert [summary.name for summary in store.list_models()] == ["scenes"]
    with pytest.raises(NotFound):
        store.list_versions("ghost")


def test_aliases_per_model_are_bounded_and_existing_ones_still_move(
    store: ModelStore, publish: PublishFn
) -> None:
    from model_store.store import MAX_ALIASES_PER_MODEL

    publish(payload=b"one", seed=1)
    publish(payload=b"two", seed=2)
    with pytest.raises(AliasConflict, match="aliases"):
        for index in range(MAX_ALIASES_PER_MODEL + 1):
            store.promote("scenes:v1", f"a{index}")
    assert len(store.get("scenes:v1").aliases) <= MAX_ALIASES_PER_MODEL
    assert "a0" in store.promote("scenes:v2", "a0").aliases
