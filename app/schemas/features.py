"""Feature-configuration overrides a training request may carry (`TrainRequest.features`).

One optional field per `uvac.audio.feature_config.FeatureConfig` field (a test keeps the two in
step). The model is closed (`extra="forbid"`), so an unknown key is a 422 naming it, not a job that
fails in the worker. Fields left out keep the preset's value; an explicit `null` is a value
where the engine gives it a meaning (`f_max`: Nyquist, `activity_threshold_db`: no activity
mask, `cepstral_coefficients`: log-mel features, `fit_frames`: the window's frames).

The bounds here are the per-field rules the schema can say; the rules that tie fields
together (`win_length <= n_fft`, `f_max` under Nyquist, a window holding one FFT, ...) are
`FeatureConfig`'s own and are checked on the request once the preset is applied.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from app.schemas.closed import ClosedModel
from uvac.audio import MEL_MULTIPLE

# The default of every field: "not given" (`exclude_unset` leaves it out). Typed Any so a
# field that must not be null can still default to it; the value never reaches the engine.
NOT_GIVEN: Any = None


def _without_defaults(schema: dict[str, Any]) -> None:
    # Documenting `default: null` would tell clients null is the preset's value; it is not.
    for field_schema in schema.get("properties", {}).values():
        field_schema.pop("default", None)


class FeatureOverrides(ClosedModel):
    """Overrides of the preset's feature settings (`uvac.audio.feature_config.FeatureConfig`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_without_defaults,
    )

    sample_rate: int = Field(
        default=NOT_GIVEN, ge=1000, le=192_000, description="Rate audio is resampled to (Hz)."
    )
    n_fft: int = Field(default=NOT_GIVEN, ge=16, le=65_536, description="STFT size (samples).")
    win_length: int = Field(
        default=NOT_GIVEN, ge=16, le=65_536, description="STFT window (samples), at most `n_fft`."
    )
    hop_length: int = Field(default=NOT_GIVEN, ge=1, le=65_536, description="STFT hop.")
    n_mels: int = Field(
        default=NOT_GIVEN,
        ge=MEL_MULTIPLE,
        le=512,
        multiple_of=MEL_MULTIPLE,
        description=f"Mel bins (a multiple of {MEL_MULTIPLE}: the networks halve them 4 times).",
    )
    f_min: float = Field(
        default=NOT_GIVEN, ge=0, le=96_000, description="Lowest mel frequency (Hz)."
    )
    f_max: float | None = Field(
        default=NOT_GIVEN, gt=0, le=96_000, description="Highest mel frequency (Hz); null: Nyquist."
    )
    window_seconds: float = Field(
        default=NOT_GIVEN, gt=0, le=60, description="Length of one model window (s)."
    )
    window_hop_seconds: float = Field(
        default=NOT_GIVEN, gt=0, le=60, description="Hop between windows of a long clip (s)."
    )
    utterance_norm: bool | Literal["mean", "mean_variance"] = Field(
        default=NOT_GIVEN,
        description="Per-clip normalisation per bin: false, true (= mean), mean, mean_variance.",
    )
    activity_threshold_db: float | None = Field(
        default=NOT_GIVEN,
        gt=0,
        le=200,
        description="Mask frames this many dB below the clip's loudest; null: no mask.",
    )
    cepstral_coefficients: int | None = Field(
        default=NOT_GIVEN,
        ge=1,
        le=511,
        description="Use this many cepstra (< n_mels); null: log-mel.",
    )
    time_fit: bool = Field(
        default=NOT_GIVEN, description="Trim each clip to its active region and fit it to a window."
    )
    fit_frames: int | None = Field(
        default=NOT_GIVEN, ge=1, le=10_000, description="`time_fit`'s window (frames)."
    )
    # The same names as uvac.audio.feature_config.FRONTENDS (a test keeps them in step).
    frontend: Literal["log-mel", "sound-encoder", "speech-encoder"] = Field(
        default=NOT_GIVEN,
        description="What the model sees: `log-mel` features, or a pretrained encoder's "
        "embeddings (`sound-encoder`: 44.1 kHz; `speech-encoder`: 16 kHz, windows of at most "
        "1.5 s). The presets set it with the matching sample rate and windows.",
    )

    def overrides(self) -> dict[str, Any]:
        """The keys the request gave, with their values (an explicit null included)."""
        return self.model_dump(exclude_unset=True)
