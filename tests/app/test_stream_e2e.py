"""`WS /v1/stream` against a real uvicorn process: a `websockets` client paced in real time
gets `/v1/cluster`'s timeline, the `uvac stream` command streams a file, and a client that
vanishes without closing frees its slot."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from model_store import ModelStore
from tests.app.conftest import SAMPLE_RATE
from tests.app.stream_helpers import as_s16, metric_sample, publish_kmeans_model, varied_audio
from tests.app.test_e2e_server import Server, serving
from uvac.cli import main as uvac_main
from uvac.cli.stream import encode_pcm, paced, stream_audio

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("stream-e2e")
    publish_kmeans_model(ModelStore(data_dir / "models"))
    with serving(data_dir, extra_environment={"UVAC_MAX_STREAMS": "1"}) as server:
        yield server


def _ws_url(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/stream"


def _wav(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM (the server caps uploads at 100 kB here) of samples `as_s16` made."""
    buffer = io.BytesIO()
    data = np.round(samples * 32768).astype(np.int16)
    sf.write(buffer, data, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _stream_paced(
    server: Server, samples: np.ndarray, *, sample_rate: int, frame_s: float
) -> tuple[Any, list[dict[str, Any]]]:
    """``samples`` streamed as 16-bit PCM at real time in ``frame_s`` frames: the outcome
    and every message."""
    messages: list[dict[str, Any]] = []
    outcome = asyncio.run(
        stream_audio(
            _ws_url(server),
            _frames(samples, frame_s=frame_s),
            config={"encoding": "pcm_s16le", "sample_rate": sample_rate},
            on_message=messages.append,
        )
    )
    return outcome, messages


def _open_streams(server: Server) -> float:
    value = metric_sample(httpx.get(f"{server.url}/metrics").text, "uvac_streams_open")
    assert value is not None, "no uvac_streams_open gauge"
    return value


def _frames(samples: np.ndarray, *, frame_s: float) -> Any:
    def frames(ready: dict[str, Any]) -> AsyncIterator[bytes]:
        step = round(frame_s * ready["sample_rate"])

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, samples.shape[0], step):
                yield encode_pcm(samples[start : start + step], "pcm_s16le")

        return paced(chunks(), bytes_per_second=2 * ready["sample_rate"])

    return frames


def test_a_real_time_stream_gets_the_cluster_timeline(server: Server) -> None:
    samples = as_s16(varied_audio(3.3, seed=21))
    expected = httpx.post(f"{server.url}/v1/cluster", files={"file": ("a.wav", _wav(samples))})
    assert expected.status_code == 200, expected.text
    timeline = expected.json()["windows"]
    started = time.monotonic()
    outcome, messages = _stream_paced(server, samples, sample_rate=SAMPLE_RATE, frame_s=0.05)
    assert time.monotonic() - started >= 3.3 * 0.95, "the client paces at real time"
    assert outcome.code == 1000 and outcome.problem is None
    decisions = [message for message in messages if message["type"] == "decision"]
    assert len(decisions) == len(timeline) - 1
    for decision, window in zip(decisions, timeline, strict=False):
        assert decision["start_s"] == pytest.approx(window["start_s"])
        np.testing.assert_allclose(decision["probabilities"], window["probabilities"], atol=1e-4)
    assert outcome.final is not None
    np.testing.assert_allclose(
        outcome.final["probabilities"], expected.json()["probabilities"], atol=1e-4
    )
    ready_id = messages[0]["stream_id"]
    stream_lines = [line for line in server.logs() if line.get("stream_id") == ready_id]
    assert any("stream ready" in line["message"] for line in stream_lines)
    assert any("stream closed with 1000" in line["message"] for line in stream_lines)


def test_the_cli_streams_a_file(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "scene.wav"
    path.write_bytes(_wav(varied_audio(1.5, seed=22)))
    code = uvac_main(["stream", str(path), "--url", _ws_url(server), "--speed", "2", "--json"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "ready" and kinds[-1] == "final"
    assert kinds.count("decision") == 5  # (12000 - 3936) // 2000 + 1
    assert all(line["speech"] is None for line in lines if line["type"] == "decision")
    plain = uvac_main(["stream", str(path), "--url", _ws_url(server), "--speed", "2"])
    assert plain == 0
    assert "whole stream (1.50 s): cluster" in capsys.readouterr().out
    asked = uvac_main(["stream", str(path), "--url", _ws_url(server), "--speed", "2", "--speech"])
    assert asked == 0
    decisions = [line for line in capsys.readouterr().out.splitlines() if " s  cluster " in line]
    assert len(decisions) == 5 and all("  speech " in line for line in decisions)


def test_a_vanished_client_frees_its_slot(server: Server) -> None:
    from websockets.asyncio.client import connect

    async def vanish() -> None:
        async with connect(_ws_url(server)) as websocket:
            await websocket.send(json.dumps({"type": "config"}))
            assert json.loads(await websocket.recv())["type"] == "ready"
            await websocket.send(encode_pcm(varied_audio(0.3), "pcm_s16le"))
            assert _open_streams(server) == 1.0
            websocket.transport.abort()  # no close frame: the client is just gone

    asyncio.run(vanish())
    deadline = time.monotonic() + 10
    while _open_streams(server) != 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_streams(server) == 0.0
    # UVAC_MAX_STREAMS is 1: the slot is really free.
    outcome = asyncio.run(
        stream_audio(
            _ws_url(server),
            _frames(varied_audio(0.6, seed=23), frame_s=0.1),
            config={"encoding": "pcm_s16le"},
        )
    )
    assert outcome.code == 1000


@pytest.fixture(scope="module")
def encoder_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of the bundled model's kind (sound encoder, 5 s windows every 2.5 s)."""
    from tests.app.test_encoder_models import _publish

    data_dir = tmp_path_factory.mktemp("stream-e2e-encoder")
    _publish(ModelStore(data_dir / "models"))
    environment = {
        "UVAC_MAX_UPLOAD_BYTES": str(4_000_000),
        "UVAC_ENCODER_PRECISION": "fp32",  # the same answers on every CPU
        "UVAC_STREAM_EARLY_START_SECONDS": "0.5",
    }
    with serving(data_dir, extra_environment=environment) as server:
        yield server


def _metric(server: Server, sample: str) -> float:
    return metric_sample(httpx.get(f"{server.url}/metrics").text, sample) or 0.0


def test_a_real_time_encoder_stream_starts_its_windows_early(encoder_server: Server) -> None:
    """Paced at real time, each window is started on its first 4.5 s by the server and
    finished once whole, and the decisions are still /v1/cluster's windows."""
    rate = 44100
    samples = as_s16(0.5 * varied_audio(8.0, seed=23, sample_rate=rate))
    expected = httpx.post(
        f"{encoder_server.url}/v1/cluster", files={"file": ("a.wav", _wav(samples, rate))}
    )
    assert expected.status_code == 200, expected.text
    outcome, messages = _stream_paced(encoder_server, samples, sample_rate=rate, frame_s=0.1)
    assert outcome.code == 1000 and outcome.problem is None
    decisions = [message for message in messages if message["type"] == "decision"]
    assert [decision["start_s"] for decision in decisions] == [0.0, 2.5]
    for decision, window in zip(decisions, expected.json()["windows"], strict=False):
        np.testing.assert_allclose(decision["probabilities"], window["probabilities"], atol=1e-4)
    prefix = "uvac_stream_early_starts_total"
    assert _metric(encoder_server, prefix + '{outcome="used"}') == 2.0
    assert _metric(encoder_server, prefix + '{outcome="dropped"}') == 0.0
