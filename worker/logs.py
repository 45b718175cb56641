"""JSON log lines for the worker process (configured only by the entry point)."""

from __future__ import annotations

import logging
import os
from typing import Any

from service_config import JsonLineFormatter

__all__ = ["JsonFormatter", "configure_logging"]


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
