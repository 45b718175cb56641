"""Choosing K: candidate scores, the rule, and a sweep on three synthetic classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.uvac.embedding_windows import DIM, three_classes
from uvac.audio.feature_config import FeatureConfig
from uvac.errors import RunCancelled
from uvac.selection.rule import Candidate, CandidateScores, candidate_grid, choose, score_candidate
from uvac.selection.sweep import SweepProgress, run_sweep
from uvac.training.config import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


FEATURES = FeatureConfig(n_mels=DIM)  # the artifact's feature bins; the windows are given
BASE = TrainConfig(
    model_type="cat-uvac",
    epochs=6,
    batch_size=32,
    device="cpu",
    lambda_kl=0.05,
    init_epochs=1,
    init_clustering="kmeans",
    self_label_weight=1.0,
    cluster_balance=1.0,
    learning_rate=2e-3,
    final_learning_rate=5e-4,
    model_hyperparameters={"architecture": "mlp", "hidden_units": [32, 16], "latent_dim": 4},
)


def test_grid_and_keys() -> None:
    grid = candidate_grid(3, 4, temperature_ends=[0.5, 0.3])
    assert [c.key for c in grid] == ["k3-t0.5", "k3-t0.3", "k4-t0.5", "k4-t0.3"]
    with pytest.raises(ValueError):
        candidate_grid(5, 4)


def _scores(k: int, stability: float, silhouette: float, used: int | None = None):
    return CandidateScores(
        candidate=Candidate(n_clusters=k), stability=stability, stability_min=stability,
        silhouette=silhouette, dbi=None, chi=None, clusters_used_min=used or k,
        representative_seed=0, seeds=[],
    )  # fmt: skip


def test_rule_takes_the_largest_stable_k_that_uses_all_clusters() -> None:
    scores = [_scores(2, 0.99, 0.5), _scores(3, 0.95, 0.4), _scores(4, 0.6, 0.45),
              _scores(5, 0.9, 0.3, used=4)]  # fmt: skip
    choice = choose(scores, stability_threshold=0.8)
    assert choice.stable and choice.chosen.candidate.n_clusters == 3
    unstable = choose([_scores(2, 0.5, 0.1), _scores(3, 0.7, 0.1)], stability_threshold=0.8)
    assert not unstable.stable and unstable.chosen.candidate.n_clusters == 3


def test_score_candidate_measures_agreement_between_seeds() -> None:
    points = np.array([[0.0], [0.1], [5.0], [5.1]])
    same = score_candidate(Candidate(2), seeds=[0, 1], representation=points,
                           assignments=[np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])],
                           labels=["a", "a", "b", "b"])  # fmt: skip
    assert same.stability == pytest.approx(1.0) and same.accuracy == 1.0
    assert same.silhouette is not None and same.silhouette > 0.9
    different = score_candidate(
        Candidate(2),
        seeds=[0, 1],
        representation=points,
        assignments=[np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])],
    )
    assert different.stability is not None and different.stability < 0.5
    assert different.accuracy is None


def test_sweep_on_three_synthetic_classes_picks_three(tmp_path: Path) -> None:
    data = three_classes()
    seen: list[SweepProgress] = []
    result = run_sweep(
        data, base_config=BASE, feature_config=FEATURES, candidates=candidate_grid(2, 5),
        seeds=[0, 1, 2], progress=seen.append, checkpoint_dir=tmp_path,
    )  # fmt: skip
    by_k = {s.candidate.n_clusters: s for s in result.scores}
    assert result.choice.chosen.candidate.n_clusters == 3, {
        k: (s.stability, s.silhouette, s.clusters_used_min) for k, s in by_k.items()
    }
    assert result.choice.stable
    assert by_k[3].accuracy is not None and by_k[3].accuracy > 0.95  # reported, not used
    assert result.model.n_clusters == 3 and result.probabilities.shape == (90, 3)
    assert seen[-1].runs_done == seen[-1].runs == 13 and seen[-1].candidates_done == 4
    # The whole sweep's estimate: unknown until a run has trained, then counted down to 0.
    assert all(p.eta_seconds is None for p in seen if p.runs_done == 0)
    later = [p.eta_seconds for p in seen if p.runs_done >= 1]
    assert later and all(eta is not None and eta >= 0 for eta in later)
    assert seen[-1].eta_seconds == 0
    summary = result.summary()
    assert summary["chosen_k"] == 3 and len(summary["candidates"]) == 4

    # A resumed sweep reads the finished runs back instead of training again.
    def no_training() -> bool:
        raise AssertionError("a finished run was trained again")

    again = run_sweep(
        data, base_config=BASE, feature_config=FEATURES, candidates=candidate_grid(2, 5),
        seeds=[0, 1, 2], checkpoint_dir=tmp_path, should_stop=no_training,
    )  # fmt: skip
    assert again.summary()["candidates"] == summary["candidates"]


def test_sweep_is_cancellable_and_needs_two_seeds() -> None:
    data = three_classes(per_class=10)
    with pytest.raises(ValueError, match="two different seeds"):
        run_sweep(data, base_config=BASE, feature_config=FEATURES,
                  candidates=[Candidate(3)], seeds=[0])  # fmt: skip
    with pytest.raises(RunCancelled):
        run_sweep(data, base_config=BASE, feature_config=FEATURES,
                  candidates=[Candidate(3)], seeds=[0, 1], should_stop=lambda: True)  # fmt: skip
