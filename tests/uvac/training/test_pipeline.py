"""The training loop: schedules, progress, cancellation, reproducibility, resume, model types."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from uvac.audio.datasets import DatasetItem
from uvac.audio.feature_config import FeatureConfig
from uvac.errors import DatasetError, RunCancelled
from uvac.models import CatUVAC, GmmUVAC, KMeansClusterer
from uvac.training.checkpoint import load_checkpoint
from uvac.training.config import TrainConfig, learning_rate_at, temperature_at
from uvac.training.pipeline import train_model
from uvac.training.progress import Progress
from uvac.training.trainer import Trainer, fit

SMALL = {"conv_channels": [4, 8, 8, 16], "gru_hidden": 16, "deconv_channels": [8, 8, 4]}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def three_bands(per_class: int = 16, frames: int = 32, mels: int = 32, seed: int = 0):
    """Windows with energy in the low, middle or high third of the mel axis, plus noise."""
    generator = torch.Generator().manual_seed(seed)
    windows, labels = [], []
    for label in range(3):
        x = 0.1 * torch.rand(per_class, 1, frames, mels, generator=generator)
        low = label * mels // 3
        level = 0.6 + 0.2 * torch.rand(per_class, 1, frames, 1, generator=generator)
        x[:, :, :, low : low + mels // 3] += level
        windows.append(x.clamp(0.0, 1.0))
        labels += [label] * per_class
    features = torch.cat(windows)  # (3 * per_class, 1, T, M)
    mask = torch.ones(features.shape[0], frames)
    mask[::5, frames // 2 :] = 0.0  # some windows half padded
    features[::5, :, frames // 2 :] = 0.0
    return features, mask, labels


def config(**overrides) -> TrainConfig:
    base = dict(
        model_type="cat-uvac",
        n_clusters=3,
        epochs=2,
        batch_size=16,
        device="cpu",
        seed=0,
        model_hyperparameters=SMALL,
    )
    return TrainConfig(**(base | overrides))


def test_config_round_trip_and_validation() -> None:
    original = config(lambda_kl=2.0, cluster_balance=1.5, bf16_autocast=True)
    assert TrainConfig.from_dict(original.to_dict()) == original
    with pytest.raises(ValueError, match="unknown training configuration keys"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="model_type"):
        TrainConfig(model_type="nope")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lambda_kl"):
        TrainConfig(lambda_kl=-1.0)
    with pytest.raises(ValueError, match="n_mels"):
        TrainConfig(model_hyperparameters={"n_mels": 3})


def test_model_hyperparameters_are_checked_against_the_model_before_training() -> None:
    """A misspelt option fails when the config is built (before any recording is read), with
    the options the model takes; each model type takes its own."""
    with pytest.raises(ValueError, match=r"conv_chanels \(allowed: architecture, conv_channels, "):
        TrainConfig(model_hyperparameters={"conv_chanels": [4, 4, 4, 4]})
    with pytest.raises(ValueError, match="n_frames"):  # filled in from the data, never an option
        TrainConfig(model_type="cat-uvac", model_hyperparameters={"n_frames": 4})
    assert TrainConfig(model_type="uvac-gmm", model_hyperparameters={"latent_dim": 4})
    # K-means takes no options and ignores a preset's network options.
    assert TrainConfig(model_type="kmeans", model_hyperparameters={"gru_hidden": 8})


def test_schedules_decay_exponentially_from_start_to_end() -> None:
    run = TrainConfig(epochs=5, learning_rate=5e-4, final_learning_rate=5e-5)
    rates = [learning_rate_at(run, epoch) for epoch in range(5)]
    assert rates[0] == pytest.approx(5e-4) and rates[-1] == pytest.approx(5e-5)
    ratios = [b / a for a, b in itertools.pairwise(rates)]
    assert ratios == pytest.approx([ratios[0]] * 4)  # constant factor: exponential
    assert temperature_at(run, 0) == pytest.approx(1.0)
    assert temperature_at(run, 4) == pytest.approx(0.5)
    assert learning_rate_at(TrainConfig(epochs=1), 0) == pytest.approx(5e-4)


def test_loss_decreases_and_progress_is_reported() -> None:
    features, mask, labels = three_bands()
    reports: list[Progress] = []
    model, history = fit(
        features,
        mask,
        config=config(epochs=4, learning_rate=3e-3, final_learning_rate=1e-3,
                      progress_every_steps=2),
        labels=labels,
        progress=reports.append,
    )  # fmt: skip
    assert isinstance(model, CatUVAC) and not model.training
    assert [r.epoch for r in history.epochs] == [1, 2, 3, 4]
    assert history.epochs[-1].loss < history.epochs[0].loss
    # 48 windows / 16 = 3 steps: one report at step 2 and one at the end of each epoch.
    assert [(r.epoch, r.step, r.epoch_done) for r in reports[:2]] == [(1, 2, False), (1, 3, True)]
    assert len(reports) == 8
    last = reports[-1]
    assert last.epochs == 4 and last.steps == 3 and last.eta_seconds == pytest.approx(0.0)
    assert last.accuracy is not None and 0.0 <= last.accuracy <= 1.0
    assert last.nmi is not None and reports[0].accuracy is None
    assert last.temperature == pytest.approx(0.5)
    assert last.learning_rate == pytest.approx(1e-3)
    assert np.isfinite([last.loss, last.reconstruction, last.kl_z, last.kl_y]).all()


def test_model_separates_three_synthetic_classes() -> None:
    """Within seconds, the categorical UVAC finds the three classes from the features alone.

    With the options the default preset relies on against collapse: the cluster-balance term
    and the initialisation of h from a K-means partition. The paper's loss alone merged two
    classes into one cluster for every seed tried (z, a coarse map of the spectrogram, tells
    them apart, so y need not); with cluster_balance=30 alone, seeds 0 and 3 of 0-3 still
    merged two on a 2-core Intel Xeon (oneDNN picks kernels by CPU, so the trajectory differs
    between machines); with the K-means start as well, all four seeds separated all three.
    """
    features, mask, labels = three_bands(per_class=40)
    _, history = fit(
        features,
        mask,
        config=config(epochs=20, learning_rate=3e-3, final_learning_rate=6e-4,
                      cluster_balance=30.0, init_epochs=2, seed=0),
        labels=labels,
    )  # fmt: skip
    assert history.epochs[-1].nmi is not None and history.epochs[-1].nmi > 0.8
    assert history.epochs[-1].clusters_used == 3


def test_the_start_reports_its_partition_phase_before_the_epochs() -> None:
    features, mask, _labels = three_bands()
    reports: list[Progress] = []
    fit(
        features, mask,
        config=config(epochs=1, init_epochs=1, init_clustering="spectral",
                      progress_every_steps=1),
        progress=reports.append,
    )  # fmt: skip
    partition = [r for r in reports if r.phase == "partition"]
    training = [r for r in reports if r.phase == "training"]
    assert partition and training
    assert reports.index(partition[-1]) < reports.index(training[0])
    # Step 0 while the clustering runs, then every batch up to the last one.
    steps = [r.step for r in partition]
    assert steps[0] == 0 and partition[0].eta_seconds is None
    assert steps == list(range(len(steps))) and steps[-1] == partition[-1].steps
    # 300 batches at least (INIT_MIN_STEPS), whole epochs of 3 batches.
    assert partition[-1].steps == 300 and partition[-1].eta_seconds == pytest.approx(0.0)
    assert all(r.epoch is None for r in partition)


def test_one_train_step_updates_the_weights_and_returns_the_loss_parts() -> None:
    """`Trainer.train_step` is what the speed benchmark times: one Adam step on a batch."""
    features, mask, _ = three_bands()
    cfg = config(consistency_weight=0.5)
    torch.manual_seed(cfg.seed)
    model = CatUVAC(n_clusters=3, n_features=features.shape[3], **SMALL)
    trainer = Trainer(
        model=model, features=features, mask=mask, config=cfg, device=torch.device("cpu")
    )
    before = [parameter.detach().clone() for parameter in model.parameters()]
    model.train()
    parts = trainer.train_step(torch.arange(16), cfg.temperature_start)
    assert parts.shape == (5,) and parts.dtype == torch.float64  # total, rec, kl_z, kl_y, balance
    assert torch.isfinite(parts).all()
    after = list(model.parameters())
    assert any(not torch.equal(old, new) for old, new in zip(before, after, strict=True))


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    features, mask, _ = three_bands()
    first, _ = fit(features, mask, config=config())
    second, _ = fit(features, mask, config=config())
    third, _ = fit(features, mask, config=config(seed=1))
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert not torch.equal(first.h_head.weight, third.h_head.weight)


def _stop_after(calls: int):
    counter = {"n": 0}

    def should_stop() -> bool:
        counter["n"] += 1
        return counter["n"] > calls

    return should_stop, counter


def test_cancellation_raises_between_batches() -> None:
    features, mask, _ = three_bands()
    steps: list[int] = []
    should_stop, counter = _stop_after(4)
    with pytest.raises(RunCancelled, match="epoch 2, before batch 2"):
        fit(
            features,
            mask,
            config=config(epochs=3, progress_every_steps=1),
            progress=lambda p: steps.append(p.step) if not p.epoch_done else None,
            should_stop=should_stop,
        )
    assert counter["n"] == 5  # asked before each of the 4 batches that ran, then stopped
    assert steps == [1, 2, 3, 1]


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    features, mask, labels = three_bands()
    run = config(epochs=3)
    uninterrupted, full_history = fit(
        features, mask, config=run, labels=labels, checkpoint_dir=tmp_path / "a"
    )

    killed_dir = tmp_path / "b"
    should_stop, _ = _stop_after(3 + 1)  # 3 batches per epoch: stop in epoch 2
    with pytest.raises(RunCancelled):
        fit(
            features, mask, config=run, labels=labels, checkpoint_dir=killed_dir,
            should_stop=should_stop,
        )  # fmt: skip
    saved = load_checkpoint(killed_dir)
    assert saved is not None and saved.epoch == 1

    resumed_epochs: list[int] = []
    resumed, history = fit(
        features, mask, config=run, labels=labels, checkpoint_dir=killed_dir,
        progress=lambda p: resumed_epochs.append(p.epoch),
    )  # fmt: skip
    assert sorted(set(resumed_epochs)) == [2, 3]  # continued from the next epoch
    for key, value in uninterrupted.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert [r.loss for r in history.epochs] == [r.loss for r in full_history.epochs]


def test_checkpoint_of_another_config_is_not_resumed(tmp_path: Path) -> None:
    features, mask, _ = three_bands()
    fit(features, mask, config=config(epochs=1), checkpoint_dir=tmp_path)
    epochs_run: list[int] = []
    _, _history = fit(
        features, mask, config=config(epochs=1, seed=5), checkpoint_dir=tmp_path,
        progress=lambda p: epochs_run.append(p.epoch),
    )  # fmt: skip
    assert epochs_run and set(epochs_run) == {1}
    saved = load_checkpoint(tmp_path)
    assert saved is not None and saved.config["seed"] == 5


def test_kmeans_trains_through_the_same_entry_point() -> None:
    features, mask, labels = three_bands()
    reports: list[Progress] = []
    model, history = fit(
        features, mask, config=config(model_type="kmeans", model_hyperparameters={}),
        labels=labels, progress=reports.append,
    )  # fmt: skip
    assert isinstance(model, KMeansClusterer)
    assert len(history.epochs) == 1 and len(reports) == 1 and reports[0].epoch_done
    assert history.epochs[0].nmi == pytest.approx(1.0)


def test_gmm_trains_through_the_same_entry_point() -> None:
    features, mask, labels = three_bands()
    model, history = fit(
        features, mask, config=config(model_type="uvac-gmm", epochs=3, learning_rate=3e-3),
        labels=labels,
    )  # fmt: skip
    assert isinstance(model, GmmUVAC) and model.n_frames == 32
    assert history.epochs[-1].loss < history.epochs[0].loss
    with torch.inference_mode():
        pi = model.cluster_probabilities(features, mask)
    assert torch.allclose(pi.sum(dim=1), torch.ones(len(labels)), atol=1e-5)


def test_bf16_autocast_training_runs() -> None:
    features, mask, _ = three_bands()
    _, history = fit(features, mask, config=config(epochs=1, bf16_autocast=True))
    assert np.isfinite(history.epochs[0].loss)


# ------------------------------------------------------------------------ from recordings

SAMPLE_RATE = 8000
FEATURES = FeatureConfig(
    sample_rate=SAMPLE_RATE, n_fft=256, win_length=256, hop_length=128, n_mels=16,
    window_seconds=0.5, window_hop_seconds=0.25,
)  # fmt: skip


def _write_tone(path: Path, frequency: float, seconds: float, seed: int) -> DatasetItem:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, samples.astype(np.float32), SAMPLE_RATE)
    return DatasetItem(path=path, label=f"{int(frequency)}hz", relpath=path.name)


def test_train_model_on_recordings(tmp_path: Path) -> None:
    items = [
        _write_tone(tmp_path / f"{frequency}_{take}.wav", frequency, 0.3 + 0.4 * take, take)
        for frequency in (300.0, 1200.0, 3000.0)
        for take in range(3)
    ]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    items.append(DatasetItem(path=broken, label="300hz", relpath=broken.name))
    trained = train_model(
        items,
        config=config(epochs=1, model_hyperparameters={"conv_channels": [4, 4, 4, 4],
                                                       "gru_hidden": 8,
                                                       "deconv_channels": [4, 4, 4]}),
        feature_config=FEATURES,
        dataset_digest="sha256:abc",
    )  # fmt: skip
    assert trained.feature_config == FEATURES
    assert trained.norm_stats.feature_bins == 16
    info = trained.info
    assert info["model_type"] == "cat-uvac" and info["n_clusters"] == 3
    assert info["dataset_digest"] == "sha256:abc"
    assert info["data"]["n_clips"] == 9 and info["data"]["n_skipped"] == 1
    assert info["data"]["labels"] == ["1200hz", "3000hz", "300hz"]
    assert info["data"]["n_windows"] >= 9  # the 1.1 s clips give several windows
    assert info["training"]["epochs_completed"] == 1
    assert info["train_config"] == trained.info["train_config"]


def test_train_model_without_usable_recordings(tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"nothing")
    with pytest.raises(DatasetError):
        train_model(
            [DatasetItem(path=broken, label=None, relpath="broken.wav")],
            config=config(),
            feature_config=FEATURES,
        )


def test_fewer_windows_than_clusters_is_a_dataset_error() -> None:
    features, mask, _ = three_bands(per_class=1)
    with pytest.raises(DatasetError, match="fewer than the 5 clusters"):
        fit(features, mask, config=config(n_clusters=5))


def test_train_model_cancelled_while_loading(tmp_path: Path) -> None:
    items = [_write_tone(tmp_path / "a.wav", 440.0, 0.5, 0)]
    with pytest.raises(RunCancelled):
        train_model(items, config=config(), feature_config=FEATURES, should_stop=lambda: True)
