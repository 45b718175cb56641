"""How many streams are open: at most `UVAC_MAX_STREAMS`, counted in a Prometheus gauge."""

from __future__ import annotations

from prometheus_client import Gauge


class StreamSlots:
    """A counter of open streams with a ceiling. Single event loop: no lock needed."""

    def __init__(self, *, limit: int, gauge: Gauge) -> None:
        self.limit = limit
        self._open = 0
        self._gauge = gauge
        self._gauge.set(0)

    @property
    def open(self) -> int:
        return self._open

    def try_acquire(self) -> bool:
        if self._open >= self.limit:
            return False
        self._open += 1
        self._gauge.set(self._open)
        return True

    def release(self) -> None:
        self._open -= 1
        self._gauge.set(self._open)
