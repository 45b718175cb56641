"""Recordings -> their raw encoder embeddings, read through the embedding cache.

`embed_items` is the one way in for everything that needs a data set's embeddings (training,
sweeps, evaluation, matching cluster identities, distillation's teacher pass, novelty
fitting, the cluster map): each item is looked up in the `EmbeddingCache` by its content
digest and the embedder's settings; the misses are decoded and embedded in batches of
``batch_clips`` clips per encoder call and stored. Without a cache every item is a miss, as
before the cache existed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from uvac.audio.datasets import DatasetItem
from uvac.audio.decoding import Audio, load_audio
from uvac.audio.embedding_cache import CachedEmbedding, EmbeddingCache
from uvac.audio.embedding_windows import EmbeddingWindower
from uvac.audio.windows import Windows
from uvac.errors import AudioError, RunCancelled
from uvac.hashing import file_sha256

__all__ = ["BATCH_CLIPS", "EmbeddedItem", "embed_items"]

logger = logging.getLogger(__name__)

BATCH_CLIPS = 16  # clips per encoder call


@dataclass(frozen=True)
class EmbeddedItem:
    """One item's raw embedding windows, or why it has none (it does not decode)."""

    item: DatasetItem
    windows: Windows | None  # raw: features (W, 1, 1, D), not standardised
    duration_s: float
    error: AudioError | None = None


def embed_items(
    items: Sequence[DatasetItem],
    *,
    embedder: EmbeddingWindower,
    cache: EmbeddingCache | None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_clips: int = BATCH_CLIPS,
) -> Iterator[EmbeddedItem]:
    """Each item's embeddings, in order. ``should_stop()`` is asked before every item
    (`RunCancelled` when it says so); ``progress(done, total)`` follows each item."""
    settings = embedder.cache_settings() if cache is not None else {}
    # Items read but not yet yielded, with the key of those to embed and store.
    pending: list[tuple[DatasetItem, str | None, EmbeddedItem | Audio]] = []
    done = 0

    def flush() -> Iterator[EmbeddedItem]:
        nonlocal done
        audios = [value for _, _, value in pending if isinstance(value, Audio)]
        fresh: list[Windows] = []
        if audios:
            batch, slices = embedder.raw_windows_batch(audios)
            fresh = [_clip_windows(batch, clip) for clip in slices]
        embedded = iter(fresh)
        for item, key, value in pending:
            if isinstance(value, Audio):
                windows = next(embedded)
                result = EmbeddedItem(item=item, windows=windows, duration_s=value.duration_s)
                if cache is not None and key is not None:
                    cache.store(key, CachedEmbedding(windows, value.duration_s))
            else:
                result = value
            done += 1
            if progress is not None:
                progress(done, len(items))
            yield result
        pending.clear()

    misses = 0
    for item in items:
        if should_stop is not None and should_stop():
            raise RunCancelled("cancelled while embedding the recordings")
        key = None
        if cache is not None:
            key = cache.key(item.sha256 or file_sha256(item.path), settings)
            hit = cache.load(key)
            if hit is not None:
                pending.append((item, None, EmbeddedItem(item, hit.windows, hit.duration_s)))
                if not misses:  # nothing waits for the encoder: hand it on at once
                    yield from flush()
                continue
        try:
            audio = load_audio(item.path, sample_rate=embedder.config.sample_rate)
        except AudioError as error:
            logger.warning("skipping %s: %s", item.path, error)
            pending.append((item, None, EmbeddedItem(item, None, 0.0, error)))
        else:
            pending.append((item, key, audio))
            misses += 1
        if misses == batch_clips:
            yield from flush()
            misses = 0
    if pending:
        yield from flush()


def _clip_windows(windows: Windows, clip: slice) -> Windows:
    return Windows(
        features=windows.features[clip],
        mask=windows.mask[clip],
        starts_s=windows.starts_s[clip],
        ends_s=windows.ends_s[clip],
        activity=windows.activity[clip],
    )
