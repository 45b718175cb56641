from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from model_store import ModelStore, open_model_store
from model_store.cli import default_root, default_url, main
from object_storage import S3Options

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


def test_default_url_follows_the_services_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("UVAC_MODEL_STORE_URL", "UVAC_STORAGE_URL", "UVAC_MODEL_STORE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UVAC_DATA_DIR", str(tmp_path))
    assert default_url() == str(tmp_path / "models")
    monkeypatch.setenv("UVAC_STORAGE_URL", "s3://bucket/service/")
    assert default_url() == "s3://bucket/service/models"
    monkeypatch.setenv("UVAC_MODEL_STORE_URL", "s3://other/models")
    assert default_url() == "s3://other/models"


def test_cli_on_an_s3_store(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    s3_url: str,
    s3_options: S3Options,
) -> None:
    """The store URL and S3 settings come from the services' variables."""
    monkeypatch.setenv("UVAC_MODEL_STORE_URL", s3_url)
    monkeypatch.setenv("UVAC_S3_ENDPOINT_URL", str(s3_options.endpoint_url))
    monkeypatch.setenv("UVAC_S3_REGION", str(s3_options.region))
    monkeypatch.setenv("UVAC_S3_ACCESS_KEY_ID", str(s3_options.access_key_id))
    monkeypatch.setenv("UVAC_S3_SECRET_ACCESS_KEY", str(s3_options.secret_access_key))
    monkeypatch.setenv("UVAC_DATA_DIR", str(tmp_path / "cli-host"))
    publisher = open_model_store(
        s3_url, s3=s3_options, cache_dir=tmp_path / "publisher", cache_max_bytes=1 << 26
    )
    for payload in (b"one", b"two"):
        with publisher.publish("scenes", metadata={}) as staging:
            (staging / "weights.safetensors").write_bytes(payload)

    def run(*argv: str) -> tuple[int, Any]:
        code = main([*argv, "--json"])
        return code, json.loads(capsys.readouterr().out)

    assert run("list")[1][0]["latest_version"] == 2
    assert run("verify", "scenes:v1")[1]["ok"] is True
    code, shown = run("path", "scenes:v1")
    assert Path(shown["path"]).is_relative_to(tmp_path / "cli-host" / "cache" / "models")
    assert run("delete", "scenes:v1") == (0, {"deleted": "scenes:v1"})
    # The deleted version's blob is younger than the default grace, so it stays until a
    # collection with a shorter one.
    assert run("gc", "scenes")[1] == {"deleted": []}
    assert run("gc", "scenes", "--grace-s", "0")[1] == {
        "deleted": [hashlib.sha256(b"one").hexdigest()]
    }
    code, problem = run("show", "scenes:v1")
    assert code == 1 and problem["type"] == "model-not-found"
