"""What an installation of the service costs on disk, package by package.

    .venv/bin/python benchmarks/install_size.py [--json benchmarks/results/install_size.json]

Sums the files each installed distribution lists (its RECORD) in the running interpreter's
environment and groups them: torch itself, the NVIDIA CUDA libraries (``nvidia-*``), triton,
the rest. On a CPU host the CUDA libraries and triton are what PyPI's torch wheel brings and
the CPU wheels of the PyTorch index do not (README, "Installing on a CPU host").
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections import defaultdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _group(name: str) -> str:
    lowered = name.lower().replace("_", "-")
    if lowered.startswith("nvidia-"):
        return "cuda_libraries"
    if lowered in ("torch", "triton", "torchaudio"):
        return lowered
    return "other"


def distribution_sizes() -> dict[str, int]:
    """Bytes on disk of every installed distribution's listed files."""
    sizes: dict[str, int] = {}
    for distribution in metadata.distributions():
        total = 0
        for file in distribution.files or ():
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
        name = distribution.metadata["Name"] or "?"
        sizes[name] = sizes.get(name, 0) + total
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/install_size.json")
    args = parser.parse_args()
    sizes = distribution_sizes()
    groups: dict[str, int] = defaultdict(int)
    for name, size in sizes.items():
        groups[_group(name)] += size
    torch_version = metadata.version("torch") if "torch" in sizes else None
    document = {
        "measured_at": datetime.now(UTC).isoformat(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "torch": torch_version,
        "total_bytes": sum(sizes.values()),
        "groups_bytes": dict(sorted(groups.items(), key=lambda item: -item[1])),
        "largest_bytes": dict(sorted(sizes.items(), key=lambda item: -item[1])[:15]),
        "note": "the environment this script runs in; the service's own packages are small",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    for group, size in document["groups_bytes"].items():
        print(f"{group:>16}: {size / 1e9:6.2f} GB")
    print(f"{'total':>16}: {document['total_bytes'] / 1e9:6.2f} GB (torch {torch_version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
