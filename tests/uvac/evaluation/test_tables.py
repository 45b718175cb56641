"""Table I rendering."""

from __future__ import annotations

import doctest

import pytest

import uvac.evaluation.tables
from uvac.evaluation.tables import TableRow, render_table, render_titled_table

ROWS = [
    TableRow(
        dataset="fsdd",
        k=10,
        method="labels as clusters",
        accuracy=1.0,
        nmi=1.0,
        silhouette=-0.04,
        dbi=5.56,
        chi=100.0,
    ),
    TableRow(
        dataset="fsdd",
        k=10,
        method="K-means",
        accuracy=0.184,
        nmi=0.1,
        silhouette=0.13,
        dbi=2.04,
        chi=690.0,
    ),
    TableRow(
        dataset="esc10",
        k=5,
        method="cat-uvac",
        accuracy=None,
        nmi=None,
        silhouette=0.79,
        dbi=None,
        chi=14760.0,
    ),
]


def test_markdown_table_has_paper_columns_grouping_and_scaled_numbers() -> None:
    lines = render_table(ROWS).splitlines()

    assert lines[0] == "| Data set | K | Method | Acc % | NMI | Silhouette | DBI | CHI x1e3 |"
    assert len(lines) == 2 + len(ROWS)
    assert lines[2] == "| fsdd | 10 | labels as clusters | 100.00 | 1.00 | -0.04 | 5.56 | 0.10 |"
    # same data set and K: the group cells are left blank, as in the paper
    assert lines[3] == "|  |  | K-means | 18.40 | 0.10 | 0.13 | 2.04 | 0.69 |"
    # a new group prints its name again; missing metrics are empty cells
    assert lines[4] == "| esc10 | 5 | cat-uvac |  |  | 0.79 |  | 14.76 |"


def test_plain_table_aligns_columns() -> None:
    lines = render_table(ROWS, style="plain").splitlines()

    assert lines[0].split() == [
        "Data",
        "set",
        "K",
        "Method",
        "Acc",
        "%",
        "NMI",
        "Silhouette",
        "DBI",
        "CHI",
        "x1e3",
    ]
    assert set(lines[1]) == {"-", " "}
    # right-aligned numbers end in the same column
    acc_end = lines[0].index("Acc %") + len("Acc %")
    assert lines[2][:acc_end].endswith("100.00")
    assert lines[3][:acc_end].endswith("18.40")


def test_titled_table_and_unknown_style() -> None:
    assert render_titled_table(ROWS, title="on features").startswith("### on features\n\n| Data")
    assert render_titled_table(ROWS, title="t", style="plain").startswith("t\n\nData set")
    with pytest.raises(ValueError, match="style"):
        render_table(ROWS, style="html")  # type: ignore[arg-type]


def test_docstring_examples_hold() -> None:
    results = doctest.testmod(uvac.evaluation.tables)
    assert results.attempted > 0 and results.failed == 0
