"""Start deploy/compose.scale.yml for real and check that its hosts share only Redis and S3.

bin/deploy-check runs this after the single-host checks (deploy/check_stack.py), with the
scale stack's images built, and adds a ``scale`` section to deploy.json: the steps below, in
the same form as the single-host ones (`name`, what was `checked`, `passed`, `detail` when it
failed, `seconds`), and the facts they found. The stack is left running for the caller to
take down.

Usage: python3 deploy/check_scale.py --project NAME --compose-file FILE ... --api-a URL
         --api-b URL --api-key KEY --out benchmarks/results/deploy.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from compose_stack import (
    READY_LIMIT_SECONDS,
    Stack,
    expect,
    run_steps,
    served_ref,
    submit,
    wait_job,
)
from service_client import ServiceClient, tone_archive, wait_for

UVAC_SERVICES = ("api-a", "api-b", "worker-a", "worker-b")
SWITCH_LIMIT_SECONDS = 60


@dataclass
class ScaleStack:
    """The scale project, one `Stack` per API replica (both name the same project)."""

    a: Stack
    b: Stack
    facts: dict[str, Any] = field(default_factory=dict)

    def container(self, service: str) -> str:
        (container,) = self.a.containers(service)
        return container


def step_both_replicas_ready(scale: ScaleStack) -> None:
    started = time.monotonic()
    scale.a.compose("up", "-d", "--no-build", timeout=600)
    for client in (scale.a.client, scale.b.client):
        wait_for(
            partial(_is_ready, client),
            seconds=READY_LIMIT_SECONDS,
            what=f"/readyz 200 from {client.base_url}",
        )
    scale.facts["ready_seconds"] = round(time.monotonic() - started, 1)
    # Both replicas start on an empty store and may each publish the bundled model; the
    # alias they serve is then moved twice, and each follows it within its poll interval.
    served = wait_for(
        lambda: _same_ref(scale.a.client, scale.b.client),
        seconds=SWITCH_LIMIT_SECONDS,
        what="both replicas to serve the same model",
    )
    scale.facts["served_at_start"] = served
    listing = scale.a.client.get("/v1/models/scenes/versions").json()
    scale.facts["bundled_versions_at_start"] = listing.get("count")


def _same_ref(a: ServiceClient, b: ServiceClient) -> str | None:
    first, second = served_ref(a), served_ref(b)
    return first if first == second else None


def _is_ready(client: ServiceClient) -> bool:
    return client.status_of("/readyz") == 200


def step_volumes_are_private(scale: ScaleStack) -> None:
    volumes: dict[str, list[str]] = {}
    for service in UVAC_SERVICES:
        template = "{{range .Mounts}}{{.Name}} {{end}}"
        volumes[service] = scale.a.inspect(scale.container(service), template).split()
        expect(len(volumes[service]) == 1, f"{service} mounts {volumes[service]}")
    names = [name for mounted in volumes.values() for name in mounted]
    expect(len(set(names)) == len(names), f"a volume is shared: {volumes}")


def step_upload_a_train_promote_a_serve_b(scale: ScaleStack) -> None:
    a, b = scale.a.client, scale.b.client
    uploaded = a.upload("/v1/datasets", field="file", filename="tones.zip", content=tone_archive())
    expect(uploaded.status == 201, f"upload to A: {uploaded.status} {uploaded.body[:300]!r}")
    dataset_id = uploaded.json()["id"]
    seen = b.get(f"/v1/datasets/{dataset_id}")
    expect(seen.status == 200, f"B does not see the data set: {seen.status}")
    scale.facts["dataset_id"] = dataset_id

    train = {"dataset_id": dataset_id, "n_clusters": 2, "model_name": "scenes", "epochs": 1}
    job_id = submit(a, "/v1/train", {**train, "seed": 1})
    finished = wait_job(b, job_id)  # followed through the other replica
    published = str(finished["result"]["model"])
    scale.facts["train_job_id"] = job_id
    scale.facts["published"] = published
    scale.facts["trained_on"] = [
        worker for worker in ("worker-a", "worker-b") if job_id in _logs(scale.container(worker))
    ]
    expect(len(scale.facts["trained_on"]) == 1, f"trained on {scale.facts['trained_on']}")

    name, _, number = published.partition(":v")
    promoted = a.put_json(f"/v1/models/{name}/aliases/production", {"version": int(number)})
    expect(promoted.status == 200, f"promote on A: {promoted.status} {promoted.body[:300]!r}")
    promoted_at = time.monotonic()
    wait_for(
        lambda: served_ref(b) == published,
        seconds=SWITCH_LIMIT_SECONDS,
        what=f"B to serve {published}",
    )
    scale.facts["api_b_switched_s"] = round(time.monotonic() - promoted_at, 1)
    version_b = b.get(f"/v1/models/{name}/versions/{number}").json()
    version_a = a.get(f"/v1/models/{name}/versions/{number}").json()
    expect(version_a["sha256"] == version_b["sha256"], "the replicas disagree on the digest")


def _logs(container: str) -> str:
    """What a container wrote; `docker logs` passes its stderr (where workers log) as stderr."""
    result = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout + result.stderr


STEPS: list[tuple[str, str, Callable[[ScaleStack], None]]] = [
    (
        "scale-ready",
        f"`up -d` of compose.scale.yml: both API replicas answer /readyz 200 within "
        f"{READY_LIMIT_SECONDS} s and serve the same model",
        step_both_replicas_ready,
    ),
    (
        "scale-volumes-private",
        "each API replica and worker mounts one volume of its own, none shared",
        step_volumes_are_private,
    ),
    (
        "scale-upload-a-train-promote-serve-b",
        "a zip of WAVs uploaded through API A is seen by API B; a 1-epoch training job "
        "submitted to A runs on exactly one of the two workers and is followed to its end "
        "through B; promoting the version it published through A makes B answer /v1/cluster "
        f"with it within {SWITCH_LIMIT_SECONDS} s, and both replicas give it the same sha256",
        step_upload_a_train_promote_a_serve_b,
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--compose-file", action="append", required=True)
    parser.add_argument("--api-a", required=True)
    parser.add_argument("--api-b", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args(argv)

    def stack(url: str) -> Stack:
        client = ServiceClient(url, api_key=arguments.api_key)
        return Stack(project=arguments.project, compose_files=arguments.compose_file, client=client)

    scale = ScaleStack(a=stack(arguments.api_a), b=stack(arguments.api_b))
    steps = run_steps(STEPS, scale)
    results = json.loads(arguments.out.read_text()) if arguments.out.is_file() else {}
    results["scale"] = {
        "compose_files": arguments.compose_file,
        "facts": scale.facts,
        "steps": steps,
        "passed": all(step["passed"] for step in steps),
    }
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["scale"]["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
