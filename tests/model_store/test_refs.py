from __future__ import annotations

import pytest

from model_store import InvalidReference, ModelRef, ModelStore, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scenes", ModelRef("scenes", alias="latest")),
        ("scenes:v7", ModelRef("scenes", version=7)),
        ("scenes@production", ModelRef("scenes", alias="production")),
        ("fsdd-digits.v2_b", ModelRef("fsdd-digits.v2_b", alias="latest")),
        ("a:v123456789", ModelRef("a", version=123456789)),
    ],
)
def test_valid_references_parse(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


@pytest.mark.parametrize("ref", ["scenes:v3", "scenes@production"])
def test_reference_text_round_trips(ref: str) -> None:
    assert str(parse_ref(ref)) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        "../etc",
        "..",
        ".staging",
        "a/b",
        "/etc/passwd",
        "scenes/../../etc",
        "Scenes",
        "scenes:v0",
        "scenes:7",
        "scenes:v01",
        "scenes:v",
        "scenes:v1@prod",
        "scenes@",
        "scenes@Prod",
        "scenes@../x",
        "scenes@1st",
        "@production",
        ":v1",
        "x" * 65,
        "scenes\x00",
    ],
)
def test_invalid_references_are_rejected(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_ref(text)


def test_store_rejects_traversal_before_touching_the_disk(store: ModelStore) -> None:
    for call in (
        lambda: store.get("../etc"),
        lambda: store.get(""),
        lambda: store.list_versions("../etc"),
        lambda: store.promote("scenes:v1", "../x"),
        lambda: store.delete("../../x:v1"),
    ):
        with pytest.raises(InvalidReference) as caught:
            call()
        assert caught.value.status == 422
        assert caught.value.slug == "invalid-model-reference"
    with pytest.raises(InvalidReference), store.publish("../evil", metadata={}):
        pass
    assert not (store.root.parent / "evil").exists()
