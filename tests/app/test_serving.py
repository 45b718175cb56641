"""The served model: hot swap on promotion, refusal of corrupted targets, pinned refs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.serving import ModelHolder
from model_store import ModelStore, ModelVersion
from tests.app.conftest import publish_tiny_model
from tests.app.helpers import noise_wav
from tests.audio_fixtures import noise
from uvac.audio.decoding import Audio


def _served_ref(client: TestClient) -> str:
    response = client.post("/v1/cluster", files={"file": ("a.wav", noise_wav(0.5))})
    assert response.status_code == 200, response.text
    ref: str = response.json()["model"]["ref"]
    return ref


def _wait_for(predicate, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_a_promotion_outside_the_api_is_picked_up_by_polling(
    client: TestClient, store: ModelStore, served_version: ModelVersion
) -> None:
    assert _served_ref(client) == served_version.ref
    newer = publish_tiny_model(store, seed=5, alias=None)
    store.promote(newer.ref, "production")  # as the CLI or another API replica would
    _wait_for(lambda: _served_ref(client) == newer.ref)
    metrics = client.get("/metrics").text
    assert f'ref="{newer.ref}"' in metrics and f'ref="{served_version.ref}"' not in metrics


def test_promotion_and_rollback_through_the_api_take_effect(
    client: TestClient, store: ModelStore, served_version: ModelVersion
) -> None:
    newer = publish_tiny_model(store, seed=5, alias=None)
    response = client.put("/v1/models/scenes/aliases/production", json={"version": newer.version})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "scenes",
        "alias": "production",
        "version": newer.version,
        "ref": newer.ref,
        "worse_figures": [],  # neither version recorded held-out figures: nothing compared
    }
    _wait_for(lambda: _served_ref(client) == newer.ref, timeout=5)
    response = client.put("/v1/models/scenes/aliases/production", json={"rollback": True})
    assert response.json()["version"] == served_version.version
    _wait_for(lambda: _served_ref(client) == served_version.ref, timeout=5)


def test_a_corrupted_new_target_is_refused_and_the_old_model_keeps_serving(
    client: TestClient, store: ModelStore, served_version: ModelVersion
) -> None:
    broken = publish_tiny_model(store, seed=9, alias=None)
    weights = Path(broken.path) / "weights.safetensors"
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the weights: the manifest no longer matches
    weights.write_bytes(bytes(data))
    store.promote(broken.ref, "production")

    def refused() -> bool:
        model_check = client.get("/healthz").json()["model"]
        return model_check["last_refused"] is not None

    _wait_for(refused)
    readiness = client.get("/readyz")
    assert readiness.status_code == 200  # still serving: ready, with the refusal on record
    model_check = readiness.json()["model"]
    assert model_check["ref"] == served_version.ref
    assert broken.ref in model_check["last_refused"]
    assert _served_ref(client) == served_version.ref


def test_a_corrupted_first_model_leaves_the_api_up_without_a_model(
    tmp_path, redis_db, store: ModelStore, settings
) -> None:
    from app.main import create_app

    version = publish_tiny_model(store)
    (Path(version.path) / "model.json").chmod(0o644)
    (Path(version.path) / "model.json").write_text("{}")
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/cluster", files={"file": ("a.wav", noise_wav(0.5))})
        assert response.status_code == 503
        assert version.ref in response.json()["detail"]
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["model"]["ok"] is False


def test_requests_in_flight_finish_on_the_model_they_started_with(
    store: ModelStore, served_version: ModelVersion
) -> None:
    async def scenario() -> None:
        holder = ModelHolder(
            store=store,
            serve_ref="scenes@production",
            device="cpu",
            poll_seconds=60,
            cache_size=2,
        )
        await holder.start()
        try:
            started_with = holder.require_served()
            newer = publish_tiny_model(store, seed=11, alias=None)
            store.promote(newer.ref, "production")
            await holder.refresh()
            assert holder.require_served().version.ref == newer.ref
            # The request that began before the swap still holds a working model.
            assert started_with.version.ref == served_version.ref
            audio = Audio.from_samples(noise(0.5, sample_rate=8000), sample_rate=8000)
            (result,) = started_with.clusterer.cluster_batch([audio])
            assert len(result.probabilities) == 3
        finally:
            await holder.close()

    asyncio.run(scenario())


def test_pinned_refs_are_cached(store: ModelStore, served_version: ModelVersion) -> None:
    async def scenario() -> None:
        holder = ModelHolder(
            store=store,
            serve_ref="scenes@production",
            device="cpu",
            poll_seconds=60,
            cache_size=1,
        )
        await holder.start()
        try:
            other = publish_tiny_model(store, seed=3, alias=None)
            first = await holder.resolve(other.ref)
            assert await holder.resolve(other.ref) is first
            # The served version by exact ref is the served object, not a second copy.
            assert await holder.resolve(served_version.ref) is holder.current
            third = publish_tiny_model(store, seed=4, alias=None)
            await holder.resolve(third.ref)  # evicts `other` (cache size 1)
            assert await holder.resolve(other.ref) is not first
        finally:
            await holder.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("names", [["a", "b", "c"], {"0": "a", "1": "b", "2": "c"}])
def test_cluster_names_accept_a_list_or_a_mapping(names) -> None:
    from app.serving import cluster_names_from

    assert cluster_names_from({"cluster_names": names}, n_clusters=3) == ("a", "b", "c")
    assert cluster_names_from({"cluster_names": names}, n_clusters=4) is None
    assert cluster_names_from({}, {"cluster_names": names}, n_clusters=3) == ("a", "b", "c")
