"""ASGI middleware: request ids, the API key check, HEAD beside GET, and a body size cap for
the routes that do not stream.

Request ids: every response carries `X-Request-ID`, every log line its value.

An incoming `X-Request-ID` is honoured when it is short and printable (so a caller can
trace a request through its own systems); otherwise a new id is generated. The id is put in
`scope["state"]["request_id"]` too, so error handlers that run outside this middleware
(the 500 handler) can still read it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import authenticate, presented_key
from app.logging import request_id_var
from app.page_sessions import PageSession, page_session, session_cookie
from app.problems import ApiProblem, BodyTooLarge, problem_from_exception, problem_response
from service_config import Settings

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def choose_request_id(incoming: str | None) -> str:
    """The caller's id when it is safe to echo and log, else a fresh one."""
    if incoming and _ACCEPTABLE_REQUEST_ID.match(incoming):
        return incoming
    return new_request_id()


class RequestIdMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streamed bodies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = choose_request_id(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        # Not reset afterwards: each request runs in its own task (its own context), and the
        # 500 handler, which runs after this middleware has unwound, still logs with the id.
        request_id_var.set(request_id)
        started = time.perf_counter()
        status_code = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            logger.info(
                "%s %s -> %d",
                scope.get("method"),
                scope.get("path"),
                status_code,
                extra={"duration_ms": round((time.perf_counter() - started) * 1000, 3)},
            )


class ApiKeyMiddleware:
    """Refuses a request without a valid API key (app/auth.py) before anything reads its
    body; requests to ``open_paths`` (health, metrics, docs) and under ``open_prefixes`` (the
    docs pages' scripts and styles) pass."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        open_paths: frozenset[str],
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.settings = settings
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.settings.auth_enabled
            or scope.get("path") in self.open_paths
            or str(scope.get("path", "")).startswith(self.open_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        presented = presented_key(
            api_key=headers.get("x-api-key"), authorization=headers.get("authorization")
        )
        if presented is None:
            session, token_presented = page_session(self.settings, scope)
            if session is not None:
                await self._as_page(session, scope, receive, send)
                return
            if token_presented:
                refusal = ApiProblem(
                    status=401,
                    slug="unauthenticated",
                    detail="The page link has expired or does not open this page; ask "
                    "POST /v1/models/{name}/versions/{version}/page-links for a new one.",
                )
                response = problem_response(Request(scope), problem_from_exception(refusal))
                await response(scope, receive, send)
                return
        try:
            authenticate(self.settings, presented)
        except ApiProblem as refusal:
            response = problem_response(Request(scope), problem_from_exception(refusal))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _as_page(
        self, session: PageSession, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve a request a page token opened (app/page_sessions.py); a token that came in
        the URL is handed back as the page's cookie."""
        scope.setdefault("state", {})["page_identity"] = session.identity

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.from_query:
                MutableHeaders(scope=message).append("set-cookie", session_cookie(session))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class HeadAsGetMiddleware:
    """HEAD on every path a GET route answers (monitors and proxies probe with it): the GET
    response, headers and all, without its body. Other HEAD requests pass as they are."""

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        if not any(route.matches(as_get)[0] is Match.FULL for route in self.router.routes):
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(as_get, receive, send_without_body)


class BodySizeLimitMiddleware:
    """Caps request bodies of every route except the upload routes (which stream and cap
    their multipart bodies themselves, app/uploads.py): a declared `Content-Length` over the
    cap is answered 413 before anything is read, a chunked body is cut off while it arrives.
    FastAPI would otherwise read a JSON body of any size into memory."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, exempt_paths: frozenset[str]) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                response = problem_response(
                    Request(scope), problem_from_exception(BodyTooLarge(limit=limit))
                )
                await response(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit=limit)
            return message

        await self.app(scope, counting_receive, send)
