"""Where speech is: Silero VAD (the ``silero-vad`` wheel ships its ONNX weights, MIT) on ONNX
Runtime, without torch in the loop.

The detector reads 16 kHz audio in 32 ms chunks (512 samples, each with the 64 samples before
it as context) and carries its recurrent state from chunk to chunk; each chunk gets the
probability that it holds speech, and a chunk above `SPEECH_PROBABILITY` counts as speech.
The clip is preceded by `LEAD_CHUNKS` chunks of silence, so that the recurrent state has
settled before the clip begins: a short clip (a spoken digit of 0.3 s) is otherwise half
over before the detector commits.
That lead is the same for every clip, so the state it leaves is computed once per detector
and each clip starts from it. `SpeechDetector.speech_shares(audio, spans)` gives each span of
a clip (a window, in seconds) the share of its chunks that hold speech; `speech_shares_many`
does the same for several clips at once, their chunks side by side in one batch per step
(each row of the batch is computed as it would be alone, so the answers are the same; a
batch costs far less than its rows one by one). Like the encoders, the detector records which
weights it runs (`identity`: package, version, file, SHA-256, licence).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from uvac.audio.decoding import Audio
from uvac.audio.encoders.base import EncoderIdentity, package_file
from uvac.audio.resampling import resample_signal
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
        self._rate = np.array(VAD_SAMPLE_RATE, dtype=np.int64)
        # The recurrent state after the silent lead (zero context throughout): (2, 1, 128).
        silence = np.zeros(LEAD_CHUNKS * CHUNK, dtype=np.float32)
        self._lead_state = self._run_chunks([silence], self._zero_state(1))[1]

    @staticmethod
    def _zero_state(rows: int) -> np.ndarray:
        return np.zeros((2, rows, 128), dtype=np.float32)

    def _run_chunks(
        self, signals: Sequence[np.ndarray], state: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Speech probability per 32 ms chunk of each 16 kHz signal ``(N_i,)`` -> ``(C_i,)``,
        every signal from its row of ``state`` ``(2, B, 128)`` and a silent context; and the
        state after the longest signal's last chunk.

        The signals run side by side, longest first, and a signal leaves the batch after its
        last chunk, so no row computes past its own end. Each signal is padded on its own (one
        30 s clip in a batch of short ones does not pad them all to 30 s).
        """
        counts = [-(-signal.shape[0] // CHUNK) for signal in signals]
        order = sorted(range(len(signals)), key=lambda index: -counts[index])
        longest = counts[order[0]] if signals else 0
        padded = []  # by row: the silent context, the signal, zeros to its last chunk's end
        for index in order:
            samples = np.zeros(counts[index] * CHUNK + CONTEXT, dtype=np.float32)
            samples[CONTEXT : CONTEXT + signals[index].shape[0]] = signals[index]
            padded.append(samples)
        state = np.ascontiguousarray(state[:, order])
        probabilities = np.empty((len(signals), longest), dtype=np.float32)
        batch = np.empty((len(signals), CONTEXT + CHUNK), dtype=np.float32)
        active = len(signals)
        for step in range(longest):
            while counts[order[active - 1]] <= step:
                active -= 1  # the shortest signal still in the batch has ended
            start = step * CHUNK
            for row in range(active):
                batch[row] = padded[row][start : start + CONTEXT + CHUNK]
            chunks = batch[:active]  # (active, CONTEXT + CHUNK)
            output, state = self._session.run(
                None, {"input": chunks, "state": state[:, :active], "sr": self._rate}
            )
            probabilities[:active, step] = output[:, 0]
        by_signal = [np.empty(0, dtype=np.float32)] * len(signals)
        for row, index in enumerate(order):
            by_signal[index] = probabilities[row, : counts[index]]
        return by_signal, state[:, :1]

    def chunk_probabilities(self, samples: np.ndarray) -> np.ndarray:
        """16 kHz mono float samples ``(N,)`` -> speech probability per 32 ms chunk ``(C,)``,
        from a fresh state (no lead)."""
        return self._run_chunks([samples], self._zero_state(1))[0][0]

    def speech_shares(self, audio: Audio, spans: Sequence[tuple[float, float]]) -> list[float]:
        """The share of each ``(start_s, end_s)`` span of ``audio`` that holds speech."""
        return self.speech_shares_many([(audio, spans)])[0]

    def speech_shares_many(
        self, clips: Sequence[tuple[Audio, Sequence[tuple[float, float]]]]
    ) -> list[list[float]]:
        """`speech_shares` of each ``(audio, spans)``, the clips' chunks run in one batch."""
        if not clips:
            return []
        signals = [
            resample_signal(audio.samples, orig_rate=audio.sample_rate, new_rate=VAD_SAMPLE_RATE)
            for audio, _ in clips
        ]
        lead_states = np.repeat(self._lead_state, len(signals), axis=1)  # (2, B, 128)
        probabilities, _ = self._run_chunks(signals, lead_states)
        return [
            _span_shares(chunk_probabilities > SPEECH_PROBABILITY, spans)
            for chunk_probabilities, (_, spans) in zip(probabilities, clips, strict=True)
        ]


def _span_shares(speech: np.ndarray, spans: Sequence[tuple[float, float]]) -> list[float]:
    """The share of speech chunks ``(C,)`` whose centre lies in each span."""
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
