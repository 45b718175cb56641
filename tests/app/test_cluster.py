"""POST /v1/cluster and /v1/cluster/batch against a tiny real model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from model_store import ModelStore, ModelVersion
from service_config import Settings
from tests.app.conftest import N_CLUSTERS, SAMPLE_RATE, make_settings, publish_tiny_model
from tests.app.helpers import assert_problem, nan_wav, noise_wav, tone_wav
from tests.audio_fixtures import encode, noise, tone, wav_bytes


def _upload(client: TestClient, data: bytes, *, path: str = "/v1/cluster", name: str = "a.wav"):
    return client.post(path, files={"file": (name, data, "audio/wav")})


def test_cluster_answers_the_posterior_of_the_served_model(
    client: TestClient, served_version: ModelVersion
) -> None:
    response = _upload(client, noise_wav(1.0))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {
        "name": "scenes",
        "version": served_version.version,
        "ref": served_version.ref,
        "sha256": served_version.sha256,
    }
    assert body["n_clusters"] == N_CLUSTERS
    probabilities = body["probabilities"]
    assert len(probabilities) == N_CLUSTERS
    assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-5)
    assert body["assignment"] == max(range(N_CLUSTERS), key=probabilities.__getitem__)
    assert body["confidence"] == pytest.approx(max(probabilities))
    assert body["duration_s"] == pytest.approx(1.0, abs=1e-3)
    assert response.headers["x-request-id"]


def test_a_clip_longer_than_one_window_gets_a_timeline(client: TestClient) -> None:
    body = _upload(client, noise_wav(1.2)).json()
    windows = body["windows"]
    assert windows is not None and len(windows) >= 3  # 0.5 s windows, 0.25 s hop
    assert windows[0]["start_s"] == pytest.approx(0.0)
    assert all(len(window["probabilities"]) == N_CLUSTERS for window in windows)
    starts = [window["start_s"] for window in windows]
    assert starts == sorted(starts)


def test_a_clip_within_one_window_has_no_timeline(client: TestClient) -> None:
    body = _upload(client, tone_wav(0.3)).json()
    assert body["windows"] is None
    assert body["duration_s"] == pytest.approx(0.3, abs=1e-3)


def test_other_sample_rates_are_resampled(client: TestClient) -> None:
    response = _upload(client, tone_wav(1.0, sample_rate=22050))
    assert response.status_code == 200, response.text
    assert response.json()["duration_s"] == pytest.approx(1.0, abs=1e-3)


def test_the_legacy_unprefixed_path_is_the_same_handler(client: TestClient) -> None:
    legacy = _upload(client, noise_wav(0.5, seed=3), path="/cluster").json()
    versioned = _upload(client, noise_wav(0.5, seed=3)).json()
    assert legacy == versioned


def test_model_query_selects_another_version(client: TestClient, store: ModelStore) -> None:
    other = publish_tiny_model(store, seed=7, alias=None)
    body = _upload(client, noise_wav(0.5), path=f"/v1/cluster?model={other.ref}").json()
    assert body["model"]["ref"] == other.ref
    assert body["model"]["sha256"] == other.sha256
    served = _upload(client, noise_wav(0.5)).json()
    assert served["model"]["ref"] != other.ref
    by_alias = _upload(client, noise_wav(0.5), path="/v1/cluster?model=scenes@latest").json()
    assert by_alias["model"]["ref"] == other.ref


def test_unknown_model_query_is_404(client: TestClient) -> None:
    response = _upload(client, tone_wav(0.5), path="/v1/cluster?model=scenes:v99")
    assert_problem(response, status=404, slug="model-not-found", path="/v1/cluster")


def test_malformed_model_query_is_a_validation_problem(client: TestClient) -> None:
    response = _upload(client, tone_wav(0.5), path="/v1/cluster?model=Bad/Name")
    body = assert_problem(response, status=422, slug="validation-error")
    assert body["errors"][0]["loc"] == ["query", "model"]


def test_cluster_names_from_the_model_metadata(settings: Settings, store: ModelStore) -> None:
    publish_tiny_model(store, metadata={"cluster_names": ["quiet", "speech", "music"]})
    with TestClient(create_app(settings)) as client:
        body = _upload(client, noise_wav(0.5)).json()
    assert body["cluster_name"] == ["quiet", "speech", "music"][body["assignment"]]


@pytest.mark.parametrize(
    ("data", "status", "slug"),
    [
        (b"", 422, "empty-audio"),
        (b"this is a text file, not a recording" * 10, 415, "not-audio"),
        (tone_wav(1.0)[:30], 415, "not-audio"),  # truncated inside the header
        (nan_wav(), 422, "non-finite-audio"),
    ],
    ids=["empty", "not-audio", "truncated", "nan"],
)
def test_bad_audio_is_a_problem(client: TestClient, data: bytes, status: int, slug: str) -> None:
    assert_problem(_upload(client, data), status=status, slug=slug, path="/v1/cluster")


def test_audio_longer_than_the_cap_is_413(tmp_path, redis_db, served_version) -> None:
    settings = make_settings(tmp_path, max_audio_seconds=1.0)
    with TestClient(create_app(settings)) as client:
        assert _upload(client, tone_wav(0.9)).status_code == 200
        assert_problem(_upload(client, tone_wav(2.0)), status=413, slug="audio-too-long")


def test_upload_larger_than_the_cap_is_413(tmp_path, redis_db, served_version) -> None:
    settings = make_settings(tmp_path, max_upload_bytes=4000)
    with TestClient(create_app(settings)) as client:
        small = tone_wav(0.2)  # 8000 Hz x 0.2 s x 2 bytes = 3200 bytes + header
        assert len(small) < 4000
        assert _upload(client, small).status_code == 200
        body = assert_problem(_upload(client, tone_wav(1.0)), status=413, slug="upload-too-large")
        # The setting to raise, and the size as people read it.
        assert "UVAC_MAX_UPLOAD_BYTES" in body["detail"] and "0.0 MiB" in body["detail"]


def test_a_declared_content_length_over_the_cap_is_refused_unread(
    tmp_path, redis_db, served_version
) -> None:
    settings = make_settings(tmp_path, max_upload_bytes=1000)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/cluster",
            content=b"x" * 100,
            headers={
                "content-type": "multipart/form-data; boundary=abc",
                "content-length": str(50 * 1024 * 1024),
            },
        )
    body = assert_problem(response, status=413, slug="upload-too-large")
    assert "50.0 MiB" in body["detail"] and "UVAC_MAX_UPLOAD_BYTES" in body["detail"]


def test_missing_file_field_is_a_validation_problem(client: TestClient) -> None:
    response = client.post("/v1/cluster", files={"other": ("a.wav", tone_wav(0.5))})
    body = assert_problem(response, status=422, slug="validation-error")
    assert body["errors"][0]["loc"] == ["body", "file"]


def test_a_batch_without_any_file_is_the_documented_422(client: TestClient) -> None:
    response = client.post("/v1/cluster/batch", files={"other": ("a.wav", tone_wav(0.5))})
    body = assert_problem(response, status=422, slug="validation-error")
    assert body["errors"][0]["loc"] == ["body", "files"]
    document = client.get("/openapi.json").json()
    request_body = document["paths"]["/v1/cluster/batch"]["post"]["requestBody"]
    schema = request_body["content"]["multipart/form-data"]["schema"]
    assert "files" in schema["required"]
    assert schema["properties"]["files"]["minItems"] == 1


def test_a_non_multipart_body_is_415(client: TestClient) -> None:
    response = client.post("/v1/cluster", json={"file": "x"})
    assert_problem(response, status=415, slug="unsupported-media-type")


def test_no_model_yet_is_503_with_a_way_forward(empty_client: TestClient) -> None:
    response = _upload(empty_client, tone_wav(0.5))
    body = assert_problem(response, status=503, slug="no-model", path="/v1/cluster")
    assert "POST /v1/train" in body["detail"]
    assert body["serve_model"] == "scenes@production"
    assert int(response.headers["retry-after"]) >= 1


def test_batch_answers_one_result_or_problem_per_file(client: TestClient) -> None:
    files = [
        ("files", ("one.wav", noise_wav(0.5, seed=1), "audio/wav")),
        ("files", ("bad.txt", b"not audio at all, just words" * 4, "text/plain")),
        ("files", ("two.wav", tone_wav(1.0, sample_rate=16000), "audio/wav")),
    ]
    response = client.post("/v1/cluster/batch", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 3
    one, bad, two = body["data"]
    assert [one["filename"], bad["filename"], two["filename"]] == ["one.wav", "bad.txt", "two.wav"]
    assert one["error"] is None and len(one["result"]["probabilities"]) == N_CLUSTERS
    assert two["result"]["duration_s"] == pytest.approx(1.0, abs=1e-3)
    assert bad["result"] is None
    assert bad["error"]["status"] == 415
    assert bad["error"]["type"].endswith("/not-audio")
    # The entry names the request it came from, as a whole-request problem does.
    assert bad["error"]["request_id"] == response.headers["x-request-id"]
    # Each file's answer is the same as clustering it alone.
    alone = _upload(client, noise_wav(0.5, seed=1)).json()
    assert one["result"]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-5)


def test_batch_with_more_files_than_allowed_is_413(tmp_path, redis_db, served_version) -> None:
    settings = make_settings(tmp_path, max_batch_files=2)
    files = [("files", (f"{i}.wav", tone_wav(0.2), "audio/wav")) for i in range(3)]
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/cluster/batch", files=files)
    assert_problem(response, status=413, slug="too-many-files")


def test_concurrent_clips_share_forward_passes(tmp_path, redis_db, served_version) -> None:
    # Clips decoded concurrently (the batch route) land in fewer forward passes than clips.
    settings = make_settings(tmp_path, inference_max_wait_ms=100.0)
    files = [("files", (f"{i}.wav", noise_wav(0.3, seed=i), "audio/wav")) for i in range(8)]
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/cluster/batch", files=files).status_code == 200
        metrics = client.get("/metrics").text
    count_line = next(
        line for line in metrics.splitlines() if line.startswith("uvac_inference_batch_size_count")
    )
    sum_line = next(
        line for line in metrics.splitlines() if line.startswith("uvac_inference_batch_size_sum")
    )
    passes, clips = float(count_line.split()[-1]), float(sum_line.split()[-1])
    assert clips == 8
    assert passes < 8


def test_stereo_wav_is_mixed_down(client: TestClient) -> None:
    left = noise(0.5, sample_rate=SAMPLE_RATE)
    right = noise(0.5, sample_rate=SAMPLE_RATE, seed=1)
    stereo = np.stack([left, right], axis=1)  # (N, 2)
    response = _upload(client, wav_bytes(stereo, sample_rate=SAMPLE_RATE))
    assert response.status_code == 200, response.text


def test_a_batch_over_its_total_duration_is_413(tmp_path, redis_db, served_version) -> None:
    """The batch's clips together are capped, not only each one: the total bounds a batch's
    memory and the wait of the requests behind it."""
    settings = make_settings(tmp_path, max_audio_seconds=2.0, max_batch_audio_seconds=3.0)
    within = [("files", (f"{i}.wav", tone_wav(1.4), "audio/wav")) for i in range(2)]
    over = [("files", (f"{i}.wav", tone_wav(1.4), "audio/wav")) for i in range(3)]
    one_too_long = [
        ("files", ("long.wav", tone_wav(2.5), "audio/wav")),
        ("files", ("short.wav", tone_wav(0.3), "audio/wav")),
    ]
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/cluster/batch", files=within).status_code == 200
        body = assert_problem(
            client.post("/v1/cluster/batch", files=over), status=413, slug="batch-too-long"
        )
        assert "3 s" in body["detail"]
        # One clip over the per-clip cap is that clip's problem, not the batch's.
        items = client.post("/v1/cluster/batch", files=one_too_long).json()["data"]
    assert items[0]["error"]["status"] == 413 and items[1]["result"] is not None


def test_a_high_rate_recording_over_the_samples_cap_is_413(
    tmp_path, redis_db, served_version
) -> None:
    # 1 s at 192 kHz: small as FLAC, 192,000 samples decoded; the cap is checked on the header.
    flac = encode(tone(440, 1.0, sample_rate=192_000), sample_rate=192_000, format="FLAC")
    settings = make_settings(tmp_path, max_audio_samples=100_000)
    with TestClient(create_app(settings)) as client:
        assert _upload(client, tone_wav(1.0)).status_code == 200
        answer = _upload(client, flac, name="a.flac")
        assert_problem(answer, status=413, slug="audio-too-long")
        assert "samples" in answer.json()["detail"]
        batch = client.post("/v1/cluster/batch", files=[("files", ("a.flac", flac, "audio/flac"))])
        assert batch.json()["data"][0]["error"]["status"] == 413
