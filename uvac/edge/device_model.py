"""The device's whole computation as one torch module: 16 kHz PCM window -> pi.

`EdgeModel` is what `uvac.edge.onnx_export` traces into ONNX, so a device needs no feature code:

    pcm (B, N) --conv1d with a windowed-DFT basis--> re, im (B, F, T)     LogMelFrontEnd
      --> power re^2 + im^2 --matmul mel filterbank--> log(mel + 1e-6) (B, T, M)
      --> (x - mean) / std, min-max, clamped to [0, 1] (the model's NormStats)
      --> h: conv stages (batch norm folded in), GRU, mean over time, linear --> softmax

It computes what `uvac.audio.features.FeatureExtractor` plus the model's ``cluster_probabilities``
compute for one window of exactly ``window_samples`` samples (a test holds the two to a
tolerance; the DFT is a direct sum where ``torch.stft`` runs an FFT). The STFT is a
convolution and the mel scale a matrix product because both export to plain ONNX operators
(no FFT operator, which runtimes for microcontrollers often lack) and quantise cleanly.

The DFT basis is ``window[n] * cos(2 pi k n / n_fft)`` (and ``sin``) over the ``win_length``
samples where the (centred, periodic Hann) window is non-zero, so a frame costs
``2 F win_length`` multiply-accumulates; `uvac.edge.onnx_export` writes its recipe into the graph
rather than its values, which keeps the file small.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn
from torch.nn import functional as F

from uvac.audio import LOG_OFFSET, FeatureConfig, LiveWindows, NormStats
from uvac.errors import NotExportableError
from uvac.models import BLOCK, KERNEL, PADDING, STRIDE, ClusterModel, ConvRecurrentEncoder

__all__ = [
    "EdgeModel",
    "LogMelFrontEnd",
    "check_exportable",
    "check_exportable_document",
    "dft_basis",
    "multiply_accumulates",
    "window_samples",
]


def window_samples(config: FeatureConfig) -> int:
    """Samples of one decision window: ``window_frames`` frames of ``n_fft``, ``hop`` apart."""
    return LiveWindows.of(config).window_samples


def _feature_reasons(config: FeatureConfig) -> list[str]:
    reasons = []
    if config.frontend != "log-mel":
        reasons.append(f"its front-end is the {config.frontend}, not log-mel features")
    if config.sample_rate != 16000:
        reasons.append(f"it takes audio at {config.sample_rate} Hz, the device records 16000 Hz")
    for option, value in (
        ("cepstral_coefficients", config.cepstral_coefficients),
        ("utterance_norm", config.utterance_norm or None),
        ("activity_threshold_db", config.activity_threshold_db),
        ("time_fit", config.time_fit or None),
    ):
        if value is not None:
            reasons.append(f"its features use {option}={value!r}")
    return reasons


def _raise_for(reasons: list[str]) -> None:
    if reasons:
        raise NotExportableError("This model cannot be exported: " + "; ".join(reasons) + ".")


_NO_H_NETWORK = (
    "a {} model has no conv-GRU h network (export takes cat-uvac-h, or cat-uvac with the "
    "conv-gru architecture)"
)


def check_exportable(model: ClusterModel, config: FeatureConfig) -> None:
    """Raise `NotExportableError` unless the device export can express this model exactly."""
    reasons = _feature_reasons(config)
    encoder = getattr(model, "h_encoder", None)
    if not isinstance(encoder, ConvRecurrentEncoder) or not hasattr(model, "h_head"):
        reasons.append(_NO_H_NETWORK.format(model.model_type))
    _raise_for(reasons)


def check_exportable_document(document: Mapping[str, Any]) -> None:
    """`check_exportable` from a stored ``model.json`` alone (no weights loaded)."""
    config = FeatureConfig.from_dict(document["feature_config"])
    reasons = _feature_reasons(config)
    model_type = document.get("model_type")
    architecture = (document.get("hyperparameters") or {}).get("architecture", "conv-gru")
    if model_type not in ("cat-uvac-h", "cat-uvac") or architecture != "conv-gru":
        reasons.append(_NO_H_NETWORK.format(model_type))
    _raise_for(reasons)


def dft_basis(config: FeatureConfig, n_bins: int) -> Tensor:
    """``(2 n_bins, 1, win_length)``: windowed cosines then sines of the first ``n_bins`` bins.

    Computed the way the exported graph recomputes it (integer ``k n mod n_fft`` for an exact
    angle, float32 trigonometry), so torch and ONNX Runtime use the same numbers.
    """
    win, n_fft = config.win_length, config.n_fft
    offset = (n_fft - win) // 2  # torch.stft centres a shorter window in the FFT frame
    k = torch.arange(n_bins, dtype=torch.int64)
    n = torch.arange(offset, offset + win, dtype=torch.int64)
    angle = torch.remainder(k[:, None] * n[None, :], n_fft).to(torch.float32) * (
        2.0 * math.pi / n_fft
    )  # (F, win)
    j = torch.arange(win, dtype=torch.float32)
    window = 0.5 - 0.5 * torch.cos(j * (2.0 * math.pi / win))  # periodic Hann (win,)
    basis = torch.cat([torch.cos(angle) * window, torch.sin(angle) * window])  # (2F, win)
    return basis[:, None, :].contiguous()


class LogMelFrontEnd(nn.Module):
    """``(B, window_samples)`` PCM -> normalised log-mel ``(B, 1, T, M)`` in [0, 1]."""

    dft_basis: Tensor
    mel_filterbank: Tensor
    gain: Tensor
    bias: Tensor

    def __init__(self, config: FeatureConfig, stats: NormStats) -> None:
        super().__init__()
        self.config = config
        self._f_max = float(config.f_max if config.f_max is not None else config.sample_rate / 2)
        filterbank = torchaudio.functional.melscale_fbanks(
            n_freqs=config.n_fft // 2 + 1,
            f_min=float(config.f_min),
            f_max=self._f_max,
            n_mels=config.n_mels,
            sample_rate=config.sample_rate,
        )  # (n_fft // 2 + 1, M)
        # Bins above the last one a filter touches only meet zero weights (as in
        # uvac.audio.features).
        touched = filterbank.abs().sum(dim=1).nonzero()
        used = int(touched.max()) + 1 if touched.numel() else filterbank.shape[0]
        self.n_bins = used
        self.offset = (config.n_fft - config.win_length) // 2
        self.register_buffer("dft_basis", dft_basis(config, used))  # (2F, 1, win)
        self.register_buffer("mel_filterbank", filterbank[:used].contiguous())  # (F, M)
        scale = 1.0 / (stats.maximum - stats.minimum)
        gain = (scale / stats.std).to(torch.float32)  # (M,)
        self.register_buffer("gain", gain)
        self.register_buffer("bias", (-stats.mean * gain - stats.minimum * scale).float())

    def filterbank_points(self) -> tuple[Tensor, Tensor]:
        """The used FFT bins' frequencies ``(F,)`` and the mel points ``(M + 2,)`` in Hz, from
        which torchaudio's triangles (the ``mel_filterbank`` buffer) are built."""
        config = self.config
        bin_hz = torch.linspace(0, config.sample_rate // 2, config.n_fft // 2 + 1)
        mel = torchaudio.functional.functional._hz_to_mel
        hz = torchaudio.functional.functional._mel_to_hz
        mel_points = torch.linspace(mel(float(config.f_min)), mel(self._f_max), config.n_mels + 2)
        return bin_hz[: self.n_bins].contiguous(), hz(mel_points)

    @property
    def frames(self) -> int:
        return self.config.window_frames

    def forward(self, pcm: Tensor) -> Tensor:
        config = self.config
        span = (self.frames - 1) * config.hop_length + config.win_length
        signal = pcm[:, self.offset : self.offset + span].unsqueeze(1)  # (B, 1, span)
        spectrum = F.conv1d(signal, self.dft_basis, stride=config.hop_length)  # (B, 2F, T)
        real, imaginary = spectrum[:, : self.n_bins], spectrum[:, self.n_bins :]
        power = real * real + imaginary * imaginary  # (B, F, T)
        mel = torch.matmul(power.transpose(1, 2), self.mel_filterbank)  # (B, T, M)
        log_mel = torch.log(mel + LOG_OFFSET)
        features = torch.clamp(log_mel * self.gain + self.bias, 0.0, 1.0)  # (B, T, M)
        return features.unsqueeze(1)  # (B, 1, T, M)


def _fold_batch_norm(conv_weight: Tensor, norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """A bias-free conv followed by eval-mode batch norm -> one conv's (weight, bias)."""
    assert norm.running_mean is not None and norm.running_var is not None
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)  # (C_out,)
    weight = conv_weight.detach() * scale[:, None, None, None]
    bias = norm.bias.detach() - norm.running_mean * scale
    return weight.contiguous(), bias.contiguous()


class EdgeModel(nn.Module):
    """Front-end plus h of a trained model: ``(B, window_samples)`` -> pi ``(B, K)``."""

    step_weights: Tensor
    cluster_order: Tensor

    def __init__(
        self,
        model: ClusterModel,
        config: FeatureConfig,
        stats: NormStats,
        *,
        cluster_order: Sequence[int] | None = None,
    ) -> None:
        """``cluster_order[number]`` is the model output that is cluster ``number`` (a
        version's `uvac.selection.cluster_identity` numbering); pi comes out in number order."""
        super().__init__()
        check_exportable(model, config)
        order = list(cluster_order) if cluster_order is not None else list(range(model.n_clusters))
        if sorted(order) != list(range(model.n_clusters)):
            raise ValueError(f"a cluster order must be a permutation of 0..{model.n_clusters - 1}")
        self.register_buffer("cluster_order", torch.tensor(order, dtype=torch.int64))
        # Fixed when traced: a model in its own numbering exports no reordering node at all.
        self.reorders = order != list(range(model.n_clusters))
        encoder: Any = model.h_encoder
        head: Any = model.h_head
        self.front_end = LogMelFrontEnd(config, stats)
        first_norm = encoder.first_activation[0]
        stages = [(encoder.first_conv.weight[:, : encoder.first_conv.in_channels], first_norm)]
        stages += [(stage[0].weight, stage[1]) for stage in encoder.convs]
        self.convs = nn.ModuleList()
        for weight, norm in stages:
            folded_weight, folded_bias = _fold_batch_norm(weight, norm)
            conv = nn.Conv2d(
                folded_weight.shape[1], folded_weight.shape[0], KERNEL, STRIDE, PADDING
            )
            conv.weight = nn.Parameter(folded_weight)
            conv.bias = nn.Parameter(folded_bias)
            self.convs.append(conv)
        self.gru = copy.deepcopy(encoder.gru)
        self.head = copy.deepcopy(head)
        # h's time pooling for a full window: frames beyond window_frames are padding (mask 0).
        frames = config.frames_per_window
        mask = torch.zeros(frames)
        mask[: config.window_frames] = 1.0
        activity = mask.reshape(frames // BLOCK, BLOCK).mean(dim=1)  # (S,)
        self.register_buffer("step_weights", activity / activity.sum())
        self.padding_frames = frames - config.window_frames
        self.mel_padding = -(-config.n_mels // BLOCK) * BLOCK - config.n_mels
        self.eval()

    def features(self, pcm: Tensor) -> Tensor:
        """The normalised log-mel window ``(B, 1, T, M)`` (unpadded)."""
        return self.front_end(pcm)

    def forward(self, pcm: Tensor) -> Tensor:
        maps = F.pad(self.front_end(pcm), (0, self.mel_padding, 0, self.padding_frames))
        for conv in self.convs:
            maps = torch.relu(conv(maps))  # (B, C, T / 2^i, M / 2^i)
        batch, channels, steps, mel_blocks = maps.shape
        sequence = maps.permute(0, 2, 1, 3).reshape(batch, steps, channels * mel_blocks)
        initial = torch.zeros(self.gru.num_layers, batch, self.gru.hidden_size)
        outputs, _ = self.gru(sequence, initial)  # (B, S, hidden)
        pooled = (outputs * self.step_weights[None, :, None]).sum(dim=1)  # (B, hidden)
        pi = torch.softmax(self.head(pooled), dim=1)  # (B, K) by model output
        if self.reorders:
            pi = pi.index_select(1, self.cluster_order)  # (B, K) by cluster number
        return pi


def multiply_accumulates(edge: EdgeModel) -> dict[str, int]:
    """Multiply-accumulates of one decision, counted from the layers' shapes:
    ``{"front_end", "front_end_per_frame", "network", "total"}``."""
    front_end = edge.front_end
    config = front_end.config
    frames = front_end.frames
    per_frame = 2 * front_end.n_bins * config.win_length  # the DFT as a convolution
    per_frame += 2 * front_end.n_bins  # power
    per_frame += front_end.n_bins * config.n_mels  # mel product
    per_frame += 2 * config.n_mels  # normalisation
    network = 0
    height = config.frames_per_window
    width = -(-config.n_mels // BLOCK) * BLOCK
    for conv in edge.convs:
        assert isinstance(conv, nn.Conv2d)
        height, width = height // STRIDE, width // STRIDE
        out_channels, in_channels, kernel_h, kernel_w = conv.weight.shape
        network += height * width * out_channels * in_channels * kernel_h * kernel_w
    gru = edge.gru
    inputs = gru.input_size
    for _ in range(gru.num_layers):
        network += height * 3 * gru.hidden_size * (inputs + gru.hidden_size)
        inputs = gru.hidden_size
    network += height * gru.hidden_size  # the mean over time
    head = edge.head
    assert isinstance(head, nn.Linear)
    network += head.in_features * head.out_features
    return {
        "front_end": per_frame * frames,
        "front_end_per_frame": per_frame,
        "network": network,
        "total": per_frame * frames + network,
    }
