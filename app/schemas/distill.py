"""The body of `POST /v1/distill`: a stored teacher and the data set to distil it on."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from app.schemas.closed import ClosedModel
from app.schemas.jobs import DATASET_ID_PATTERN, MODEL_NAME_PATTERN, MODEL_REF_PATTERN

__all__ = ["DistillRequest"]


class DistillRequest(ClosedModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"teacher_ref": "scenes@production", "dataset_id": "ds_0123456789ab"},
                {
                    "teacher_ref": "scenes:v3",
                    "dataset_id": "ds_0123456789ab",
                    "model_name": "scenes-device",
                    "epochs": 60,
                },
            ]
        },
    )

    teacher_ref: str = Field(
        pattern=MODEL_REF_PATTERN,
        description="The trained model to reproduce: `name`, `name:vN` or `name@alias`.",
    )
    dataset_id: str = Field(
        pattern=DATASET_ID_PATTERN,
        description="The recordings to distil on (normally the teacher's training data set).",
    )
    model_name: str | None = Field(
        default=None,
        pattern=MODEL_NAME_PATTERN,
        description="Where to publish the student (default: the teacher's name with `-edge`, "
        "e.g. `scenes-edge`, so `scenes@latest` keeps pointing at the teacher).",
    )
    epochs: int | None = Field(default=None, ge=1, le=10_000)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    crops_per_clip: int | None = Field(
        default=None, ge=1, le=256, description="Random student windows per recording per epoch."
    )
    learning_rate: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="The starting rate (default 0.003); the cosine schedule ends at 1/30 of it, "
        "at most 0.0001.",
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)

    def job_params(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)
