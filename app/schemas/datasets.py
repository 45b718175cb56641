"""Uploaded data sets (`/v1/datasets`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DatasetFile(BaseModel):
    path: str
    duration_s: float | None = None
    label: str | None = None
    sha256: str | None = None


class RejectedFile(BaseModel):
    path: str
    reason: str


class DatasetPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "ds_0123456789ab",
                    "created_at": "2025-01-01T10:00:00+00:00",
                    "files": [{"path": "speech/a.wav", "duration_s": 1.0, "label": "speech"}],
                    "rejected": [{"path": "notes.txt", "reason": "not audio"}],
                    "labels": ["speech"],
                    "digest": "5d41402abc4b2a76b9719d911017c592",
                }
            ]
        }
    )

    id: str
    created_at: str | None = None
    files: list[DatasetFile] = Field(default_factory=list)
    rejected: list[RejectedFile] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    digest: str | None = Field(default=None, description="SHA-256 of the content manifest.")
    source: str | None = Field(default=None, description="The uploaded archive's file name.")
    total_duration_s: float | None = None
    rejected_count: int | None = Field(
        default=None,
        description="How many entries were rejected in all; `rejected` lists the first 1000, "
        "each name in a short, escaped form.",
    )


class DatasetList(BaseModel):
    data: list[DatasetPublic]
    count: int
