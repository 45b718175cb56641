"""JSON log lines for the worker process (configured only by the entry point)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "JsonLineFormatter", "configure_logging"]

# Attributes every LogRecord has (and uvicorn's ANSI-coloured copy of the message); anything
# else was passed through `extra=` and is logged.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName", "color_message"}
)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, `context()`, extras.

    The API and the workers share this format; each adds its own context fields.
    """

    def context(self, record: logging.LogRecord) -> dict[str, Any]:
        return {}

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.context(record),
        }
        for key, value in vars(record).items():
            if key not in document and key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class JsonFormatter(JsonLineFormatter):
    """The worker's lines carry the process id and the RQ job id."""

    def context(self, record: logging.LogRecord) -> dict[str, Any]:
        # RQ sets RQ_JOB_ID in the work horse, so every line of a job can be found.
        return {"pid": record.process, "job_id": os.environ.get("RQ_JOB_ID")}


def configure_logging(*, level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
