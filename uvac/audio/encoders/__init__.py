"""Pretrained, frozen audio encoders whose embeddings are a front-end of the feature pipeline.

- ``"sound-encoder"``: aiSFX (``aisfx``), sound effects and environments, 44.1 kHz, 512 values
  (`uvac.audio.encoders.sound`);
- ``"speech-encoder"``: EfficientWord-Net (``efficientword-net``), spoken words, 16 kHz, 2048
  values (`uvac.audio.encoders.speech`).

`load_encoder(name)` builds each encoder once per process (weights read, hashed and checked on
first use, never at import) and hands the same instance to every caller.
"""

from __future__ import annotations

import threading

import torch

from uvac.audio.encoders.base import Encoder, EncoderIdentity, WindowStart
from uvac.audio.encoders.sound import SoundEncoder
from uvac.audio.encoders.speech import SpeechEncoder
from uvac.errors import EncoderMismatchError

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderIdentity",
    "SoundEncoder",
    "SpeechEncoder",
    "WindowStart",
    "check_encoder_identity",
    "configure_encoder_precision",
    "load_encoder",
]

PRECISIONS = ("auto", "fp32", "bf16")

ENCODERS: dict[str, type[Encoder]] = {
    SoundEncoder.name: SoundEncoder,
    SpeechEncoder.name: SpeechEncoder,
}

_loaded: dict[str, Encoder] = {}
_lock = threading.Lock()
_sound_bf16 = False


def configure_encoder_precision(precision: str) -> bool:
    """Run the sound encoder under bf16 autocast (``"bf16"``), in float32 (``"fp32"``), or
    in bf16 where the CPU computes it natively (``"auto"``: AVX512-BF16 or AMX; elsewhere
    bf16 is emulated and slower). For this process's encoders, loaded or not; returns
    whether bf16 is on. Models are trained on float32 embeddings; serving bf16 ones behind
    them keeps the assignments (benchmarks/README.md, the encoder study)."""
    global _sound_bf16
    if precision not in PRECISIONS:
        raise ValueError(f"encoder precision must be one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        _sound_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    else:
        _sound_bf16 = precision == "bf16"
    with _lock:
        for encoder in _loaded.values():
            if isinstance(encoder, SoundEncoder):
                encoder.bf16_autocast = _sound_bf16
    return _sound_bf16


def load_encoder(name: str) -> Encoder:
    """The process's instance of encoder ``name``; `EncoderUnavailableError` if it cannot load."""
    try:
        encoder_class = ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}") from None
    with _lock:
        if name not in _loaded:
            encoder = encoder_class()
            if isinstance(encoder, SoundEncoder):
                encoder.bf16_autocast = _sound_bf16
            _loaded[name] = encoder
        return _loaded[name]


def check_encoder_identity(recorded: dict[str, object]) -> Encoder:
    """The installed encoder, if it is the one a model recorded (package, version and weight
    SHA-256); `EncoderMismatchError` otherwise."""
    encoder = load_encoder(str(recorded.get("name")))
    installed = encoder.identity.to_dict()
    differing = [
        key for key in ("package", "version", "sha256") if recorded.get(key) != installed[key]
    ]
    if differing:
        details = ", ".join(
            f"{key} {recorded.get(key)!r} (installed: {installed[key]!r})" for key in differing
        )
        raise EncoderMismatchError(
            f"the model was trained on embeddings of another {encoder.name}: {details}"
        )
    return encoder
