"""End to end against a real uvicorn process (the production entry point with --factory),
the real Redis (database 12) and a model store on disk shared with this test process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from model_store import ModelStore
from tests.app.conftest import REDIS_TEST_URL, UNUSED_REDIS_URL, publish_tiny_model
from tests.app.helpers import assert_problem, noise_wav, tone_wav

pytestmark = pytest.mark.e2e

REPOSITORY = Path(__file__).resolve().parents[2]
MAX_UPLOAD_BYTES = 100_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> list[dict]:
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        documents = []
        for line in lines:
            try:
                documents.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return documents


def _start_server(
    data_dir: Path,
    *,
    redis_url: str,
    log_path: Path,
    extra_environment: dict[str, str] | None = None,
) -> Server:
    port = _free_port()
    environment = {
        **os.environ,
        "UVAC_DATA_DIR": str(data_dir),
        "UVAC_REDIS_URL": redis_url,
        "UVAC_DEVICE": "cpu",
        "UVAC_TORCH_THREADS": "1",
        "UVAC_MODEL_POLL_SECONDS": "0.2",
        "UVAC_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "UVAC_REDIS_RETRY_AFTER_SECONDS": "3",
        # Slow clients are cut after a short grace here (test_slow_uploads_...).
        "UVAC_UPLOAD_GRACE_SECONDS": "1",
        "UVAC_MIN_UPLOAD_BYTES_PER_SECOND": "2000",
    }
    environment.pop("UVAC_API_KEYS", None)
    environment.update(extra_environment or {})
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        ],
        cwd=REPOSITORY,
        env=environment,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    log_file.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {log_path.read_text()}")
        try:
            if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"uvicorn did not start: {log_path.read_text()}")
        time.sleep(0.1)
    return Server(url=url, port=port, process=process, log_path=log_path)


def _stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-data")


@pytest.fixture(scope="module")
def store(data_dir: Path) -> ModelStore:
    store = ModelStore(data_dir / "models")
    publish_tiny_model(store)
    return store


@contextlib.contextmanager
def serving(data_dir: Path, *, extra_environment: dict[str, str] | None = None) -> Iterator[Server]:
    """A server of ``data_dir`` on the test Redis database, which is empty before and after."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    server = _start_server(
        data_dir,
        redis_url=REDIS_TEST_URL,
        log_path=data_dir / "api.log",
        extra_environment=extra_environment,
    )
    try:
        yield server
    finally:
        _stop(server)
        client.flushdb()
        client.close()


@pytest.fixture(scope="module")
def server(data_dir: Path, store: ModelStore) -> Iterator[Server]:
    with serving(data_dir) as server:
        yield server


def _cluster(server: Server, data: bytes, **kwargs) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/cluster", files={"file": ("clip.wav", data)}, timeout=30, **kwargs
    )


def test_upload_and_cluster(server: Server, store: ModelStore) -> None:
    response = _cluster(server, noise_wav(1.0), headers={"X-Request-ID": "e2e-trace-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["ref"] == store.get("scenes@production").ref
    assert abs(sum(body["probabilities"]) - 1) < 1e-5
    assert len(body["windows"]) >= 2
    assert response.headers["x-request-id"] == "e2e-trace-1"
    legacy = httpx.post(f"{server.url}/cluster", files={"file": ("c.wav", tone_wav(0.5))})
    assert legacy.status_code == 200


def test_concurrent_uploads_all_succeed(server: Server) -> None:
    import concurrent.futures

    clips = [noise_wav(0.5, seed=seed) for seed in range(12)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda clip: _cluster(server, clip), clips))
    assert [response.status_code for response in responses] == [200] * 12
    # Same clip, same answer, whatever batch it landed in.
    again = _cluster(server, clips[3]).json()
    assert again["probabilities"] == pytest.approx(responses[3].json()["probabilities"], abs=1e-5)


def test_error_bodies_over_the_wire(server: Server) -> None:
    assert_problem(_cluster(server, b"definitely not audio" * 10), status=415, slug="not-audio")
    assert_problem(_cluster(server, b""), status=422, slug="empty-audio")
    truncated_header = tone_wav(2.0)[:30]
    assert_problem(_cluster(server, truncated_header), status=415, slug="not-audio")
    too_big = _cluster(server, tone_wav(10.0))  # 160 kB > 100 kB
    assert_problem(too_big, status=413, slug="upload-too-large")
    unknown = httpx.get(f"{server.url}/v1/jobs/not-a-job")
    assert_problem(unknown, status=404, slug="job-not-found")
    invalid = httpx.post(f"{server.url}/v1/train", json={"n_clusters": "many"})
    body = assert_problem(invalid, status=422, slug="validation-error")
    assert {tuple(error["loc"]) for error in body["errors"]} >= {
        ("body", "dataset_id"),
        ("body", "n_clusters"),
    }


def _read_response_head(sock: socket.socket) -> tuple[int, bytes]:
    received = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    status = int(received.split(b" ", 2)[1])
    return status, received


def test_an_oversized_declared_body_is_refused_before_it_is_sent(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/cluster HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            b"Content-Length: 1073741824\r\n\r\n"
            b"--xyz\r\n"
        )
        status, head = _read_response_head(sock)  # 1 GiB announced, 7 bytes sent
    assert status == 413
    assert b"application/problem+json" in head


def test_an_oversized_chunked_body_is_cut_off_while_streaming(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/cluster HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        part_head = (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        )
        sock.sendall(b"%x\r\n%s\r\n" % (len(part_head), part_head))
        block = b"\0" * 16384
        # Twice the cap, and no terminating chunk: the answer must come without the end.
        for _ in range(2 * MAX_UPLOAD_BYTES // len(block)):
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            except (BrokenPipeError, ConnectionResetError):
                break
        status, _ = _read_response_head(sock)
    assert status == 413


def _start_slow_upload(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/datasets HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n"
        b"Content-Length: 100000\r\n\r\n"
        b"--xyz\r\n"
    )
    return sock


def test_slow_uploads_are_cut_and_do_not_starve_others(server: Server) -> None:
    slow = [_start_slow_upload(server.port) for _ in range(2)]  # both data set upload slots
    try:
        time.sleep(0.3)
        for sock in slow:
            sock.sendall(b"C")  # one byte, then nothing: far below the 2000 B/s floor
        statuses = []
        for sock in slow:
            sock.settimeout(10)
            statuses.append(_read_response_head(sock)[0])
        assert statuses == [408, 408]
    finally:
        for sock in slow:
            sock.close()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("a.wav", tone_wav(0.5))
    answer = httpx.post(
        f"{server.url}/v1/datasets",
        files={"file": ("a.zip", archive.getvalue(), "application/zip")},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


def test_a_promotion_is_seen_by_the_running_server(server: Server, store: ModelStore) -> None:
    before = _cluster(server, noise_wav(0.5)).json()["model"]
    newer = publish_tiny_model(store, seed=21, alias=None)
    store.promote(newer.ref, "production")  # another process moves the alias
    deadline = time.monotonic() + 15
    while _cluster(server, noise_wav(0.5)).json()["model"]["ref"] != newer.ref:
        assert time.monotonic() < deadline, "the server never picked up the promotion"
        time.sleep(0.1)
    after = _cluster(server, noise_wav(0.5)).json()["model"]
    assert after["sha256"] == newer.sha256 and after["ref"] != before["ref"]
    readiness = httpx.get(f"{server.url}/readyz").json()
    assert readiness["model"]["ref"] == newer.ref


def test_metrics_and_json_logs_with_request_ids(server: Server) -> None:
    _cluster(server, noise_wav(0.5), headers={"X-Request-ID": "e2e-log-check"})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'route="/v1/cluster"' in text
    assert "uvac_inference_batch_size_bucket" in text
    deadline = time.monotonic() + 5
    while not any(line.get("request_id") == "e2e-log-check" for line in server.logs()):
        assert time.monotonic() < deadline, "no JSON log line carried the request id"
        time.sleep(0.1)


def test_redis_down_job_routes_503_while_clustering_works(
    tmp_path: Path, store: ModelStore, data_dir: Path
) -> None:
    down = _start_server(data_dir, redis_url=UNUSED_REDIS_URL, log_path=tmp_path / "down.log")
    try:
        jobs = httpx.get(f"{down.url}/v1/jobs", timeout=10)
        assert_problem(jobs, status=503, slug="redis-unavailable")
        assert jobs.headers["retry-after"] == "3"
        assert _cluster(down, noise_wav(0.5)).status_code == 200
        assert httpx.get(f"{down.url}/readyz").status_code == 503
        assert httpx.get(f"{down.url}/healthz").status_code == 200
    finally:
        _stop(down)
