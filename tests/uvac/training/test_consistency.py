"""uvac.training.consistency (the augmented view, the mutual-information and self-label losses) and
uvac.training.cluster_start (the initial partitions h is taught)."""

from __future__ import annotations

import math

import pytest
import torch

from uvac import metrics
from uvac.training import cluster_start
from uvac.training.cluster_start import (
    initial_pseudo_labels,
    kmeans_pseudo_labels,
    spectral_pseudo_labels,
    ward_pseudo_labels,
)
from uvac.training.config import TrainConfig
from uvac.training.consistency import (
    augment_windows,
    mutual_information_loss,
    nearest_neighbours,
    self_label_loss,
)
from uvac.training.trainer import fit


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_mutual_information_is_log_k_for_confident_consistent_balanced_clusters() -> None:
    one_hot = torch.eye(4).repeat(8, 1)  # (32, 4): every cluster 8 times
    loss = mutual_information_loss(one_hot, one_hot)
    assert float(loss) == pytest.approx(-math.log(4), abs=1e-5)


def test_mutual_information_is_zero_for_flat_or_collapsed_or_inconsistent_clusters() -> None:
    flat = torch.full((16, 4), 0.25)
    collapsed = torch.zeros(16, 4)
    collapsed[:, 2] = 1.0
    assert float(mutual_information_loss(flat, flat)) == pytest.approx(0.0, abs=1e-5)
    assert float(mutual_information_loss(collapsed, collapsed)) == pytest.approx(0.0, abs=1e-5)
    one_hot = torch.eye(4).repeat(4, 1)
    shuffled = one_hot[torch.randperm(16, generator=torch.Generator().manual_seed(0))]
    assert float(mutual_information_loss(one_hot, shuffled)) > -0.5 * math.log(4)


def test_augmented_view_stays_in_range_and_close_to_the_window() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 1, 32, 16)
    x[:, :, :, :8] = torch.linspace(0, 1, 32).view(1, 1, 32, 1)  # a smooth ramp over time
    mask = torch.ones(6, 32)
    mask[0, 20:] = 0
    view, view_mask = augment_windows(x, mask)
    assert view.shape == x.shape and view_mask.shape == mask.shape
    assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0
    ramp_error = (view[:, :, :, :8] - x[:, :, :, :8]).abs().mean()
    assert 0.005 < float(ramp_error) < 0.2  # moved, but only a little
    assert set(view_mask.unique().tolist()) <= {0.0, 1.0}
    assert float(view_mask[1:].min()) == 1.0 and float(view_mask[0].sum()) < 32


def test_training_with_consistency_runs_and_is_validated() -> None:
    with pytest.raises(ValueError, match="consistency_weight"):
        TrainConfig(consistency_weight=-1.0)
    torch.manual_seed(0)
    features = torch.rand(24, 1, 16, 16)
    features[:12, :, :, :8] *= 0.2  # two groups
    config = TrainConfig(
        epochs=2,
        batch_size=8,
        n_clusters=2,
        consistency_weight=1.0,
        device="cpu",
        model_hyperparameters={"conv_channels": [4, 4, 4, 4], "gru_hidden": 8,
                               "deconv_channels": [4, 4, 4]},
    )  # fmt: skip
    model, history = fit(features, torch.ones(24, 16), config=config)
    again, _ = fit(features, torch.ones(24, 16), config=config)
    assert len(history.epochs) == 2
    with torch.inference_mode():
        torch.testing.assert_close(
            model.cluster_probabilities(features), again.cluster_probabilities(features)
        )


def test_kmeans_initialisation_makes_h_reproduce_kmeans_before_the_elbo() -> None:
    with pytest.raises(ValueError, match="init_epochs"):
        TrainConfig(init_epochs=-1)
    torch.manual_seed(1)
    features = torch.rand(32, 1, 16, 16) * 0.3
    features[16:] += 0.6  # two well-separated groups
    labels = [0] * 16 + [1] * 16
    config = TrainConfig(
        epochs=1,
        batch_size=8,
        n_clusters=2,
        init_epochs=15,
        lambda_kl=0.05,
        learning_rate=3e-3,
        device="cpu",
        model_hyperparameters={"conv_channels": [4, 4, 4, 4], "gru_hidden": 8,
                               "deconv_channels": [4, 4, 4]},
    )  # fmt: skip
    _, history = fit(features, torch.ones(32, 16), config=config, labels=labels)
    assert history.epochs[-1].accuracy == 1.0


def test_nearest_neighbours_exclude_the_window_itself_and_follow_the_mask() -> None:
    x = torch.zeros(5, 1, 2, 2)
    for index, value in enumerate([0.0, 0.1, 0.5, 0.55, 0.9]):
        x[index] = value
    mask = torch.ones(5, 2)
    neighbours = nearest_neighbours(x, mask, k=2, chunk=2)
    assert neighbours.shape == (5, 2)
    assert neighbours[0].tolist() == [1, 2] and neighbours[3].tolist() == [2, 4]
    assert all(i not in row for i, row in enumerate(neighbours.tolist()))
    mask[4] = 0  # a window of pure padding looks like the silent window 0
    assert nearest_neighbours(x, mask, k=1)[4].tolist() == [0]


def test_training_with_neighbour_consistency_runs() -> None:
    with pytest.raises(ValueError, match="consistency_neighbours"):
        TrainConfig(consistency_neighbours=-2)
    torch.manual_seed(0)
    features = torch.rand(24, 1, 16, 16)
    config = TrainConfig(
        epochs=1,
        batch_size=8,
        n_clusters=2,
        consistency_weight=1.0,
        consistency_neighbours=3,
        device="cpu",
        model_hyperparameters={"conv_channels": [4, 4, 4, 4], "gru_hidden": 8,
                               "deconv_channels": [4, 4, 4]},
    )  # fmt: skip
    _, history = fit(features, torch.ones(24, 16), config=config)
    assert len(history.epochs) == 1


def test_self_label_loss_uses_confident_windows_only_balanced_by_target() -> None:
    p_clean = torch.tensor([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.6, 0.4]])
    p_view = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.3, 0.7], [0.01, 0.99]], requires_grad=True)
    loss = self_label_loss(p_clean, p_view, threshold=0.9)
    # targets 0, 0, 1 (the fourth is not confident); each class weighs the same in total
    expected = (0.5 * -math.log(0.8) + 0.5 * -math.log(0.5) + 1.0 * -math.log(0.7)) / 2.0
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert p_view.grad is not None and float(p_view.grad[3].abs().sum()) == 0.0
    nothing = self_label_loss(p_clean, p_view, threshold=0.999)
    assert float(nothing) == 0.0 and nothing.requires_grad


def test_spectral_pseudo_labels_follow_chains_that_kmeans_cuts_across() -> None:
    along = torch.arange(40, dtype=torch.float32) * 0.1  # two parallel chains, 4 long, 1 apart
    x = torch.zeros(80, 1, 2, 2)
    x[:40, 0, 0, 0] = along
    x[40:, 0, 0, 0] = along
    x[40:, 0, 0, 1] = 1.0
    mask = torch.ones(80, 2)
    chains = [0] * 40 + [1] * 40
    spectral = spectral_pseudo_labels(x, mask, n_clusters=2, seed=0).tolist()
    kmeans = kmeans_pseudo_labels(x, mask, n_clusters=2, seed=0).tolist()
    assert metrics.unsupervised_accuracy(chains, spectral) == 1.0
    assert metrics.unsupervised_accuracy(chains, kmeans) < 0.8


def test_training_with_spectral_init_and_self_labelling_runs_and_is_validated() -> None:
    with pytest.raises(ValueError, match="init_clustering"):
        TrainConfig(init_clustering="dbscan")
    with pytest.raises(ValueError, match="self_label_threshold"):
        TrainConfig(self_label_threshold=1.0)
    with pytest.raises(ValueError, match="self_label_weight"):
        TrainConfig(self_label_weight=-1.0)
    torch.manual_seed(1)
    features = torch.rand(32, 1, 16, 16) * 0.3
    features[16:] += 0.6  # two well-separated groups
    labels = [0] * 16 + [1] * 16
    config = TrainConfig(
        epochs=2,
        batch_size=8,
        n_clusters=2,
        init_epochs=15,
        init_clustering="spectral",
        self_label_weight=1.0,
        self_label_threshold=0.6,
        lambda_kl=0.05,
        learning_rate=3e-3,
        device="cpu",
        model_hyperparameters={"conv_channels": [4, 4, 4, 4], "gru_hidden": 8,
                               "deconv_channels": [4, 4, 4]},
    )  # fmt: skip
    _, history = fit(features, torch.ones(32, 16), config=config, labels=labels)
    assert [record.accuracy for record in history.epochs] == [1.0, 1.0]


@pytest.mark.parametrize("max_windows", [4000, 20])
def test_ward_pseudo_labels_find_separated_groups_also_from_a_sample(
    max_windows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_start, "WARD_MAX_WINDOWS", max_windows)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 4, 3, generator=generator) * 0.2
    x[20:40] += 0.5
    x[40:] += 1.0  # three groups of 20
    mask = torch.ones(60, 4)
    mask[:, 3] = 0  # the masked frame is ignored
    x[:, :, 3] = torch.rand(60, 1, 3, generator=generator) * 5
    groups = [0] * 20 + [1] * 20 + [2] * 20
    ward = ward_pseudo_labels(x, mask, n_clusters=3, seed=0)
    assert ward.dtype == torch.int64 and ward.shape == (60,)
    assert metrics.unsupervised_accuracy(groups, ward.tolist()) == 1.0


def test_initial_partition_falls_back_to_kmeans_when_one_ward_cluster_dominates() -> None:
    generator = torch.Generator().manual_seed(0)
    blob = torch.rand(50, 1, 2, 2, generator=generator) * 0.1  # one dense blob
    crumbs = torch.tensor([10.0, -10.0, 20.0, -20.0]).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    x = torch.cat([blob, crumbs])  # (54, 1, 2, 2)
    mask = torch.ones(54, 2)
    ward = ward_pseudo_labels(x, mask, n_clusters=3, seed=0)
    assert int(torch.bincount(ward).max()) > cluster_start.WARD_MAX_CLUSTER_RATIO * 54 / 3
    chosen = initial_pseudo_labels(x, mask, method="ward", n_clusters=3, seed=0)
    kmeans = kmeans_pseudo_labels(x, mask, n_clusters=3, seed=0)
    assert chosen.tolist() == kmeans.tolist()
    balanced = torch.cat([blob, blob + 5.0, blob + 10.0])  # three groups of 50: Ward is kept
    mask = torch.ones(150, 2)
    kept = initial_pseudo_labels(balanced, mask, method="ward", n_clusters=3, seed=0)
    assert kept.tolist() == ward_pseudo_labels(balanced, mask, n_clusters=3, seed=0).tolist()
