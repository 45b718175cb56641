"""The problem+json document, as OpenAPI documents it (see app/problems.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ValidationErrorItem(BaseModel):
    loc: list[str] = Field(description="Where the invalid value is, e.g. ['body', 'n_clusters'].")
    message: str
    type: str


class ProblemPublic(BaseModel):
    """RFC 9457 problem details; every error response has this body."""

    model_config = ConfigDict(
        title="Problem",
        json_schema_extra={
            "examples": [
                {
                    "type": "https://uvac.dev/problems/not-audio",
                    "title": "Not an audio file",
                    "status": 415,
                    "detail": "upload.bin: the file could not be decoded as audio",
                    "instance": "/v1/cluster",
                    "request_id": "4f1c2a7e9b0d4c1f8e2a3b4c5d6e7f80",
                }
            ]
        },
    )

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, for a person to read.")
    instance: str | None = Field(default=None, description="The path that was requested.")
    request_id: str | None = Field(default=None, description="Also in the X-Request-ID header.")
    errors: list[ValidationErrorItem] | None = Field(
        default=None,
        description="Only for validation errors: one entry per invalid value, the first 20.",
    )
    errors_total: int | None = Field(
        default=None, description="Only for validation errors: how many there were in all."
    )
