"""Clustering responses (`POST /v1/cluster`, `POST /v1/cluster/batch`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.problem import ProblemPublic


class ModelRefPublic(BaseModel):
    """Which model version answered."""

    name: str = Field(examples=["scenes"])
    version: int = Field(examples=[3])
    ref: str = Field(description="Exact reference, `name:vN`.", examples=["scenes:v3"])
    sha256: str = Field(description="Digest of the version's manifest.")


_NOVELTY = (
    "How unlike the model's training recordings this is, in [0, 1]: the share of held-out "
    "training windows whose novelty score is lower (0.5 is typical of known sounds, 1.0 beyond "
    "all of them). Null for a model published without a novelty score, for digital silence, "
    "and for a window the encoder gave no embedding for."
)
_UNKNOWN = (
    "True when this sounds like nothing the model was trained on: novelty above 1 minus the "
    "version's false-alarm rate (set with PUT /v1/models/{name}/versions/{v}/novelty). For a "
    "clip: most of its real audio is in unknown windows. Null when novelty is."
)
_LEVEL = "RMS level in dB relative to full scale (a full-scale sine is -3 dBFS; -120 floor)."
_SILENCE = "True when every sample is below half a 16-bit step: digital silence, no cluster."
_SPEECH = "Share of the audio that holds speech (Silero VAD, 32 ms steps); null if unavailable."


class SoundFactsPublic(BaseModel):
    """What is in the sound, beside pi: its level, silence, speech and novelty."""

    level_dbfs: float | None = Field(default=None, description=_LEVEL, examples=[-23.5])
    silence: bool | None = Field(default=None, description=_SILENCE, examples=[False])
    speech: float | None = Field(default=None, description=_SPEECH, examples=[0.0])
    novelty: float | None = Field(default=None, description=_NOVELTY, examples=[0.41])
    unknown: bool | None = Field(default=None, description=_UNKNOWN, examples=[False])


class WindowPublic(SoundFactsPublic):
    start_s: float
    end_s: float
    probabilities: list[float]
    assignment: int


class ClusterResult(SoundFactsPublic):
    """The cluster posterior of one clip, and what is in it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {
                        "name": "scenes",
                        "version": 3,
                        "ref": "scenes:v3",
                        "sha256": "9b1d0c6e3f0a4e5b8c7d6e5f4a3b2c1d"
                        "0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b",
                    },
                    "n_clusters": 4,
                    "probabilities": [0.05, 0.82, 0.1, 0.03],
                    "assignment": 1,
                    "confidence": 0.82,
                    "duration_s": 1.0,
                    "cluster_name": "speech-in-noise",
                    "level_dbfs": -23.5,
                    "silence": False,
                    "speech": 0.62,
                    "novelty": 0.41,
                    "unknown": False,
                }
            ]
        }
    )

    model: ModelRefPublic
    n_clusters: int = Field(description="K, the number of clusters.")
    probabilities: list[float] = Field(description="pi: K probabilities that sum to 1.")
    assignment: int = Field(description="The most probable cluster (argmax of pi).")
    confidence: float = Field(description="The probability of the assigned cluster.")
    duration_s: float = Field(description="Duration of the decoded clip in seconds.")
    windows: list[WindowPublic] | None = Field(
        default=None,
        description="Per-window timeline; present when the clip is longer than one window.",
    )
    cluster_name: str | None = Field(
        default=None, description="Name of the assigned cluster, when the model names them."
    )


class BatchItemResult(BaseModel):
    """One file of a batch: either a result or a problem, never both."""

    filename: str
    result: ClusterResult | None = None
    error: ProblemPublic | None = None


class BatchResult(BaseModel):
    data: list[BatchItemResult]
    count: int
