"""The paper's Table I layout, rendered as markdown or plain text.

Columns: Data set | K | Method | Acc % | NMI | Silhouette | DBI | CHI x1e3. As in the paper, the
data set and K are printed only on the first row of their group. Accuracy is printed as a
percentage, CHI in thousands; a metric that is missing or undefined is an empty cell.
Silhouette, DBI and CHI depend on the space they are computed in, so every table names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

TableStyle = Literal["markdown", "plain"]

HEADER = ("Data set", "K", "Method", "Acc %", "NMI", "Silhouette", "DBI", "CHI x1e3")
# Numbers are right-aligned, names left-aligned (plain text and markdown alike).
_RIGHT_ALIGNED = (False, True, False, True, True, True, True, True)


@dataclass(frozen=True, kw_only=True)
class TableRow:
    """One method on one data set. `accuracy` is a fraction in [0, 1]; None = empty cell."""

    dataset: str
    k: int
    method: str
    accuracy: float | None = None
    nmi: float | None = None
    silhouette: float | None = None
    dbi: float | None = None
    chi: float | None = None


def _number(value: float | None, *, scale: float = 1.0) -> str:
    return "" if value is None else f"{value * scale:.2f}"


def _cells(row: TableRow, *, show_group: bool) -> tuple[str, ...]:
    return (
        row.dataset if show_group else "",
        str(row.k) if show_group else "",
        row.method,
        _number(row.accuracy, scale=100.0),
        _number(row.nmi),
        _number(row.silhouette),
        _number(row.dbi),
        _number(row.chi, scale=1e-3),
    )


def _grid(rows: Sequence[TableRow]) -> list[tuple[str, ...]]:
    grid: list[tuple[str, ...]] = []
    previous_group: tuple[str, int] | None = None
    for row in rows:
        group = (row.dataset, row.k)
        grid.append(_cells(row, show_group=group != previous_group))
        previous_group = group
    return grid


def render_table(rows: Sequence[TableRow], *, style: TableStyle = "markdown") -> str:
    """The rows in Table I layout (no trailing newline).

    >>> print(render_table([TableRow(dataset="fsdd", k=10, method="K-means", accuracy=0.184,
    ...                              nmi=0.1, silhouette=0.13, dbi=2.04, chi=690.0)]))
    | Data set | K | Method | Acc % | NMI | Silhouette | DBI | CHI x1e3 |
    | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |
    | fsdd | 10 | K-means | 18.40 | 0.10 | 0.13 | 2.04 | 0.69 |
    """
    grid = _grid(rows)
    if style == "markdown":
        separator = ["---:" if right else "---" for right in _RIGHT_ALIGNED]
        lines = [_markdown_line(HEADER), _markdown_line(separator)]
        lines += [_markdown_line(cells) for cells in grid]
        return "\n".join(lines)
    if style == "plain":
        return _plain(grid)
    raise ValueError(f"unknown table style {style!r}; use 'markdown' or 'plain'")


def _markdown_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _plain(grid: list[tuple[str, ...]]) -> str:
    table = [HEADER, *grid]
    widths = [max(len(line[column]) for line in table) for column in range(len(HEADER))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, _RIGHT_ALIGNED, strict=True)
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(HEADER), rule, *(line(cells) for cells in grid)])


def render_titled_table(
    rows: Sequence[TableRow], *, title: str, style: TableStyle = "markdown"
) -> str:
    """A table preceded by a title line (a markdown heading in markdown style)."""
    heading = f"### {title}" if style == "markdown" else title
    return f"{heading}\n\n{render_table(rows, style=style)}"
