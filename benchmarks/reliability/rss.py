"""Peak resident memory of a process (or of it and its children), sampled every 10 ms on a
thread while a fuzz family runs."""

from __future__ import annotations

import threading

import psutil


class PeakRss:
    """Samples the resident memory of a process every 10 ms; with ``tree``, of it and its
    children together, as the sum of their PSS (forked children share their parent's pages,
    which their RSS would count again)."""

    def __init__(self, pid: int, *, tree: bool = False) -> None:
        self._process = psutil.Process(pid)
        self._tree = tree
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> int:
        if not self._tree:
            return int(self._process.memory_info().rss)
        total = 0
        for process in (self._process, *self._process.children(recursive=True)):
            try:
                total += process.memory_full_info().pss
            except psutil.Error:
                continue  # a work horse that just ended
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            try:
                self.peak = max(self.peak, self.current())
            except psutil.Error:
                return

    def __enter__(self) -> PeakRss:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
