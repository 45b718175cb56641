"""One JSON object per log line, for the API and the workers alike (configured only by
entry points; each side adds its own context fields by subclassing the formatter)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonLineFormatter"]

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
