"""The stream's wire rules: close codes, refusals, and PCM frames to samples.

Every refusal is a problem with an HTTP status, as on the HTTP routes, and closes the socket
with ``4000 + status`` right after an ``error`` message that carries the problem document:

    4400 invalid-message        not JSON, an unknown message, a bad config, audio before the
                                config, a second config
    4404 model-not-found        the config names no model version
    4408 idle-timeout           nothing received for UVAC_STREAM_IDLE_SECONDS
    4413 stream-too-long        audio or open time past UVAC_STREAM_MAX_SECONDS
    4415 unsupported-audio      an encoding other than pcm_s16le / pcm_f32le, a sample rate
                                other than the model's, a frame that is not whole samples
                                at eof
    4422 non-finite-audio       NaN or infinite float samples
         empty-audio            eof before any audio
         model-not-streamable   the model's features need the whole clip
    4429 too-fast               audio ahead of real time by more than UVAC_STREAM_MAX_SPEED
                                times the open time plus UVAC_STREAM_BURST_SECONDS
    4503 too-many-streams       UVAC_MAX_STREAMS are open; retry after ``retry_after_s``
         no-model               no model is served yet; retry after ``retry_after_s``
         shutting-down          the server is stopping
    1011                        a bug (the problem is "internal")

A finished stream closes with 1000 after its ``final`` message.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from app.problems import ApiProblem, Problem, problem_from_exception

__all__ = ["INTERNAL_ERROR_CODE", "PcmDecoder", "close_code", "refusal"]

INTERNAL_ERROR_CODE = 1011  # RFC 6455: the server met a condition it did not expect

_SAMPLE_WIDTH = {"pcm_s16le": 2, "pcm_f32le": 4}
_S16_SCALE = 1.0 / 32768.0  # what libsndfile divides 16-bit WAV samples by


def refusal(status: int, slug: str, detail: str, **extensions: Any) -> ApiProblem:
    """A problem that ends the stream with ``4000 + status``."""
    return ApiProblem(status=status, slug=slug, detail=detail, extensions=extensions)


def close_code(problem: Problem) -> int:
    """The close code of a problem: 4000 + its 4xx status; a 5xx other than 503 is a bug."""
    if 400 <= problem.status < 500 or problem.status == 503:
        return 4000 + problem.status
    return INTERNAL_ERROR_CODE


def as_problem(error: BaseException) -> Problem:
    return problem_from_exception(error)


class PcmDecoder:
    """Binary frames of any length -> float32 samples; a sample split between two frames is
    kept until its other bytes arrive."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._width = _SAMPLE_WIDTH[encoding]
        self._carry = b""

    def decode(self, frame: bytes) -> np.ndarray:
        data = self._carry + frame if self._carry else frame
        whole = len(data) - len(data) % self._width
        self._carry = data[whole:]
        if self.encoding == "pcm_s16le":
            pcm = np.frombuffer(data, dtype="<i2", count=whole // 2)
            return np.multiply(pcm, _S16_SCALE, dtype=np.float32)  # one pass: cast and scale
        samples = np.frombuffer(data, dtype="<f4", count=whole // 4).astype(np.float32)
        if not np.isfinite(samples).all():
            raise refusal(422, "non-finite-audio", "The audio holds NaN or infinite samples.")
        return samples

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete sample (must be 0 when the stream ends)."""
        return len(self._carry)
