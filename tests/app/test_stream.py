"""`WS /v1/stream` with Starlette's test client: the protocol, equality with `/v1/cluster`'s
timeline whatever the frames, the smoother, and every limit's close code (each leaving no
stream counted open)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from app.main import create_app
from model_store import ModelStore, ModelVersion
from service_config import Settings
from tests.app.conftest import SAMPLE_RATE, TINY_FEATURES, make_settings
from tests.app.helpers import assert_problem
from tests.app.novelty_models import TONES_HZ, model_with_novelty, tone_clip
from tests.app.stream_helpers import (
    as_s16,
    metric_sample,
    pcm_bytes,
    publish_kmeans_model,
    random_frames,
    read_to_close,
    varied_audio,
    wait_until,
)
from uvac.audio import LiveWindows
from uvac.edge import smooth_timeline
from uvac.training import save_trained_model

WINDOWS = LiveWindows.of(TINY_FEATURES)


@pytest.fixture
def kmeans_version(store: ModelStore) -> ModelVersion:
    return publish_kmeans_model(store)


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


@pytest.fixture
def client(settings: Settings, kmeans_version: ModelVersion) -> Iterator[TestClient]:
    with _client(settings) as test_client:
        yield test_client


def _open_streams(client: TestClient) -> int:
    return int(client.app.state.services.streams.open)  # type: ignore[attr-defined]


def _gauge(client: TestClient) -> float:
    value = metric_sample(client.get("/metrics").text, "uvac_streams_open")
    assert value is not None, "no uvac_streams_open gauge"
    return value


def _assert_none_open(client: TestClient) -> None:
    assert wait_until(lambda: _open_streams(client) == 0), "a stream is still counted open"
    assert _gauge(client) == 0.0


def _wav(samples: np.ndarray, encoding: str) -> bytes:
    buffer = io.BytesIO()
    if encoding == "pcm_s16le":
        data: np.ndarray = np.round(samples * 32767).astype(np.int16)
        sf.write(buffer, data, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    else:
        sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _stream(
    client: TestClient,
    frames: Iterator[bytes] | list[bytes],
    *,
    config: dict[str, Any] | None = None,
    path: str = "/v1/stream",
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Send the config, every frame and eof; (ready, later messages, close code)."""
    with client.websocket_connect(path) as websocket:
        websocket.send_json({"type": "config", **(config or {})})
        ready = websocket.receive_json()
        assert ready["type"] == "ready", ready
        for frame in frames:
            websocket.send_bytes(frame)
        websocket.send_json({"type": "eof"})
        messages, code = read_to_close(websocket)
    return ready, messages, code


def _assert_same_sound_facts(
    decision: dict[str, Any], window: dict[str, Any], *, speech: bool
) -> None:
    """The decision's level, silence, novelty and verdict are the timeline window's; its
    speech too when the stream asked for it, else null."""
    assert decision["level_dbfs"] == pytest.approx(window["level_dbfs"], abs=1e-3)
    assert decision["silence"] == window["silence"]
    assert decision["unknown"] == window["unknown"]
    if window["novelty"] is None:
        assert decision["novelty"] is None
    else:
        assert decision["novelty"] == pytest.approx(window["novelty"], abs=1e-4)
    if speech:
        assert decision["speech"] == pytest.approx(window["speech"], abs=1e-4)
    else:
        assert decision["speech"] is None


def _refused(
    client: TestClient, *first: dict[str, Any] | bytes | str, path: str = "/v1/stream"
) -> tuple[int, dict[str, Any]]:
    """Send ``first`` messages; the close code and problem of the error that follows."""
    with client.websocket_connect(path) as websocket:
        for message in first:
            if isinstance(message, bytes):
                websocket.send_bytes(message)
            elif isinstance(message, str):
                websocket.send_text(message)
            else:
                websocket.send_json(message)
        messages, code = read_to_close(websocket)
    errors = [message for message in messages if message["type"] == "error"]
    assert len(errors) == 1, messages
    assert errors[0]["code"] == code
    return code, errors[0]["problem"]


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decisions_are_the_cluster_timeline_whatever_the_frames(
    client: TestClient, encoding: str, seed: int
) -> None:
    samples = varied_audio(3.3, seed=seed)
    if encoding == "pcm_s16le":
        samples = as_s16(samples)
    upload = client.post("/v1/cluster", files={"file": ("a.wav", _wav(samples, encoding))})
    assert upload.status_code == 200, upload.text
    expected = upload.json()

    frames = random_frames(pcm_bytes(samples, encoding), seed=seed)
    ready, messages, code = _stream(
        client, frames, config={"encoding": encoding, "sample_rate": SAMPLE_RATE}
    )

    assert code == 1000
    assert ready["window_samples"] == WINDOWS.window_samples
    assert ready["hop_samples"] == WINDOWS.hop_samples
    assert ready["model"] == expected["model"]
    decisions = [message for message in messages if message["type"] == "decision"]
    timeline = expected["windows"]
    # /v1/cluster ends the clip with one window aligned to its last sample; a stream never has it.
    assert len(decisions) == len(timeline) - 1
    distinct = {window["assignment"] for window in timeline}
    assert len(distinct) >= 2, "the audio should move between clusters"
    for index, (decision, window) in enumerate(zip(decisions, timeline, strict=False)):
        assert decision["index"] == index
        assert decision["start_s"] == pytest.approx(window["start_s"], abs=1e-9)
        assert decision["end_s"] == pytest.approx(window["end_s"], abs=1e-9)
        np.testing.assert_allclose(decision["probabilities"], window["probabilities"], atol=1e-4)
        assert decision["assignment"] == window["assignment"]
        _assert_same_sound_facts(decision, window, speech=False)
    (final,) = [message for message in messages if message["type"] == "final"]
    assert messages[-1] is final
    np.testing.assert_allclose(final["probabilities"], expected["probabilities"], atol=1e-4)
    assert final["assignment"] == expected["assignment"]
    assert final["duration_s"] == pytest.approx(expected["duration_s"])
    assert final["decisions"] == len(decisions)
    _assert_none_open(client)


@pytest.mark.parametrize(
    "n_samples",
    [
        WINDOWS.window_samples + 4 * WINDOWS.hop_samples,  # the last hop ends with the clip
        WINDOWS.window_samples - 500,  # shorter than one window: no decision
        WINDOWS.window_samples,  # exactly one window
    ],
)
def test_the_final_pi_is_the_cluster_answer_at_every_length(
    client: TestClient, n_samples: int
) -> None:
    samples = varied_audio(n_samples / SAMPLE_RATE + 0.01, seed=7)[:n_samples]
    expected = client.post(
        "/v1/cluster", files={"file": ("a.wav", _wav(samples, "pcm_f32le"))}
    ).json()
    _, messages, code = _stream(
        client, [pcm_bytes(samples, "pcm_f32le")], config={"encoding": "pcm_f32le"}
    )
    assert code == 1000
    decisions = [message for message in messages if message["type"] == "decision"]
    assert len(decisions) == len(WINDOWS.decision_starts(n_samples))
    final = messages[-1]
    assert final["type"] == "final"
    np.testing.assert_allclose(final["probabilities"], expected["probabilities"], atol=1e-4)
    for decision, window in zip(decisions, expected.get("windows") or [], strict=False):
        np.testing.assert_allclose(decision["probabilities"], window["probabilities"], atol=1e-4)


def test_smoothed_pi_and_program_follow_the_program_smoother(client: TestClient) -> None:
    samples = varied_audio(6.0, seed=3)
    _, messages, _ = _stream(
        client,
        random_frames(pcm_bytes(samples, "pcm_f32le"), seed=3),
        config={"encoding": "pcm_f32le", "time_constant_s": 0.5, "hold_s": 0.5},
    )
    decisions = [message for message in messages if message["type"] == "decision"]
    expected = smooth_timeline(
        [decision["probabilities"] for decision in decisions],
        interval_s=WINDOWS.hop_s,
        time_constant_s=0.5,
        hold_s=0.5,
    )
    programs = [decision["program"] for decision in decisions]
    assert programs == [smoothed.program for smoothed in expected]
    assert len(set(programs)) >= 2, "the program should switch at least once"
    for decision, smoothed in zip(decisions, expected, strict=True):
        np.testing.assert_allclose(decision["smoothed_probabilities"], smoothed.smoothed)


def test_ready_keepalive_and_names(client: TestClient, store: ModelStore) -> None:
    with client.websocket_connect("/v1/stream") as websocket:
        websocket.send_json({"type": "config"})
        ready = websocket.receive_json()
        websocket.send_json({"type": "keepalive"})
        websocket.send_bytes(pcm_bytes(varied_audio(0.6), "pcm_s16le"))
        websocket.send_json({"type": "keepalive"})
        websocket.send_json({"type": "eof"})
        messages, code = read_to_close(websocket)
    assert ready["encoding"] == "pcm_s16le"
    assert ready["sample_rate"] == SAMPLE_RATE
    assert ready["n_clusters"] == 3 and len(ready["cluster_names"]) == 3
    assert ready["window_s"] == pytest.approx(WINDOWS.window_s)
    assert ready["hop_s"] == pytest.approx(0.25)
    assert isinstance(ready["stream_id"], str) and ready["stream_id"]
    assert [message["type"] for message in messages] == ["decision", "final"]
    assert code == 1000


def test_a_model_promoted_mid_stream_does_not_change_the_stream(
    client: TestClient, store: ModelStore, kmeans_version: ModelVersion
) -> None:
    samples = varied_audio(3.3, seed=4)
    payload = pcm_bytes(samples, "pcm_f32le")
    with client.websocket_connect("/v1/stream") as websocket:
        websocket.send_json({"type": "config", "encoding": "pcm_f32le"})
        ready = websocket.receive_json()
        websocket.send_bytes(payload[: len(payload) // 2])
        newer = publish_kmeans_model(store, seed=5)
        holder = client.app.state.services.holder  # type: ignore[attr-defined]
        assert wait_until(lambda: holder.current.version.ref == newer.ref)
        websocket.send_bytes(payload[len(payload) // 2 :])
        websocket.send_json({"type": "eof"})
        messages, code = read_to_close(websocket)
    assert code == 1000
    assert ready["model"]["ref"] == kmeans_version.ref
    old = client.post(
        f"/v1/cluster?model={kmeans_version.ref}",
        files={"file": ("a.wav", _wav(samples, "pcm_f32le"))},
    ).json()
    new = client.post("/v1/cluster", files={"file": ("a.wav", _wav(samples, "pcm_f32le"))}).json()
    assert new["model"]["ref"] == newer.ref
    decisions = [message for message in messages if message["type"] == "decision"]
    got = np.array([decision["probabilities"] for decision in decisions])
    np.testing.assert_allclose(got, [w["probabilities"] for w in old["windows"][:-1]], atol=1e-4)
    assert not np.allclose(got, [w["probabilities"] for w in new["windows"][:-1]], atol=1e-4)
    assert messages[-1]["model"]["ref"] == kmeans_version.ref


@pytest.mark.parametrize(
    ("first", "code", "slug"),
    [
        (["not json"], 4400, "invalid-message"),
        ([b"\x00\x00"], 4400, "invalid-message"),
        ([{"type": "config", "colour": "blue"}], 4400, "invalid-message"),
        ([{"type": "config", "sample_rate": "fast"}], 4400, "invalid-message"),
        ([{"type": "config"}, {"type": "config"}], 4400, "invalid-message"),
        ([{"type": "config"}, {"type": "pause"}], 4400, "invalid-message"),
        ([{"type": "config"}, b"\x00\x00\x00", {"type": "eof"}], 4400, "invalid-message"),
        ([{"type": "config", "encoding": "opus"}], 4415, "unsupported-audio"),
        ([{"type": "config", "sample_rate": 16000}], 4415, "unsupported-audio"),
        ([{"type": "config", "model": "nothing:v9"}], 4404, "model-not-found"),
        ([{"type": "config"}, {"type": "eof"}], 4422, "empty-audio"),
        (
            [{"type": "config", "encoding": "pcm_f32le"}, np.array([0.1, np.nan], "<f4").tobytes()],
            4422,
            "non-finite-audio",
        ),
        (
            [{"type": "config", "encoding": "pcm_f32le"}, np.array([np.inf], "<f4").tobytes()],
            4422,
            "non-finite-audio",
        ),
    ],
)
def test_bad_input_closes_with_its_code_and_a_problem(
    client: TestClient, first: list[Any], code: int, slug: str
) -> None:
    closed_with, problem = _refused(client, *first)
    assert closed_with == code
    assert problem["type"].endswith("/" + slug)
    assert problem["status"] == code - 4000
    assert problem["detail"] and problem["title"]
    _assert_none_open(client)


def test_a_model_whose_features_need_the_whole_clip_is_refused(
    tmp_path, redis_db, store: ModelStore
) -> None:
    from dataclasses import replace
    from pathlib import Path

    from tests.app.stream_helpers import kmeans_trained_model
    from uvac.training.artifact import save_trained_model

    trained = kmeans_trained_model()
    trained = replace(trained, feature_config=replace(TINY_FEATURES, utterance_norm=True))
    with store.publish("scenes", metadata={}) as staging:
        save_trained_model(Path(staging), trained)
    store.promote(staging.version.ref, "production")
    with _client(make_settings(tmp_path)) as client:
        code, problem = _refused(client, {"type": "config"})
        assert code == 4422
        assert problem["type"].endswith("/model-not-streamable")
        assert "utterance_norm" in problem["detail"]
        _assert_none_open(client)


def _limited(tmp_path, **limits: Any) -> TestClient:
    return _client(make_settings(tmp_path, **limits))


def test_idle_streams_are_closed(tmp_path, kmeans_version: ModelVersion) -> None:
    with _limited(tmp_path, stream_idle_seconds=0.3) as client:
        code, problem = _refused(client, {"type": "config"})
        assert (code, problem["type"].rsplit("/", 1)[1]) == (4408, "idle-timeout")
        # Before the config too.
        code, _ = _refused(client)
        assert code == 4408
        _assert_none_open(client)


def test_keepalives_hold_an_idle_stream_open(tmp_path, kmeans_version: ModelVersion) -> None:
    with _limited(tmp_path, stream_idle_seconds=0.4) as client:
        with client.websocket_connect("/v1/stream") as websocket:
            websocket.send_json({"type": "config"})
            websocket.receive_json()
            for _ in range(5):
                time.sleep(0.2)
                websocket.send_json({"type": "keepalive"})
            websocket.send_bytes(pcm_bytes(varied_audio(0.6), "pcm_s16le"))
            websocket.send_json({"type": "eof"})
            messages, code = read_to_close(websocket)
        assert code == 1000 and messages[-1]["type"] == "final"


def test_audio_faster_than_allowed_is_refused(tmp_path, kmeans_version: ModelVersion) -> None:
    with _limited(tmp_path, stream_max_speed=1.0, stream_burst_seconds=0.5) as client:
        second = pcm_bytes(varied_audio(1.0), "pcm_s16le")
        code, problem = _refused(client, {"type": "config"}, second)
        assert code == 4429
        assert problem["type"].endswith("/too-fast")
        _assert_none_open(client)


def test_audio_at_the_allowed_pace_is_served(tmp_path, kmeans_version: ModelVersion) -> None:
    with _limited(tmp_path, stream_max_speed=2.0, stream_burst_seconds=0.2) as client:
        audio = varied_audio(1.2)
        step = SAMPLE_RATE // 10
        frames = []
        for start in range(0, audio.shape[0], step):
            frames.append(pcm_bytes(audio[start : start + step], "pcm_s16le"))
        with client.websocket_connect("/v1/stream") as websocket:
            websocket.send_json({"type": "config"})
            websocket.receive_json()
            for frame in frames:
                websocket.send_bytes(frame)
                time.sleep(0.1)  # real time
            websocket.send_json({"type": "eof"})
            messages, code = read_to_close(websocket)
        assert code == 1000, messages


def test_a_stream_longer_than_the_maximum_is_closed(tmp_path, kmeans_version: ModelVersion) -> None:
    with _limited(tmp_path, stream_max_seconds=1.0, stream_max_speed=100.0) as client:
        code, problem = _refused(
            client, {"type": "config"}, pcm_bytes(varied_audio(1.5), "pcm_s16le")
        )
        assert (code, problem["type"].rsplit("/", 1)[1]) == (4413, "stream-too-long")
        # Open time counts too: keepalives alone do not hold a stream past the maximum.
        with client.websocket_connect("/v1/stream") as websocket:
            websocket.send_json({"type": "config"})
            websocket.receive_json()
            for _ in range(8):
                time.sleep(0.2)
                try:
                    websocket.send_json({"type": "keepalive"})
                except Exception:
                    break
            _, code = read_to_close(websocket)
        assert code == 4413
        _assert_none_open(client)


def test_more_streams_than_the_maximum_are_refused_until_one_closes(
    tmp_path, kmeans_version: ModelVersion
) -> None:
    with _limited(tmp_path, max_streams=1) as client:
        with client.websocket_connect("/v1/stream") as first:
            first.send_json({"type": "config"})
            first.receive_json()
            code, problem = _refused(client, {"type": "config"})
            assert code == 4503
            assert problem["type"].endswith("/too-many-streams")
            assert problem["retry_after_s"] > 0
            assert _open_streams(client) == 1
            # Ended by the protocol (eof with no audio is a 4422): Starlette's test client
            # cancels an app the moment its client leaves, so leaving mid-stream is tested
            # against a real server (test_stream_e2e.py).
            first.send_json({"type": "eof"})
            _, code = read_to_close(first)
            assert code == 4422
        # The first stream has ended: its slot is free again.
        _assert_none_open(client)
        _, _, code = _stream(client, [pcm_bytes(varied_audio(0.6), "pcm_s16le")])
        assert code == 1000


def test_a_key_is_needed_before_the_socket_is_accepted(
    tmp_path, kmeans_version: ModelVersion
) -> None:
    with _limited(tmp_path, api_keys=("k-123",)) as client:
        with (
            pytest.raises(WebSocketDenialResponse) as missing,
            client.websocket_connect("/v1/stream"),
        ):
            pass
        assert_problem(missing.value, status=401, slug="unauthenticated", path="/v1/stream")
        with (
            pytest.raises(WebSocketDenialResponse) as wrong,
            client.websocket_connect("/v1/stream", headers={"X-API-Key": "nope"}),
        ):
            pass
        assert_problem(wrong.value, status=403, slug="forbidden")
        with (
            pytest.raises(WebSocketDenialResponse),
            client.websocket_connect("/v1/stream", subprotocols=["uvac.v1", "uvac.key.x"]),
        ):
            pass
        audio = pcm_bytes(varied_audio(0.6), "pcm_s16le")
        # Each accepted stream is ended as the protocol says (eof, then the server closes):
        # leaving mid-stream is tested against a real server, where the app is not cancelled
        # the moment the client goes, as Starlette's test client does.
        with client.websocket_connect("/v1/stream", headers={"X-API-Key": "k-123"}) as websocket:
            websocket.send_json({"type": "config"})
            assert websocket.receive_json()["type"] == "ready"
            websocket.send_bytes(audio)
            websocket.send_json({"type": "eof"})
            _, code = read_to_close(websocket)
            assert code == 1000
        # A browser offers the key as a subprotocol; the server answers uvac.v1, not the key.
        with client.websocket_connect(
            "/v1/stream", subprotocols=["uvac.v1", "uvac.key.k-123"]
        ) as websocket:
            assert websocket.accepted_subprotocol == "uvac.v1"
            websocket.send_json({"type": "config"})
            assert websocket.receive_json()["type"] == "ready"
            websocket.send_bytes(audio)
            websocket.send_json({"type": "eof"})
            _, code = read_to_close(websocket)
            assert code == 1000
        _assert_none_open(client)


def test_stream_metrics_count_decisions_and_closes(client: TestClient) -> None:
    _stream(client, [pcm_bytes(varied_audio(1.0), "pcm_s16le")])
    _refused(client, "not json")
    text = client.get("/metrics").text
    count = metric_sample(text, "uvac_stream_decision_latency_seconds_count")
    assert count == len(WINDOWS.decision_starts(SAMPLE_RATE))
    assert 'uvac_streams_closed_total{code="1000"} 1.0' in text
    assert 'uvac_streams_closed_total{code="4400"} 1.0' in text


def test_every_log_line_of_a_stream_carries_its_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    from app.logging import JsonFormatter, RequestIdFilter

    caplog.set_level("INFO", logger="app.streaming")
    caplog.handler.addFilter(RequestIdFilter())
    ready, _, _ = _stream(client, [pcm_bytes(varied_audio(0.6), "pcm_s16le")])
    lines = [
        json.loads(JsonFormatter().format(record))
        for record in caplog.records
        if record.name.startswith("app.streaming")
    ]
    assert len(lines) >= 3
    assert {line.get("stream_id") for line in lines} == {ready["stream_id"]}


def test_an_encoder_model_streams_its_cluster_timeline(
    tmp_path, redis_db, store: ModelStore
) -> None:
    """The bundled model's kind (sound encoder, 5 s windows every 2.5 s, soft pi): the
    windows and the tail rule of the encoder front-end."""
    from tests.app.test_encoder_models import _publish

    _publish(store)
    rate = 44100
    samples = varied_audio(13.0, seed=11, sample_rate=rate)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    with _client(make_settings(tmp_path, stream_burst_seconds=60.0)) as client:
        expected = client.post("/v1/cluster", files={"file": ("a.wav", buffer.getvalue())}).json()
        frames = random_frames(pcm_bytes(samples, "pcm_f32le"), seed=11, max_bytes=40_000)
        ready, messages, code = _stream(client, frames, config={"encoding": "pcm_f32le"})
    assert code == 1000
    assert (ready["window_s"], ready["hop_s"], ready["sample_rate"]) == (5.0, 2.5, rate)
    decisions = [message for message in messages if message["type"] == "decision"]
    timeline = expected["windows"]
    assert [d["start_s"] for d in decisions] == [0.0, 2.5, 5.0, 7.5]
    assert len(timeline) == 5  # and one aligned to the end, at 8 s
    for decision, window in zip(decisions, timeline, strict=False):
        assert decision["end_s"] == pytest.approx(window["end_s"])
        np.testing.assert_allclose(decision["probabilities"], window["probabilities"], atol=1e-4)
        _assert_same_sound_facts(decision, window, speech=False)
    spread = np.ptp([window["probabilities"] for window in timeline], axis=0).max()
    assert spread > 0.01, "the windows' pi should differ for the comparison to mean anything"
    np.testing.assert_allclose(messages[-1]["probabilities"], expected["probabilities"], atol=1e-4)


def _count_early_starts(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """Publishing the sound-encoder model aside: the windows the sound encoder starts early
    and those it finishes from a start, counted as they happen."""
    from uvac.audio.encoders import sound

    started: list[int] = []
    finished: list[int] = []
    start_rows, finish_rows = sound.start_rows, sound.finish_rows

    def counted_start(*args: Any, **options: Any) -> Any:
        rows = yield from start_rows(*args, **options)
        started.append(1)
        return rows

    def counted_finish(*args: Any) -> Any:
        finished.append(1)
        return finish_rows(*args)

    monkeypatch.setattr(sound, "start_rows", counted_start)
    monkeypatch.setattr(sound, "finish_rows", counted_finish)
    return started, finished


def _stream_with_pauses(
    tmp_path, samples: np.ndarray, pauses: Sequence[tuple[float, int]], started: list[int]
) -> tuple[dict[str, Any], list[dict[str, Any]], int, str]:
    """/v1/cluster's answer for ``samples`` (44.1 kHz), then the stream's messages and close
    code, the stream pausing at each ``(seconds, starts)`` of ``pauses`` until that many early
    starts have run on a lane; and the metrics after."""
    rate = 44100
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    settings = make_settings(
        tmp_path,
        stream_burst_seconds=60.0,
        stream_early_start_seconds=0.5,
        encoder_precision="fp32",  # the same on every CPU (the bf16 case: the encoder's tests)
    )
    payload = pcm_bytes(samples, "pcm_f32le")
    with _client(settings) as client:
        expected = client.post("/v1/cluster", files={"file": ("a.wav", buffer.getvalue())}).json()
        with client.websocket_connect("/v1/stream") as websocket:
            websocket.send_json({"type": "config", "encoding": "pcm_f32le"})
            assert websocket.receive_json()["type"] == "ready"
            sent = 0
            for pause_s, count in pauses:
                until = 4 * int(pause_s * rate)
                websocket.send_bytes(payload[sent:until])
                sent = until
                assert wait_until(lambda count=count: len(started) == count, timeout_s=30)
            websocket.send_bytes(payload[sent:])
            websocket.send_json({"type": "eof"})
            messages, code = read_to_close(websocket)
        assert not client.app.state.services.batcher._early  # type: ignore[attr-defined]
        metrics = client.get("/metrics").text
    return expected, messages, code, metrics


def _assert_decisions_are_the_timeline(
    messages: list[dict[str, Any]], expected: dict[str, Any], starts_s: list[float]
) -> None:
    decisions = [message for message in messages if message["type"] == "decision"]
    assert [d["start_s"] for d in decisions] == starts_s
    for decision, window in zip(decisions, expected["windows"], strict=False):
        np.testing.assert_allclose(decision["probabilities"], window["probabilities"], atol=1e-4)
        _assert_same_sound_facts(decision, window, speech=False)


def test_windows_started_early_decide_as_the_cluster_timeline(
    tmp_path, redis_db, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream pauses after all but the last UVAC_STREAM_EARLY_START_SECONDS of each
    window: the encoder starts the window on what was heard, finishes it once it is whole,
    and the decisions are still /v1/cluster's windows."""
    from tests.app.test_encoder_models import _publish

    _publish(store)
    started, finished = _count_early_starts(monkeypatch)
    rate = 44100
    samples = 0.5 * varied_audio(8.0, seed=5, sample_rate=rate)
    for click_s in (0.1, 2.6):  # each window's loudest sample is in its heard part
        samples[int(click_s * rate)] = 0.99
    # Past each window's early start, before its end; the start runs on a lane.
    expected, messages, code, metrics = _stream_with_pauses(
        tmp_path, samples, ((4.6, 1), (7.1, 2)), started
    )
    assert 'uvac_stream_early_starts_total{outcome="used"} 2.0' in metrics
    assert code == 1000
    assert len(finished) == 2
    _assert_decisions_are_the_timeline(messages, expected, [0.0, 2.5])


def _early_starts(metrics: str, outcome: str) -> int:
    sample = f'uvac_stream_early_starts_total{{outcome="{outcome}"}}'
    return int(metric_sample(metrics, sample) or 0)


@pytest.mark.parametrize(
    ("louder", "pauses", "superseded", "used", "finished"),
    [
        # once: window 0 is begun again on its 4.7 s heard and finished from there
        ({4.65: 0.99}, ((4.6, 1), (4.7, 2), (7.1, 3)), 1, 2, 2),
        # twice (a rising sound): the second start is dropped too, window 0 goes whole
        ({4.65: 0.9, 4.72: 0.99}, ((4.6, 1), (4.7, 2), (7.1, 3)), 2, 1, 1),
        # late in the lead (0.1 s to come): still begun again, finished from the new start
        ({4.85: 0.99}, ((4.6, 1), (4.9, 2), (7.1, 3)), 1, 2, 2),
        # louder, but after window 0's end, in the frame that completes it: the start holds
        ({5.05: 0.99}, ((4.6, 1), (7.1, 2)), 0, 2, 2),
    ],
)
def test_a_start_a_louder_sample_supersedes_is_begun_again_once(
    tmp_path,
    redis_db,
    store: ModelStore,
    monkeypatch: pytest.MonkeyPatch,
    louder: dict[float, float],
    pauses: tuple[tuple[float, int], ...],
    superseded: int,
    used: int,
    finished: int,
) -> None:
    """Window 0 is started on its first 4.5 s; a louder sample of it then arrives before it
    is whole: that start is dropped and the window begun again on all it has heard, at most
    once; the decisions are still /v1/cluster's."""
    from tests.app.test_encoder_models import _publish

    _publish(store)
    started, finishes = _count_early_starts(monkeypatch)
    rate = 44100
    samples = 0.5 * varied_audio(8.0, seed=5, sample_rate=rate)
    samples[int(0.1 * rate)] = 0.7  # window 0's peak in its first 4.5 s
    for at_s, value in louder.items():  # after that start; in window 1's heard part
        samples[int(at_s * rate)] = value
    expected, messages, code, metrics = _stream_with_pauses(tmp_path, samples, pauses, started)
    assert _early_starts(metrics, "superseded") == superseded
    assert _early_starts(metrics, "used") == used
    assert code == 1000
    assert len(started) == pauses[-1][1] and len(finishes) == finished
    _assert_decisions_are_the_timeline(messages, expected, [0.0, 2.5])


def test_stream_windows_skip_speech_unless_asked_and_an_open_stream_holds_steady_load(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream's clips skip the speech detector unless its config asks for speech; while
    the stream is open the batcher is told the load is steady (no pass takes every serving
    thread, `app.batching`), and not after it closes. An upload keeps its speech."""
    batcher = client.app.state.services.batcher  # type: ignore[attr-defined]
    asked: list[tuple[bool, bool]] = []  # (speech, steady load)
    submit = batcher.submit

    async def recording(**request: Any) -> Any:
        asked.append((request.get("speech", True), batcher.steady))
        return await submit(**request)

    monkeypatch.setattr(batcher, "submit", recording)
    samples = varied_audio(3.3, seed=4)
    upload = client.post("/v1/cluster", files={"file": ("a.wav", _wav(samples, "pcm_f32le"))})
    assert upload.status_code == 200 and upload.json()["speech"] is not None
    assert asked == [(True, False)]
    _, messages, code = _stream(
        client, [pcm_bytes(samples, "pcm_f32le")], config={"encoding": "pcm_f32le"}
    )
    assert code == 1000
    decisions = [message for message in messages if message["type"] == "decision"]
    assert len(asked) - 1 >= len(decisions) >= 2  # every decision, then the closing clip(s)
    assert set(asked[1:]) == {(False, True)}
    assert all(decision["speech"] is None for decision in decisions)
    _assert_none_open(client)
    assert not batcher.steady

    asked.clear()
    timeline = upload.json()["windows"]
    _, messages, code = _stream(
        client,
        [pcm_bytes(samples, "pcm_f32le")],
        config={"encoding": "pcm_f32le", "speech": True},
    )
    assert code == 1000
    decisions = [message for message in messages if message["type"] == "decision"]
    # The decisions' windows ask for speech; the closing clips (the final pi) do not.
    assert set(asked[: len(decisions)]) == {(True, True)}
    for decision, window in zip(decisions, timeline, strict=False):
        _assert_same_sound_facts(decision, window, speech=True)


def test_decisions_carry_the_timelines_novelty_verdicts(
    settings: Settings, store: ModelStore
) -> None:
    """A model with a novelty score (fitted on tones): tones then noise, streamed, give each
    window the novelty and unknown verdict /v1/cluster's timeline gives it."""
    rng = np.random.default_rng(5)
    tones = np.concatenate([tone_clip(hz, index) for index, hz in enumerate(TONES_HZ)])
    noise = (0.3 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
    samples = np.concatenate([tones, noise]).astype(np.float32)
    with store.publish("scenes", metadata={"seed": 0}) as staging:
        save_trained_model(Path(staging), model_with_novelty())
    store.promote(staging.version.ref, "production")
    with _client(settings) as client:
        upload = client.post("/v1/cluster", files={"file": ("a.wav", _wav(samples, "pcm_f32le"))})
        assert upload.status_code == 200, upload.text
        frames = random_frames(pcm_bytes(samples, "pcm_f32le"), seed=5)
        _, messages, code = _stream(client, frames, config={"encoding": "pcm_f32le"})
    assert code == 1000
    decisions = [message for message in messages if message["type"] == "decision"]
    timeline = upload.json()["windows"]
    for decision, window in zip(decisions, timeline, strict=False):
        _assert_same_sound_facts(decision, window, speech=False)
    assert {decision["unknown"] for decision in decisions} == {True, False}
