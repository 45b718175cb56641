"""The device export: ONNX from PCM to pi (front-end included), int8, and the sidecar."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.uvac.edge_fixtures import EDGE_FEATURES, class_clips, tiny_student
from uvac.audio.decoding import Audio
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, NormStats
from uvac.edge.device_model import EdgeModel, check_exportable, window_samples
from uvac.edge.distillation import calibration_windows
from uvac.edge.onnx_export import INT8_FILE, ONNX_FILE, SIDECAR_FILE, ExportedModel, export_model
from uvac.errors import NotExportableError
from uvac.evaluation.inference import Clusterer
from uvac.models import CatUVAC, KMeansClusterer
from uvac.training.artifact import TrainedModel


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def student() -> tuple[TrainedModel, list[np.ndarray], list[int]]:
    torch.set_num_threads(1)
    return tiny_student()


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    trained, clips, _ = student
    return export_model(
        trained,
        tmp_path_factory.mktemp("export"),
        calibration_windows=calibration_windows(clips, trained.feature_config),
        cluster_names=["low", "high", "noise"],
        source={"model": "test:v1"},
    )


def _windows(
    clips: list[np.ndarray], config: FeatureConfig, labels: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``(W, window_samples)`` cut from the clips at a few offsets, and their labels."""
    length = window_samples(config)
    pcm, window_labels = [], []
    for index, samples in enumerate(clips):
        for start in range(0, len(samples) - length + 1, length // 3):
            pcm.append(samples[start : start + length])
            window_labels.append(labels[index] if labels is not None else -1)
    return np.stack(pcm).astype(np.float32), np.array(window_labels)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _pipeline_pi(trained: TrainedModel, pcm: np.ndarray) -> np.ndarray:
    """pi of each window by the service's own path: FeatureExtractor, then the model."""
    clusterer = Clusterer(trained)
    results = clusterer.cluster_batch([Audio.from_samples(w, sample_rate=16000) for w in pcm])
    for result in results:
        assert len(result.windows) == 1  # a window of exactly window_samples is one window
    return np.array([result.probabilities for result in results])


def test_fp32_onnx_matches_the_torch_pipeline(student, exported) -> None:
    trained, clips, _ = student
    pcm, _ = _windows(clips, trained.feature_config)
    onnx_pi = _session(exported.files[ONNX_FILE]).run(None, {"pcm": pcm})[0]
    torch_pi = _pipeline_pi(trained, pcm)
    assert onnx_pi.shape == (len(pcm), 3)
    np.testing.assert_allclose(onnx_pi.sum(axis=1), 1.0, atol=1e-5)
    assert float(np.abs(onnx_pi - torch_pi).max()) <= 1e-4


def test_the_exported_front_end_matches_the_feature_extractor(student) -> None:
    trained, clips, _ = student
    pcm, _ = _windows(clips, trained.feature_config)
    edge = EdgeModel(trained.model, trained.feature_config, trained.norm_stats)
    with torch.inference_mode():
        features = edge.features(torch.from_numpy(pcm))  # (B, 1, T, M)
    extractor = FeatureExtractor(trained.feature_config, trained.norm_stats)
    reference, _ = extractor.windows_batch([Audio.from_samples(w, sample_rate=16000) for w in pcm])
    frames = trained.feature_config.window_frames
    assert features.shape == (len(pcm), 1, frames, trained.feature_config.n_mels)
    difference = (features - reference.features[:, :, :frames]).abs().max()
    assert float(difference) <= 1e-4


def test_the_front_end_is_a_recipe_not_a_table(exported) -> None:
    """The DFT basis and the mel filterbank are rebuilt by nodes, not stored as numbers."""
    graph = onnx.load(str(exported.files[ONNX_FILE])).graph
    stored = {initializer.name for initializer in graph.initializer}
    assert "front_end.dft_basis" not in stored
    assert "front_end.mel_filterbank" not in stored
    assert {"Cos", "Sin", "Mod", "Range"} <= {node.op_type for node in graph.node}


def test_int8_export_runs_and_agrees_on_synthetic_classes(student, exported) -> None:
    trained, _, _ = student
    clips, labels = class_clips(per_class=3, seed=7)  # clips the calibration never saw
    pcm, window_labels = _windows(clips, trained.feature_config, labels)
    fp32 = _session(exported.files[ONNX_FILE]).run(None, {"pcm": pcm})[0]
    int8 = _session(exported.files[INT8_FILE]).run(None, {"pcm": pcm})[0]
    assert float((int8.argmax(axis=1) == fp32.argmax(axis=1)).mean()) >= 0.9
    assert float((int8.argmax(axis=1) == window_labels).mean()) >= 0.9
    graph = onnx.load(str(exported.files[INT8_FILE])).graph
    assert "QuantizeLinear" in {node.op_type for node in graph.node}
    assert exported.files[INT8_FILE].stat().st_size < exported.files[ONNX_FILE].stat().st_size


def test_the_sidecar_states_the_models_input_contract(student, exported) -> None:
    trained, _, _ = student
    config = trained.feature_config
    sidecar = json.loads(exported.files[SIDECAR_FILE].read_text())
    contract = sidecar["input"]
    assert contract["sample_rate"] == config.sample_rate == 16000
    assert (
        contract["window_samples"] == config.n_fft + (config.window_frames - 1) * config.hop_length
    )
    assert contract["frames_per_decision"] == config.window_frames
    assert contract["frame_hop_samples"] == config.hop_length
    assert contract["frame_length_samples"] == config.win_length
    assert contract["n_mels"] == config.n_mels
    assert sidecar["decision"]["hop_samples"] == config.window_hop_frames * config.hop_length
    assert sidecar["cluster_names"] == ["low", "high", "noise"]
    assert FeatureConfig.from_dict(sidecar["feature_config"]) == config
    session_input = _session(exported.files[ONNX_FILE]).get_inputs()[0]
    assert session_input.name == contract["name"]
    assert session_input.shape[1] == contract["window_samples"]


def test_a_conv_gru_cat_uvac_exports_too() -> None:
    torch.manual_seed(0)
    model = CatUVAC(
        n_clusters=4, n_features=16, conv_channels=(2, 2, 4, 4), gru_hidden=4, gru_layers=2
    )
    model.eval()
    stats = NormStats(
        mean=torch.full((16,), -8.0), std=torch.full((16,), 3.0), minimum=-3.0, maximum=3.0
    )
    trained = TrainedModel(model=model, feature_config=EDGE_FEATURES, norm_stats=stats)
    pcm, _ = _windows(class_clips(per_class=1)[0], EDGE_FEATURES)
    edge = EdgeModel(model, EDGE_FEATURES, stats)
    with torch.inference_mode():
        edge_pi = edge(torch.from_numpy(pcm)).numpy()
    np.testing.assert_allclose(edge_pi, _pipeline_pi(trained, pcm), atol=1e-5)


@pytest.mark.parametrize(
    "config, reason",
    [
        (
            FeatureConfig(sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=16),
            "8000 Hz",
        ),
        (
            FeatureConfig(
                n_fft=320, win_length=320, hop_length=320, n_mels=16, cepstral_coefficients=8
            ),
            "cepstral_coefficients",
        ),
    ],
)
def test_feature_options_the_front_end_lacks_are_refused(
    config: FeatureConfig, reason: str
) -> None:
    model = CatUVAC(
        n_clusters=3, n_features=config.feature_bins, conv_channels=(2, 2, 2, 2), gru_hidden=2
    )
    with pytest.raises(NotExportableError, match=reason):
        check_exportable(model, config)


def test_a_kmeans_model_is_not_exportable() -> None:
    model = KMeansClusterer(n_clusters=3, n_features=16, n_frames=EDGE_FEATURES.frames_per_window)
    with pytest.raises(NotExportableError, match="kmeans"):
        check_exportable(model, EDGE_FEATURES)


def test_a_cluster_order_puts_pi_in_the_versions_numbering(student, tmp_path: Path) -> None:
    # A version renumbered to keep its clusters' meaning (uvac.selection.cluster_identity) exports
    # pi in that numbering, so a device maps the same number to the same program as the API.
    trained, clips, _ = student
    plain = export_model(trained, tmp_path / "plain", calibration_windows=None)
    ordered = export_model(
        trained, tmp_path / "ordered", calibration_windows=None, cluster_order=[2, 0, 1]
    )
    pcm, _ = _windows(clips, trained.feature_config)
    pi_plain = _session(plain.files[ONNX_FILE]).run(None, {"pcm": pcm})[0]
    pi_ordered = _session(ordered.files[ONNX_FILE]).run(None, {"pcm": pcm})[0]
    np.testing.assert_allclose(pi_ordered, pi_plain[:, [2, 0, 1]], atol=1e-6)
    assert ordered.sidecar["cluster_order"] == [2, 0, 1]
    assert plain.sidecar["cluster_order"] is None


def test_int8_quantisation_leaves_no_warning_to_explain(
    student, exported, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The opset conversion is ours (no "please verify" warning); the generic pre-processing
    advice is dropped for the reason `_GenericAdviceFilter` gives."""
    from uvac.edge.onnx_export import INT16_OPSET, quantize_int8

    trained, clips, _ = student
    caplog.set_level(logging.DEBUG)
    target = tmp_path / "again.int8.onnx"
    quantize_int8(
        exported.files[ONNX_FILE],
        target,
        calibration_windows(clips, trained.feature_config),
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    opsets = {entry.domain: entry.version for entry in onnx.load(str(target)).opset_import}
    assert opsets[""] >= INT16_OPSET
    assert sorted(path.name for path in tmp_path.iterdir()) == ["again.int8.onnx"]
    # The filter is gone afterwards: other code's root warnings still show.
    logging.getLogger().warning("please consider pre-processing before quantization")
    assert caplog.records[-1].levelno == logging.WARNING
