"""The speech encoder: EfficientWord-Net's ResNet-50 (ArcFace head), from ``efficientword-net``.

Trained to tell spoken words apart across many speakers, so its embeddings follow what is said
more than who says it. The package ships it as ONNX; it runs on ONNX Runtime. Its input
contract, as the package computes it (``eff_word_net.audio_processing``):

    1.5 s at 16 kHz (24,000 samples, float in [-1, 1])
      --> frames of 25 ms every 10 ms (149 frames; no window function, no pre-emphasis)
      --> power spectrum |rfft_512|^2 / 512 --> 64 mel filters (python_speech_features'
          triangles) --> natural log (zeros floored at float64 eps)
      --> (1, 1, 149, 64) --> ResNet-50 --> 2048 values, L2-normalised by the network

A window shorter than 1.5 s (most spoken words) is zero-padded on both sides to centre it, as
the package pads (it pads at a random offset; centring keeps embeddings deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from uvac.audio.encoders.base import Encoder
from uvac.errors import EncoderUnavailableError

__all__ = ["SpeechEncoder"]

DISTRIBUTION = "efficientword-net"
WEIGHTS = "models/resnet_50_arc/slim_93%_accuracy_72.7390%.onnx"
WEIGHTS_QINT8 = "models/resnet_50_arc/slim_93%_accuracy_72.7390%_qint8.onnx"  # benchmarked only
LICENCE = "Apache-2.0; EfficientWord-Net (Chidhambararajan R., Aman Rangapur et al.)"

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 24000  # 1.5 s
FRAME_SAMPLES = 400  # 25 ms
FRAME_STEP = 160  # 10 ms
N_FFT = 512
N_FILTERS = 64
_EPS = float(np.finfo(float).eps)
# Read from the ONNX graph of WEIGHTS (it is not a torch module, so it cannot be counted on the
# meta device): the bytes of its initialisers, and of every intermediate tensor of one call at
# its fixed batch of one, by ONNX shape inference (all counted as alive at once).
_WEIGHT_BYTES = 87_575_556
_ACTIVATION_BYTES = 20_753_536
_FRAMES = 1 + math.ceil((WINDOW_SAMPLES - FRAME_SAMPLES) / FRAME_STEP)  # 149


def _filterbank() -> Tensor:
    """(257, 64): python_speech_features' mel triangles on FFT bins (its ``get_filterbanks``)."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595 * np.log10(1 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700 * (10 ** (mel / 2595.0) - 1)

    mel_points = np.linspace(
        hz_to_mel(np.array(0.0)), hz_to_mel(np.array(SAMPLE_RATE / 2)), N_FILTERS + 2
    )
    bins = np.floor((N_FFT + 1) * mel_to_hz(mel_points) / SAMPLE_RATE)
    bank = np.zeros((N_FILTERS, N_FFT // 2 + 1))
    for j in range(N_FILTERS):
        for i in range(int(bins[j]), int(bins[j + 1])):
            bank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            bank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return torch.from_numpy(bank.T.copy())  # float64


class SpeechEncoder(Encoder):
    """EfficientWord-Net embeddings of 1.5 s speech windows; see the module docstring."""

    name = "speech-encoder"
    sample_rate = SAMPLE_RATE
    embedding_dim = 2048
    max_window_seconds = WINDOW_SAMPLES / SAMPLE_RATE

    def __init__(self, *, threads: int | None = None, weights: str = WEIGHTS) -> None:
        path = self._find_weights(DISTRIBUTION, "eff_word_net", weights, LICENCE)
        try:
            import onnxruntime
        except ImportError as error:
            raise EncoderUnavailableError("onnxruntime is not installed") from error
        options = onnxruntime.SessionOptions()
        # Same budget as torch's intra-op pool, so an API or a worker keeps its thread setting.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise EncoderUnavailableError(f"cannot load {path.name}: {error}") from error
        self._input_name = self._session.get_inputs()[0].name
        self._filterbank = _filterbank()

    @classmethod
    def memory_bytes(cls, *, window_seconds: float, windows: int) -> int:
        # One window at a time: its padded samples, frames and spectrum (float64), its input.
        one_window = WINDOW_SAMPLES * 8 + _FRAMES * (FRAME_SAMPLES + (N_FFT // 2 + 1) * 2) * 8
        one_window += _FRAMES * N_FILTERS * 4
        embeddings = max(1, windows) * cls.embedding_dim * 4 * 2  # collected, then stacked
        return _WEIGHT_BYTES + _ACTIVATION_BYTES + one_window + embeddings

    def features(self, samples: Tensor) -> Tensor:
        """The network's input for one window: ``(N,)``, N <= 24,000 -> ``(149, 64)`` float32."""
        samples = samples.to(torch.float64)
        padding = WINDOW_SAMPLES - samples.shape[0]
        if padding < 0:
            raise ValueError(f"a speech window holds at most {WINDOW_SAMPLES} samples")
        samples = F.pad(samples, (padding // 2, padding - padding // 2))
        tail = (_FRAMES - 1) * FRAME_STEP + FRAME_SAMPLES - WINDOW_SAMPLES
        frames = F.pad(samples, (0, tail)).unfold(0, FRAME_SAMPLES, FRAME_STEP)  # (149, 400)
        power = torch.fft.rfft(frames, n=N_FFT).abs().square() / N_FFT  # (149, 257)
        energies = power @ self._filterbank  # (149, 64)
        return torch.where(energies == 0, _EPS, energies).log().to(torch.float32)

    def embed(self, windows: Sequence[Tensor]) -> Tensor:
        self._check_windows(windows)
        embeddings = []
        # The shipped graph has a fixed batch of one.
        for window in windows:
            features = self.features(window).numpy()[None, None]  # (1, 1, 149, 64)
            (output,) = self._session.run(None, {self._input_name: features})
            embeddings.append(torch.from_numpy(np.asarray(output, dtype=np.float32)[0]))
        return torch.stack(embeddings)  # (W, 2048)
