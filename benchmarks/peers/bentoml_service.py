"""The serving benchmark's peer: the served model behind BentoML, doing what `POST /v1/cluster`
does (decode the WAV, resample it to the model's rate, encode, the model, pi, speech, level
and novelty) and answering the same JSON (`app.routes.cluster.to_cluster_result`).

Two services, one per variant, each one worker process with one request thread:

- `BatchedCluster`: BentoML's adaptive batching (``batchable=True``); each batch is decoded
  and clustered in one `Clusterer.cluster_batch` call, as the API's micro-batcher does;
- `UnbatchedCluster`: one clip per call.

Both answer ``POST /v1/cluster`` with the multipart field ``file``, so the benchmark's load
generator drives them unchanged. Started by `benchmarks.peers.bentoml_peer` with

    bentoml serve benchmarks.peers.bentoml_service:BatchedCluster --port N

and ``UVAC_MODEL_STORE_DIR`` / ``UVAC_SERVE_MODEL`` naming the served model, and
``UVAC_TORCH_THREADS`` and ``UVAC_ENCODER_PRECISION`` as the API is given them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml

from app.routes.cluster import to_cluster_result
from app.serving import LoadedModel, load_model
from model_store import ModelStore
from uvac.audio import Audio, configure_encoder_precision, load_audio
from uvac.device import configure_threads

MAX_AUDIO_SECONDS = 600.0
NO_ACCESS_LOG = {"access": {"enabled": False}}  # the API is measured without one too


def _load_served_model() -> LoadedModel:
    configure_threads(int(os.environ.get("UVAC_TORCH_THREADS", "2")))
    configure_encoder_precision(os.environ.get("UVAC_ENCODER_PRECISION", "auto"))  # type: ignore[arg-type]
    store = ModelStore(Path(os.environ["UVAC_MODEL_STORE_DIR"]))
    return load_model(store=store, ref=os.environ["UVAC_SERVE_MODEL"], device="cpu")


def _cluster(model: LoadedModel, files: list[Path]) -> list[dict[str, Any]]:
    audios: list[Audio] = [
        load_audio(path, sample_rate=model.sample_rate, max_seconds=MAX_AUDIO_SECONDS)
        for path in files
    ]
    clips = model.clusterer.cluster_batch(audios)
    return [to_cluster_result(model, clip).model_dump(mode="json") for clip in clips]


@bentoml.service(workers=1, threads=1, logging=NO_ACCESS_LOG)
class BatchedCluster:
    def __init__(self) -> None:
        self.model = _load_served_model()

    @bentoml.api(route="/v1/cluster", batchable=True, max_batch_size=64, max_latency_ms=10_000)
    def cluster(self, file: list[Path]) -> list[dict[str, Any]]:
        return _cluster(self.model, file)


@bentoml.service(workers=1, threads=1, logging=NO_ACCESS_LOG)
class UnbatchedCluster:
    def __init__(self) -> None:
        self.model = _load_served_model()

    @bentoml.api(route="/v1/cluster")
    def cluster(self, file: Path) -> dict[str, Any]:
        return _cluster(self.model, [file])[0]
