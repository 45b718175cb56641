"""Where torch runs: device choice and CPU thread counts.

Entry points (API, worker, CLI) call these once at start; the engine never changes global torch
settings on its own, only within the phases a caller's `ThreadPolicy` names.

The thread policy (`choose_thread_policy`): a host's cores are shared by the service's torch
processes on it (``processes``: the API and the workers), so each process's share is
``cores // processes`` (at least 1) and together they never ask for more threads than there are
cores. Within that share, per workload:

- ``encoder``: a pretrained encoder's pass over recordings, and other work made of large
  matrix products (fitting the novelty score), uses the whole share; when a small network's
  training leaves part of the share free, the novelty fit runs beside it instead, on the
  training's count (`uvac.training.pipeline`);
- ``network``: training or running a convolutional network on spectrograms uses the share;
- ``small_network``: the perceptrons on embeddings train with ``SMALL_NETWORK_THREADS``, the
  count measured fastest (benchmarks/README.md, the busy-host figures): each of their
  operations is so small that a second thread mostly waits, and on a busy host it waits for
  a descheduled thread;
- ``serving``: the API's inference thread uses the share.

Any workload's count can be fixed instead (``overrides``; the service's settings
``UVAC_ENCODER_THREADS``, ``UVAC_TRAINING_THREADS`` and, for every workload at once,
``UVAC_TORCH_THREADS``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "DEVICE_CHOICES",
    "SMALL_NETWORK_THREADS",
    "WORKLOADS",
    "ThreadPolicy",
    "Workload",
    "available_cores",
    "choose_thread_policy",
    "configure_threads",
    "resolve_device",
]

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")

# torch accepts the inter-op thread count only once per process, before any parallel work.
_interop_threads_set = False


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` (CUDA when present, else the CPU), ``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``).

    Raises ValueError for an unknown name or for CUDA on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        return torch.device(name)
    raise ValueError(f"unknown device {name!r}; expected one of {', '.join(DEVICE_CHOICES)}")


def configure_threads(n_threads: int, *, interop_threads: int | None = None) -> None:
    """Set torch's intra-op thread count (every call) and its inter-op count (first call only).

    ``interop_threads`` defaults to ``n_threads``. Later attempts to change the inter-op count
    are ignored with a debug message, because torch raises once parallel work has started.
    """
    global _interop_threads_set
    if n_threads < 1:
        raise ValueError(f"n_threads must be at least 1, got {n_threads}")
    torch.set_num_threads(n_threads)
    if _interop_threads_set:
        return
    _interop_threads_set = True
    try:
        torch.set_num_interop_threads(interop_threads or n_threads)
    except RuntimeError as error:
        logger.debug("inter-op thread count left unchanged: %s", error)


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Leave torch's intra-op thread count as the block found it: a third-party package may
    set it when imported (silero-vad sets one thread), and every later torch call of the
    process would run on that count."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


Workload = Literal["encoder", "network", "small_network", "serving"]
WORKLOADS: tuple[Workload, ...] = ("encoder", "network", "small_network", "serving")
SMALL_NETWORK_THREADS = 1


@dataclass(frozen=True)
class ThreadPolicy:
    """Intra-op threads per workload, for one process (`choose_thread_policy`)."""

    encoder: int
    network: int
    small_network: int
    serving: int

    def threads(self, workload: Workload) -> int:
        count: int = getattr(self, workload)
        return count

    def most(self) -> int:
        """The largest count of any workload (the size of a native pool shared by all)."""
        return max(self.threads(workload) for workload in WORKLOADS)

    @contextlib.contextmanager
    def using(self, workload: Workload) -> Iterator[int]:
        """torch's intra-op threads set for ``workload`` within the block, restored after."""
        previous = torch.get_num_threads()
        count = self.threads(workload)
        torch.set_num_threads(count)
        try:
            yield count
        finally:
            torch.set_num_threads(previous)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def choose_thread_policy(
    *,
    cores: int,
    processes: int = 1,
    overrides: Mapping[str, int | None] | None = None,
) -> ThreadPolicy:
    """The thread count of each workload for one of ``processes`` torch processes sharing
    ``cores`` (the rules in the module docstring); ``overrides`` fix a workload's count."""
    if cores < 1 or processes < 1:
        raise ValueError(f"need at least one core and one process, got {cores} and {processes}")
    share = max(1, cores // processes)
    policy = ThreadPolicy(
        encoder=share,
        network=share,
        small_network=min(SMALL_NETWORK_THREADS, share),
        serving=share,
    )
    fixed = {workload: count for workload, count in (overrides or {}).items() if count}
    for workload, count in fixed.items():
        if workload not in WORKLOADS or count < 1:
            raise ValueError(f"bad thread override {workload}={count}")
    return dataclasses.replace(policy, **fixed)
