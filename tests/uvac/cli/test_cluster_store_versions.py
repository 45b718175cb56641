"""`uvac cluster` and the model store: a reference is answered with how to get a folder, and a
store version's folder clusters with its cluster names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_store import ModelStore
from model_store.cli import main as store_main
from tests.app.conftest import publish_tiny_model
from tests.app.helpers import noise_wav
from uvac.cli.commands import main

NAMES = {"0": "Rain", "1": "Wind", "2": "Talk"}


def test_a_store_reference_says_a_folder_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no folder called scenes@production here
    clip = tmp_path / "x.wav"
    clip.write_bytes(noise_wav(0.5))
    assert main(["cluster", "scenes@production", str(clip)]) == 1
    error = capsys.readouterr().err
    assert "model store reference" in error and "uvac-store path scenes@production" in error
    assert "model.json is missing" not in error


def test_a_store_version_folder_clusters_with_its_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "models")
    publish_tiny_model(store, metadata={"cluster_names": NAMES})
    assert store_main(["path", "scenes@production", "--root", str(tmp_path / "models")]) == 0
    folder = capsys.readouterr().out.strip()
    assert Path(folder) == store.get("scenes:v1").path
    clip = tmp_path / "kitchen.wav"
    clip.write_bytes(noise_wav(0.5))

    assert main(["cluster", folder, str(clip), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["files"]
    assert result["cluster_name"] == NAMES[str(result["assignment"])]
    assert main(["cluster", folder, str(clip)]) == 0
    assert f"cluster {result['assignment']} {result['cluster_name']!r}" in capsys.readouterr().out


def test_a_store_version_folder_is_numbered_as_the_api_numbers_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "models")
    plain = publish_tiny_model(store, alias=None)
    order = [2, 0, 1]
    matched = publish_tiny_model(store, alias=None, metadata={"cluster_identity": {"order": order}})
    clip = tmp_path / "kitchen.wav"
    clip.write_bytes(noise_wav(0.5, seed=3))

    def probabilities(folder: Path) -> list[float]:
        assert main(["cluster", str(folder), str(clip), "--json"]) == 0
        (result,) = json.loads(capsys.readouterr().out)["files"]
        return list(result["probabilities"])

    before, after = probabilities(plain.path), probabilities(matched.path)
    # The same network, its clusters in the version's order (number k is cluster order[k]).
    assert after == pytest.approx([before[index] for index in order], abs=1e-6)
    assert after != pytest.approx(before, abs=1e-6)
