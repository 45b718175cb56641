"""The three model types: shapes, masking, the loss and its parts, the registry."""

from __future__ import annotations

import math

import pytest
import torch

from uvac.models import MODEL_TYPES, CatUVAC, GmmUVAC, KMeansClusterer, build_model
from uvac.models.cat_uvac import categorical_kl_to_uniform, gaussian_kl_to_standard_normal
from uvac.models.layers import BroadcastConv2d, masked_reconstruction_bce, masked_time_mean
from uvac.models.mlp import mlp, mlp_of_pair

SMALL = {"conv_channels": [4, 8, 8, 16], "gru_hidden": 16, "deconv_channels": [8, 8, 4]}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def features(batch: int, frames: int, mels: int) -> torch.Tensor:
    return torch.rand(batch, 1, frames, mels)


@pytest.mark.parametrize(("frames", "mels"), [(32, 32), (33, 32), (50, 16), (16, 48), (7, 20)])
def test_cat_uvac_forward_shapes(frames: int, mels: int) -> None:
    model = CatUVAC(n_clusters=3, n_features=mels, **SMALL)
    x = features(4, frames, mels)
    output = model(x, None, 0.7)
    steps = math.ceil(frames / 16)
    d_z = math.ceil(mels / 16)
    assert model.latent_dim == d_z
    assert output.cluster_logits.shape == (4, 3)
    assert output.y.shape == (4, 3)
    assert torch.allclose(output.y.sum(dim=1), torch.ones(4), atol=1e-5)
    assert output.z_mean.shape == output.z_logvar.shape == output.z.shape == (4, steps, d_z)
    assert output.reconstruction_logits.shape == (4, 1, frames, mels)
    assert output.reconstruction.min() >= 0 and output.reconstruction.max() <= 1


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_cluster_probabilities_under_inference_mode(model_type: str) -> None:
    arguments = {"n_clusters": 3, "n_features": 32}
    if model_type != "cat-uvac":
        arguments["n_frames"] = 32
    if model_type != "kmeans":
        arguments |= SMALL
    model = build_model(model_type, **arguments)
    x = features(5, 32, 32)
    if isinstance(model, KMeansClusterer):
        model.fit(x, seed=0)
    model.eval()
    with torch.inference_mode():
        pi = model.cluster_probabilities(x)
        latent = model.latent(x)
    assert pi.shape == (5, 3)
    assert torch.allclose(pi.sum(dim=1), torch.ones(5), atol=1e-5)
    assert (pi >= 0).all()
    assert latent.shape[0] == 5 and latent.dim() == 2
    assert model.model_type == model_type
    rebuilt = build_model(model_type, **model.hyperparameters())
    assert rebuilt.hyperparameters() == model.hyperparameters()


def test_cat_uvac_h_only_fast_path_does_not_touch_f_or_g() -> None:
    model = CatUVAC(n_clusters=3, n_features=32, **SMALL).eval()
    calls: list[str] = []
    for name in ("f_encoder", "g_decoder", "h_encoder"):
        getattr(model, name).register_forward_hook(lambda *_, n=name: calls.append(n))
    with torch.inference_mode():
        model.cluster_probabilities(features(2, 32, 32))
    assert calls == ["h_encoder"]


def test_h_pools_over_active_blocks_only_when_masked() -> None:
    model = CatUVAC(n_clusters=3, n_features=32, **SMALL).eval()
    x = features(1, 64, 32)
    x[:, :, 32:] = 0.0  # zero padding after 32 frames, as the feature extractor writes it
    half = torch.zeros(1, 64)
    half[:, :32] = 1
    with torch.inference_mode():
        unmasked = model.cluster_probabilities(x)
        all_ones = model.cluster_probabilities(x, torch.ones(1, 64))
        masked = model.cluster_probabilities(x, half)
        sequence = model.h_encoder(x)  # (1, 4, hidden)
        by_hand = torch.softmax(model.h_head(sequence[:, :2].mean(dim=1)), dim=1)
    assert torch.allclose(unmasked, all_ones)
    assert torch.allclose(masked, by_hand, atol=1e-6)
    assert not torch.allclose(masked, unmasked, atol=1e-4)


def test_reconstruction_error_ignores_padded_frames() -> None:
    logits = torch.randn(2, 1, 8, 4)
    target = torch.rand(2, 1, 8, 4)
    mask = torch.ones(2, 8)
    mask[1, 4:] = 0
    changed = target.clone()
    changed[1, :, 4:] = 1.0 - changed[1, :, 4:]
    before = masked_reconstruction_bce(logits, target, mask)
    after = masked_reconstruction_bce(logits, changed, mask)
    assert torch.allclose(before, after)
    # For a full window it is the summed Bernoulli negative log-likelihood.
    full = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[0], target[0], reduction="sum"
    )
    assert torch.allclose(before[0], full)


def test_masked_time_mean_weights_and_all_zero_fallback() -> None:
    sequence = torch.tensor([[[1.0], [3.0]], [[2.0], [4.0]]])  # (B=2, S=2, C=1)
    weights = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    pooled = masked_time_mean(sequence, weights)
    assert pooled.squeeze(1).tolist() == [1.0, 3.0]  # second row: plain mean


def test_kl_terms_match_hand_computed_values() -> None:
    mean = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)]])
    expected = 0.5 * (1.0 + 0.0) + 0.5 * (2.0 - 1.0 - math.log(2.0))
    assert gaussian_kl_to_standard_normal(mean, logvar).item() == pytest.approx(expected)
    assert categorical_kl_to_uniform(torch.zeros(1, 4)).item() == pytest.approx(0.0, abs=1e-6)
    confident = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    assert categorical_kl_to_uniform(confident).item() == pytest.approx(math.log(4), abs=1e-5)


@pytest.mark.parametrize("model_type", ["cat-uvac", "uvac-gmm"])
def test_loss_parts_are_consistent_and_differentiable(model_type: str) -> None:
    arguments = {"n_clusters": 3, "n_features": 32, **SMALL}
    if model_type == "uvac-gmm":
        arguments["n_frames"] = 32
    model = build_model(model_type, **arguments)
    x = features(6, 32, 32)
    mask = torch.ones(6, 32)
    mask[0, 20:] = 0
    parts = model.loss(x, mask, temperature=0.8, lambda_kl=0.5, cluster_balance=2.0)
    expected = parts.reconstruction + 0.5 * (parts.kl_z + parts.kl_y) + 2.0 * parts.balance
    assert torch.allclose(parts.total, expected)
    assert parts.kl_z >= 0 and parts.kl_y >= -1e-6 and parts.balance >= -1e-6
    parts.total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_eval_mode_loss_is_deterministic() -> None:
    model = CatUVAC(n_clusters=3, n_features=32, **SMALL).eval()
    x = features(3, 32, 32)
    first = model.loss(x, temperature=0.5, lambda_kl=1.0).total
    second = model.loss(x, temperature=0.5, lambda_kl=1.0).total
    assert torch.equal(first, second)


def test_gmm_responsibilities_follow_the_prior_components() -> None:
    model = GmmUVAC(n_clusters=2, n_features=16, n_frames=16, latent_dim=2, **SMALL)
    with torch.no_grad():
        model.prior_means.copy_(torch.tensor([[-3.0, 0.0], [3.0, 0.0]]))
    gamma = model.responsibilities(torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 0.0]]))
    assert gamma[0, 0] > 0.99 and gamma[1, 1] > 0.99
    assert torch.allclose(gamma[2], torch.tensor([0.5, 0.5]), atol=1e-6)


def test_gmm_rejects_training_on_another_window_length() -> None:
    model = GmmUVAC(n_clusters=2, n_features=16, n_frames=32, **SMALL)
    with pytest.raises(ValueError, match="32-frame windows"):
        model.loss(features(2, 64, 16), temperature=1.0, lambda_kl=1.0)


def test_kmeans_one_hot_of_the_nearest_centroid() -> None:
    low = torch.zeros(10, 1, 4, 4)
    high = torch.ones(10, 1, 4, 4)
    model = KMeansClusterer(n_clusters=2, n_features=4, n_frames=4)
    model.fit(torch.cat([low, high]) + 0.01 * torch.rand(20, 1, 4, 4), seed=0)
    with torch.inference_mode():
        pi = model.cluster_probabilities(torch.cat([low[:1], high[:1]]))
    assert pi.sum(dim=1).tolist() == [1.0, 1.0]
    assert set(pi.max(dim=1).values.tolist()) == {1.0}
    assert pi.argmax(dim=1)[0] != pi.argmax(dim=1)[1]


def test_kmeans_refuses_to_cluster_before_fitting() -> None:
    model = KMeansClusterer(n_clusters=2, n_features=4, n_frames=4)
    with pytest.raises(RuntimeError, match="not been fitted"):
        model.cluster_probabilities(torch.rand(1, 1, 4, 4))


def test_models_reject_wrong_shapes() -> None:
    model = CatUVAC(n_clusters=3, n_features=32, **SMALL)
    with pytest.raises(ValueError, match=r"\(B, 1, T, 32\)"):
        model.cluster_probabilities(torch.rand(2, 1, 32, 16))
    with pytest.raises(ValueError, match="mask shape"):
        model.cluster_probabilities(torch.rand(2, 1, 32, 32), torch.ones(2, 31))


def test_build_model_rejects_unknown_types_and_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model type"):
        build_model("transformer")
    with pytest.raises(TypeError):
        build_model("cat-uvac", n_clusters=3, colour="blue")


def test_bf16_autocast_forward_runs_on_cpu() -> None:
    model = CatUVAC(n_clusters=3, n_features=32, **SMALL)
    x = features(2, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = model.loss(x, temperature=1.0, lambda_kl=0.5)
    assert parts.total.dtype == torch.float32 and torch.isfinite(parts.total)
    parts.total.backward()


def test_broadcast_convolution_equals_the_concatenated_convolution() -> None:
    layer = BroadcastConv2d(in_channels=1, broadcast_channels=3, out_channels=5)
    x = torch.rand(2, 1, 16, 32)
    y = torch.softmax(torch.randn(2, 3), dim=1)
    maps = torch.cat([x, y[:, :, None, None].expand(2, 3, 16, 32)], dim=1)  # (B, 1 + K, T, M)
    expected = torch.nn.functional.conv2d(maps, layer.weight, stride=2, padding=3)
    assert torch.allclose(layer(x, y), expected, atol=1e-5)


@pytest.mark.parametrize("data_needs_grad", [False, True])
def test_mlp_of_a_pair_equals_the_mlp_of_the_concatenation(data_needs_grad: bool) -> None:
    torch.manual_seed(0)
    network = mlp(12 + 3, [8, 6])
    data = torch.randn(5, 12, requires_grad=data_needs_grad)
    learned = torch.softmax(torch.randn(5, 3), dim=1).requires_grad_()
    expected = network(torch.cat([data, learned], dim=1))
    expected_grads = torch.autograd.grad(expected.square().sum(), [learned, *network.parameters()])

    paired = mlp_of_pair(network, data, learned)
    grads = torch.autograd.grad(paired.square().sum(), [learned, *network.parameters()])
    assert torch.equal(paired, expected)
    torch.testing.assert_close(grads[0], expected_grads[0])  # the learned input's
    for grad, expected_grad in zip(grads[1:], expected_grads[1:], strict=True):
        assert torch.equal(grad, expected_grad)
    if data_needs_grad:  # then the data's gradient is there as before
        (data_grad,) = torch.autograd.grad(mlp_of_pair(network, data, learned).sum(), [data])
        (expected_data_grad,) = torch.autograd.grad(
            network(torch.cat([data, learned], dim=1)).sum(), [data]
        )
        torch.testing.assert_close(data_grad, expected_data_grad)
