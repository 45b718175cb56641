"""The body of `POST /v1/prepare`: a data set to embed ahead of training, and the recipe whose
embeddings it should hold."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from app.schemas.closed import ClosedModel, LaxEnum
from app.schemas.features import FeatureOverrides
from app.schemas.jobs import DATASET_ID_PATTERN, PresetName
from uvac.training import DEFAULT_PRESET

__all__ = ["PrepareRequest"]


class PrepareRequest(ClosedModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"dataset_id": "ds_0123456789ab"},
                {"dataset_id": "ds_0123456789ab", "preset": "speech"},
            ]
        },
    )

    dataset_id: str = Field(pattern=DATASET_ID_PATTERN, description="The recordings to embed.")
    preset: Annotated[PresetName, LaxEnum] = Field(
        default=PresetName(DEFAULT_PRESET),
        description="The training recipe whose encoder and windows the embeddings are for "
        "(a log-mel recipe has nothing to prepare).",
    )
    features: FeatureOverrides | None = Field(
        default=None, description="Feature settings to change from the preset's, as in training."
    )

    def job_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"dataset_id": self.dataset_id, "preset": str(self.preset)}
        if self.features is not None:
            params["features"] = self.features.overrides()
        return params
