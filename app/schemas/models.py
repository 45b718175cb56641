"""Model store views (`/v1/models`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from app.schemas.closed import ClosedModel


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


class AliasToVersion(ClosedModel):
    """Point the alias at a version."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 3}]})

    version: int = Field(ge=1, description="The version the alias should point at.")
    force: bool = Field(
        default=False,
        description="Promote even when the version did worse on its held-out recordings than "
        "the one the alias points at now (without it, such a promotion is a 409 "
        "`promotion-worsens-model` that names the figures). A forced promotion is logged.",
    )


class AliasRollback(ClosedModel):
    """Move the alias back to its previous target."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rollback": True}]})

    rollback: Literal[True]

    @field_validator("rollback", mode="before")
    @classmethod
    def _a_boolean(cls, value: Any) -> Any:
        # A Literal matches by equality, so strict mode alone would take 1 for true.
        if not isinstance(value, bool):
            raise ValueError("rollback must be the JSON value true")
        return value


def _alias_action(body: Any) -> str | None:
    """Which of the two bodies this is: the tag of the one whose key it has, None when it
    has both or neither (answered with the message below rather than each branch's errors).
    Other unknown keys are left to the chosen model's `extra="forbid"`, which names them."""
    if isinstance(body, dict):
        has_version, has_rollback = "version" in body, "rollback" in body
    else:
        has_version, has_rollback = (
            isinstance(body, AliasToVersion),
            isinstance(body, AliasRollback),
        )
    if has_version == has_rollback:
        return None
    return "version" if has_version else "rollback"


# "Exactly one of" as the schema says it: a oneOf of two closed objects, so a client generator
# (and schemathesis) know that {"version": 3, "rollback": true} is not a valid body.
AliasUpdate = Annotated[
    Annotated[AliasToVersion, Tag("version")] | Annotated[AliasRollback, Tag("rollback")],
    Discriminator(
        _alias_action,
        custom_error_type="alias_action",
        custom_error_message='give either {"version": N} or {"rollback": true}, not both',
    ),
]


class AliasPublic(BaseModel):
    name: str
    alias: str
    version: int
    ref: str = Field(examples=["scenes:v3"])
    worse_figures: list[dict[str, Any]] = Field(
        default_factory=list,
        description="For a forced promotion: the held-out figures on which the new version "
        "is worse than the one it replaced (`figure`, `new`, `current`, `higher_is_better`).",
    )
