"""The ``uvac`` command end to end on a few generated tones: train, evaluate, cluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from uvac.audio.feature_config import FeatureConfig
from uvac.cli import commands as cli
from uvac.cli.commands import main
from uvac.errors import DatasetError
from uvac.training.artifact import load_trained_model
from uvac.training.config import TrainConfig

SAMPLE_RATE = 8000
TINY_FEATURES = [
    "--preset", "words-logmel",  # a log-mel recipe: the default's encoder needs 44.1 kHz
    "--sample-rate", "8000", "--n-fft", "256", "--win-length", "256", "--hop-length", "128",
    "--n-mels", "16", "--window-seconds", "0.5", "--window-hop-seconds", "0.25",
]  # fmt: skip
TINY_MODEL = [
    "--model-option", "conv_channels=[2,2,2,4]", "--model-option", "gru_hidden=4",
    "--model-option", "gru_layers=1", "--model-option", "deconv_channels=[2,2,2]",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _write_tone(path: Path, *, frequency: float, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples.astype(np.float32), SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labelled by folder: low/ and high/, three clips each, 0.4 to 1.2 s."""
    root = tmp_path_factory.mktemp("tones")
    for i, seconds in enumerate((0.4, 0.7, 1.2)):
        _write_tone(root / "low" / f"low_{i}.wav", frequency=300 + 30 * i, seconds=seconds,
                    seed=i)  # fmt: skip
        _write_tone(root / "high" / f"high_{i}.wav", frequency=3000 + 90 * i, seconds=seconds,
                    seed=10 + i)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def model_dir(tones: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("model") / "tiny"
    code = main([
        "train", str(tones), "--out", str(out), "--split", "all", "--clusters", "2",
        "--epochs", "2", "--batch-size", "4", "--seed", "3", "--lambda", "0.7", "--device", "cpu",
        *TINY_FEATURES, *TINY_MODEL,
    ])  # fmt: skip
    assert code == 0
    return out


def test_train_saves_a_model_with_the_requested_settings(model_dir: Path) -> None:
    trained = load_trained_model(model_dir)

    assert trained.model_type == "cat-uvac" and trained.n_clusters == 2
    assert trained.feature_config.n_mels == 16
    assert trained.feature_config.sample_rate == SAMPLE_RATE
    config = trained.info["train_config"]
    assert config["epochs"] == 2 and config["seed"] == 3 and config["lambda_kl"] == 0.7
    assert config["model_hyperparameters"]["conv_channels"] == [2, 2, 2, 4]
    assert trained.info["training"]["epochs_completed"] == 2


def test_train_progress_bar_and_summary(
    tones: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "kmeans"

    code = main([
        "train", str(tones), "--out", str(out), "--split", "all", "--model-type", "kmeans",
        "--clusters", "2", *TINY_FEATURES,
    ])  # fmt: skip

    captured = capsys.readouterr()
    assert code == 0
    assert "training kmeans (K=2, preset words-logmel) on 6 files" in captured.err
    assert "labels from folder" in captured.err
    assert "1/1" in captured.err and "acc=" in captured.err  # the tqdm bar and its postfix
    assert f"saved kmeans model to {out}" in captured.out
    assert load_trained_model(out).model_type == "kmeans"


def test_evaluate_prints_table_one_and_writes_json(
    model_dir: Path, tones: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "reports" / "tiny.json"

    code = main([
        "evaluate", str(model_dir), str(tones), "--split", "all", "--json", str(report_path),
        "--format", "markdown",
    ])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0
    assert out.count("| Data set | K | Method | Acc % | NMI | Silhouette | DBI | CHI x1e3 |") == 2
    assert "Silhouette, DBI, CHI on features" in out
    assert "Silhouette, DBI, CHI on latent" in out
    for method in ("cat-uvac", "K-means (same features)", "labels as clusters"):
        assert f"| {method} |" in out
    assert "| labels as clusters | 100.00 | 1.00 |" in out
    document = json.loads(report_path.read_text())
    assert document["dataset"] == tones.name and document["split"] == "all"
    assert [row["method"] for row in document["rows"]] == [
        "cat-uvac", "K-means (same features)", "labels as clusters",
    ]  # fmt: skip
    model_row = document["rows"][0]
    assert model_row["n_clips"] == 6 and model_row["n_labelled"] == 6
    assert 0.5 <= model_row["accuracy"] <= 1.0
    assert sum(model_row["cluster_sizes"]) == 6
    assert set(model_row["internal"]) == {"latent", "features"}
    assert set(document["tables"]) == {"features", "latent"}


def test_cluster_prints_pi_per_file_and_window_and_reports_bad_files(
    model_dir: Path, tones: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not a recording")
    good = tones / "high" / "high_2.wav"  # 1.2 s: several windows
    missing = tmp_path / "missing.wav"

    code = main(["cluster", str(model_dir), str(good), str(bad), str(missing), "--windows"])

    captured = capsys.readouterr()
    assert code == 1
    assert f"{good}: cluster " in captured.out
    pi_line = next(line for line in captured.out.splitlines() if line.startswith("  pi: "))
    probabilities = [float(value) for value in pi_line.split()[1:]]
    assert len(probabilities) == 2 and sum(probabilities) == pytest.approx(1.0, abs=2e-3)
    assert captured.out.count("  window ") >= 2
    assert f"{bad}: error: " in captured.err
    assert f"{missing}: error: " in captured.err
    assert "Traceback" not in captured.err


def test_cluster_json_output(
    model_dir: Path, tones: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [tones / "low" / "low_0.wav", tones / "high" / "high_0.wav"]

    code = main(["cluster", str(model_dir), *map(str, files), "--json"])

    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [entry["file"] for entry in document["files"]] == [str(f) for f in files]
    for entry in document["files"]:
        assert entry["assignment"] in (0, 1)
        assert sum(entry["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert "windows" not in entry


def test_errors_are_one_line_without_traceback(
    tones: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing_model = main(["evaluate", str(tmp_path / "no-model"), str(tones)])
    empty = tmp_path / "empty"
    empty.mkdir()
    empty_data = main(["train", str(empty), "--out", str(tmp_path / "out")])
    bad_config = main(["train", str(tones), "--out", str(tmp_path / "o"), "--n-mels", "20"])

    err = capsys.readouterr().err
    assert (missing_model, empty_data, bad_config) == (1, 1, 1)
    assert "uvac evaluate: error: " in err
    assert "uvac train: error: " in err and "n_mels" in err
    assert "Traceback" not in err


def test_usage_errors_exit_with_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["train", "somewhere"])  # --out is required
    assert raised.value.code == 2
    with pytest.raises(SystemExit) as raised:
        main(["train", "somewhere", "--out", "x", "--clusters", "ten"])
    assert raised.value.code == 2
    assert "invalid int value: 'ten'" in capsys.readouterr().err


def test_every_config_field_is_an_option(
    tones: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def fake_train_model(items: object, *, config: TrainConfig, feature_config: FeatureConfig,
                         **kwargs: object) -> None:  # fmt: skip
        seen.update(config=config, features=feature_config)
        raise DatasetError("stop here")

    monkeypatch.setattr(cli, "train_model", fake_train_model)

    code = main([
        "train", str(tones), "--out", str(tmp_path / "m"), "--preset", "paper",
        "--clusters", "5", "--lambda", "2.0", "--bf16", "--cluster-balance", "0.1",
        "--utterance-norm", "true", "--activity-threshold-db", "none", "--f-max", "3500",
        "--sample-rate", "8000", "--model-option", "gru_hidden=16",
    ])  # fmt: skip

    assert code == 1
    config, features = seen["config"], seen["features"]
    assert isinstance(config, TrainConfig) and isinstance(features, FeatureConfig)
    assert (config.n_clusters, config.lambda_kl, config.bf16_autocast) == (5, 2.0, True)
    assert config.cluster_balance == 0.1
    assert config.epochs == 500  # from the paper preset
    assert config.model_hyperparameters == {"gru_hidden": 16}
    assert features.utterance_norm is True and features.activity_threshold_db is None
    assert features.f_max == 3500.0 and features.n_mels == 128  # preset kept where not set


def test_evaluate_after_train_reads_the_embeddings_train_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uvac.audio import configure_encoder_precision, load_encoder

    configure_encoder_precision("fp32")
    data = tmp_path / "scenes"
    for index in range(3):
        _write_tone(data / "low" / f"low_{index}.wav", frequency=220, seconds=1.0, seed=index)
        _write_tone(data / "high" / f"high_{index}.wav", frequency=1760, seconds=1.0, seed=index)
    cache = tmp_path / "cache"
    encoder = load_encoder("sound-encoder")
    original = encoder.embed
    calls: list[int] = []
    monkeypatch.setattr(encoder, "embed", lambda windows: calls.append(1) or original(windows))
    common = ["--embedding-cache", str(cache)]

    train = ["train", str(data), "--out", str(tmp_path / "m"), "--split", "all", "--epochs", "1"]
    assert main([*train, "--clusters", "2", *common]) == 0
    assert calls and len(list(cache.glob("*/*.safetensors"))) == 6
    calls.clear()
    assert main(["evaluate", str(tmp_path / "m"), str(data), "--split", "all", *common]) == 0
    assert calls == []
    assert main(["evaluate", str(tmp_path / "m"), str(data), "--split", "all",
                 "--no-embedding-cache"]) == 0  # fmt: skip
    assert calls  # without the cache every recording is embedded again
