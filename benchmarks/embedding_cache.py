"""An on-disk cache of encoder embeddings, so that benchmark reruns embed each clip once.

One safetensors file per (encoder identity, feature configuration, variant, item list):
``features`` (all windows, ``(N, 1, 1, D)``), ``activity`` (N,), ``offsets`` (items + 1,),
and a JSON sidecar with the item paths. A variant names anything else that changes the
embeddings (``"fp32"``, ``"bf16"``, ``"from-16k"``). The key hashes the encoder's weight
SHA-256 and version, so a new encoder never reads an old cache. Folder: ``var/bench-cache``
(ignored by git) unless ``UVAC_BENCH_CACHE`` names another.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from benchmarks.common import REPO_ROOT
from uvac.audio import Audio, DatasetItem, EmbeddingWindower, FeatureConfig, Windows, load_audio

__all__ = ["cached_embeddings"]

logger = logging.getLogger(__name__)

Loader = Callable[[DatasetItem, int], Audio]

# Part of every key: bump it when the code that cuts or embeds windows changes.
CACHE_FORMAT = 2


def _default_loader(item: DatasetItem, sample_rate: int) -> Audio:
    return load_audio(item.path, sample_rate=sample_rate)


def _cache_dir() -> Path:
    return Path(os.environ.get("UVAC_BENCH_CACHE", REPO_ROOT / "var" / "bench-cache"))


def cached_embeddings(
    items: Sequence[DatasetItem],
    feature_config: FeatureConfig,
    *,
    variant: str = "fp32",
    embedder: EmbeddingWindower | None = None,
    loader: Loader = _default_loader,
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, Windows]:
    """Item path -> its raw embedding windows (computed once, then read from the cache)."""
    embedder = embedder or EmbeddingWindower(feature_config)
    identity = embedder.encoder.identity.to_dict()
    key_source = json.dumps(
        [CACHE_FORMAT, identity, feature_config.to_dict(), variant, [str(i.path) for i in items]],
        sort_keys=True,
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:24]
    path = _cache_dir() / f"{feature_config.frontend}-{variant}-{key}.safetensors"
    if not path.is_file():
        _compute(items, feature_config, embedder, loader, context, path)
    tensors = load_file(str(path))
    paths = json.loads(path.with_suffix(".json").read_text())["paths"]
    offsets = tensors["offsets"].tolist()
    result: dict[str, Windows] = {}
    for index, item_path in enumerate(paths):
        start, end = offsets[index], offsets[index + 1]
        result[item_path] = Windows(
            features=tensors["features"][start:end],
            mask=torch.ones(end - start, 1),
            starts_s=[0.0] * (end - start),  # not kept: the studies use no timelines
            ends_s=[0.0] * (end - start),
            activity=tensors["activity"][start:end],
        )
    return result


def _compute(
    items: Sequence[DatasetItem],
    feature_config: FeatureConfig,
    embedder: EmbeddingWindower,
    loader: Loader,
    context: Callable[[], contextlib.AbstractContextManager[Any]],
    path: Path,
) -> None:
    features, activity, offsets = [], [], [0]
    for item in tqdm(items, desc=f"embedding ({path.stem})", unit="clip"):
        with context():
            windows, _ = embedder.raw_windows_batch([loader(item, feature_config.sample_rate)])
        features.append(windows.features.float())
        activity.append(windows.activity)
        offsets.append(offsets[-1] + len(windows))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "features": torch.cat(features).contiguous(),
            "activity": torch.cat(activity).contiguous(),
            "offsets": torch.tensor(offsets, dtype=torch.int64),
        },
        str(path),
    )
    path.with_suffix(".json").write_text(json.dumps({"paths": [str(i.path) for i in items]}))
    logger.info("cached %d clips' embeddings in %s", len(items), path.name)
