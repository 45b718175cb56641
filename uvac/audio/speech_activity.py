"""Where speech is: Silero VAD (the ``silero-vad`` wheel ships its ONNX weights, MIT) on ONNX
Runtime, without torch in the loop.

The detector reads 16 kHz audio in 32 ms chunks (512 samples, each with the 64 samples before
it as context) and carries its recurrent state from chunk to chunk; each chunk gets the
probability that it holds speech, and a chunk above `SPEECH_PROBABILITY` counts as speech.
The clip is preceded by `LEAD_CHUNKS` chunks of silence, so that the recurrent state has
settled before the clip begins: a short clip (a spoken digit of 0.3 s) is otherwise half
over before the detector commits.
`SpeechDetector.speech_shares(audio, spans)` gives each span of a clip (a window, in seconds)
the share of its chunks that hold speech. Like the encoders, the detector records which
weights it runs (`identity`: package, version, file, SHA-256, licence).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch
import torchaudio.functional

from uvac.audio.decoding import Audio
from uvac.audio.encoders.base import EncoderIdentity, package_file
from uvac.hashing import file_sha256

__all__ = [
    "SPEECH_PRESENT_SHARE",
    "SPEECH_PROBABILITY",
    "SpeechDetector",
    "load_speech_detector",
]

VAD_SAMPLE_RATE = 16_000
CHUNK = 512  # samples per decision at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees with each chunk
SPEECH_PROBABILITY = 0.5  # the detector's own default threshold
LEAD_CHUNKS = 16  # silence before the clip (0.512 s)
SPEECH_PRESENT_SHARE = 0.1  # a clip whose speech share reaches it holds speech
_DISTRIBUTION = "silero-vad"
_MODULE = "silero_vad.data"
_WEIGHTS = "silero_vad.onnx"


class SpeechDetector:
    """Silero VAD in an ONNX Runtime session; thread-safe (each call keeps its own state)."""

    def __init__(self) -> None:
        import onnxruntime  # imported here: only the processes that detect speech load it

        path, version = package_file(_DISTRIBUTION, _MODULE, _WEIGHTS)
        self.identity = EncoderIdentity(
            name="speech-activity",
            package=_DISTRIBUTION,
            version=version,
            weights=_WEIGHTS,
            sha256=file_sha256(path),
            licence="MIT",
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one chunk at a time: threads only add overhead
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def chunk_probabilities(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz mono float samples ``(N,)`` -> speech probability per 32 ms chunk ``(C,)``."""
        n_chunks = -(-samples.shape[0] // CHUNK)
        padded = np.zeros(n_chunks * CHUNK + CONTEXT, dtype=np.float32)
        padded[CONTEXT : CONTEXT + samples.shape[0]] = samples
        state = np.zeros((2, 1, 128), dtype=np.float32)
        rate = np.array(VAD_SAMPLE_RATE, dtype=np.int64)
        probabilities = np.empty(n_chunks, dtype=np.float32)
        for index in range(n_chunks):
            start = index * CHUNK
            chunk = padded[None, start : start + CONTEXT + CHUNK]  # (1, CONTEXT + CHUNK)
            output, state = self._session.run(None, {"input": chunk, "state": state, "sr": rate})
            probabilities[index] = float(output[0, 0])
        return probabilities

    def speech_shares(self, audio: Audio, spans: Sequence[tuple[float, float]]) -> list[float]:
        """The share of each ``(start_s, end_s)`` span of ``audio`` that holds speech."""
        samples = torch.from_numpy(audio.samples)
        if audio.sample_rate != VAD_SAMPLE_RATE:
            samples = torchaudio.functional.resample(samples, audio.sample_rate, VAD_SAMPLE_RATE)
        lead = np.zeros(LEAD_CHUNKS * CHUNK, dtype=np.float32)
        padded = np.concatenate([lead, samples.numpy().astype(np.float32)])
        speech = self.chunk_probabilities(padded)[LEAD_CHUNKS:] > SPEECH_PROBABILITY  # (C,)
        centres = (np.arange(speech.shape[0]) + 0.5) * CHUNK / VAD_SAMPLE_RATE
        shares = []
        for start_s, end_s in spans:
            inside = (centres >= start_s) & (centres < end_s)
            shares.append(round(float(speech[inside].mean()), 4) if inside.any() else 0.0)
        return shares


_detector: SpeechDetector | None = None
_lock = threading.Lock()


def load_speech_detector() -> SpeechDetector:
    """The process's one detector (weights found and hashed on first use, never at import)."""
    global _detector
    with _lock:
        if _detector is None:
            _detector = SpeechDetector()
        return _detector
