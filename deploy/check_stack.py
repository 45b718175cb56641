"""Start the compose stack and check it as the fitting backend uses it; write deploy.json.

bin/deploy-check runs this after it built the images. Each step of issue 14 becomes one
entry of `steps` (`name`, what was `checked`, `passed`, and `detail` when it failed); a
failed step does not stop the later ones, whose checks stand on their own. The stack is
left running for the caller to take down (it owns the cleanup).

Usage: python3 deploy/check_stack.py --project NAME --compose-file FILE ... --api-url URL
         --api-key KEY --build-seconds S --image IMAGE --out benchmarks/results/deploy.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

from compose_stack import READY_LIMIT_SECONDS, Stack, run, run_steps
from service_client import ServiceClient
from steps import STEPS

TORCH_VERSION = ["python3", "-c", "import torch; print(torch.__version__)"]
# What the CUDA build of torch adds to the image and a CPU build would not have: the NVIDIA
# libraries and triton (0 for a CPU build).
CUDA_LIBRARY_BYTES = [
    "python3",
    "-c",
    "import pathlib, sysconfig; site = pathlib.Path(sysconfig.get_paths()['purelib']); "
    "print(sum(f.stat().st_size for d in ('nvidia', 'triton') for f in (site / d).rglob('*') "
    "if f.is_file() and not f.is_symlink()))",
]


def image_bytes(image: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image]))


def _cpu_model() -> str:
    found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    return found.group(1).strip() if found else platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True)
    parser.add_argument("--compose-file", action="append", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--build-seconds", type=float, required=True)
    parser.add_argument(
        "--base-image-seconds", type=float, default=None, help="when this run made the base"
    )
    parser.add_argument("--build-args", default="", help="recorded as given")
    parser.add_argument("--out", type=Path, required=True)
    arguments = parser.parse_args(argv)

    stack = Stack(
        project=arguments.project,
        compose_files=arguments.compose_file,
        client=ServiceClient(arguments.api_url, api_key=arguments.api_key),
    )
    steps = run_steps(STEPS, stack)

    torch_build = cuda_bytes = None
    for container in stack.containers("api")[:1]:
        torch_build = run(["docker", "exec", container, *TORCH_VERSION]).strip()
        cuda_bytes = int(run(["docker", "exec", container, *CUDA_LIBRARY_BYTES]))
    results = {
        "what": "bin/deploy-check: the image built and the compose stack run on this machine",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "cores": run(["nproc"]).strip()},
        "engine": run(["docker", "version", "-f", "{{.Server.Version}}"]).strip(),
        "compose": run(["docker-compose", "version", "--short"]).strip(),
        "image": arguments.image,
        "image_bytes": image_bytes(arguments.image),
        "base_image": os.environ.get("UVAC_BASE_IMAGE"),
        "torch": torch_build,
        "cuda_library_bytes": cuda_bytes,
        "base_image_seconds": arguments.base_image_seconds,
        "build_seconds": round(arguments.build_seconds, 1),
        "build_args": arguments.build_args,
        "ready_seconds": stack.facts.get("ready_seconds"),
        "ready_limit_seconds": READY_LIMIT_SECONDS,
        "facts": {k: v for k, v in stack.facts.items() if k != "ready_seconds"},
        "steps": steps,
    }
    arguments.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(step["passed"] for step in steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
