"""Every `curl` example of the README, run as written against the app.

Each command is read from the README's code blocks (continuation lines and quotes included),
its options turned into the same HTTP request (method, headers, JSON or multipart body), and
sent in the README's order to an app serving a tiny model with a real Redis. The README's
placeholders are filled from what the earlier examples answered: `<job id>` from the last job
submitted, `ds_0123456789ab` from the uploaded data set, and the files it names are made here.

An example passes when the API accepts its request as written: no 5xx, no "no such route"
404 or 405, and no refusal of the request's form (a 415, or a 422 `validation-error`: the
README's body would be wrong). Answers about the state of this small store are fine: the
README's `scenes:v2` does not exist here (404 `model-not-found`), and a rollback without
history is a 409.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from tests.app.conftest import SAMPLE_RATE
from tests.app.helpers import noise_wav, tone_wav

README = Path(__file__).resolve().parents[2] / "README.md"
BASE_URL = "http://127.0.0.1:8000"
DATASET_PLACEHOLDER = "ds_0123456789ab"
# Answers about this store's state, not about the request's form.
ACCEPTABLE_REFUSALS = {"model-not-found", "report-not-found", "alias-conflict", "unknown-cluster"}


@dataclass
class Request:
    text: str
    method: str = "GET"
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    data: str | None = None
    files: list[tuple[str, str]] = field(default_factory=list)


def readme_curl_commands(text: str) -> list[str]:
    """Every curl command of the README's bash blocks, continuation lines joined."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = block.splitlines()
        index = 0
        while index < len(lines):
            line = lines[index]
            index += 1
            if not line.startswith("curl "):
                continue
            command = line
            while command.endswith("\\") or not _balanced(command):
                command = command.removesuffix("\\") + "\n" + lines[index]
                index += 1
            commands.append(command)
    return commands


def _balanced(command: str) -> bool:
    try:
        shlex.split(command, comments=True)
    except ValueError:
        return False
    return True


JOB_PLACEHOLDERS = ("<job id>", "<id>")
JOB_TOKEN = "JOB_ID"


def parse_curl(command: str) -> Request:
    for placeholder in JOB_PLACEHOLDERS:  # a word with a space in it, for the reader
        command = command.replace(placeholder, JOB_TOKEN)
    words = shlex.split(command, comments=True)
    assert words[0] == "curl"
    request = Request(text=command)
    position = 1
    while position < len(words):
        word = words[position]
        position += 1
        if word.startswith("http"):
            request.url = word
        elif word == "-X":
            request.method = words[position]
            position += 1
        elif word == "-H":
            name, _, value = words[position].partition(":")
            request.headers[name.strip()] = value.strip()
            position += 1
        elif word == "-d":
            request.data = words[position]
            request.method = "POST" if request.method == "GET" else request.method
            position += 1
        elif word == "-F":
            name, _, value = words[position].partition("=@")
            request.files.append((name, value))
            request.method = "POST" if request.method == "GET" else request.method
            position += 1
        elif word in ("-s", "-si", "-sO", "-i", "-O"):
            continue
        else:
            raise AssertionError(f"an option this test does not know: {word} in {command}")
    assert request.url.startswith(BASE_URL), command
    return request


def _flac(seconds: float) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(1)
    samples = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    sf.write(buffer, samples, SAMPLE_RATE, format="FLAC")
    return buffer.getvalue()


def _recordings_zip() -> bytes:
    buffer = io.BytesIO()
    # Enough recordings that the README's K (up to 15) fits in what training keeps once a share of
    # them is held out.
    with zipfile.ZipFile(buffer, "w") as archive:
        for take in range(12):
            archive.writestr(f"tone/t{take}.wav", tone_wav(0.5, hz=300.0 + 50 * take))
            archive.writestr(f"noise/n{take}.wav", noise_wav(0.5, seed=take))
    return buffer.getvalue()


FILES = {
    "kitchen.wav": lambda: noise_wav(1.0),
    "a.wav": lambda: tone_wav(0.5),
    "b.flac": lambda: _flac(0.5),
    "recordings.zip": _recordings_zip,
}


def test_the_readme_has_its_examples() -> None:
    commands = readme_curl_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 15
    assert any("-F files=@a.wav" in command for command in commands)
    assert any('"sweep": {"seeds": [0, 1, 2]}' in command for command in commands)


def test_every_curl_example_of_the_readme_is_accepted_as_written(client: TestClient) -> None:
    state: dict[str, str] = {}
    answered: list[tuple[str, int]] = []
    for command in readme_curl_commands(README.read_text(encoding="utf-8")):
        request = parse_curl(command)
        url = request.url.removeprefix(BASE_URL)
        url = url.replace(JOB_TOKEN, state.get("job", JOB_TOKEN))
        data = request.data
        if data is not None and DATASET_PLACEHOLDER in data:
            data = data.replace(DATASET_PLACEHOLDER, state["dataset"])
        files = [(name, (path, FILES[path]())) for name, path in request.files]
        response = client.request(
            request.method,
            url,
            headers=request.headers,
            content=data.encode() if data is not None else None,
            files=files or None,
        )
        answered.append((f"{request.method} {url}", response.status_code))
        _check(command, response.status_code, _problem_type(response))
        if response.status_code == 201 and url == "/v1/datasets":
            state["dataset"] = response.json()["id"]
        if response.status_code == 202 and "location" in response.headers:
            state["job"] = response.headers["location"].rsplit("/", 1)[-1]
    statuses = dict(answered)
    assert statuses["POST /v1/cluster"] == 200 and statuses["POST /v1/cluster/batch"] == 200
    assert statuses["POST /v1/datasets"] == 201 and statuses["POST /v1/train"] == 202


def _problem_type(response: Any) -> str | None:
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        return None
    return str(json.loads(response.content)["type"]).rsplit("/", 1)[-1]


def _check(command: str, status: int, slug: str | None) -> None:
    assert status < 500, (command, status, slug)
    assert status not in (405, 415), (command, status, slug)
    if status == 422:
        assert slug != "validation-error", (command, slug)
    if status == 404:
        assert slug in ACCEPTABLE_REFUSALS, (command, slug)  # not a route that does not exist
    if status == 409:
        assert slug in ACCEPTABLE_REFUSALS | {"job-not-cancellable"}, (command, slug)


@pytest.mark.parametrize(
    ("command", "method", "data"),
    [
        ("curl -s http://127.0.0.1:8000/v1/models", "GET", None),
        ("curl -s -X PUT http://127.0.0.1:8000/v1/x \\\n  -d '{\"a\":\n 1}'", "PUT", '{"a":\n 1}'),
    ],
)
def test_the_reader_of_curl_commands(command: str, method: str, data: str | None) -> None:
    request = parse_curl(command.replace("\\\n", "\n"))
    assert (request.method, request.data) == (method, data)
