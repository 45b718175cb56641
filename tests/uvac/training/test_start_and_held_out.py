"""The start alone (epochs = 0), how far training moves off its start, held-out scores per
epoch, and consistency partners drawn across recordings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reports.figures import training_curves_chart
from uvac import metrics
from uvac.errors import RunCancelled
from uvac.training import cluster_start
from uvac.training.config import TrainConfig
from uvac.training.consistency import nearest_neighbours
from uvac.training.data import HeldOutWindows
from uvac.training.history import TrainingHistory
from uvac.training.trainer import fit

_SMALL_NETWORK = {"conv_channels": [4, 4, 4, 4], "gru_hidden": 8, "deconv_channels": [4, 4, 4]}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _two_groups(n: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.rand(n, 1, 16, 16, generator=generator) * 0.3
    features[n // 2 :] += 0.6
    return features, [0] * (n // 2) + [1] * (n - n // 2)


def _config(**overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "batch_size": 8, "n_clusters": 2, "init_epochs": 10, "learning_rate": 3e-3,
        "device": "cpu", "model_hyperparameters": _SMALL_NETWORK,
    }  # fmt: skip
    return TrainConfig.from_dict({**settings, **overrides})


def test_epochs_zero_trains_the_start_alone_and_needs_a_start() -> None:
    with pytest.raises(ValueError, match="epochs = 0"):
        TrainConfig(epochs=0, init_epochs=0)
    with pytest.raises(ValueError, match="epochs = 0"):
        TrainConfig(epochs=0, init_epochs=3, model_type="kmeans")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1, init_epochs=3)
    torch.manual_seed(0)
    features, labels = _two_groups(32, seed=0)
    model, history = fit(features, torch.ones(32, 16), config=_config(epochs=0))
    assert history.epochs == []
    assignments = model.assignments(features, torch.ones(32, 16))
    # The start taught h the two groups: every window of a group shares one cluster.
    assert len(set(assignments[:16].tolist())) == 1 and len(set(assignments[16:].tolist())) == 1
    assert assignments[0] != assignments[16]
    assert labels[0] != labels[16]


def test_each_epoch_records_changes_since_the_start_and_held_out_scores() -> None:
    torch.manual_seed(0)
    features, labels = _two_groups(32, seed=0)
    held_features, held_labels = _two_groups(8, seed=1)
    held_out = HeldOutWindows(held_features, torch.ones(8, 16), held_labels)
    _, history = fit(
        features, torch.ones(32, 16), config=_config(epochs=2), labels=labels, held_out=held_out
    )
    for record in history.epochs:
        assert record.changed_since_start is not None and 0.0 <= record.changed_since_start <= 1
        assert record.held_out_accuracy == 1.0 and record.held_out_nmi == pytest.approx(1.0)
    # Without a start or held-out windows, nothing is made up.
    _, plain = fit(features, torch.ones(32, 16), config=_config(epochs=1, init_epochs=0))
    assert plain.epochs[0].changed_since_start is None
    assert plain.epochs[0].held_out_accuracy is None


def test_an_older_history_without_the_new_fields_still_reads_and_draws() -> None:
    old_record = {
        "epoch": 1, "loss": 2.0, "reconstruction": 1.5, "kl_z": 0.3, "kl_y": 0.2,
        "balance": 0.1, "temperature": 1.0, "learning_rate": 1e-3, "accuracy": 0.5,
        "nmi": 0.4, "clusters_used": 2, "seconds": 0.1,
    }  # fmt: skip
    history = TrainingHistory.from_list([old_record])
    assert history.epochs[0].changed_since_start is None
    assert training_curves_chart(history.to_list()) is not None
    assert training_curves_chart([{**old_record, "held_out_nmi": 0.3}]) is not None


def test_consistency_partners_come_from_other_recordings() -> None:
    # Windows 0-2 are one recording (identical, each other's nearest), 3-5 another.
    x = torch.zeros(6, 1, 2, 2)
    for index, value in enumerate([0.0, 0.01, 0.02, 0.5, 0.51, 0.52]):
        x[index] = value
    mask = torch.ones(6, 2)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    within = nearest_neighbours(x, mask, k=2)
    assert all(set(row) <= {0, 1, 2} for row in within[:3].tolist())
    across = nearest_neighbours(x, mask, k=2, groups=groups)
    for index, row in enumerate(across.tolist()):
        assert all(groups[partner] != groups[index] for partner in row)
    # A recording that holds nearly everything keeps its own neighbours rather than none.
    lopsided = torch.tensor([0, 0, 0, 0, 0, 1])
    assert nearest_neighbours(x, mask, k=2, groups=lopsided).shape == (6, 2)


def test_the_spectral_start_groups_sounds_not_recordings() -> None:
    # Two kinds of sound, four recordings each, twelve near-identical windows per recording:
    # more than a window's graph neighbours, so within recordings alone the graph would fall
    # apart into eight components. Across recordings it holds the two kinds together.
    generator = torch.Generator().manual_seed(0)
    windows, kinds, recordings = [], [], []
    for kind in range(2):
        for recording in range(4):
            centre = kind * 5.0 + recording * 0.3
            jitter = torch.rand(12, 1, 1, 8, generator=generator) * 1e-3
            windows.append(centre + jitter)
            kinds += [kind] * 12
            recordings += [kind * 4 + recording] * 12
    x = torch.cat(windows)
    labels = cluster_start.spectral_pseudo_labels(
        x, torch.ones(x.shape[0], 1), n_clusters=2, seed=0, groups=torch.tensor(recordings)
    )
    assert metrics.nmi(kinds, labels.numpy()) == pytest.approx(1.0)


def test_training_stops_once_the_partition_has_been_stable_for_the_set_epochs() -> None:
    features, labels = _two_groups(32, seed=0)
    torch.manual_seed(0)
    _, stopped = fit(
        features, torch.ones(32, 16), config=_config(epochs=12, stop_after_stable_epochs=2),
        labels=labels,
    )  # fmt: skip
    # Two groups far apart: the start's partition never moves, so two epochs settle it.
    assert [record.changed_since_previous for record in stopped.epochs] == [0.0, 0.0]
    torch.manual_seed(0)
    _, full = fit(features, torch.ones(32, 16), config=_config(epochs=3), labels=labels)
    assert len(full.epochs) == 3  # 0 (the default) never stops early
    with pytest.raises(ValueError, match="stop_after_stable_epochs"):
        TrainConfig(stop_after_stable_epochs=-1)


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    features, labels = _two_groups(32, seed=0)
    config = _config(epochs=12, stop_after_stable_epochs=3)
    torch.manual_seed(0)
    whole_model, whole = fit(features, torch.ones(32, 16), config=config, labels=labels)
    calls = iter(range(1_000))
    torch.manual_seed(0)
    with pytest.raises(RunCancelled):  # in the second epoch (4 batches per epoch)
        fit(
            features, torch.ones(32, 16), config=config, labels=labels,
            checkpoint_dir=tmp_path, should_stop=lambda: next(calls) >= 6,
        )  # fmt: skip
    resumed_model, resumed = fit(
        features, torch.ones(32, 16), config=config, labels=labels, checkpoint_dir=tmp_path
    )
    assert len(resumed.epochs) == len(whole.epochs) == 3
    assert [r.changed_since_previous for r in resumed.epochs] == [
        r.changed_since_previous for r in whole.epochs
    ]
    for name, tensor in whole_model.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[name], tensor)
