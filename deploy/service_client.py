"""What the deploy check needs to talk to the stack, from the standard library only (the host
that runs bin/deploy-check needs nothing but python3): an HTTP client for the API with the
API key, multipart uploads, and WAV files and archives made on the spot."""

from __future__ import annotations

import io
import json
import math
import random
import struct
import time
import urllib.error
import urllib.request
import uuid
import wave
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ServiceClient:
    """The API as the fitting backend calls it: `X-API-Key` on every request."""

    def __init__(self, base_url: str, *, api_key: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> Response:
        headers = {"X-API-Key": self.api_key}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.base_url + path, data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as answer:
                return Response(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers), error.read())

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post_json(self, path: str, payload: Any) -> Response:
        return self.request("POST", path, json_body=payload)

    def put_json(self, path: str, payload: Any) -> Response:
        return self.request("PUT", path, json_body=payload)

    def upload(self, path: str, *, field: str, filename: str, content: bytes) -> Response:
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.request(
            "POST", path, body=body, content_type=f"multipart/form-data; boundary={boundary}"
        )

    def status_of(self, path: str) -> int | None:
        """The status of a GET, or None while nothing answers."""
        try:
            return self.get(path, timeout=3).status
        except OSError:
            return None


def wait_for(condition: Callable[[], Any], *, seconds: float, what: str, every: float = 0.5) -> Any:
    """Poll until `condition()` is truthy and return it; TimeoutError after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = condition()
        except OSError:
            value = None  # the API or a container is restarting: ask again
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {seconds:.0f} s")


def tone(frequency: float, seconds: float, *, amplitude: float = 0.5) -> list[float]:
    count = round(seconds * SAMPLE_RATE)
    return [amplitude * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE) for i in range(count)]


def noise(seconds: float, *, amplitude: float = 0.1, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [amplitude * rng.gauss(0, 1) for _ in range(round(seconds * SAMPLE_RATE))]


def wav_bytes(samples: list[float]) -> bytes:
    """16-bit mono PCM WAV."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(SAMPLE_RATE)
        clipped = (max(-1.0, min(1.0, value)) for value in samples)
        file.writeframes(b"".join(struct.pack("<h", round(v * 32767)) for v in clipped))
    return buffer.getvalue()


def tone_archive(*, per_class: int = 6, seconds: float = 0.6) -> bytes:
    """Two labelled classes a model can tell apart (low tones, high tones), one folder each,
    and a file that is not audio (the upload must reject it and keep the rest)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(per_class):
            archive.writestr(f"low/low_{index}.wav", wav_bytes(tone(220 + 10 * index, seconds)))
            archive.writestr(f"high/high_{index}.wav", wav_bytes(tone(3000 + 50 * index, seconds)))
        archive.writestr("notes.txt", b"not audio")
    return buffer.getvalue()
