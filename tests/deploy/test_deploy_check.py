"""Checks of bin/deploy-check's files that need no Docker engine (CI has none).

The full check builds the image and runs the stack as root (README, Deployment); here the
override file, the Dockerfiles and the recorded results are held to what that run relies on.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

ROOT = Path(__file__).resolve().parents[2]
OVERRIDE = ROOT / "deploy" / "compose.host.yml"
RESULTS = ROOT / "benchmarks" / "results" / "deploy.json"
STEP_NAMES = [
    "ready-and-cluster",
    "train-evaluate-promote",
    "worker-killed-mid-training",
    "worker-stopped-mid-training",
    "redis-restart-keeps-queued-jobs",
    "down-up-keeps-state",
    "non-root-healthy-scaled",
]


SCALE_STEP_NAMES = [
    "scale-ready",
    "scale-volumes-private",
    "scale-upload-a-train-promote-serve-b",
]


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_override_matches_the_compose_specification() -> None:
    jsonschema.validate(_yaml(OVERRIDE), get_builtin_schema("vendor.compose-spec"))


def test_every_service_uses_the_host_network_and_no_network_is_declared() -> None:
    base, override = _yaml(ROOT / "docker-compose.yml"), _yaml(OVERRIDE)
    assert set(override["services"]) == set(base["services"])
    for name, service in override["services"].items():
        assert service.get("network_mode") == "host", name
        assert "networks" not in service and "networks" not in base["services"][name], name
        if "build" in service:
            assert service["build"]["network"] == "host", name
    assert "networks" not in base and "networks" not in override


def test_on_the_host_network_everything_listens_on_loopback() -> None:
    services = _yaml(OVERRIDE)["services"]
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--bind") + 1] == "127.0.0.1"
    assert services["api"]["environment"]["UVAC_HOST"] == "127.0.0.1"
    for name in ("api", "training-worker", "evaluation-worker"):
        assert "@127.0.0.1:" in services[name]["environment"]["UVAC_REDIS_URL"], name


def test_the_compose_file_has_no_top_level_name() -> None:
    """Debian's docker-compose (1.29) refuses a top-level `name`; the project name is `-p`."""
    assert "name" not in _yaml(ROOT / "docker-compose.yml")


def test_the_dockerfile_pins_the_torch_that_pyproject_pins() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {d.split("==")[0]: d for d in dependencies if d.startswith(("torch==", "torchaudio=="))}
    install = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if 'TORCH_INDEX"' in line
    )
    assert set(re.findall(r"torch(?:audio)?==\S+", install)) == set(pins.values())


def test_the_encoders_are_installed_without_their_dependencies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements-encoders.txt" in text
    assert "pip install --no-deps -r requirements-encoders.txt" in text
    assert "requirements-encoders.txt" in (ROOT / ".dockerignore").read_text()


def test_every_package_the_project_installs_reaches_the_image() -> None:
    """A package pyproject installs must be copied by the Dockerfile and let through by the
    allow-list .dockerignore, or the image builds without it (or not at all)."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    for package in (pattern.rstrip("*") for pattern in packages):
        assert f"COPY {package} ./{package}" in dockerfile, package
        assert f"!{package}/" in allowed, package


def test_the_redis_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    dockerfile = ROOT / "deploy" / "redis" / "Dockerfile"
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ["bin/deploy-check", "deploy/base-image.sh"])
def test_shell_scripts_stop_at_the_first_error(script: str) -> None:
    lines = (ROOT / script).read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines


def test_the_recorded_run_has_every_step_of_the_check() -> None:
    results = json.loads(RESULTS.read_text())
    assert isinstance(results["image_bytes"], int) and results["image_bytes"] > 0
    assert results["build_seconds"] >= 0
    assert results["ready_seconds"] is None or results["ready_seconds"] >= 0
    assert [step["name"] for step in results["steps"]] == STEP_NAMES
    assert [step["name"] for step in results["scale"]["steps"]] == SCALE_STEP_NAMES
    for step in results["steps"] + results["scale"]["steps"]:
        assert isinstance(step["checked"], str) and step["checked"]
        assert isinstance(step["passed"], bool)


def test_the_checker_runs_the_steps_the_results_name() -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import steps
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    assert [name for name, _, _ in steps.STEPS] == STEP_NAMES


def test_the_published_port_lives_in_the_file_compose_reads_by_itself() -> None:
    """docker-py refuses port bindings on the host network, and compose 1.29 cannot remove
    a list an earlier file set: so the base file publishes nothing."""
    assert "ports" not in _yaml(ROOT / "docker-compose.yml")["services"]["api"]
    assert _yaml(ROOT / "docker-compose.override.yml")["services"]["api"]["ports"]


def test_the_scale_overlay_builds_locally_and_keeps_the_stacks_own_network() -> None:
    """compose.scale.local.yml swaps the registry's images for local builds only: the scale
    stack's services, its network and published ports stay compose.scale.yml's."""
    overlay = _yaml(ROOT / "deploy" / "compose.scale.local.yml")
    base = _yaml(ROOT / "deploy" / "compose.scale.yml")
    jsonschema.validate(overlay, get_builtin_schema("vendor.compose-spec"))
    assert set(overlay["services"]) <= set(base["services"])
    for name, service in overlay["services"].items():
        assert set(service) <= {"image", "build"}, name
        assert service["build"]["network"] == "host", name
        assert service["build"]["args"]["BASE_IMAGE"].startswith("${UVAC_BASE_IMAGE"), name
    assert overlay["services"]["redis"]["image"] == "uvac-redis:local"


def test_the_scale_checker_records_what_the_readme_says() -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import check_scale
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    assert [name for name, _, _ in check_scale.STEPS] == SCALE_STEP_NAMES
    script = (ROOT / "bin" / "deploy-check").read_text()
    assert "deploy/check_scale.py" in script and "deploy/compose.scale.local.yml" in script
