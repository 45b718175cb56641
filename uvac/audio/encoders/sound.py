"""The sound encoder: the aiSFX embedding network (Ma and Lerch, ISMIR 2022), from ``aisfx``.

A 9-layer CNN (conv blocks of 64, 128, 256 and 512 channels, 4.7 M parameters) trained on
professional sound-effects libraries. Its input contract, as the package states it:

    samples at 44.1 kHz --> power STFT (Hann, 2048-sample window, hop 1024, centred)
      --> 96-band HTK mel filterbank, each band's weights summing to 1 (Essentia's unit_sum)
      --> log10(1 + 10^4 * S) / 9.4578 (the package's cross-data-set maximum)
      --> blocks of 100 frames (about 2.3 s) every 50 frames --> CNN --> 512 values per block
          (mean over frequency, max over time)

How a window of a recording becomes one embedding (the same in training and inference):

- the window is peak-normalised first, as the package's own pipeline normalises each file
  (levels depend on the microphone, not on the environment); digital silence stays zero;
- the window's whole spectrogram (at least 8 frames, zero padded) goes through the network in
  one pass. The network is fully convolutional and ends in a max over time, so this is the
  max over the window of what 100-frame blocks would give (up to the blocks' edges), at a
  fraction of the cost of overlapping blocks, and a short clip is embedded on its real frames
  instead of on padding.

A live stream can start a window early (`SoundEncoder.start_window`): the frames its heard
samples complete go through the network as far as they decide it
(`uvac.audio.encoders.early_start`), normalised by the heard samples' peak. Once the window is
whole, `embed_started` computes the rest, unless a later sample is louder than that peak: the
whole window is then normalised otherwise, and embedded from the start.

The weights are the package's ``models/checkpoint.pth``, a pickle of ``(state_dict,
dataset_dict)`` holding numpy scalars; it is read with ``torch.load(weights_only=True)`` and an
allow-list of exactly the two numpy globals it needs, so no other object can be built from it.
Only the embedding network is kept (the package's per-data-set classifier heads are dropped).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn
from torch.nn import functional as F

from uvac.audio.encoders.base import Encoder, WindowStart
from uvac.audio.encoders.early_start import ConvLayer, RowsStarted, finish_rows, start_rows
from uvac.errors import EncoderUnavailableError
from uvac.tensor_bytes import TensorBytesCounter

__all__ = ["SoundEncoder"]

logger = logging.getLogger(__name__)

DISTRIBUTION = "aisfx"
WEIGHTS = "models/checkpoint.pth"
LICENCE = "CC BY 4.0 (weights and code, per the package's licence file); Ma and Lerch, ISMIR 2022"

SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 1024
N_MELS = 96
LOG_SCALE = 1e4
LOG_MAXIMUM = 9.457798957824707
MIN_FRAMES = 8  # three 2x2 max-poolings need 8 frames to leave one
CHANNELS = (64, 128, 256, 512)
# Spectrogram frames per network call (two 5 s windows, ten 1 s ones): the fewest CPU seconds
# per window for both (benchmarks/README.md, live streams); also bounds memory.
_FRAMES_PER_CALL = 432


class _ConvBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and ReLU (the package's ``ConvBlock``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, pool: int) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, kernel_size=pool) if pool > 1 else x


class _EmbeddingNet(nn.Module):
    """The package's ``EmbeddingNet('max', 3, 1, 64)``: (B, T, 96) log-mel -> (B, 512)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_block1 = _ConvBlock(1, CHANNELS[0])
        self.conv_block2 = _ConvBlock(CHANNELS[0], CHANNELS[1])
        self.conv_block3 = _ConvBlock(CHANNELS[1], CHANNELS[2])
        self.conv_block4 = _ConvBlock(CHANNELS[2], CHANNELS[3])

    def layers(self) -> list[ConvLayer]:
        """The network as the convolution stack `uvac.audio.encoders.early_start` runs."""
        layers = []
        for block, pool in (
            (self.conv_block1, 2),
            (self.conv_block2, 2),
            (self.conv_block3, 2),
            (self.conv_block4, 1),
        ):
            layers.append(ConvLayer(block.conv1, block.bn1, 1))
            layers.append(ConvLayer(block.conv2, block.bn2, pool))
        return layers

    def forward(self, spectrogram: Tensor) -> Tensor:
        x = spectrogram.unsqueeze(1)  # (B, 1, T, F)
        x = self.conv_block1(x, pool=2)  # (B, 64, T/2, 48)
        x = self.conv_block2(x, pool=2)  # (B, 128, T/4, 24)
        x = self.conv_block3(x, pool=2)  # (B, 256, T/8, 12)
        x = self.conv_block4(x, pool=1)  # (B, 512, T/8, 12)
        return x.mean(dim=3).amax(dim=2)  # (B, 512): mean over frequency, max over time


@dataclass(frozen=True)
class _SoundWindowStart(WindowStart):
    """A window started on its first samples: their peak and the network's rows so far."""

    peak: Tensor  # 0-d, the heard samples' peak
    network: _EmbeddingNet  # the network it ran (float32 or bf16)
    rows: RowsStarted


def _mel_filterbank() -> Tensor:
    """(1025, 96) HTK mel triangles, each band's weights summing to 1."""
    bank = torchaudio.functional.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=N_MELS,
        sample_rate=SAMPLE_RATE,
        norm=None,
        mel_scale="htk",
    )
    return bank / bank.sum(dim=0, keepdim=True).clamp_min(1e-12)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """The embedding network's tensors from the package checkpoint, unpickled with an
    allow-list (see the module docstring)."""
    # numpy 2 moved numpy.core to numpy._core; the pickle names the old path.
    scalar = importlib.import_module("numpy._core.multiarray").scalar
    allowed: list[Any] = [(scalar, "numpy.core.multiarray.scalar"), np.dtype]
    allowed += [type(np.dtype(name)) for name in ("float64", "int64", "float32", "int32")]
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have no common type
        raise EncoderUnavailableError(
            f"cannot read {path.name} of {DISTRIBUTION}: {error}"
        ) from error
    state_dict = checkpoint[0] if isinstance(checkpoint, tuple | list) else checkpoint
    prefix = "embedding_net."
    return {
        key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)
    }


# Tensors alive at once in an inference call: an operation's input and output, and one
# temporary (a normalisation's, a pooling's indices).
_LIVE_TENSORS = 3


@lru_cache(maxsize=64)
def _network_bytes(frames: int) -> int:
    """The network's weights and the peak of one call on a full batch of windows of
    ``frames`` frames (its largest tensor, `_LIVE_TENSORS` times), counted on the meta device
    (nothing is allocated or read)."""
    with torch.device("meta"):
        network = _EmbeddingNet()
        weights = sum(p.numel() * p.element_size() for p in network.parameters())
        counter = TensorBytesCounter()
        with torch.inference_mode(), counter:
            network(torch.zeros(max(1, _FRAMES_PER_CALL // frames), frames, N_MELS))
    return int(weights + _LIVE_TENSORS * counter.largest)


class SoundEncoder(Encoder):
    """aiSFX embeddings of sound windows; see the module docstring."""

    name = "sound-encoder"
    sample_rate = SAMPLE_RATE
    embedding_dim = CHANNELS[-1]
    max_window_seconds = None
    starts_early = True

    def __init__(self) -> None:
        path = self._find_weights(DISTRIBUTION, "aisfx", WEIGHTS, LICENCE)
        self.network = _EmbeddingNet()
        try:
            self.network.load_state_dict(_read_state_dict(path), strict=True)
        except RuntimeError as error:
            raise EncoderUnavailableError(
                f"{DISTRIBUTION} {self.identity.version}: its weights do not fit the network: "
                f"{error}"
            ) from error
        # Channels-last weights make every activation channels-last (the input has one
        # channel, so both layouts are the same there): oneDNN's convolutions and pooling
        # then skip a reorder of each activation, most of a bf16 pass's time (the same
        # answers; benchmarks/README.md, "Channels-last").
        self.network.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        # The network under bf16 autocast, its convolutions' weights in bf16 already: autocast
        # casts a weight that needs no gradient again on every call (the same bf16 values,
        # so the answers are the same); None in float32.
        self._bf16_network: _EmbeddingNet | None = None
        self._window = torch.hann_window(N_FFT)
        self._filterbank = _mel_filterbank()

    @property
    def bf16_autocast(self) -> bool:
        """Whether the network runs under bf16 autocast; set by
        `uvac.audio.encoders.configure_encoder_precision` (the API's choice; training embeds
        in float32, the reference every model is trained on)."""
        return self._bf16_network is not None

    @bf16_autocast.setter
    def bf16_autocast(self, enabled: bool) -> None:
        if enabled == self.bf16_autocast:
            return
        bf16_network = None
        if enabled:
            bf16_network = copy.deepcopy(self.network)
            for module in bf16_network.modules():
                if isinstance(module, nn.Conv2d):
                    module.to(torch.bfloat16)
        self._bf16_network = bf16_network  # one assignment: a pass under way keeps its network

    @classmethod
    def memory_bytes(cls, *, window_seconds: float, windows: int) -> int:
        frames = max(MIN_FRAMES, 1 + round(window_seconds * SAMPLE_RATE) // HOP)
        # Each window's spectrogram is kept until its batch is embedded; one window's power
        # spectrum (complex STFT and its square) is made at a time.
        spectrograms = max(1, windows) * frames * N_MELS * 4
        spectrum = (N_FFT // 2 + 1) * frames * (8 + 4)
        embeddings = max(1, windows) * cls.embedding_dim * 4
        return _network_bytes(frames) + spectrograms + spectrum + embeddings

    def spectrogram(self, samples: Tensor, *, peak: Tensor | None = None) -> Tensor:
        """The network's input for one window: ``(N,)`` -> ``(T, 96)``, T >= 8 frames;
        normalised by ``peak`` (a 0-d tensor), by default the window's own."""
        if peak is None:
            peak = samples.abs().max()
        if float(peak) > 0:
            samples = samples / peak
        spectrum = torch.stft(
            samples,
            n_fft=N_FFT,
            hop_length=HOP,
            window=self._window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (1025, T)
        power = spectrum.real.square() + spectrum.imag.square()
        mel = power.T @ self._filterbank  # (T, 96)
        spectrogram = torch.log10(1.0 + LOG_SCALE * mel) / LOG_MAXIMUM
        return F.pad(spectrogram, (0, 0, 0, max(0, MIN_FRAMES - spectrogram.shape[0])))

    def _network_now(self) -> tuple[_EmbeddingNet, bool]:
        """The network a pass uses now, and whether it runs under bf16 autocast; the
        spectrogram is made outside the autocast, in float32, as `embed` makes it."""
        bf16_network = self._bf16_network
        network = bf16_network if bf16_network is not None else self.network
        return network, bf16_network is not None

    @staticmethod
    def _network_context(bf16: bool) -> contextlib.AbstractContextManager[Any]:
        """Where the network runs: inference mode, under bf16 autocast when ``bf16``."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(torch.autocast("cpu", torch.bfloat16, enabled=bf16))
        return stack

    def start_window(self, heard: Tensor) -> Generator[None, None, WindowStart | None]:
        """One step for the spectrogram, then one per layer (`start_rows`)."""
        if heard.ndim != 1:
            return None
        heard = heard.to(torch.float32)
        frames = heard.shape[0] // HOP  # the centred frames that end within the heard samples
        if frames == 0 or not bool(torch.isfinite(heard).all()):
            return None
        network, bf16 = self._network_now()
        peak = heard.abs().max()
        with torch.inference_mode():
            spectrogram = self.spectrogram(heard, peak=peak)[:frames]  # (frames, 96)
        yield
        rows = yield from start_rows(
            network.layers(), spectrogram[None, None], context=lambda: self._network_context(bf16)
        )
        return _SoundWindowStart(
            heard_samples=heard.shape[0], peak=peak, network=network, rows=rows
        )

    def start_holds(self, heard: Tensor, later: Tensor) -> bool:
        """Whether no ``later`` sample is louder than the ``heard`` ones' peak, by which the
        start normalised the window. In numpy: a stream asks on its event loop's thread for
        every frame, and a torch reduction over a window's samples there would wake that
        thread's intra-op pool, whose threads then spin for milliseconds of CPU each time."""
        if later.numel() == 0:
            return True
        return float(np.abs(later.numpy()).max()) <= float(np.abs(heard.numpy()).max())

    def embed_started(
        self, windows: Sequence[Tensor], started: Sequence[WindowStart | None]
    ) -> Tensor:
        """`embed`; a window whose first samples `start_window` saw (the caller's promise:
        they are the same samples) is finished from there, unless its rest is louder than
        they were, it is shorter than the network's smallest input, or the network changed
        (the precision was switched) since."""
        self._check_started(windows, started)
        network, bf16 = self._network_now()
        embeddings: dict[int, Tensor] = {}
        for index, (window, start) in enumerate(zip(windows, started, strict=True)):
            window = window.to(torch.float32)
            if not isinstance(start, _SoundWindowStart) or start.network is not network:
                continue
            if not _finishes(window, start):
                continue
            try:
                embeddings[index] = self._finish(window, start, bf16)
            except Exception:  # a bug here must not fail the batch: the window goes whole
                logger.exception("finishing a window started early failed; embedding it whole")
        others = [index for index in range(len(windows)) if index not in embeddings]
        if others:
            for index, embedding in zip(
                others, self.embed([windows[i] for i in others]), strict=True
            ):
                embeddings[index] = embedding
        return torch.stack([embeddings[index] for index in range(len(windows))])  # (W, 512)

    def _finish(self, window: Tensor, start: _SoundWindowStart, bf16: bool) -> Tensor:
        """The embedding ``(512,)`` of ``window`` from ``start``: only the frames after the
        heard ones are made. Frame ``t`` reads samples ``(t - 1) * HOP`` to ``(t + 1) * HOP``,
        so the samples from frame ``heard_rows - 1``'s first one give frames ``heard_rows``
        on as their frames 1 on (their frame 0, and any padding, are dropped)."""
        heard_rows = start.rows.heard_rows
        total_frames = 1 + window.shape[0] // HOP
        with torch.inference_mode():
            tail = self.spectrogram(window[(heard_rows - 1) * HOP :], peak=start.peak)
            rest = tail[1 : 1 + total_frames - heard_rows]  # (T - heard_rows, 96)
        with self._network_context(bf16):
            embedding = finish_rows(start.network.layers(), start.rows, rest[None, None])
        return embedding[0].float()

    def embed(self, windows: Sequence[Tensor]) -> Tensor:
        self._check_windows(windows)
        network, bf16 = self._network_now()
        with torch.inference_mode():
            spectrograms = [self.spectrogram(window.to(torch.float32)) for window in windows]
            embeddings: list[Tensor | None] = [None] * len(spectrograms)
            # Windows of equal length (every full window of a recording) share a network
            # call, as many as fit in _FRAMES_PER_CALL frames: on a CPU a call over more
            # frames costs more per window, not less (its activations outgrow the caches).
            by_length: dict[int, list[int]] = {}
            for index, spectrogram in enumerate(spectrograms):
                by_length.setdefault(int(spectrogram.shape[0]), []).append(index)
            for frames, indices in by_length.items():
                per_call = max(1, _FRAMES_PER_CALL // frames)
                for start in range(0, len(indices), per_call):
                    chunk = indices[start : start + per_call]
                    batch = torch.stack([spectrograms[i] for i in chunk])  # (B, T, 96)
                    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                        result = network(batch).float()  # (B, 512)
                    for row, index in enumerate(chunk):
                        embeddings[index] = result[row]
            return torch.stack([value for value in embeddings if value is not None])  # (W, 512)


def _finishes(window: Tensor, start: _SoundWindowStart) -> bool:
    """Whether ``window``, begun by ``start``, can be finished from it: it goes on past the
    heard samples, needs no padding to the network's smallest input, and nothing after them
    is louder (else the window's normalisation is not the one the start used)."""
    heard = start.heard_samples
    return (
        window.shape[0] > heard
        and 1 + window.shape[0] // HOP >= MIN_FRAMES
        and float(window[heard:].abs().max()) <= float(start.peak)
    )
