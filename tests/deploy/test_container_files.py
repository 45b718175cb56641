"""Checks of the Dockerfile and the compose file with what runs here (no Docker engine).

The compose file is validated against the Compose specification's JSON schema (the copy
that check-jsonschema vendors), and the Dockerfile is linted with hadolint. Building the
image and running the stack need root and a Docker engine: bin/deploy-check does that, and
test_deploy_check.py holds its files to what it relies on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_matches_the_compose_specification() -> None:
    schema = get_builtin_schema("vendor.compose-spec")
    jsonschema.validate(_compose(), schema)


def test_compose_persists_redis_with_a_password_and_keeps_state_on_volumes() -> None:
    compose = _compose()
    redis_command = compose["services"]["redis"]["command"]
    assert "--requirepass" in redis_command
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in compose["services"]["redis"]["volumes"]
    for service in ("api", "training-worker", "evaluation-worker"):
        mounts = compose["services"][service]["volumes"]
        assert "models:/data/models" in mounts
        assert compose["services"][service]["restart"] == "unless-stopped"
    assert "healthcheck" in compose["services"]["api"]
    assert set(compose["volumes"]) >= {"redis-data", "models", "datasets", "checkpoints"}


def test_workers_are_scalable_without_fixed_names_or_ports() -> None:
    for service in ("training-worker", "evaluation-worker"):
        definition = _compose()["services"][service]
        assert "container_name" not in definition
        assert "ports" not in definition


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_a_health_check_in_two_stages() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK ") for line in lines)


def _scale_compose() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "compose.scale.yml").read_text())


def test_the_scale_stack_matches_the_compose_specification() -> None:
    jsonschema.validate(_scale_compose(), get_builtin_schema("vendor.compose-spec"))


def test_the_scale_stack_shares_nothing_but_redis_and_s3() -> None:
    services = _scale_compose()["services"]
    uvac = {
        name: service for name, service in services.items() if name.startswith(("api", "worker"))
    }
    assert set(uvac) == {"api-a", "api-b", "worker-a", "worker-b"}
    own_volumes = [service["volumes"] for service in uvac.values()]
    assert all(len(volumes) == 1 for volumes in own_volumes)
    assert len({volumes[0] for volumes in own_volumes}) == 4  # no volume is shared
    for service in uvac.values():
        environment = service["environment"]
        assert environment["UVAC_STORAGE_URL"].startswith("s3://")
        assert environment["UVAC_S3_ENDPOINT_URL"] == "http://object-storage:8333"
        assert "AWS_SECRET_ACCESS_KEY" in environment
        assert set(service["depends_on"]) == {"redis", "object-storage"}


def test_the_object_storage_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "deploy" / "seaweedfs" / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
