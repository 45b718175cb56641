"""The embedding cache: a hit is exactly a fresh pass; another encoder or window setting
misses; concurrent writers leave one valid entry; a corrupt entry is found and recomputed;
the least recently used entries go first when the bound is passed."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from tests.audio_fixtures import chirp, noise, tone, write_audio
from uvac.audio import (
    AudioFolder,
    CachedEmbedding,
    DatasetItem,
    EmbeddedItem,
    EmbeddingCache,
    EmbeddingWindower,
    Windows,
    configure_encoder_precision,
    embed_items,
)
from uvac.training import build_configs


@pytest.fixture(autouse=True)
def _fp32() -> None:
    configure_encoder_precision("fp32")  # process-wide; an earlier test may have set bf16


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[DatasetItem]:
    root = tmp_path_factory.mktemp("clips")
    write_audio(root / "a" / "tone.wav", tone(300, 2.5))
    write_audio(root / "a" / "short.wav", tone(500, 0.4))
    write_audio(root / "b" / "noise.wav", noise(1.2, seed=1))
    write_audio(root / "b" / "sweep.wav", chirp(200, 4000, 1.0))
    (root / "b" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    return AudioFolder.scan(root).items


class CountingEmbedder:
    """Counts the encoder calls of an `EmbeddingWindower` (its instance, not the class)."""

    def __init__(self, embedder: EmbeddingWindower, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        encoder = embedder.encoder
        original: Callable[[Sequence[Tensor]], Tensor] = encoder.embed

        def embed(windows: Sequence[Tensor]) -> Tensor:
            self.calls += 1
            return original(windows)

        monkeypatch.setattr(encoder, "embed", embed)


def embedder_for(**features: float) -> EmbeddingWindower:
    feature_config, _ = build_configs("scenes", feature_overrides=dict(features))
    return EmbeddingWindower(feature_config)


def assert_same(first: list[EmbeddedItem], second: list[EmbeddedItem]) -> None:
    assert [e.item for e in first] == [e.item for e in second]
    for a, b in zip(first, second, strict=True):
        assert (a.windows is None) == (b.windows is None)
        assert a.duration_s == b.duration_s
        if a.windows is None or b.windows is None:
            assert type(a.error) is type(b.error)
            continue
        assert torch.equal(a.windows.features, b.windows.features)
        assert torch.equal(a.windows.activity, b.windows.activity)
        assert torch.equal(a.windows.mask, b.windows.mask)
        assert a.windows.starts_s == b.windows.starts_s
        assert a.windows.ends_s == b.windows.ends_s


def test_a_hit_is_exactly_what_a_fresh_pass_gives_and_calls_no_encoder(
    items: list[DatasetItem], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = embedder_for()
    counter = CountingEmbedder(embedder, monkeypatch)
    fresh = list(embed_items(items, embedder=embedder, cache=None))
    cache = EmbeddingCache(tmp_path / "cache")
    filled = list(embed_items(items, embedder=embedder, cache=cache, batch_clips=2))
    calls_before = counter.calls
    seen: list[tuple[int, int]] = []
    hits = list(
        embed_items(items, embedder=embedder, cache=cache, progress=lambda *p: seen.append(p))
    )

    assert counter.calls == calls_before  # every decodable clip came from the cache
    assert_same(fresh, filled)
    assert_same(fresh, hits)
    assert seen == [(n, len(items)) for n in range(1, len(items) + 1)]
    assert sum(e.windows is None for e in hits) == 1  # the broken file, skipped each time
    assert len(list(cache.root.glob("*/*.safetensors"))) == len(items) - 1


@pytest.mark.parametrize(
    "change",
    ["encoder weights", "encoder version", "window", "hop", "precision"],
)
def test_another_encoder_identity_or_window_setting_misses(
    change: str, items: list[DatasetItem], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    decodable = items[:2]
    list(embed_items(decodable, embedder=embedder_for(), cache=cache))

    if change == "window":
        embedder = embedder_for(window_seconds=0.5)
    elif change == "hop":
        embedder = embedder_for(window_hop_seconds=0.25)
    else:
        embedder = embedder_for()
        encoder = embedder.encoder
        if change == "precision":
            monkeypatch.setattr(encoder, "bf16_autocast", True)
        else:
            field = "sha256" if change == "encoder weights" else "version"
            other = dataclasses.replace(encoder.identity, **{field: "other"})
            monkeypatch.setattr(encoder, "identity", other)
    counter = CountingEmbedder(embedder, monkeypatch)
    list(embed_items(decodable, embedder=embedder, cache=cache))

    assert counter.calls == 1  # both clips missed, embedded in one batch
    assert len(list(cache.root.glob("*/*.safetensors"))) == 4


def _entry(seed: int) -> CachedEmbedding:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 1, 1, 512, generator=generator)
    windows = Windows(
        features=features,
        mask=torch.ones(3, 1),
        starts_s=[0.0, 0.5, 1.0],
        ends_s=[1.0, 1.5, 2.0],
        activity=torch.ones(3),
    )
    return CachedEmbedding(windows=windows, duration_s=2.0)


def _fill_and_read(root: str, key: str, rounds: int, start: Any) -> int:
    """Store one entry ``rounds`` times and read it back between writes; the number of
    reads that did not give the whole entry."""
    cache = EmbeddingCache(Path(root))
    expected = _entry(0).windows.features
    start.wait()
    bad = 0
    for _ in range(rounds):
        cache.store(key, _entry(0))
        loaded = cache.load(key)
        if loaded is None or not torch.equal(loaded.windows.features, expected):
            bad += 1
    return bad


def test_two_processes_filling_one_entry_leave_one_valid_entry(tmp_path: Path) -> None:
    key = EmbeddingCache.key("c" * 64, {"encoder": "test"})
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(2)
        with context.Pool(2) as pool:
            results = [
                pool.apply_async(_fill_and_read, (str(tmp_path), key, 40, start)) for _ in range(2)
            ]
            bad_reads = [result.get(timeout=120) for result in results]

    assert bad_reads == [0, 0]  # no reader ever saw a torn or missing entry
    files = sorted(path.name for path in tmp_path.rglob("*") if path.is_file())
    assert files == [f"{key}.safetensors"]  # no temporary file left behind
    loaded = EmbeddingCache(tmp_path).load(key)
    assert loaded is not None
    assert torch.equal(loaded.windows.features, _entry(0).windows.features)


@pytest.mark.parametrize("damage", ["flip a data byte", "truncate", "rewrite the key"])
def test_a_corrupted_entry_is_detected_and_recomputed(
    damage: str, items: list[DatasetItem], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = embedder_for()
    cache = EmbeddingCache(tmp_path / "cache")
    clip = items[:1]
    (fresh,) = list(embed_items(clip, embedder=embedder, cache=cache))
    (path,) = cache.root.glob("*/*.safetensors")
    data = bytearray(path.read_bytes())
    if damage == "flip a data byte":
        data[-5] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        key = path.stem.encode()
        data = data.replace(key, key[::-1], 1)
    path.write_bytes(bytes(data))
    assert cache.load(path.stem) is None  # detected, and the entry is gone

    path.write_bytes(bytes(data))
    counter = CountingEmbedder(embedder, monkeypatch)
    (again,) = list(embed_items(clip, embedder=embedder, cache=cache))

    assert counter.calls == 1
    assert_same([fresh], [again])
    assert cache.load(path.stem) is not None  # recomputed and stored whole


def test_the_least_recently_used_entries_are_evicted_past_the_bound(tmp_path: Path) -> None:
    probe = EmbeddingCache(tmp_path / "probe")
    probe.store("0" * 64, _entry(0))
    entry_bytes = probe.path("0" * 64).stat().st_size
    cache = EmbeddingCache(tmp_path / "cache", max_bytes=int(4.5 * entry_bytes))
    keys = [EmbeddingCache.key(f"{n:064x}", {}) for n in range(6)]
    for age, key in enumerate(keys[:4]):
        cache.store(key, _entry(age))
        mtime = 1_000_000 + age  # stored in this order, long ago
        os.utime(cache.path(key), (mtime, mtime))
    assert cache.load(keys[0]) is not None  # read now: the most recently used

    cache.store(keys[4], _entry(4))  # 5 entries > 4.5: evict down to 90 % of the bound

    present = [key for key in keys if cache.path(key).is_file()]
    assert present == [keys[0], keys[2], keys[3], keys[4]]  # the oldest unread went first
    assert sum(cache.path(key).stat().st_size for key in present) <= 0.9 * cache.max_bytes


def test_a_read_entry_is_read_again_from_memory_as_it_was(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    key = EmbeddingCache.key("a" * 64, {})
    cache.store(key, _entry(0))
    first = cache.load(key)
    assert first is not None
    first.windows.features.zero_()  # a caller changing its copy changes no later read
    cache.path(key).unlink()  # the second read does not go to the disk

    again = cache.load(key)

    assert again is not None
    assert torch.equal(again.windows.features, _entry(0).windows.features)
    assert EmbeddingCache(tmp_path).load(key) is None  # another cache object remembers nothing


def test_memory_keeps_the_most_recent_reads_within_its_bound_and_a_write_replaces_one(
    tmp_path: Path,
) -> None:
    entry_bytes = _entry(0).windows.features.numel() * 4 + 3 * 4 + 3 * 4  # features, mask, activity
    cache = EmbeddingCache(tmp_path, memory_bytes=2 * entry_bytes)
    keys = [EmbeddingCache.key(f"{n:064x}", {}) for n in range(3)]
    for seed, key in enumerate(keys):
        cache.store(key, _entry(seed))
        assert cache.load(key) is not None
    cache.store(keys[2], _entry(7))  # a write forgets what was remembered of its key
    for key in keys:
        cache.path(key).unlink()

    assert cache.load(keys[0]) is None  # the oldest read was dropped for the bound
    assert cache.load(keys[1]) is not None
    assert cache.load(keys[2]) is None  # the write forgot the old entry; the file is gone


def test_a_stored_result_reads_back_verified_and_a_damaged_one_is_dropped(
    tmp_path: Path,
) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    key = EmbeddingCache.key("ab" * 32, {"result": "a projection"})
    points = torch.arange(12, dtype=torch.float64).view(6, 2)
    cache.store_result(key, {"points": points, "order": torch.arange(6)}, {"how": "by hand"})

    read = cache.load_result(key)
    assert read is not None
    tensors, info = read
    assert torch.equal(tensors["points"], points) and torch.equal(tensors["order"], torch.arange(6))
    assert info == {"how": "by hand"}
    assert cache.load_result(EmbeddingCache.key("ab" * 32, {"result": "another"})) is None

    path = cache.path(key)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a byte of the tensors
    path.write_bytes(bytes(data))
    assert cache.load_result(key) is None
    assert not path.exists()  # dropped, so the next job computes it again


def test_an_entry_of_the_other_kind_is_a_miss_and_stays(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    embedding_key = EmbeddingCache.key("cd" * 32, {})
    result_key = EmbeddingCache.key("cd" * 32, {"result": "a projection"})
    cache.store(embedding_key, _entry(0))
    cache.store_result(result_key, {"points": torch.zeros(3, 2)})

    assert cache.load_result(embedding_key) is None  # an embedding is no result...
    assert cache.load(result_key) is None  # ...and a result no embedding
    assert cache.path(embedding_key).is_file() and cache.path(result_key).is_file()
    assert cache.load(embedding_key) is not None
    read = cache.load_result(result_key)
    assert read is not None and read[1] == {}  # the cache's own metadata is not the result's
