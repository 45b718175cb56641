"""A version's novelty score (`/v1/models/{name}/versions/{v}/novelty`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.closed import ClosedModel
from app.schemas.cluster import ModelRefPublic
from model_store.novelty_settings import MAX_FALSE_ALARM_RATE


class NoveltyPublic(BaseModel):
    model: ModelRefPublic
    available: bool = Field(
        description="False for a version published before novelty scores existed: its "
        "answers carry `novelty: null` and `unknown: null`."
    )
    method: str | None = Field(default=None, examples=["relative-mahalanobis-nearest-centre"])
    false_alarm_rate: float | None = Field(
        default=None,
        description="The share of known recordings answered as unknown, now.",
        examples=[0.05],
    )
    calibrated_false_alarm_rate: float | None = Field(
        default=None, description="The rate chosen at training.", examples=[0.05]
    )
    threshold: float | None = Field(
        default=None, description="The raw score above which a window is unknown at that rate."
    )
    held_out_windows: int | None = Field(
        default=None, description="In-distribution windows the threshold was calibrated on."
    )


class NoveltyUpdate(ClosedModel):
    false_alarm_rate: float = Field(
        gt=0.0,
        le=MAX_FALSE_ALARM_RATE,
        description="The share of known recordings to flag as unknown, in (0, 0.5].",
        examples=[0.1],
    )
