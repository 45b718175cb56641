"""Which model answers: the served alias, hot-swapped, plus a small cache of pinned refs.

`ModelHolder` loads `settings.serve_model` (default `scenes@production`) at start-up and
then polls the alias target every `model_poll_seconds`. When the target changes it loads the
new version (every checksum verified first) in a thread and swaps one attribute: a request
takes a reference to the `LoadedModel` it starts with and finishes on it, even if a swap
happens meanwhile. A new target that fails verification or does not load is refused; the
previous model keeps serving and the reason is kept for `/readyz`.

Requests that name a model (`?model=scenes:v3`) go through a small LRU cache of loaded
versions, keyed by the exact version and its digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.cluster_naming import ClusterNamesView
from app.novelty_setting import FalseAlarmRateView
from app.problems import ApiProblem
from model_store import AnyModelStore, ModelVersion, NotFound, StoreError
from uvac.errors import UvacError
from uvac.evaluation import Clusterer
from uvac.selection import renumbered
from uvac.training import TrainedModel, load_trained_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A verified, loaded model version ready to cluster; never mutated after loading."""

    version: ModelVersion
    trained: TrainedModel
    clusterer: Clusterer
    cluster_names: tuple[str, ...] | None
    names: ClusterNamesView | None = None  # published names plus the edited ones
    false_alarm: FalseAlarmRateView | None = None  # the rate set after publishing, if any

    def false_alarm_rate(self) -> float | None:
        """The false-alarm rate ``unknown`` is decided at now (None: the model's own)."""
        return self.false_alarm.rate() if self.false_alarm is not None else None

    def cluster_name(self, number: int) -> str | None:
        """The name of cluster ``number`` now (an edit shows without a reload)."""
        if self.names is not None:
            return self.names.name(number)
        return self.cluster_names[number] if self.cluster_names is not None else None

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the exact bytes that were loaded."""
        return (self.version.ref, self.version.sha256)

    @property
    def sample_rate(self) -> int:
        return int(self.trained.feature_config.sample_rate)

    @property
    def n_clusters(self) -> int:
        return int(self.trained.model.n_clusters)


def cluster_names_from(*documents: dict[str, Any], n_clusters: int) -> tuple[str, ...] | None:
    """Cluster names from model metadata: a list of K names or a {"index": name} mapping."""
    for document in documents:
        names = document.get("cluster_names")
        if isinstance(names, list | tuple):
            if len(names) == n_clusters and all(isinstance(n, str) for n in names):
                return tuple(names)
        elif isinstance(names, dict):
            resolved = [names.get(str(index)) for index in range(n_clusters)]
            if all(isinstance(n, str) for n in resolved):
                return tuple(str(n) for n in resolved)
    return None


def load_model(*, store: AnyModelStore, ref: str, device: str) -> LoadedModel:
    """Verify every checksum of `ref`, then load it (blocking: call it in a thread).

    The version's cluster numbering (`uvac.selection.cluster_identity`) is applied here, so every
    answer uses the numbers that survive retraining.
    """
    version = store.load_verified(ref)
    trained = renumbered(load_trained_model(version.path), version.metadata)
    clusterer = Clusterer(trained, device=device, detect_speech=True)
    n_clusters = int(trained.model.n_clusters)
    names = cluster_names_from(version.metadata, trained.info, n_clusters=n_clusters)
    view = ClusterNamesView(
        store_root=store, version=version, n_clusters=n_clusters, model_info=trained.info
    )
    return LoadedModel(
        version=version,
        trained=trained,
        clusterer=clusterer,
        cluster_names=names,
        names=view,
        false_alarm=FalseAlarmRateView(store_root=store, version=version),
    )


class ModelHolder:
    """Holds the served model and keeps it in step with the alias it serves."""

    def __init__(
        self,
        *,
        store: AnyModelStore,
        serve_ref: str,
        device: str,
        poll_seconds: float,
        cache_size: int,
    ) -> None:
        self._store = store
        self._serve_ref = serve_ref
        self._device = device
        self._poll_seconds = poll_seconds
        self._cache_size = cache_size
        self._current: LoadedModel | None = None
        self._unavailable_reason: str | None = "the model has not been loaded yet"
        self._refused: tuple[tuple[str, str], str] | None = None
        self._refresh_lock = asyncio.Lock()
        self._poll_task: asyncio.Task[None] | None = None
        self._cache: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._cache_lock = asyncio.Lock()
        self._on_swap: list[Callable[[LoadedModel], None]] = []

    @property
    def serve_ref(self) -> str:
        return self._serve_ref

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def unavailable_reason(self) -> str | None:
        """Why no model is served (None while one is)."""
        return None if self._current is not None else self._unavailable_reason

    @property
    def last_refused(self) -> str | None:
        """Why the most recent new alias target was refused (the old model kept serving)."""
        return self._refused[1] if self._refused is not None else None

    def on_swap(self, callback: Callable[[LoadedModel], None]) -> None:
        """Call `callback(loaded_model)` after every swap (metrics use it)."""
        self._on_swap.append(callback)

    async def start(self) -> None:
        await self.refresh()
        self._poll_task = asyncio.create_task(self._poll_forever(), name="uvac-model-poll")

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.refresh()
            except Exception:  # keep polling whatever happens; the reason is logged
                logger.exception("refreshing %s failed", self._serve_ref)

    async def refresh(self) -> None:
        """Load the alias target if it changed; refuse it (keeping the old one) if broken."""
        async with self._refresh_lock:
            try:
                target = await asyncio.to_thread(self._store.get, self._serve_ref)
            except NotFound as error:
                self._unavailable_reason = (
                    f"no model at {self._serve_ref} ({error}). Train one with POST /v1/train, "
                    f"then promote it with PUT /v1/models/{{name}}/aliases/{{alias}}."
                )
                return
            except StoreError as error:
                self._unavailable_reason = f"cannot read {self._serve_ref}: {error}"
                return
            key = (target.ref, target.sha256)
            current = self._current
            if current is not None and current.key == key:
                return
            if self._refused is not None and self._refused[0] == key:
                return  # already refused these exact bytes; do not re-hash every poll
            try:
                loaded = await asyncio.to_thread(
                    load_model, store=self._store, ref=target.ref, device=self._device
                )
            except (StoreError, UvacError, OSError, ValueError, KeyError) as error:
                reason = f"refused {target.ref} (sha256 {target.sha256[:12]}): {error}"
                self._refused = (key, reason)
                self._unavailable_reason = reason
                logger.error("%s; %s", reason, "keeping the previous model" if current else "")
                return
            self._current = loaded  # the swap: one reference assignment
            self._refused = None
            self._unavailable_reason = None
            logger.info(
                "serving %s (sha256 %s) for %s", target.ref, target.sha256[:12], self._serve_ref
            )
            for callback in self._on_swap:
                callback(loaded)

    def require_served(self) -> LoadedModel:
        """The served model, or a 503 problem that says how to get one."""
        current = self._current
        if current is not None:
            return current
        raise ApiProblem(
            status=503,
            slug="no-model",
            detail=self._unavailable_reason or f"no model at {self._serve_ref}",
            extensions={"serve_model": self._serve_ref},
            headers={"Retry-After": str(max(1, round(self._poll_seconds)))},
        )

    async def resolve(self, ref: str | None) -> LoadedModel:
        """The served model when `ref` is None, else the version `ref` names (cached)."""
        if ref is None:
            return self.require_served()
        version = await asyncio.to_thread(self._store.get, ref)
        key = (version.ref, version.sha256)
        current = self._current
        if current is not None and current.key == key:
            return current
        async with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            loaded = await asyncio.to_thread(
                load_model, store=self._store, ref=version.ref, device=self._device
            )
            self._cache[key] = loaded
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return loaded
