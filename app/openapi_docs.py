"""OpenAPI helpers: problem+json responses documented on every route that can return them."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.problems import PROBLEM_MEDIA_TYPE
from app.schemas.problem import ProblemPublic

PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "No API key (when keys are configured)",
    403: "The API key is not valid",
    404: "Not found",
    408: "The upload arrived slower than the configured floor",
    409: "Conflict with the current state",
    413: "Upload, audio or batch over the configured limits",
    415: "Not audio, or an unsupported encoding or media type",
    422: "Validation error (a body that is not valid JSON included) or unusable input",
    429: "Too many uploads at once, or job submissions in a minute; see Retry-After",
    503: "Temporarily unavailable (no model yet, job queue down); see Retry-After",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status answered with a problem document."""
    return {
        status: {
            "description": _DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
        }
        for status in statuses
    }


def install_openapi(app: FastAPI) -> None:
    """Generate the document once, with the Problem schema and problem+json 422s."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem_schema = ProblemPublic.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        for name, definition in problem_schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas["Problem"] = problem_schema
        for path_item in document.get("paths", {}).values():
            path_item.pop("head", None)  # every GET answers HEAD; one operation says it
            for operation in path_item.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                # FastAPI documents its own 422 as HTTPValidationError JSON; ours is a problem.
                if "422" in operation["responses"]:
                    operation["responses"]["422"] = problem_responses(422)[422]
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
