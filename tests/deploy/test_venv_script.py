"""bin/_venv.sh: on a host without an NVIDIA GPU torch comes from a CPU index when it can."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../../pip-calls.log"
case "$*" in *--index-url*) exit "${FAKE_INDEX_EXIT:-1}" ;; esac
exit 0
"""


def _run(tmp_path: Path, *, gpu: bool, index_exit: int = 1, index: str | None = None):
    checkout = tmp_path / "checkout"
    (checkout / "bin").mkdir(parents=True)
    shutil.copy(REPOSITORY / "bin" / "_venv.sh", checkout / "bin" / "_venv.sh")
    for name in ("pyproject.toml", "requirements-encoders.txt"):
        shutil.copy(REPOSITORY / name, checkout / name)
    python = checkout / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    if gpu:
        (tools / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
        (tools / "nvidia-smi").chmod(0o755)
    environment = {"PATH": f"{tools}:/usr/bin:/bin", "FAKE_INDEX_EXIT": str(index_exit)}
    if index is not None:
        environment["UVAC_TORCH_INDEX"] = index
    finished = subprocess.run(
        ["bash", "-c", 'source bin/_venv.sh ""'],
        cwd=checkout, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    calls = (checkout / "pip-calls.log").read_text().splitlines()
    return finished, calls


def test_a_cpu_host_asks_the_cpu_index_for_the_pinned_torch_first(tmp_path: Path) -> None:
    finished, calls = _run(tmp_path, gpu=False, index_exit=0)
    assert finished.returncode == 0, finished.stderr
    index_calls = [call for call in calls if "--index-url" in call]
    assert len(index_calls) == 1
    assert "https://download.pytorch.org/whl/cpu" in index_calls[0]
    assert index_calls[0].endswith("torch==2.14.1 torchaudio==2.11.0")
    assert calls.index(index_calls[0]) < next(i for i, c in enumerate(calls) if " -e " in c)


def test_without_a_cpu_index_the_install_goes_on_with_pypis_build(tmp_path: Path) -> None:
    finished, calls = _run(tmp_path, gpu=False, index_exit=1)
    assert finished.returncode == 0, finished.stderr
    assert "installing PyPI's (with CUDA libraries)" in finished.stderr
    assert any(" -e " in call for call in calls)


@pytest.mark.parametrize(("gpu", "index"), [(True, None), (False, "")])
def test_a_gpu_host_or_an_empty_index_keeps_pypis_build(
    tmp_path: Path, gpu: bool, index: str | None
) -> None:
    finished, calls = _run(tmp_path, gpu=gpu, index=index)
    assert finished.returncode == 0, finished.stderr
    assert not any("--index-url" in call for call in calls)
    assert os.path.exists(tmp_path / "checkout" / ".venv" / ".installed")
