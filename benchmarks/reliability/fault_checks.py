"""What every fault of `benchmarks.reliability.faults` records: its named checks (`Checks`),
and a poll for a condition with a deadline (`wait_for`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("benchmarks.reliability.faults")  # the name the check lines log under


class Checks:
    """Collects named checks; the fault survived when every one passed."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, what: str, ok: bool, observed: Any = None) -> bool:
        self.items.append({"check": what, "ok": bool(ok), "observed": observed})
        logger.info("  [%s] %s (%s)", "ok" if ok else "FAILED", what, observed)
        return bool(ok)

    @property
    def survived(self) -> bool:
        return bool(self.items) and all(item["ok"] for item in self.items)


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)
