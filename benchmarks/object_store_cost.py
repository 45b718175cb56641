"""What S3 costs a model: publish, cold load and warm load of the bundled model, S3 vs disk.

A load is what the API does before serving a version: ``load_verified`` (every SHA-256 of
the version checked; on S3 the first load also downloads it into this host's cache) and
``load_trained_model``. Cold on S3 means an empty cache folder; the folder store's files
are in the page cache after the first run, like a warm disk (it is the disk figure the warm
cache is held against). Warm loads are two: within ``UVAC_S3_REVALIDATE_SECONDS`` of the
host's last read of the version (the API's case: it reads the version just before loading
it; nothing is asked of S3), and after it (``revalidated``: the version's record is read
again while the cached files are hashed).
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import BUNDLE_DIR, BUNDLE_MODEL_FILES
from model_store import AnyModelStore, open_model_store
from object_storage import S3Options
from uvac.training import load_trained_model

CACHE_BYTES = 1 << 30


def _publish(store: AnyModelStore) -> tuple[float, str]:
    began = time.perf_counter()
    with store.publish("scenes", metadata={"benchmark": "object_store"}) as staging:
        for name in BUNDLE_MODEL_FILES:
            shutil.copyfile(BUNDLE_DIR / name, staging / name)
    return time.perf_counter() - began, staging.version.ref


def _load(store: AnyModelStore, ref: str) -> float:
    began = time.perf_counter()
    version = store.load_verified(ref)
    load_trained_model(version.path)
    return time.perf_counter() - began


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def measure_costs(*, s3_url: str, options: S3Options, work: Path, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    disk = open_model_store(
        (work / "disk-models").as_uri(), cache_dir=work / "unused", cache_max_bytes=0
    )
    publisher = open_model_store(
        s3_url, s3=options, cache_dir=work / "publisher", cache_max_bytes=CACHE_BYTES
    )
    publish_disk, publish_s3 = [], []
    for _ in range(repeats):
        seconds, disk_ref = _publish(disk)
        publish_disk.append(seconds)
        seconds, s3_ref = _publish(publisher)
        publish_s3.append(seconds)
    _load(disk, disk_ref)  # the import and first-touch costs, for both sides alike
    cold_disk, cold_s3, warm, revalidated = [], [], [], []
    for index in range(repeats):
        cold_disk.append(_load(disk, disk_ref))
        reader = open_model_store(
            s3_url, s3=options, cache_dir=work / f"reader{index}", cache_max_bytes=CACHE_BYTES
        )
        cold_s3.append(_load(reader, s3_ref))
        warm.append(_load(reader, s3_ref))
        checking = open_model_store(
            s3_url,
            s3=options,
            cache_dir=work / f"reader{index}",
            cache_max_bytes=CACHE_BYTES,
            revalidate_s=0.0,
        )
        _load(checking, s3_ref)  # its first read; the next one is a revalidation
        revalidated.append(_load(checking, s3_ref))
    weights = sum((BUNDLE_DIR / name).stat().st_size for name in BUNDLE_MODEL_FILES)
    return {
        "model": "app/default_model/bundle",
        "model_bytes": weights,
        "repeats": repeats,
        "publish_disk_s": _median(publish_disk),
        "publish_s3_s": _median(publish_s3),
        "cold_load_disk_s": _median(cold_disk),
        "cold_load_s3_s": _median(cold_s3),
        "warm_load_cache_s": _median(warm),
        "warm_load_revalidated_s": _median(revalidated),
        "runs": {
            "publish_disk_s": [round(v, 4) for v in publish_disk],
            "publish_s3_s": [round(v, 4) for v in publish_s3],
            "cold_load_disk_s": [round(v, 4) for v in cold_disk],
            "cold_load_s3_s": [round(v, 4) for v in cold_s3],
            "warm_load_cache_s": [round(v, 4) for v in warm],
            "warm_load_revalidated_s": [round(v, 4) for v in revalidated],
        },
    }
