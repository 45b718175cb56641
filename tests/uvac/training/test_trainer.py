"""The gradient loop's step: the same loss and gradients however h's passes are arranged."""

from __future__ import annotations

import copy

import pytest
import torch

from uvac.models import CatUVAC
from uvac.training.config import TrainConfig
from uvac.training.trainer import Trainer

PERCEPTRONS = {"architecture": "mlp", "hidden_units": [32, 16], "latent_dim": 4}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _embeddings(n_windows: int = 48, dim: int = 24, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(3, dim, generator=generator)
    labels = torch.arange(n_windows) % 3
    return (centres[labels] + torch.randn(n_windows, dim, generator=generator))[:, None, None, :]


def _trainer(model: CatUVAC, features: torch.Tensor, config: TrainConfig) -> Trainer:
    return Trainer(
        model=model,
        features=features,
        mask=torch.ones(features.shape[0], 1),
        config=config,
        device=torch.device("cpu"),
        groups=torch.arange(features.shape[0]) // 2,
    )


def _step(trainer: Trainer, calls: list[int]) -> torch.Tensor:
    """One step from a fixed random state; counts h's passes in ``calls``."""
    original = trainer.model.cluster_probabilities

    def counted(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        calls.append(x.shape[0])
        return original(x, mask)

    trainer.model.cluster_probabilities = counted  # type: ignore[method-assign]
    torch.manual_seed(7)
    trainer.model.train()
    try:
        return trainer.train_step(torch.arange(16), 0.8)
    finally:
        del trainer.model.cluster_probabilities


def test_perceptrons_stack_the_views_and_reuse_pi_with_the_gradients_of_separate_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    features = _embeddings()
    config = TrainConfig(
        model_type="cat-uvac", n_clusters=3, batch_size=16, device="cpu", seed=0,
        consistency_weight=5.0, consistency_neighbours=3, self_label_weight=1.0,
        self_label_threshold=0.3, cluster_balance=1.0, model_hyperparameters=PERCEPTRONS,
    )  # fmt: skip
    torch.manual_seed(0)
    model = CatUVAC(n_clusters=3, n_features=features.shape[3], **PERCEPTRONS)
    separate_model = copy.deepcopy(model)
    assert model.windows_independent
    stacked_calls: list[int] = []
    stacked_parts = _step(_trainer(model, features, config), stacked_calls)

    monkeypatch.setattr(CatUVAC, "windows_independent", property(lambda self: False))
    separate_calls: list[int] = []
    separate_parts = _step(_trainer(separate_model, features, config), separate_calls)

    # One pass of h over both views (the batch's pi comes from the loss), against a pass of
    # the batch and one of the view for each term.
    assert stacked_calls == [32]
    assert separate_calls == [16, 16, 16, 16]
    torch.testing.assert_close(stacked_parts, separate_parts)
    for (name, stacked), separate in zip(
        model.named_parameters(), separate_model.parameters(), strict=True
    ):
        assert stacked.grad is not None and separate.grad is not None, name
        torch.testing.assert_close(stacked.grad, separate.grad, rtol=1e-4, atol=1e-6)


def test_batch_norm_networks_pass_each_view_through_h_alone() -> None:
    """Batch norm mixes the windows of a batch, so its views are not stacked."""
    model = CatUVAC(
        n_clusters=3, n_features=16, conv_channels=[4, 4, 4, 4], gru_hidden=8,
        deconv_channels=[4, 4, 4],
    )  # fmt: skip
    assert not model.windows_independent
