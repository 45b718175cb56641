"""RFC 9457 problem details: the one place where errors become HTTP responses.

Every error the API answers with is an `application/problem+json` document::

    {"type": "https://uvac.dev/problems/not-audio", "title": "Not an audio file",
     "status": 415, "detail": "...", "instance": "/v1/cluster", "request_id": "..."}

Domain errors (`uvac.errors.UvacError`, the model store's `StoreError`, the worker's job and
data set errors) carry `status` and `slug` (and optionally `title`) themselves; this module
finds the handler by walking the exception's class hierarchy, so a new subclass needs no
new code here. Errors the API raises on its own account (no model yet, Redis down, auth)
are `ApiProblem`s. Validation errors add an `errors` list; an unexpected exception is a 500
whose detail names only the request id (a 5xx is a bug, and its text is not for callers).

No document shows a path of the server's: the messages are written not to, and as a second
lock every absolute path in a document is blanked (`worker.server_paths`) before it is sent,
so a library's error text quoted in a detail cannot leak one. Every such path is blanked
alike, the caller's own too, so what comes back says nothing of which folders exist here.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import redis.exceptions
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.routing import Match

from app.messages import plain_message
from worker.server_paths import redacted

logger = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://uvac.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# Titles for the slugs we know; anything else gets a title from its HTTP status.
_TITLES: dict[str, str] = {
    "internal": "Internal server error",
    "invalid-audio": "Invalid audio",
    "not-audio": "Not an audio file",
    "unsupported-encoding": "Unsupported audio encoding",
    "empty-audio": "Empty audio",
    "non-finite-audio": "Audio contains NaN or infinite samples",
    "audio-too-long": "Audio too long",
    "invalid-model-artifact": "Invalid model artifact",
    "invalid-dataset": "Invalid data set",
    "validation-error": "Request validation failed",
    "upload-too-large": "Upload too large",
    "upload-too-slow": "Upload too slow",
    "dataset-in-use": "Data set in use",
    "body-too-large": "Request body too large",
    "too-many-files": "Too many files",
    "too-many-parts": "Too many multipart parts",
    "too-many-uploads": "Too many uploads at once",
    "too-many-submissions": "Too many job submissions",
    "batch-too-long": "Batch too long",
    "no-model": "No model to serve",
    "model-unavailable": "Model unavailable",
    "redis-unavailable": "Job queue unavailable",
    "unauthenticated": "Authentication required",
    "forbidden": "Invalid API key",
    "idempotency-key-reused": "Idempotency key reused with a different request",
    "not-ready": "Service not ready",
}


class ApiProblem(Exception):
    """An error raised by the API layer itself (not by the engine, store or worker)."""

    def __init__(
        self,
        *,
        status: int,
        slug: str,
        detail: str,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title or _TITLES.get(slug) or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


@dataclass(frozen=True)
class Problem:
    """The parts of a problem document that do not depend on the request."""

    status: int
    slug: str
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)

    def document(self, *, instance: str | None, request_id: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        if request_id is not None:
            body["request_id"] = request_id
        body.update(self.extensions)
        return body


def _slug_for_status(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")


def problem_from_exception(exc: BaseException, *, retry_after_seconds: int = 5) -> Problem:
    """Translate any exception into a `Problem` (also used for per-file batch errors).

    `retry_after_seconds` is what a 503 for an unreachable Redis advises callers to wait.
    """
    if isinstance(exc, ApiProblem):
        return Problem(exc.status, exc.slug, exc.title, exc.detail, exc.headers, exc.extensions)
    if isinstance(exc, RequestValidationError):
        return _json_syntax_problem(exc) or _validation_problem(exc)
    if isinstance(exc, StarletteHTTPException):
        reason = _unparsable_json_reason(exc)
        if reason is not None:
            return _malformed_json_problem(reason, position=None)
        declared = getattr(exc, "slug", None)
        slug = declared if isinstance(declared, str) else _slug_for_status(exc.status_code)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        title = _TITLES.get(slug) or HTTPStatus(exc.status_code).phrase
        return Problem(exc.status_code, slug, title, detail, dict(exc.headers or {}))
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return _redis_unavailable_problem(retry_after_seconds)
    status = getattr(exc, "status", None)
    declared_slug = getattr(exc, "slug", None)
    if isinstance(status, int) and isinstance(declared_slug, str) and 400 <= status < 600:
        declared_title = getattr(exc, "title", None)
        title = (
            declared_title
            if isinstance(declared_title, str) and declared_title
            else _TITLES.get(declared_slug) or HTTPStatus(status).phrase
        )
        # A domain error may add members of its own to the document (the figures a
        # refusal is about, say), under names that do not shadow the standard ones.
        extensions = getattr(exc, "problem_extensions", None)
        return Problem(
            status,
            declared_slug,
            title,
            str(exc) or title,
            extensions=dict(extensions) if isinstance(extensions, Mapping) else {},
        )
    return Problem(
        500,
        "internal",
        _TITLES["internal"],
        "An unexpected error occurred; please report it with the request id.",
    )


# A 422 lists at most this many errors (and says how many there were): a body of many bad
# values must not cost seconds to encode and megabytes to answer.
MAX_REPORTED_ERRORS = 20


def _validation_problem(exc: RequestValidationError) -> Problem:
    all_errors = exc.errors()
    errors = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "message": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in jsonable_encoder(list(all_errors[:MAX_REPORTED_ERRORS]))
    ]
    for error in errors:
        error["message"] = plain_message(error["message"])
    total = len(all_errors)
    # One sentence per problem, naming the field as the client spelt it (no "body." prefix).
    sentences = [_sentence(error) for error in errors[:5]]
    if total > 5:
        sentences.append(f"And {total - 5} more (errors lists the first {len(errors)}).")
    detail = " ".join(sentences) if errors else "Invalid request."
    return Problem(
        422,
        "validation-error",
        _TITLES["validation-error"],
        detail,
        extensions={"errors": errors, "errors_total": total},
    )


def _sentence(error: dict[str, Any]) -> str:
    location = [part for part in error["loc"] if part not in ("body", "query", "path", "header")]
    message = str(error["message"]).rstrip(".")
    where = ".".join(location)
    return f"{where}: {message}." if where else f"{message}."


_JSON_MEDIA_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json\s*(?:;|$)", re.IGNORECASE)


def _not_json_problem(request: Request, exc: RequestValidationError) -> Problem | None:
    """A JSON route's body sent with another content type (or none): say to send JSON,
    rather than that the body "should be a valid dictionary"."""
    content_type = request.headers.get("content-type", "")
    if _JSON_MEDIA_TYPE.match(content_type):
        return None
    if not any(tuple(error.get("loc", ())) == ("body",) for error in exc.errors()):
        return None
    sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    return Problem(
        422,
        "validation-error",
        _TITLES["validation-error"],
        f"The body must be a JSON object sent with Content-Type: application/json; this "
        f"request had {sent}.",
        extensions={"errors": [{"loc": ["body"], "message": "send JSON", "type": "content_type"}]},
    )


# Malformed JSON is a 422 validation problem, like a body of the wrong shape: FastAPI already
# answers JSON syntax errors with a 422, every JSON-body route documents its 422 as a problem,
# and a generated client then has one status for "the body you sent is unusable" (with
# `errors` naming what). What FastAPI answers with a bare 400 joins them here: bytes that are
# not text, nesting deeper than the parser's recursion, and integers too long to convert.
_JSON_SYNTAX_ERROR = "json_invalid"


def _malformed_json_problem(reason: str, *, position: int | None) -> Problem:
    where = f" at character {position}" if position is not None else ""
    message = f"{reason}{where}"
    return Problem(
        422,
        "validation-error",
        _TITLES["validation-error"],
        f"The request body could not be parsed as JSON: {message}.",
        extensions={"errors": [{"loc": ["body"], "message": message, "type": _JSON_SYNTAX_ERROR}]},
    )


def _json_syntax_problem(exc: RequestValidationError) -> Problem | None:
    """The problem for FastAPI's JSON syntax error, or None for any other validation error."""
    for error in exc.errors():
        if error.get("type") == _JSON_SYNTAX_ERROR:
            location = error.get("loc", ())
            position = location[1] if len(location) > 1 and isinstance(location[1], int) else None
            reason = str((error.get("ctx") or {}).get("error") or "invalid JSON")
            return _malformed_json_problem(reason, position=position)
    return None


def _unparsable_json_reason(exc: StarletteHTTPException) -> str | None:
    """Why a JSON body could not be parsed, for FastAPI's bare 400 ("There was an error
    parsing the body"), raised from what `json.loads` raised other than a syntax error; None
    for any other exception."""
    if exc.status_code != 400:
        return None
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "it nests arrays or objects deeper than the parser allows"
    if isinstance(cause, ValueError):  # what int() refuses: too many digits
        return f"a number in it has more than {sys.get_int_max_str_digits()} digits"
    return None


def _redis_unavailable_problem(retry_after_seconds: int) -> Problem:
    return Problem(
        503,
        "redis-unavailable",
        _TITLES["redis-unavailable"],
        "The job queue (Redis) cannot be reached; job routes are unavailable, "
        "clustering keeps working. Retry later.",
        headers={"Retry-After": str(retry_after_seconds)},
    )


class BodyTooLarge(HTTPException):
    """Raised while a capped request body is read. An `HTTPException` because FastAPI turns
    any other error raised while it reads a body into a 400."""

    slug = "body-too-large"

    def __init__(self, *, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"The request body exceeds {limit} bytes, the most this route accepts.",
        )


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def problem_document(
    request: HTTPConnection, problem: Problem, *, request_id: str | None
) -> dict[str, Any]:
    """The problem's JSON document for this request, without any absolute path (`instance`,
    the path the caller asked for, aside)."""
    document = problem.document(instance=request.url.path, request_id=request_id)
    return {key: value if key == "instance" else redacted(value) for key, value in document.items()}


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = problem_document(request, problem, request_id=request_id_of(request))
    headers = dict(problem.headers)
    request_id = request_id_of(request)
    if request_id is not None:
        # The 500 handler runs outside RequestIdMiddleware, so set the header here too.
        headers.setdefault("X-Request-ID", request_id)
    return JSONResponse(
        body, status_code=problem.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


# The methods a 405's Allow header may list (OPTIONS only if a route declares it).
_HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this request's path. Starlette's own 405 names
    only the methods of the first route whose path matched, and `GET /v1/jobs/{id}` and
    `DELETE /v1/jobs/{id}` are two routes; so each method is tried against the router."""
    routes = request.app.router.routes
    allowed = []
    for method in _HTTP_METHODS:
        probe = {
            "type": "http",
            "path": request.scope["path"],
            "root_path": request.scope.get("root_path", ""),
            "method": method,
        }
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.append(method)
    if "GET" in allowed and "HEAD" not in allowed:  # app.middleware.HeadAsGetMiddleware
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return allowed


def _domain_error_classes() -> list[type[Exception]]:
    """The base classes of every error that carries its own status and slug."""
    from dataset_store.errors import DatasetStoreError
    from model_store.errors import StoreError
    from uvac.errors import UvacError
    from worker.errors import WorkerError

    return [UvacError, StoreError, DatasetStoreError, WorkerError]


def register_problem_handlers(app: FastAPI, *, redis_retry_after_seconds: int = 5) -> None:
    """Install the handlers once; Starlette walks each exception's MRO to find them."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        problem = problem_from_exception(exc, retry_after_seconds=redis_retry_after_seconds)
        if isinstance(exc, RequestValidationError):
            problem = _not_json_problem(request, exc) or problem
        if problem.status == 405:
            allow = ", ".join(allowed_methods(request))
            problem = Problem(
                405,
                problem.slug,
                problem.title,
                f"{request.method} is not allowed here; this path supports {allow}.",
                {**problem.headers, "Allow": allow},
            )
        if problem.status >= 500 and problem.slug == "internal":
            logger.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return problem_response(request, problem)

    handled: list[type[Exception]] = [
        ApiProblem,
        RequestValidationError,
        StarletteHTTPException,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        *_domain_error_classes(),
    ]
    for exception_class in handled:
        app.add_exception_handler(exception_class, handle)
    # Anything else is a bug: a 500 problem (Starlette still re-raises it for the server log).
    app.add_exception_handler(Exception, handle)
