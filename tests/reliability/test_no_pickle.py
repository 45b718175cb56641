"""No code path can unpickle data from disk or Redis (an AST scan of the service packages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability.pickle_scan import scan_paths, scan_source

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_PACKAGES = ("uvac", "app", "worker", "model_store")


def test_service_code_never_unpickles() -> None:
    findings, files = scan_paths(
        [REPO_ROOT / package for package in SERVICE_PACKAGES], relative_to=REPO_ROOT
    )
    assert files > 20  # the scan really looked at the packages
    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "import joblib",
        "from dill import loads",
        "import cloudpickle as cp",
        "import torch\ntorch.load('w.pt')",
        "import torch\ntorch.load('w.pt', weights_only=False)",
        "from torch import load as tl\ntl('w.pt')",
        "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
        "import pandas as pd\npd.read_pickle('x')",
        "from rq import Queue\nQueue('q', connection=r)",
        "from rq import Queue\nfrom rq.serializers import DefaultSerializer\n"
        "Queue('q', connection=r, serializer=DefaultSerializer)",
        "from rq.job import Job\nJob.fetch('id', connection=r)",
        "from rq.registry import FailedJobRegistry\nFailedJobRegistry('q', connection=r)",
        "from rq import Worker\nclass W(Worker):\n    pass\nW(['q'], connection=r)",
    ],
)
def test_the_scan_flags_each_way_to_unpickle(snippet: str) -> None:
    assert scan_source(snippet, path="snippet.py"), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        '"""No pickle anywhere."""',
        "import torch\ntorch.load('w.pt', weights_only=True)",
        "import numpy as np\nnp.load('a.npy')\nnp.load('a.npy', allow_pickle=False)",
        "from rq import Queue\nfrom rq.serializers import JSONSerializer\n"
        "Queue('q', connection=r, serializer=JSONSerializer)",
        "import asyncio\nasyncio.Queue()",
        "from rq.registry import FinishedJobRegistry\n"
        "FinishedJobRegistry('q', connection=r, serializer=self.serializer)",
    ],
)
def test_the_scan_accepts_safe_code(snippet: str) -> None:
    assert scan_source(snippet, path="snippet.py") == []
