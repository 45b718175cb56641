"""Editable cluster names beside immutable versions."""

from __future__ import annotations

import json

import pytest

from model_store import Corrupted, ModelStore
from model_store.cluster_names import (
    NAMES_FILE_NAME,
    InvalidClusterName,
    UnknownCluster,
    cluster_names,
    current_cluster_names,
    edited_names,
    set_cluster_name,
)
from tests.model_store.conftest import PublishFn


def test_edits_overlay_the_published_names_and_leave_the_version_intact(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish(cluster_names=["quiet", "speech", "music", "traffic"])
    names = set_cluster_name(store.root, version, cluster=1, name="Speech in noise", n_clusters=4)
    assert names == {"0": "quiet", "1": "Speech in noise", "2": "music", "3": "traffic"}
    assert cluster_names(store.root, version, n_clusters=4) == names
    store.verify(version.ref)  # the version's files and metadata are untouched
    document = json.loads((store.root / "scenes" / NAMES_FILE_NAME).read_text())
    assert document["versions"]["1"]["sha256"] == version.sha256


def test_names_recorded_for_other_bytes_under_the_same_number_are_ignored(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish()
    path = store.root / "scenes" / NAMES_FILE_NAME
    stale = {"sha256": "0" * 64, "names": {"0": "Rain"}}
    path.write_text(json.dumps({"format": 1, "versions": {str(version.version): stale}}))
    assert edited_names(store.root, version) == {}
    names = set_cluster_name(store.root, version, cluster=1, name="Wind", n_clusters=4)
    assert names == {"1": "Wind"}  # the stale entry was replaced, not merged


def test_names_to_show_fall_back_to_the_published_ones(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish()
    info = {"cluster_names": ["quiet", "speech", "music", "traffic"]}  # the model file's
    set_cluster_name(store.root, version, cluster=2, name="Live music", n_clusters=4)
    shown = current_cluster_names(store.root, version, n_clusters=4, model_info=info)
    assert shown == {"0": "quiet", "1": "speech", "2": "Live music", "3": "traffic"}

    (store.root / "scenes" / NAMES_FILE_NAME).write_text("{not json")
    with pytest.raises(Corrupted):
        cluster_names(store.root, version, n_clusters=4)
    shown = current_cluster_names(store.root, version, n_clusters=4, model_info=info)
    assert shown == {"0": "quiet", "1": "speech", "2": "music", "3": "traffic"}


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("x" * 65, InvalidClusterName),
        ("", InvalidClusterName),
        ("-leading dash", InvalidClusterName),
        ("tab\there", InvalidClusterName),
        ("rtl\u202emark", InvalidClusterName),
        ('quote"s', InvalidClusterName),
    ],
)
def test_bad_names_are_refused(store: ModelStore, publish: PublishFn, name: str, error) -> None:
    version = publish()
    with pytest.raises(error):
        set_cluster_name(store.root, version, cluster=0, name=name, n_clusters=4)
    assert edited_names(store.root, version) == {}


def test_a_cluster_the_version_lacks_is_refused(store: ModelStore, publish: PublishFn) -> None:
    version = publish()
    with pytest.raises(UnknownCluster, match="clusters 0 to 3"):
        set_cluster_name(store.root, version, cluster=4, name="Rain", n_clusters=4)
    assert UnknownCluster.status == 422 and InvalidClusterName.status == 422


def test_accented_letters_and_program_punctuation_are_names(
    store: ModelStore, publish: PublishFn
) -> None:
    version = publish()
    names = set_cluster_name(store.root, version, cluster=2, name="Straße / Bahn #2 (laut)",
                             n_clusters=4)  # fmt: skip
    assert names["2"] == "Straße / Bahn #2 (laut)"


@pytest.mark.parametrize(
    "name",
    ["बारिश", "বৃষ্টি", "மழை", "Cafe\u0301 terrasse", "雨の日", "Дождь 2"],
)
def test_letters_and_marks_of_every_script_are_names(
    store: ModelStore, publish: PublishFn, name: str
) -> None:
    import unicodedata

    version = publish()
    names = set_cluster_name(store.root, version, cluster=1, name=name, n_clusters=4)
    assert names["1"] == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize("name", ["a\u200fb", "a\u0007b", "\u0301accent first", "a\u2028b"])
def test_controls_and_format_characters_are_still_refused(
    store: ModelStore, publish: PublishFn, name: str
) -> None:
    version = publish()
    with pytest.raises(InvalidClusterName):
        set_cluster_name(store.root, version, cluster=1, name=name, n_clusters=4)
