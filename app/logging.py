"""JSON log lines that carry the id of the request being served.

The request id lives in a context variable set by `app.middleware.RequestIdMiddleware`;
`RequestIdFilter` copies it onto every record, so lines logged deep inside a route (or by
uvicorn's access logger) can be joined with the response's `X-Request-ID`.
Logging is configured only at entry points (`configure_logging`, called by `create_app()`
when uvicorn builds the app), never on import.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from service_config import JsonLineFormatter

request_id_var: ContextVar[str | None] = ContextVar("uvac_request_id", default=None)
# Set by the live-stream handler (app/streaming) for the lines of that stream.
stream_id_var: ContextVar[str | None] = ContextVar("uvac_stream_id", default=None)


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id` (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        stream_id = stream_id_var.get()
        if stream_id is not None:
            record.stream_id = stream_id
        return True


class JsonFormatter(JsonLineFormatter):
    """The API's lines carry the id of the request being served (and of a live stream)."""

    def context(self, record: logging.LogRecord) -> dict[str, Any]:
        context = {"request_id": getattr(record, "request_id", None) or request_id_var.get()}
        stream_id = getattr(record, "stream_id", None) or stream_id_var.get()
        if stream_id is not None:
            context["stream_id"] = stream_id
        return context


def configure_logging(*, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines (call from entry points only)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's loggers bring their own handlers; route them through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
    # Every request is logged once, by RequestIdMiddleware (with its id and duration); the
    # access logger would log each one a second time, however uvicorn was started.
    logging.getLogger("uvicorn.access").disabled = True
