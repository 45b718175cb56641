"""The messages of `WS /v1/stream` (docs: README "Live streams"); the protocol is in
`app/streaming/`. The client sends `StreamConfig` first, then binary PCM, `keepalive` and
`eof`; the server sends `StreamReady`, one `StreamDecision` per hop, `StreamFinal`, or a
`StreamError` before it closes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.schemas.closed import ClosedModel
from app.schemas.cluster import ModelRefPublic, SoundFactsPublic
from app.schemas.jobs import MODEL_REF_PATTERN
from uvac.edge import DEFAULT_HOLD_S, DEFAULT_TIME_CONSTANT_S

ENCODINGS = ("pcm_s16le", "pcm_f32le")
"""Little-endian mono PCM: 16-bit signed integers (scaled by 1/32768, as WAV files are
read), or 32-bit floats in [-1, 1]."""


class StreamConfig(ClosedModel):
    """The client's first text frame."""

    type: Literal["config"]
    sample_rate: int | None = Field(
        default=None, description="Samples per second; the model's own rate (say it or omit it)."
    )
    encoding: str = Field(default="pcm_s16le", description=f"One of {', '.join(ENCODINGS)}.")
    model: str | None = Field(
        default=None,
        pattern=MODEL_REF_PATTERN,
        description="`name:vN` or `name@alias`; the served model when omitted.",
    )
    time_constant_s: float = Field(default=DEFAULT_TIME_CONSTANT_S, ge=0, le=3600)
    hold_s: float = Field(default=DEFAULT_HOLD_S, ge=0, le=3600)
    speech: bool = Field(
        default=False,
        description="Run the speech detector on every window, for the decisions' `speech` "
        "(null otherwise). It adds about a fifth to a half of the encoder's CPU to each "
        "decision, so fewer streams fit on a host that asks for it.",
    )


class StreamLimits(BaseModel):
    max_seconds: float
    idle_seconds: float
    max_speed: float = Field(description="Audio may arrive this many times faster than real time")
    burst_seconds: float = Field(description="... plus this many seconds ahead.")


class StreamReady(BaseModel):
    type: Literal["ready"] = "ready"
    stream_id: str
    model: ModelRefPublic
    sample_rate: int
    encoding: str
    window_s: float
    hop_s: float
    window_samples: int
    hop_samples: int
    n_clusters: int
    cluster_names: list[str | None]
    time_constant_s: float
    hold_s: float
    limits: StreamLimits


class StreamDecision(SoundFactsPublic):
    """One window's answer, as `/v1/cluster`'s `windows` timeline gives it (pi, level,
    silence, novelty, unknown, and speech when the config asks for it), plus the program."""

    type: Literal["decision"] = "decision"
    index: int = Field(description="0 for the first window, then one per hop.")
    start_s: float = Field(description="Stream time of the window's first sample.")
    end_s: float = Field(description="Stream time just after the window's last sample.")
    probabilities: list[float]
    assignment: int
    cluster_name: str | None
    smoothed_probabilities: list[float]
    program: int = Field(description="The cluster in force (`ProgramSmoother`: EMA and hold).")
    program_name: str | None


class StreamFinal(BaseModel):
    """The whole stream's pi, as `/v1/cluster` answers it for the same audio."""

    type: Literal["final"] = "final"
    model: ModelRefPublic
    duration_s: float
    decisions: int
    n_clusters: int
    probabilities: list[float]
    assignment: int
    confidence: float
    cluster_name: str | None


class StreamError(BaseModel):
    """Sent just before the server closes with `code` (4000 + the problem's HTTP status)."""

    type: Literal["error"] = "error"
    code: int
    problem: dict[str, Any] = Field(description="An RFC 9457 problem document.")
