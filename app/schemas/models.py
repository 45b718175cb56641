"""Model store views (`/v1/models`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelSummary(BaseModel):
    name: str
    latest_version: int | None = None
    version_count: int = Field(description="Number of stored versions.")
    aliases: dict[str, int] = Field(
        default_factory=dict, description="Alias name -> version number."
    )


class ModelList(BaseModel):
    data: list[ModelSummary]
    count: int


class ModelVersionPublic(BaseModel):
    name: str
    version: int
    ref: str = Field(examples=["scenes:v3"])
    sha256: str
    created_at: str | None = None
    aliases: list[str] = Field(default_factory=list, description="Aliases pointing here.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] | None = Field(
        default=None, description="Evaluation metrics, when the version has been evaluated."
    )
    has_report: bool = False


class ModelVersionList(BaseModel):
    data: list[ModelVersionPublic]
    count: int


class AliasUpdate(BaseModel):
    """Either point the alias at `version`, or roll it back to its previous target."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"version": 3}, {"rollback": True}]},
    )

    version: int | None = Field(default=None, ge=1)
    rollback: bool = False

    @model_validator(mode="after")
    def _exactly_one_action(self) -> AliasUpdate:
        if (self.version is None) == (not self.rollback):
            raise ValueError('give either {"version": N} or {"rollback": true}')
        return self


class AliasPublic(BaseModel):
    name: str
    alias: str
    version: int
    ref: str = Field(examples=["scenes:v3"])
