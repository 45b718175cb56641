"""The long-lived objects one app instance works with, opened and closed by its lifespan."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis

from app.batching import MicroBatcher
from app.metrics import AppMetrics
from app.serving import LoadedModel, ModelHolder
from app.streaming.slots import StreamSlots
from dataset_store import DatasetStore, open_dataset_store
from model_store import AnyModelStore, open_model_store
from service_config import Settings
from uvac.audio import DecodeSlots, configure_encoder_precision
from uvac.device import (
    available_cores,
    choose_thread_policy,
    configure_threads,
    resolve_device,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    metrics: AppMetrics
    store: AnyModelStore
    datasets: DatasetStore
    holder: ModelHolder
    batcher: MicroBatcher
    redis: redis.Redis
    dataset_uploads: asyncio.Semaphore
    decode_slots: DecodeSlots
    streams: StreamSlots  # live streams open (WS /v1/stream)


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for RQ (bytes responses); it connects lazily, on the first command."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
    )


@asynccontextmanager
async def open_services(settings: Settings, *, metrics: AppMetrics) -> AsyncIterator[Services]:
    """Open everything the routes need; the served model is loaded before this yields."""
    threads = choose_thread_policy(
        cores=available_cores(),
        processes=settings.host_processes,
        overrides=settings.thread_overrides(),
    )
    configure_threads(threads.serving)
    configure_encoder_precision(settings.encoder_precision)
    device = str(resolve_device(settings.device))
    # A short lock wait: an alias move must not hold a request for a minute.
    store = open_model_store(
        settings.model_store_location,
        s3=settings.s3_options(),
        cache_dir=settings.cache_path / "models",
        cache_max_bytes=settings.cache_max_bytes,
        revalidate_s=settings.s3_revalidate_seconds,
        lock_timeout_s=5.0,
    )
    holder = ModelHolder(
        store=store,
        serve_ref=settings.serve_model,
        device=device,
        poll_seconds=settings.model_poll_seconds,
        cache_size=settings.model_cache_size,
    )

    def publish_model_info(loaded: LoadedModel) -> None:
        version = loaded.version
        metrics.set_served_model(
            name=version.name, version=version.version, ref=version.ref, sha256=version.sha256
        )

    holder.on_swap(publish_model_info)
    lanes = settings.inference_lanes or threads.serving
    batcher = MicroBatcher(
        lanes=lanes,
        lane_setup=functools.partial(configure_threads, max(1, threads.serving // lanes)),
        alone_setup=functools.partial(configure_threads, threads.serving),
        max_batch=settings.inference_max_batch,
        max_wait_s=settings.inference_max_wait_ms / 1000.0,
        long_clip_seconds=settings.inference_long_clip_seconds,
        windows_per_step=settings.inference_windows_per_step,
        observer=metrics.observe_batch,
        start_observer=metrics.observe_early_start,
    )
    client = connect_redis(settings)
    decode_slots = DecodeSlots(settings.max_concurrent_decodes)
    datasets = open_dataset_store(
        settings.datasets_location,
        s3=settings.s3_options(),
        cache_dir=settings.cache_path / "datasets",
        cache_max_bytes=settings.cache_max_bytes,
    )
    datasets.prepare()
    await batcher.start()
    await holder.start()
    logger.info(
        "API ready: serving %s on %s (%s)",
        settings.serve_model,
        device,
        "model loaded" if holder.current else f"no model: {holder.unavailable_reason}",
    )
    try:
        yield Services(
            settings=settings,
            metrics=metrics,
            store=store,
            datasets=datasets,
            holder=holder,
            batcher=batcher,
            redis=client,
            dataset_uploads=asyncio.Semaphore(settings.max_concurrent_dataset_uploads),
            decode_slots=decode_slots,
            streams=StreamSlots(limit=settings.max_streams, gauge=metrics.streams_open),
        )
    finally:
        decode_slots.close()
        await holder.close()
        await batcher.close()
        client.close()
