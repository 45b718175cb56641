"""uvac.audio.holdout: the deterministic, stratified held-out part of a data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from uvac.audio import DEFAULT_HELD_OUT_SHARE, DatasetItem, held_out_split


def _items(counts: dict[str | None, int]) -> list[DatasetItem]:
    return [
        DatasetItem(Path(f"/data/{label}/{index}.wav"), label, f"{label}/{index}.wav")
        for label, count in counts.items()
        for index in range(count)
    ]


def test_each_label_keeps_its_share_and_a_recording_for_training() -> None:
    items = _items({"dog": 10, "rain": 5, "siren": 1})
    split = held_out_split(items, share=DEFAULT_HELD_OUT_SHARE)
    held_labels = [item.label for item in split.held_out]
    assert held_labels.count("dog") == 2 and held_labels.count("rain") == 1
    assert "siren" not in held_labels  # a label's only recording stays in training
    assert split.stratified is True
    assert len(split.training) + len(split.held_out) == len(items)
    assert not {i.relpath for i in split.training} & {i.relpath for i in split.held_out}


def test_the_split_is_deterministic_and_independent_of_order_and_other_files() -> None:
    items = _items({"dog": 10, "rain": 10})
    first = held_out_split(items, share=0.3).held_out_paths
    assert held_out_split(list(reversed(items)), share=0.3).held_out_paths == first
    # A new label's recordings leave the other labels' held-out recordings where they were.
    more = held_out_split(items + _items({"wind": 10}), share=0.3).held_out_paths
    assert set(first) <= set(more)


def test_without_labels_the_share_is_taken_over_all_recordings() -> None:
    items = _items({None: 10}) + _items({"dog": 5})  # one unlabelled recording: no strata
    split = held_out_split(items, share=0.2)
    assert split.stratified is False and len(split.held_out) == 3
    assert held_out_split(items, share=0.0).held_out == []
    assert held_out_split(items[:1], share=0.5).held_out == []  # training keeps one


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="held-out share"):
        held_out_split(_items({"dog": 3}), share=share)
