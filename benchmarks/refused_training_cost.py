"""CPU time the API spends refusing a training request too large for a worker (issue #22,
item 19): the submission-time check (`app.training_limits.check_training_fits`) on the
request's shape, in fresh processes, as CPU seconds (`time.process_time`, so that other load
on the machine changes them little).

Four figures per request shape, each the median over ``--repeats`` fresh processes:

- ``first``: the first refusal of a fresh process: PyTorch's meta-device machinery warms up
  once and the shape is counted;
- ``repeat``: the same request again (a client retrying a refused request): the cached
  shape, a dictionary lookup and the data set's windows;
- ``varied``: the same model with another seed, learning rate and batch size, which change
  no tensor's shape (before the count was keyed on the model's shape alone, each such
  request was counted anew, at the cost of ``new_shape``);
- ``new_shape``: a refusal of a model of another width, in a process that has refused others:
  a full count (about 2 x 4 probes on the meta device).

Run: ``python -m benchmarks.refused_training_cost`` (writes
``benchmarks/results/refused_training_cost.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import load_average, machine_info, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "refused_training_cost.json"

# The refused requests of the review: wide convolutional networks on long log-mel windows.
SHAPES: dict[str, dict[str, Any]] = {
    "wide-conv": {"model_hyperparameters": {"conv_channels": [512, 512, 512, 512]}},
    "wide-conv-long-window": {
        "model_hyperparameters": {"conv_channels": [256, 256, 256, 256]},
        "features": {"window_seconds": 30, "window_hop_seconds": 15},
    },
}
_OTHER = {"model_hyperparameters": {"conv_channels": [384, 384, 384, 384]}}

_CHILD = """
import json, sys, time
import torch
torch.set_num_threads(1)
from fastapi.exceptions import RequestValidationError
from app.schemas import TrainRequest
from app.training_limits import check_training_fits
from dataset_store import DatasetFile, DatasetManifest

shape, other = json.loads(sys.argv[1]), json.loads(sys.argv[2])
files = [DatasetFile(path=f"{i}.wav", duration_s=5.0, label=None, sha256="0" * 64)
         for i in range(400)]
manifest = DatasetManifest(id="ds_000000000000", created_at="2026-01-01T00:00:00+00:00",
                           files=files, rejected=[], labels=[], digest="0" * 64)

def refuse(extra):
    body = {"dataset_id": manifest.id, "n_clusters": 10, "preset": "scenes-logmel", **extra}
    request = TrainRequest.model_validate(body)
    started = time.process_time()
    try:
        check_training_fits(request, manifest, max_bytes=1)
    except RequestValidationError:
        return time.process_time() - started
    raise SystemExit("the request was not refused")

first = refuse(shape)
repeat = refuse(shape)
varied = refuse({**shape, "seed": 7, "learning_rate": 0.001, "batch_size": 17})
new_shape = refuse(other)
print(json.dumps({"first": first, "repeat": repeat, "varied": varied, "new_shape": new_shape}))
"""


def _measure(shape: dict[str, Any]) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(shape), json.dumps(_OTHER)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "PATH": ""},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    figures: dict[str, Any] = {}
    load_before = load_average()
    for name, shape in SHAPES.items():
        runs = [_measure(shape) for _ in range(arguments.repeats)]
        figures[name] = {
            key: round(statistics.median(run[key] for run in runs), 4)
            for key in ("first", "repeat", "varied", "new_shape")
        }
        print(name, figures[name])
    machine = machine_info()
    machine["command"] = f"python -m benchmarks.refused_training_cost --repeats {arguments.repeats}"
    write_results(
        RESULTS,
        {
            "description": "CPU seconds (process_time) of one refused training request's "
            "submission check; medians over fresh processes (see the script's docstring)",
            "command": "python -m benchmarks.refused_training_cost",
            "repeats": arguments.repeats,
            "load_average_before_after": [load_before, load_average()],
            "cpu_seconds": figures,
            "machine": machine,
        },
    )


if __name__ == "__main__":
    main()
