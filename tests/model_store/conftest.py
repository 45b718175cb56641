from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from model_store import ModelStore, ModelVersion


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models", lock_timeout_s=10)


PublishFn = Callable[..., ModelVersion]


@pytest.fixture
def publish(store: ModelStore) -> PublishFn:
    """Publish a small fake artifact; returns the new ModelVersion."""

    def _publish(
        name: str = "scenes", *, payload: bytes = b"weights", **metadata: object
    ) -> ModelVersion:
        with store.publish(name, metadata=dict(metadata)) as staging:
            (staging / "weights.safetensors").write_bytes(payload)
            (staging / "model.json").write_text('{"model_type": "cat-uvac", "n_clusters": 4}')
        return staging.version

    return _publish
