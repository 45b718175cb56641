"""The novelty fit beside a small network's training: the score fitted after it, stopped with it."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
from threadpoolctl import threadpool_info

from tests.uvac.embedding_windows import DIM, three_classes
from uvac.audio.feature_config import FeatureConfig
from uvac.device import ThreadPolicy
from uvac.errors import RunCancelled
from uvac.novelty import fit_novelty
from uvac.training import pipeline
from uvac.training.config import TrainConfig

# An encoder front-end makes the training a small network's; the windows are given.
ENCODER_FEATURES = FeatureConfig(frontend="speech-encoder")
CONFIG = TrainConfig(
    model_type="cat-uvac",
    n_clusters=3,
    epochs=3,
    batch_size=32,
    device="cpu",
    init_epochs=1,
    init_clustering="kmeans",
    model_hyperparameters={"architecture": "mlp", "hidden_units": [32, 16], "latent_dim": 4},
)
# Two cores for the process, one for the small network: a core is left for the fit.
SPARE_CORE = ThreadPolicy(encoder=2, network=2, small_network=1, serving=2)
NO_SPARE_CORE = ThreadPolicy(encoder=1, network=1, small_network=1, serving=1)


@pytest.fixture(autouse=True)
def _restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def fits_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The thread each novelty fit of the pipeline runs on, and the OpenMP threads it may use
    (scikit-learn's K-means): ``"<thread name> <count>"``."""
    threads: list[str] = []

    def recorded(*args, **kwargs):
        openmp = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "openmp"]
        threads.append(f"{threading.current_thread().name} {min(openmp)}")
        return fit_novelty(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_novelty", recorded)
    return threads


def test_fit_beside_the_training_gives_the_score_fitted_after_it(monkeypatch) -> None:
    data = three_classes()
    threads = fits_seen(monkeypatch)
    beside = pipeline.train_on_windows(
        data, config=CONFIG, feature_config=ENCODER_FEATURES, threads=SPARE_CORE
    )
    after = pipeline.train_on_windows(
        data, config=CONFIG, feature_config=ENCODER_FEATURES, threads=NO_SPARE_CORE
    )
    name, openmp = threads[0].split()
    assert name.startswith("uvac-novelty")  # its own thread, beside the epochs...
    assert openmp == "1"  # ...whose K-means uses one thread, as the training does
    assert threads[1].split()[0] == threading.main_thread().name  # no spare core: after it
    assert beside.novelty is not None and after.novelty is not None
    torch.testing.assert_close(beside.novelty.score.whitening, after.novelty.score.whitening)
    torch.testing.assert_close(
        beside.novelty.calibration.held_out_scores, after.novelty.calibration.held_out_scores
    )
    for mine, theirs in zip(
        beside.model.state_dict().values(), after.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(mine, theirs)  # the fit does not disturb the training


def test_a_log_mel_network_fits_after_its_training(monkeypatch) -> None:
    threads = fits_seen(monkeypatch)
    log_mel = FeatureConfig(n_mels=DIM)  # a network that may use every core it is given
    pipeline.train_on_windows(three_classes(), config=CONFIG, feature_config=log_mel,
                              threads=SPARE_CORE)  # fmt: skip
    assert [seen.split()[0] for seen in threads] == [threading.main_thread().name]


def test_k_means_on_embeddings_fits_after_its_training(monkeypatch) -> None:
    threads = fits_seen(monkeypatch)
    kmeans = dataclasses.replace(CONFIG, model_type="kmeans")
    pipeline.train_on_windows(three_classes(), config=kmeans, feature_config=ENCODER_FEATURES,
                              threads=SPARE_CORE)  # fmt: skip
    assert [seen.split()[0] for seen in threads] == [threading.main_thread().name]


def test_a_cancelled_training_stops_the_fit_beside_it(monkeypatch) -> None:
    asked: list[bool] = []

    def slow_fit(*args, should_stop, **kwargs):
        # Asks until told to stop (as the real fit does between its folds), for at most 30 s.
        for _ in range(3000):
            if should_stop():
                asked.append(True)
                raise RunCancelled("the novelty fit was stopped")
            threading.Event().wait(0.01)
        asked.append(False)

    monkeypatch.setattr(pipeline, "fit_novelty", slow_fit)
    calls = {"n": 0}

    def stop_after_three_batches() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(RunCancelled, match="training cancelled"):
        pipeline.train_on_windows(
            three_classes(), config=CONFIG, feature_config=ENCODER_FEATURES,
            threads=SPARE_CORE, should_stop=stop_after_three_batches,
        )  # fmt: skip
    assert asked == [True]
    assert not [t for t in threading.enumerate() if t.name.startswith("uvac-novelty")]


def test_fit_novelty_stops_when_asked() -> None:
    vectors = torch.randn(40, 4)
    with pytest.raises(RunCancelled):
        fit_novelty(vectors, torch.arange(40) // 2, n_clusters=3, should_stop=lambda: True)
