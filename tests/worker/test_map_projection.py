"""The cluster map's projection, remembered in the embedding cache: a second map of the same
windows runs no t-SNE and places them where the first did; other windows are placed anew."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reports.cluster_map import project_windows
from uvac.audio import EmbeddingCache
from worker import cluster_map
from worker.cluster_map import remembered_projection


@pytest.fixture
def projections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The row count of each projection actually computed."""
    computed: list[int] = []

    def counted(embeddings: np.ndarray, **kwargs: Any):
        computed.append(embeddings.shape[0])
        return project_windows(embeddings, **kwargs)

    monkeypatch.setattr(cluster_map, "project_windows", counted)
    return computed


def windows(seed: int, rows: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(size=(rows // 2, 8)), 5 + rng.normal(size=(rows // 2, 8))])


def test_the_same_windows_are_placed_once(tmp_path: Path, projections: list[int]) -> None:
    project = remembered_projection(EmbeddingCache(tmp_path / "cache"))
    first, how = project(windows(0), seed=0, n_jobs=1)
    # Another job, another cache object on the same folder.
    again, how_again = remembered_projection(EmbeddingCache(tmp_path / "cache"))(
        windows(0), seed=0, n_jobs=1
    )
    assert projections == [40]
    np.testing.assert_array_equal(first, again)
    assert how == how_again and how["method"] == "openTSNE"


def test_other_windows_or_another_seed_are_placed_anew(
    tmp_path: Path, projections: list[int]
) -> None:
    project = remembered_projection(EmbeddingCache(tmp_path / "cache"))
    project(windows(0), seed=0, n_jobs=1)
    project(windows(1), seed=0, n_jobs=1)
    project(windows(0, rows=30), seed=0, n_jobs=1)
    project(windows(0), seed=1, n_jobs=1)
    assert projections == [40, 40, 30, 40]


def test_a_damaged_projection_is_computed_again(tmp_path: Path, projections: list[int]) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    project = remembered_projection(cache)
    first, _ = project(windows(0), seed=0, n_jobs=1)
    (path,) = cache.root.glob("*/*.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))

    again, _ = project(windows(0), seed=0, n_jobs=1)
    assert projections == [40, 40]
    np.testing.assert_allclose(first, again)  # t-SNE is deterministic for a seed
