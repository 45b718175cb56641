"""An on-disk store of encoder embeddings: each recording is embedded once per encoder and
window setting, then read back by every job that needs it.

Key: the SHA-256 of a canonical JSON of the recording's content digest, the encoder's
identity (name, package, version, weight file and its SHA-256), its precision (bf16 autocast
changes the numbers) and the window settings (sample rate, window and hop seconds, the tail
rule, the entry format). Any of these changing is another key, so an entry is never read for
an encoder or a window cut it was not made with.

Entry: one safetensors file ``<root>/<key[:2]>/<key>.safetensors``. An embedding entry
holds one recording's raw windows: ``features`` (W, D) float32, ``activity`` (W,),
``starts_s`` and ``ends_s`` (W,) float64, with the key, the clip's duration and a SHA-256 of
the tensor bytes in the header's metadata. No pickles anywhere.

Several workers at once: an entry is written to a temporary file in its folder and renamed
into place (``os.replace``, atomic on POSIX), so a reader sees a whole entry or none; two
writers of one key each rename a whole file and the last one stays. A reader verifies the
checksum and the key; a corrupted or truncated entry is deleted and reported as a miss, so
the caller recomputes it.

Recent reads: one cache object (a job's) keeps the entries it read last in memory, at most
``memory_bytes`` of tensors (least recently read dropped first), because a job reads each
recording several times (training, held-out scoring, cluster matching, the map); entries are
content-addressed, so a remembered entry is the one on disk. A read hands out its own copy of
the tensors.

Results: an entry may also hold tensors computed from cached embeddings alone, which a
second job on the same data would compute again (the cluster map's projection of a data
set): `store_result` and `load_result`, under a key made the same way from a digest of the
inputs and the computation's settings, with the same checks, the same bound and eviction.

Bound and eviction: the entries together stay under ``max_bytes``. A read refreshes an
entry's modification time; when a write takes this process's running total over the bound,
the folder is scanned and the least recently used entries (oldest modification time) are
deleted until the total is at most ``EVICT_TO`` of the bound. Entries other processes wrote
since the last scan are counted at the next one, so the bound may be passed briefly by what
they wrote in between.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from uvac.audio.windows import Windows

__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MEMORY_BYTES",
    "EVICT_TO",
    "CachedEmbedding",
    "EmbeddingCache",
]

logger = logging.getLogger(__name__)

# Part of every key: bump it when the code that cuts or embeds windows changes.
CACHE_FORMAT = 1
DEFAULT_MAX_BYTES = 2 * 1024**3
DEFAULT_MEMORY_BYTES = 256 * 1024**2
EVICT_TO = 0.9  # share of the bound left after an eviction, so that not every write evicts
_SUFFIX = ".safetensors"
_TENSOR_ORDER = ("features", "activity", "starts_s", "ends_s")
_RESULT = "result"  # an entry's "kind" in its metadata; an embedding's has none
_OWN = ("key", "checksum", "kind")  # metadata the cache writes itself


@dataclass(frozen=True)
class CachedEmbedding:
    """One recording's raw embedding windows, as an entry holds them."""

    windows: Windows  # features (W, 1, 1, D), mask (W, 1) of ones
    duration_s: float


class EmbeddingCache:
    """Embeddings under ``root`` (a folder beside the data sets), at most ``max_bytes``."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._total_bytes: int | None = None  # this process's running estimate
        self._memory_bytes = max(0, memory_bytes)
        self._recent: OrderedDict[str, CachedEmbedding] = OrderedDict()  # oldest read first
        self._recent_bytes = 0

    @staticmethod
    def key(content_sha256: str, settings: dict[str, Any]) -> str:
        """The entry key of a recording's content digest under embedding ``settings`` (the
        encoder's identity, precision and window settings, `EmbeddingWindower.cache_settings`)."""
        source = json.dumps(
            {"format": CACHE_FORMAT, "content": content_sha256, "settings": settings},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(source.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    # --- reading -----------------------------------------------------------------------

    def load(self, key: str) -> CachedEmbedding | None:
        """The entry, verified; None when there is none or it was corrupt (then deleted)."""
        remembered = self._recent.get(key)
        if remembered is not None:
            self._recent.move_to_end(key)
            return _copy(remembered)
        entry = self._read(key)
        if entry is not None:
            self._remember(key, entry)
        return entry

    def load_result(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        """A result stored with `store_result`: its tensors and its info, verified; None when
        there is none or it was corrupt (then deleted)."""
        read = self._read_file(key, names=None)
        if read is None:
            return None
        tensors, metadata = read
        return tensors, {name: value for name, value in metadata.items() if name not in _OWN}

    def _read(self, key: str) -> CachedEmbedding | None:
        read = self._read_file(key, names=_TENSOR_ORDER)
        if read is None:
            return None
        tensors, metadata = read
        features = tensors["features"]  # (W, D)
        return CachedEmbedding(
            windows=Windows(
                features=features[:, None, None, :],  # (W, 1, 1, D)
                mask=torch.ones(features.shape[0], 1),
                starts_s=tensors["starts_s"].tolist(),
                ends_s=tensors["ends_s"].tolist(),
                activity=tensors["activity"],
            ),
            duration_s=float(metadata["duration_s"]),
        )

    def _read_file(
        self, key: str, *, names: tuple[str, ...] | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
        """An entry's tensors (``names``: an embedding's; None: a result's, all of them) and
        metadata, key and checksum verified. An entry of the other kind is left alone."""
        path = self.path(key)
        try:
            with safe_open(str(path), framework="pt") as entry_file:
                metadata = entry_file.metadata() or {}
                if (metadata.get("kind") == _RESULT) != (names is None):
                    return None
                wanted = names if names is not None else tuple(sorted(entry_file.keys()))
                tensors = {name: entry_file.get_tensor(name) for name in wanted}
        except FileNotFoundError:
            return None
        except (SafetensorError, OSError, ValueError, KeyError) as error:
            self._discard(path, f"unreadable: {error}")
            return None
        checksum = _checksum(tensors, wanted)
        if metadata.get("key") != key or metadata.get("checksum") != checksum:
            self._discard(path, "checksum or key mismatch")
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently used goes first
        return tensors, metadata

    def _remember(self, key: str, entry: CachedEmbedding) -> None:
        size = _tensor_bytes(entry)
        if size > self._memory_bytes:
            return
        self._recent[key] = _copy(entry)
        self._recent_bytes += size
        while self._recent_bytes > self._memory_bytes:
            _, dropped = self._recent.popitem(last=False)
            self._recent_bytes -= _tensor_bytes(dropped)

    def _forget(self, key: str) -> None:
        dropped = self._recent.pop(key, None)
        if dropped is not None:
            self._recent_bytes -= _tensor_bytes(dropped)

    # --- writing -----------------------------------------------------------------------

    def store(self, key: str, entry: CachedEmbedding) -> None:
        """Write a recording's embedding entry (`_write_file`)."""
        self._forget(key)
        windows = entry.windows
        tensors = {
            "features": windows.features[:, 0, 0, :].to(torch.float32).contiguous(),
            "activity": windows.activity.to(torch.float32).contiguous(),
            "starts_s": torch.tensor(windows.starts_s, dtype=torch.float64),
            "ends_s": torch.tensor(windows.ends_s, dtype=torch.float64),
        }
        self._write_file(key, tensors, _TENSOR_ORDER, {"duration_s": repr(float(entry.duration_s))})

    def store_result(
        self, key: str, tensors: dict[str, torch.Tensor], info: dict[str, str] | None = None
    ) -> None:
        """Store a result computed from cached embeddings alone (the cluster map's projection
        of a data set, say) under a key made as an embedding's is (`key`, from a digest of
        its inputs and its settings), with string ``info``; same checks, same bound."""
        tensors = {name: tensor.contiguous() for name, tensor in tensors.items()}
        self._write_file(key, tensors, tuple(sorted(tensors)), {**(info or {}), "kind": _RESULT})

    def _write_file(
        self,
        key: str,
        tensors: dict[str, torch.Tensor],
        names: tuple[str, ...],
        info: dict[str, str],
    ) -> None:
        """Write the entry whole (temporary file, then rename); evict when over the bound."""
        metadata = {**info, "key": key, "checksum": _checksum(tensors, names)}
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        os.close(handle)
        try:
            save_file(tensors, temporary, metadata=metadata)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._count(path.stat().st_size)

    def evict(self) -> int:
        """Delete least recently used entries until at most ``EVICT_TO`` of the bound is
        used; the bytes in use after it."""
        entries = []
        for path in self.root.glob(f"*/*{_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # another process evicted it
                stat = path.stat()
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        if total > self.max_bytes:
            target = EVICT_TO * self.max_bytes
            for _, size, path in sorted(entries):
                if total <= target:
                    break
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                total -= size
            logger.info("embedding cache evicted down to %d bytes", total)
        self._total_bytes = total
        return total

    def _count(self, size: int) -> None:
        if self._total_bytes is None:
            self.evict()  # the first write of this process counts what is there
            return
        self._total_bytes += size
        if self._total_bytes > self.max_bytes:
            self.evict()

    def _discard(self, path: Path, reason: str) -> None:
        logger.warning("embedding cache: dropping %s (%s)", path.name, reason)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _tensor_bytes(entry: CachedEmbedding) -> int:
    windows = entry.windows
    return sum(
        tensor.numel() * tensor.element_size()
        for tensor in (windows.features, windows.mask, windows.activity)
    )


def _copy(entry: CachedEmbedding) -> CachedEmbedding:
    """The entry with tensors of its own, so that no caller changes what another reads."""
    windows = entry.windows
    return CachedEmbedding(
        windows=dataclasses.replace(
            windows,
            features=windows.features.clone(),
            mask=windows.mask.clone(),
            starts_s=list(windows.starts_s),
            ends_s=list(windows.ends_s),
            activity=windows.activity.clone(),
        ),
        duration_s=entry.duration_s,
    )


def _checksum(tensors: dict[str, torch.Tensor], names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in names:
        tensor = tensors[name]
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
