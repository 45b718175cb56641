"""`uvac jobs watch`: follows a job through the API until it ends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from uvac.cli import main
from uvac.cli.jobs import phase_position

JOB = "6a1f0e4c-51b2-4d7e-9c1a-0f2e3d4c5b6a"


class FakeApi:
    """Answers GET /v1/jobs/{JOB} with the next document of a script (the last repeats)."""

    def __init__(self, documents: list[tuple[int, dict[str, Any]]]) -> None:
        self.documents = documents
        self.requests: list[tuple[str, str | None]] = []

    def serve(self) -> Iterator[str]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.requests.append((self.path, self.headers.get("X-API-Key")))
                status, body = api.documents.pop(0) if len(api.documents) > 1 else api.documents[0]
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


def _job(status: str, progress: dict[str, Any] | None, **fields: Any) -> tuple[int, dict]:
    return 200, {"id": JOB, "status": status, "progress": progress, **fields}


@pytest.fixture
def api_script(request: pytest.FixtureRequest) -> Iterator[tuple[FakeApi, str]]:
    fake = FakeApi(request.param)
    for url in fake.serve():
        yield fake, url


TRAINING = {"phase": "training", "epoch": 2, "epochs": 3, "step": 1, "steps": 4, "eta_seconds": 5}


@pytest.mark.parametrize(
    "api_script",
    [[
        _job("queued", None),
        _job("started", {"phase": "partition", "step": 0, "steps": 300}),
        _job("started", TRAINING),
        _job("finished", {"phase": "publishing"}, result={"model": "scenes:v2"}),
    ]],
    indirect=True,
)  # fmt: skip
def test_watch_follows_the_phases_and_prints_the_result(
    api_script: tuple[FakeApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = api_script
    code = main(["jobs", "watch", JOB, "--url", url, "--api-key", "k", "--interval", "0.01"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out) == {"model": "scenes:v2"}
    assert "partition" in captured.err and "training, epoch 2/3" in captured.err
    assert fake.requests[0] == (f"/v1/jobs/{JOB}", "k")


@pytest.mark.parametrize(
    "api_script",
    [[_job("failed", None, error={"type": "DatasetError", "message": "no audio"})]],
    indirect=True,
)
def test_watch_of_a_failed_job_exits_1_with_the_error(
    api_script: tuple[FakeApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = api_script
    assert main(["jobs", "watch", JOB, "--url", url, "--interval", "0.01"]) == 1
    assert "failed: DatasetError: no audio" in capsys.readouterr().err


@pytest.mark.parametrize(
    "api_script",
    [[(404, {"title": "Job not found", "detail": "No job 'x'.", "status": 404})]],
    indirect=True,
)
def test_watch_of_an_unknown_job_says_what_the_api_said(
    api_script: tuple[FakeApi, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = api_script
    assert main(["jobs", "watch", "x", "--url", url]) == 1
    assert "404 Job not found: No job 'x'." in capsys.readouterr().err


def test_phase_positions() -> None:
    assert phase_position(None) == ("waiting", 0, None)
    assert phase_position(TRAINING) == ("training, epoch 2/3", 5, 12)
    assert phase_position({"phase": "encoding", "files_done": 3, "files": 9}) == ("encoding", 3, 9)
    sweep = {"phase": "sweep", "runs_done": 4, "runs": 40, "run_phase": "training"}
    assert phase_position(sweep) == ("sweep, run 5", 4, 40)
    assert phase_position({"phase": "publishing"}) == ("publishing", 0, None)
