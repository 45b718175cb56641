"""A version's clusters (`/v1/models/{name}/versions/{v}/clusters`): names, sizes, identity."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.closed import ClosedModel
from app.schemas.cluster import ModelRefPublic
from model_store.cluster_names import MAX_NAME_LENGTH


class ClusterPublic(BaseModel):
    number: int = Field(description="The cluster number (`assignment` in `/v1/cluster`).")
    name: str | None = Field(default=None, description="Its name, when it has one.")
    size: int | None = Field(
        default=None, description="Training clips assigned to it, when the version recorded it."
    )
    agreement: float | None = Field(
        default=None,
        description="Share of its clips that the earlier version put in the same number; "
        "None without an earlier version.",
    )
    previous_number: int | None = Field(
        default=None, description="The earlier version's cluster it continues, if any."
    )
    new: bool | None = Field(
        default=None, description="True when no earlier cluster continues here."
    )
    typical_clips: list[str] = Field(
        default_factory=list,
        description="Ids (paths in the training data set) of its most typical training clips.",
    )
    needs_name: bool = Field(
        default=False,
        description="True when the cluster has no name but should have one: it continues a "
        "named earlier cluster too weakly for the name to carry over (see `suggested_name`), "
        "or it is new in a version whose other clusters are named.",
    )
    suggested_name: str | None = Field(
        default=None,
        description="The earlier cluster's name, offered when it did not carry over: the "
        "cluster kept under `share_for_name` of the earlier cluster's recordings.",
    )
    kept_share: float | None = Field(
        default=None,
        description="Share of the earlier cluster's recordings that this cluster holds.",
    )


class ClusterList(BaseModel):
    model: ModelRefPublic
    n_clusters: int
    previous: str | None = Field(
        default=None, description="The earlier version the clusters were matched to."
    )
    agreement: float | None = Field(
        default=None, description="Share of the matched recordings that kept their number."
    )
    disappeared: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Earlier clusters without a successor: number, size, merged_into, share.",
    )
    share_for_name: float = Field(
        description="Least share of an earlier cluster's recordings a cluster must keep for "
        "the earlier name to carry over to it."
    )
    data: list[ClusterPublic]
    count: int


class ClusterNameUpdate(ClosedModel):
    """Name a cluster (a program label), or clear its name with null."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Rain"}, {"name": None}]}
    )

    name: str | None = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="Letters and marks of any script, digits, spaces and - _ . , ' ( ) & / + #; "
        "normalised to NFC; starts with a letter or digit. null clears the name.",
    )
