"""Faults of the API server (see `benchmarks.reliability.faults`):

- ``corrupt-weights`` (`corrupt_weights`): promote a version whose weights file has one byte
  flipped; it is refused, the previous version keeps serving, ``/readyz`` says why.
- ``huge-upload`` (`huge_upload`): a request declaring a 10 GB body (and one streaming without
  a length) is refused early with 413 and the server's memory stays flat.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.reliability.fault_checks import Checks, wait_for
from benchmarks.reliability.harness import MODEL_NAME, ApiServer, publish_tiny_model, tone_wav

MEGABYTE = 1024 * 1024


# --- (c) a corrupted weights file in the promoted version -----------------------------


def _served_ref(server: ApiServer) -> str | None:
    response = httpx.post(
        f"{server.url}/v1/cluster", files={"file": ("a.wav", tone_wav(1.0))}, timeout=10
    )
    return response.json()["model"]["ref"] if response.status_code == 200 else None


def corrupt_weights(*, server: ApiServer, store_root: Path) -> dict[str, Any]:
    checks = Checks()
    previous = _served_ref(server)
    checks.add("a version serves before the fault", previous is not None, previous)
    version = publish_tiny_model(store_root, seed=1, alias=None)
    weights = next(version.path.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    position = len(data) - 7  # inside the tensor data, past the JSON header
    os.chmod(weights, 0o644)  # versions are published read-only; a disk does not ask
    data[position] ^= 0x01
    weights.write_bytes(bytes(data))
    response = httpx.put(
        f"{server.url}/v1/models/{MODEL_NAME}/aliases/production",
        json={"version": version.version},
        timeout=10,
    )
    checks.add("the promotion itself is recorded", response.status_code == 200,
               response.status_code)  # fmt: skip

    def refused() -> dict[str, Any] | None:
        body = httpx.get(f"{server.url}/readyz", timeout=10).json()
        model = body.get("model") or body.get("checks", {}).get("model") or {}
        return body if model.get("last_refused") else None

    readiness = wait_for(refused, timeout=15) or {}
    model_check = readiness.get("model") or {}
    reason = str(model_check.get("last_refused") or "")
    checks.add("the corrupted version is refused and /readyz says why",
               version.ref in reason, reason[:300])  # fmt: skip
    checks.add("/readyz still reports the previous version as served",
               model_check.get("ref") == previous, model_check.get("ref"))  # fmt: skip
    still = _served_ref(server)
    checks.add("/v1/cluster keeps answering with the previous version", still == previous, still)
    return {
        "name": "corrupt-weights",
        "what": f"flip one byte of {weights.name} in {version.ref}, promote it",
        "survived": checks.survived,
        "checks": checks.items,
    }


# --- (d) a 10 GB upload ---------------------------------------------------------------


def _raw_upload(
    server: ApiServer, *, path: str, declared: int | None, send_bytes: int, chunk: int = 64 * 1024
) -> dict[str, Any]:
    """Send headers, then the body slowly, until the server answers; never reads the body."""
    boundary = "reliabilityboundary"
    headers = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        "Connection: close",
    ]
    headers.append(
        f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    )
    started = time.monotonic()
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        part_head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="huge.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        ).encode()
        payload = part_head + bytes(chunk - len(part_head))
        connection.setblocking(False)
        while sent < send_bytes:
            body = payload if sent == 0 else bytes(chunk)
            frame = body if declared is not None else f"{len(body):x}\r\n".encode() + body + b"\r\n"
            try:
                connection.sendall(frame)
                sent += len(body)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            try:
                answer += connection.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            time.sleep(0.002)
        connection.setblocking(True)
        connection.settimeout(10)
        try:
            while b"\r\n\r\n" not in answer:
                more = connection.recv(65536)
                if not more:
                    break
                answer += more
        except (TimeoutError, ConnectionResetError):
            pass
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 else None
    return {
        "status": status,
        "bytes_sent_before_answer": sent,
        "seconds_to_answer": round(time.monotonic() - started, 2),
    }


def huge_upload(*, server: ApiServer) -> dict[str, Any]:
    checks = Checks()
    rss_before = server.rss_bytes()
    declared = _raw_upload(
        server, path="/v1/cluster", declared=10 * 1024**3, send_bytes=8 * MEGABYTE
    )
    checks.add("10 GB declared on /v1/cluster: 413 before 8 MB were sent",
               declared["status"] == 413, declared)  # fmt: skip
    dataset = _raw_upload(
        server, path="/v1/datasets", declared=10 * 1024**3, send_bytes=8 * MEGABYTE
    )
    checks.add("10 GB declared on /v1/datasets: 413 before 8 MB were sent",
               dataset["status"] == 413, dataset)  # fmt: skip
    chunked = _raw_upload(server, path="/v1/cluster", declared=None, send_bytes=64 * MEGABYTE)
    checks.add("undeclared (chunked) 64 MB stream on /v1/cluster: 413 at the 20 MB cap",
               chunked["status"] == 413 and chunked["bytes_sent_before_answer"] < 64 * MEGABYTE,
               chunked)  # fmt: skip
    time.sleep(0.5)
    rss_after = server.rss_bytes()
    growth_mb = (rss_after - rss_before) / MEGABYTE
    checks.add("server RSS stays flat (< 32 MB growth)", growth_mb < 32, round(growth_mb, 1))
    still = httpx.post(
        f"{server.url}/v1/cluster", files={"file": ("a.wav", tone_wav(1.0))}, timeout=10
    )
    checks.add("the server still clusters afterwards", still.status_code == 200, still.status_code)
    return {
        "name": "huge-upload",
        "what": "Content-Length: 10737418240 then a slow stream; a chunked 64 MB stream",
        "survived": checks.survived,
        "checks": checks.items,
        "rss_before_mb": round(rss_before / MEGABYTE, 1),
        "rss_after_mb": round(rss_after / MEGABYTE, 1),
    }
