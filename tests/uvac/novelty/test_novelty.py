"""The novelty score and its calibration on synthetic windows (uvac.novelty)."""

from __future__ import annotations

import pytest
import torch

from uvac.novelty import (
    Calibration,
    NoveltyScore,
    check_false_alarm_rate,
    fit_novelty,
    window_vectors,
)
from uvac.novelty.fitting import calibration_folds, source_groups

DIMENSIONS = 16


def _class(centre: int, n: int, *, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mean = torch.zeros(DIMENSIONS)
    mean[centre * 4 : centre * 4 + 4] = 6.0
    return mean + torch.randn(n, DIMENSIONS, generator=generator)


def test_a_score_fitted_on_three_classes_flags_a_fourth_and_keeps_the_three() -> None:
    train = torch.cat([_class(c, 80, seed=c) for c in range(3)])
    fitted = fit_novelty(train, torch.arange(train.shape[0]), n_clusters=3)
    assert fitted is not None
    threshold = fitted.calibration.threshold()
    known = torch.cat([_class(c, 100, seed=10 + c) for c in range(3)])
    fourth = _class(3, 100, seed=20)
    known_flagged = float((fitted.score.scores(known) > threshold).float().mean())
    fourth_flagged = float((fitted.score.scores(fourth) > threshold).float().mean())
    assert fourth_flagged == 1.0
    assert known_flagged <= 0.12  # calibrated for 5 %, on 300 fresh known windows


def test_novelty_and_threshold_agree() -> None:
    calibration = Calibration.from_scores(torch.arange(101, dtype=torch.float32))
    assert calibration.threshold(0.05) == pytest.approx(95.0)
    novelty = calibration.novelty(torch.tensor([-5.0, 50.0, 95.0, 96.0, 500.0]))
    assert novelty.tolist() == pytest.approx([0.0, 0.5, 0.95, 0.96, 1.0])
    assert calibration.threshold(0.5) == pytest.approx(50.0)


@pytest.mark.parametrize("rate", [0.0, -0.1, 0.51, 1.0, float("nan")])
def test_false_alarm_rates_outside_the_range_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="false-alarm rate"):
        check_false_alarm_rate(rate)


def test_log_mel_windows_become_mean_spread_and_change_per_bin() -> None:
    features = torch.zeros(2, 1, 4, 3)
    features[0, 0, :2] = 1.0  # two real frames of ones, two padded frames of zeros
    features[1, 0, ::2] = 1.0  # frames 1, 0, 1, 0: every step changes by one
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    vectors = window_vectors(features, mask)
    assert vectors.shape == (2, 9)
    assert vectors[0].tolist() == pytest.approx([1, 1, 1, 0, 0, 0, 0, 0, 0])
    assert vectors[1].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 1, 1])
    embeddings = torch.randn(5, 1, 1, 8)
    assert torch.equal(window_vectors(embeddings), embeddings[:, 0, 0].double())


def test_clips_cut_from_one_recording_share_a_calibration_fold() -> None:
    base = torch.cat([_class(c % 3, 1, seed=c) for c in range(12)])  # 12 distinct clips
    clips = torch.cat([base, base[:3] + 0.001])  # clips 12-14: near copies of clips 0-2
    groups = source_groups(clips, torch.arange(15))
    assert all(groups[i] == groups[i + 12] for i in range(3))
    assert len(set(groups.tolist())) >= 6  # distinct clips are not all linked
    folds = calibration_folds(groups)
    assert all(folds[i] == folds[i + 12] for i in range(3))


def test_too_little_data_gives_no_score() -> None:
    assert fit_novelty(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), n_clusters=2) is None


def test_stored_score_round_trips() -> None:
    score = NoveltyScore.fit(torch.randn(50, 6), n_clusters=3)
    rebuilt = NoveltyScore.from_stored(score.to_tensors("s."), score.to_dict(), prefix="s.")
    query = torch.randn(7, 6)
    assert torch.equal(score.scores(query), rebuilt.scores(query))


def test_the_background_term_is_the_distance_to_the_training_mean() -> None:
    train = torch.cat([_class(c, 60, seed=c) for c in range(3)])
    relative = NoveltyScore.fit(train, n_clusters=3, background_weight=0.5)
    plain = NoveltyScore.fit(train, n_clusters=3, background_weight=0.0)
    background = NoveltyScore.fit(train, n_clusters=1, background_weight=0.0)
    query = torch.cat([_class(0, 5, seed=30), _class(3, 5, seed=31)])
    expected = plain.scores(query) - 0.5 * background.scores(query)
    assert torch.allclose(relative.scores(query), expected, atol=1e-3)
    document = relative.to_dict()
    assert document["method"] == "relative-mahalanobis-nearest-centre"
    rebuilt = NoveltyScore.from_stored(relative.to_tensors("s."), document, prefix="s.")
    assert torch.equal(rebuilt.scores(query), relative.scores(query))


def test_a_score_stored_without_the_background_loads_and_scores_as_before() -> None:
    plain = NoveltyScore.fit(torch.randn(50, 6), n_clusters=3, background_weight=0.0)
    document = plain.to_dict()
    assert document["method"] == "mahalanobis-nearest-centre"
    rebuilt = NoveltyScore.from_stored(plain.to_tensors("s."), document, prefix="s.")
    assert rebuilt.background_whitening is None
    query = torch.randn(7, 6)
    assert torch.equal(plain.scores(query), rebuilt.scores(query))


def test_a_relative_score_missing_its_background_is_refused() -> None:
    score = NoveltyScore.fit(torch.randn(50, 6), n_clusters=3)
    tensors = score.to_tensors("s.")
    del tensors["s.background_whitening"]
    with pytest.raises(ValueError, match="background_whitening"):
        NoveltyScore.from_stored(tensors, score.to_dict(), prefix="s.")
    document = {**score.to_dict(), "background_weight": 2.0}
    with pytest.raises(ValueError, match="background_weight"):
        NoveltyScore.from_stored(score.to_tensors("s."), document, prefix="s.")


def test_each_false_alarm_rate_keeps_its_own_threshold_when_asked_again() -> None:
    calibration = Calibration.from_scores(torch.arange(101, dtype=torch.float32))
    first = [calibration.threshold(rate) for rate in (0.05, 0.2, None)]
    again = [calibration.threshold(rate) for rate in (None, 0.2, 0.05)]
    assert first == [95.0, 80.0, 95.0] and again == [95.0, 80.0, 95.0]
    assert calibration.novelty(torch.tensor([50.0, 100.0])).tolist() == [0.5, 1.0]


def test_a_fit_started_from_a_scores_centres_finds_those_centres_again() -> None:
    vectors = torch.cat([_class(centre, 60, seed=centre) for centre in range(3)])
    score = NoveltyScore.fit(vectors, n_clusters=3)
    centres = score.centres_of()  # (3, D) in the vectors' units
    means = torch.stack([vectors[i * 60 : (i + 1) * 60].mean(dim=0) for i in range(3)])
    nearest = torch.cdist(means, centres).argmin(dim=1)
    assert sorted(nearest.tolist()) == [0, 1, 2]  # one centre per class
    assert torch.allclose(centres[nearest], means, atol=1e-3)
    again = NoveltyScore.fit(vectors, n_clusters=3, start=centres)
    assert torch.allclose(again.centres_of(), centres, atol=1e-3)
    assert torch.allclose(again.scores(vectors), score.scores(vectors), rtol=1e-4, atol=1e-3)
