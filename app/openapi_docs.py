"""OpenAPI helpers: problem+json responses documented on every route that can return them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.problems import PROBLEM_MEDIA_TYPE
from app.schemas.problem import ProblemPublic

PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"

_DESCRIPTIONS = {
    400: "Malformed request (a header, a Range, a multipart body, an archive)",
    401: "No API key (when keys are configured)",
    403: "The API key is not valid",
    404: "Not found",
    408: "The upload arrived slower than the configured floor",
    409: "Conflict with the current state",
    413: "Body, upload, audio or batch over the configured limits",
    416: "The Range header asks for bytes outside the file",
    415: "Not audio, or an unsupported encoding or media type",
    422: "Validation error (a body that is not valid JSON included) or unusable input",
    429: "Too many uploads at once, or job submissions in a minute; see Retry-After",
    503: "Temporarily unavailable (no model yet, job queue or object store out of reach)",
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


def _document_shared_refusals(operation: dict[str, Any]) -> None:
    """The answers that come from what a route takes rather than from its own code: a body
    over the cap is a 413 (app.middleware.BodySizeLimitMiddleware, or the upload's own
    limits), a malformed `Idempotency-Key` a 400 (app.idempotency)."""
    responses = operation["responses"]
    shared = []
    if "requestBody" in operation:
        shared.append(413)
    headers = {p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"}
    if "idempotency-key" in headers:
        shared.append(400)
    for status, response in problem_responses(*shared).items():
        responses.setdefault(str(status), response)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _operations_on_outside_services(
    routers: Sequence[APIRouter], prefix: str
) -> set[tuple[str, str]]:
    """(path, method) of each operation that uses Redis or a store: when one is out of reach
    (Redis down, an S3 store's outage) the answer is a 503."""
    from app.deps import get_dataset_store, get_model_store, get_redis

    outside = {get_dataset_store, get_model_store, get_redis}
    return {
        (prefix + route.path, method.lower())
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and outside & set(_calls(route.dependant))
        for method in route.methods or ()
    }


def install_openapi(
    app: FastAPI, *, business_routers: Sequence[APIRouter] = (), prefix: str = ""
) -> None:
    """Generate the document once, with the Problem schema and problem+json 422s; each
    operation of ``business_routers`` (mounted at ``prefix``) that uses Redis or a store
    documents a 503."""

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
        may_be_unavailable = _operations_on_outside_services(business_routers, prefix)
        for path, path_item in document.get("paths", {}).items():
            path_item.pop("head", None)  # every GET answers HEAD; one operation says it
            for method, operation in path_item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                if (path, method) in may_be_unavailable:
                    operation["responses"].setdefault("503", problem_responses(503)[503])
                # FastAPI documents its own 422 as HTTPValidationError JSON; ours is a problem.
                if "422" in operation["responses"]:
                    operation["responses"]["422"] = problem_responses(422)[422]
                _document_shared_refusals(operation)
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
