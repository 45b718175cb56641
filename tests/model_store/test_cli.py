from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model_store import ModelStore
from model_store.cli import default_root, main

from .conftest import PublishFn


def _run_json(capsys: pytest.CaptureFixture[str], root: Path, *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--root", str(root), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_cli_smoke(
    store: ModelStore, publish: PublishFn, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        publish()
    root = store.root

    code, models = _run_json(capsys, root, "list")
    assert code == 0
    assert models == [
        {"name": "scenes", "latest_version": 3, "version_count": 3, "aliases": {"latest": 3}}
    ]
    code, page = _run_json(capsys, root, "versions", "scenes", "--limit", "2")
    assert page["count"] == 3 and [v["version"] for v in page["data"]] == [3, 2]
    assert _run_json(capsys, root, "show", "scenes:v2")[1]["ref"] == "scenes:v2"
    assert _run_json(capsys, root, "promote", "scenes:v1", "production")[1]["version"] == 1
    assert _run_json(capsys, root, "promote", "scenes:v2", "production")[1]["version"] == 2
    assert _run_json(capsys, root, "rollback", "scenes", "production")[1]["version"] == 1
    assert _run_json(capsys, root, "verify", "scenes@production")[1]["ok"] is True

    code, problem = _run_json(capsys, root, "delete", "scenes:v1")
    assert code == 1 and problem["type"] == "alias-conflict"
    assert _run_json(capsys, root, "retain", "scenes", "--keep", "0")[1] == {"deleted": [2]}
    assert _run_json(capsys, root, "delete", "scenes:v2")[1]["type"] == "model-not-found"
    history = _run_json(capsys, root, "history", "scenes")[1]
    assert [entry["action"] for entry in history][-3:] == ["promote", "promote", "rollback"]

    # Text output for people.
    assert main(["list", "--root", str(root)]) == 0
    assert "@production=v1" in capsys.readouterr().out
    assert main(["show", "../etc", "--root", str(root)]) == 1
    assert "invalid model name" in capsys.readouterr().err


def test_cli_verify_reports_the_bad_files(
    store: ModelStore, publish: PublishFn, capsys: pytest.CaptureFixture[str]
) -> None:
    version = publish(payload=b"weights")
    (version.path / "weights.safetensors").write_bytes(b"weightz")
    code, problem = _run_json(capsys, store.root, "verify", "scenes")
    assert code == 1
    assert problem["type"] == "model-corrupted"
    assert problem["bad_files"] == ["weights.safetensors"]


def test_default_root_follows_the_shared_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("UVAC_MODEL_STORE_DIR", raising=False)
    monkeypatch.delenv("UVAC_DATA_DIR", raising=False)
    assert default_root() == Path("var/models")
    monkeypatch.setenv("UVAC_DATA_DIR", str(tmp_path))
    assert default_root() == tmp_path / "models"
    monkeypatch.setenv("UVAC_MODEL_STORE_DIR", str(tmp_path / "store"))
    assert default_root() == tmp_path / "store"
