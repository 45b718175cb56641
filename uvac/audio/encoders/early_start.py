"""A convolutional stack run on the part of a window already heard, then finished on the rest.

A live stream's window is known sample by sample, but its embedding is only due once the
last sample has arrived. For a stack of 3x3 convolutions (padding 1, each followed by batch
norm and ReLU, some by a max pooling) that ends in a maximum over time, most of the work on
the first rows of the input does not depend on the last ones: an output row needs only its
input rows one above and one below (after pooling, the two rows it pools). `start_rows`
computes, layer by layer, every output row the heard rows decide, keeps the few input rows
the unfinished ones still need, and reduces the finished last-layer rows to their maximum;
`finish_rows` computes the remaining rows from the rest of the input and gives what the
whole stack gives on the whole input. The answer is the full pass's, up to the float rounding
of convolutions computed over other row ranges: the rows are the same sums of the same
products.

The rows the heard input finishes at each layer (``heard`` input rows, pooling ``p``): the
convolution's outputs ``0 .. heard - 2`` (the next one needs a row not yet heard), of which
the pooling takes whole groups of ``p``. The first unfinished output row is therefore
``((heard - 1) // p) * p``, and the input rows it needs start one above it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["ConvLayer", "RowsStarted", "finish_rows", "run_steps", "start_rows"]

T = TypeVar("T")


@dataclass(frozen=True)
class ConvLayer:
    """One layer of the stack: a 3x3 convolution (padding 1, no bias), its batch norm and
    ReLU, then a ``pool`` x ``pool`` max pooling when ``pool`` is above 1."""

    conv: nn.Conv2d
    norm: nn.BatchNorm2d
    pool: int


@dataclass(frozen=True)
class RowsStarted:
    """What `start_rows` computed on the heard rows, all that `finish_rows` needs."""

    heard_rows: int  # input rows the start saw
    carried: tuple[Tensor, ...]  # per layer, its input rows the unfinished outputs need
    maximum: Tensor | None  # (B, C) the finished last-layer rows' maximum; None: no row yet


def _first_unfinished(heard: int, pool: int) -> int:
    """The first convolution output row that ``heard`` input rows do not finish, rounded
    down to a whole pooling group (module docstring)."""
    return max(0, (heard - 1) // pool * pool)


def _layer(layer: ConvLayer, rows: Tensor, *, pad_top: int, pad_bottom: int) -> Tensor:
    """The layer on input ``rows (B, C, R, F)``, padded as the full input would be there."""
    if rows.shape[2] + pad_top + pad_bottom < 3:  # no output row
        out = rows.new_zeros(rows.shape[0], layer.conv.out_channels, 0, rows.shape[3])
    else:
        padded = F.pad(rows, (1, 1, pad_top, pad_bottom))
        out = F.relu(layer.norm(F.conv2d(padded, layer.conv.weight)))
    if layer.pool == 1:
        return out
    if out.shape[2] < layer.pool:  # pooling an empty range
        return out.new_zeros(out.shape[0], out.shape[1], 0, out.shape[3] // layer.pool)
    return F.max_pool2d(out, kernel_size=layer.pool)


def _time_maximum(rows: Tensor) -> Tensor | None:
    """``(B, C, R, F)`` -> ``(B, C)``: the mean over frequency, its maximum over rows."""
    return rows.mean(dim=3).amax(dim=2) if rows.shape[2] else None


def start_rows(
    layers: Sequence[ConvLayer],
    heard: Tensor,
    *,
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Generator[None, None, RowsStarted]:
    """The stack's work on the first rows of its input, ``heard (B, 1, R, F)``, one layer per
    step (``next()``), so that a caller can serve more urgent work between layers; the
    result is the generator's return value (`run_steps` runs them all). Each step runs
    inside a fresh ``context()``: the next step may run on another thread."""
    carried = []
    rows = heard
    maximum: Tensor | None = None
    for index, layer in enumerate(layers):
        with context():
            unfinished = _first_unfinished(rows.shape[2], layer.pool)
            # A copy: a view would keep the layer's whole activation alive until the finish.
            carried.append(rows[:, :, max(0, unfinished - 1) :].clone())
            # Input rows 0 .. unfinished, the top padded as in the full pass: outputs up to
            # unfinished - 1.
            rows = _layer(layer, rows[:, :, : unfinished + 1], pad_top=1, pad_bottom=0)
            maximum = _time_maximum(rows) if index == len(layers) - 1 else None
        yield
    return RowsStarted(heard_rows=heard.shape[2], carried=tuple(carried), maximum=maximum)


def run_steps(steps: Generator[None, None, T]) -> T:
    """Every step of ``steps``; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return cast(T, stop.value)


def finish_rows(layers: Sequence[ConvLayer], started: RowsStarted, rest: Tensor) -> Tensor:
    """The stack's output ``(B, C)`` on the whole input: ``started`` on its first rows, then
    the ``rest (B, 1, R', F)`` of them."""
    heard = started.heard_rows
    rows = rest
    for layer, carried in zip(layers, started.carried, strict=True):
        unfinished = _first_unfinished(heard, layer.pool)
        # Input rows from unfinished - 1 (or 0) to the end: outputs unfinished .. the end.
        rows = _layer(
            layer, torch.cat([carried, rows], dim=2), pad_top=int(unfinished == 0), pad_bottom=1
        )
        heard = unfinished // layer.pool
    rest_maximum = _time_maximum(rows)
    if rest_maximum is None:
        raise ValueError("the rest of the input finished no output row")
    if started.maximum is None:
        return rest_maximum
    return torch.maximum(started.maximum, rest_maximum)
