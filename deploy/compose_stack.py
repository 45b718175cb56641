"""The compose project under test, and the small helpers every check step uses."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service_client import ServiceClient, tone, wait_for, wav_bytes

# The stated time for step 1: from `up -d` until /readyz answers 200 (the API imports torch
# and loads the default model; the first start also publishes it into the empty volume).
READY_LIMIT_SECONDS = 180
JOB_LIMIT_SECONDS = 600
SERVICES = ("redis", "api", "training-worker", "evaluation-worker")


@dataclass
class Stack:
    """The compose project under test and the API it serves."""

    project: str
    compose_files: list[str]
    client: ServiceClient
    facts: dict[str, Any] = field(default_factory=dict)  # shared between steps

    def compose(self, *arguments: str, timeout: float = 300) -> str:
        command = ["docker-compose", "-p", self.project]
        for path in self.compose_files:
            command += ["-f", path]
        return run([*command, *arguments], timeout=timeout)

    def containers(self, service: str) -> list[str]:
        labels = [
            f"label=com.docker.compose.project={self.project}",
            f"label=com.docker.compose.service={service}",
        ]
        output = run(["docker", "ps", "-q", "--filter", labels[0], "--filter", labels[1]])
        return output.split()

    def inspect(self, container: str, template: str) -> str:
        return run(["docker", "inspect", "-f", template, container]).strip()

    def wait_ready(self) -> float:
        started = time.monotonic()
        wait_for(
            lambda: self.client.status_of("/readyz") == 200,
            seconds=READY_LIMIT_SECONDS,
            what="/readyz 200",
        )
        return time.monotonic() - started


def run_steps(steps: list[tuple[str, str, Callable[[Any], None]]], target: Any) -> list[dict]:
    """Run each ``(name, checked, check)`` on ``target``; one entry each for deploy.json.

    A failed step is recorded with its reason, and the next one runs: each stands on its own.
    """
    entries: list[dict[str, Any]] = []
    for name, checked, check in steps:
        started = time.monotonic()
        entry: dict[str, Any] = {"name": name, "checked": checked, "passed": True}
        try:
            check(target)
        except Exception as error:  # recorded; the next step runs
            entry["passed"] = False
            entry["detail"] = f"{type(error).__name__}: {error}"
        entry["seconds"] = round(time.monotonic() - started, 1)
        entries.append(entry)
        print(
            f"{'PASS' if entry['passed'] else 'FAIL'} {name} ({entry['seconds']} s)"
            + (f": {entry['detail']}" if not entry["passed"] else ""),
            flush=True,
        )
    return entries


def run(command: list[str], *, timeout: float = 120) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}...: {result.stderr.strip()[-800:]}")
    return result.stdout


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def wait_job(client: ServiceClient, job_id: str, *, seconds: float = JOB_LIMIT_SECONDS) -> dict:
    def ended() -> dict | None:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in ("finished", "failed", "canceled", "stopped") else None

    job = wait_for(ended, seconds=seconds, what=f"job {job_id} to end", every=1)
    expect(job["status"] == "finished", f"job {job_id} ended {job['status']}: {job['error']}")
    return job


def submit(client: ServiceClient, path: str, payload: dict) -> str:
    answer = client.post_json(path, payload)
    expect(answer.status == 202, f"POST {path}: {answer.status} {answer.body[:300]!r}")
    return str(answer.json()["id"])


def served_ref(client: ServiceClient) -> str:
    answer = client.upload(
        "/v1/cluster", field="file", filename="tone.wav", content=wav_bytes(tone(220, 0.6))
    )
    expect(answer.status == 200, f"/v1/cluster: {answer.status} {answer.body[:300]!r}")
    return str(answer.json()["model"]["ref"])
