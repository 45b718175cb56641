"""Where torch runs: device choice and CPU thread counts.

Entry points (API, worker, CLI) call these once at start; the engine never changes global torch
settings on its own.
"""

from __future__ import annotations

import logging

import torch

__all__ = ["DEVICE_CHOICES", "configure_threads", "resolve_device"]

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
