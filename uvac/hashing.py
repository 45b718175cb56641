"""SHA-256 of a file, read in chunks (checkpoints, encoder weights and data set files), and of
arrays' shapes and bytes (training data for checkpoints, the cluster map's windows)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["arrays_sha256", "file_sha256"]

_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def arrays_sha256(arrays: Iterable[np.ndarray]) -> str:
    """The hex SHA-256 of each array's shape and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array)
        digest.update(str(contiguous.shape).encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()
