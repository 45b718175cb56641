"""Export a trained model for a device: one ONNX file from 16 kHz PCM to pi, an int8 version,
and a JSON sidecar with the input contract.

Files (`EXPORT_FILES`):

- ``model.onnx``: input ``pcm`` float32 ``(B, window_samples)`` (mono, 16 kHz, full scale
  +-1), output ``pi`` float32 ``(B, K)``; the whole front-end is in the graph
  (`uvac.edge.device_model`). The DFT basis and the mel filterbank are not stored as numbers: a few
  ``Range``, ``Mod``, ``Cos``, ``Sin``, ``Div``, ``Min`` and ``Max`` nodes rebuild them when
  the runtime loads the graph (ONNX Runtime folds them into constants), which keeps the file a
  fraction of the size of the tables.
- ``model.int8.onnx``: the same graph with the convolutions' and the linear layer's weights
  in int8 (ONNX Runtime static quantisation, QDQ, per channel, calibrated on training
  windows) and the activations between them in int16 (``ACTIVATION_BITS``; 8 is an option of
  `quantize_int8`). The front-end (DFT, power, mel, log, normalisation) stays float32: a log
  of int8 powers would lose the quiet bins the model looks at. The GRU stays float32 as well
  (the runtime's static quantisation has no GRU).
- ``model.json``: the sidecar (`sidecar`): sample rate, window and hop in samples and
  milliseconds, frames per decision, the decision interval, the smoothing the service
  recommends (`uvac.edge.streaming`), the cluster names, and the source model's identity.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from uvac.edge.device_model import EdgeModel, window_samples
from uvac.edge.streaming import DEFAULT_HOLD_S, DEFAULT_TIME_CONSTANT_S

if TYPE_CHECKING:
    import onnx

    from uvac.training import TrainedModel

__all__ = [
    "EXPORT_FILES",
    "INT8_FILE",
    "ONNX_FILE",
    "SIDECAR_FILE",
    "ExportedModel",
    "export_fp32",
    "export_model",
    "quantize_int8",
    "sidecar",
]

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
SIDECAR_FILE = "model.json"
EXPORT_FILES = (ONNX_FILE, INT8_FILE, SIDECAR_FILE)
EXPORT_FORMAT = "uvac-edge-export"
EXPORT_FORMAT_VERSION = 1
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "pcm", "pi"
BASIS_NAME = "front_end.dft_basis"
FILTERBANK_NAME = "front_end.mel_filterbank"
FRONT_END_PREFIX = ("/front_end/", "front_end")
# Activations between the int8 layers: 16-bit, because with 8-bit ones the edge benchmark's
# student put too many test clips in another cluster than its fp32 file (benchmarks/README.md).
ACTIVATION_BITS = 16


@dataclass(frozen=True)
class ExportedModel:
    """What `export_model` wrote: file name -> path, and the sidecar document."""

    files: dict[str, Path]
    sidecar: dict[str, Any]


# torch.onnx.export keeps its state in process globals (GLOBALS.in_onnx_export), and
# warnings.catch_warnings is process-wide too: two exports at once in one process fail.
_TRACE_LOCK = threading.Lock()


def _trace(edge: EdgeModel) -> bytes:
    config = edge.front_end.config
    example = torch.zeros(1, window_samples(config))
    buffer = io.BytesIO()
    with _TRACE_LOCK, warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export's, which needs the
        # onnxscript package; this one needs nothing beyond torch and writes the same graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            edge,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works; the stub says path only
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def _drop_initializer(graph: onnx.GraphProto, name: str) -> None:
    kept = [init for init in graph.initializer if init.name != name]
    if len(kept) == len(graph.initializer):
        raise RuntimeError(f"the traced graph has no {name} initializer")
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _front_end_recipes(graph: onnx.GraphProto, edge: EdgeModel) -> None:
    """Replace the DFT basis and the mel filterbank initializers by the nodes that compute
    them (see `uvac.edge.device_model.dft_basis`; the filterbank as torchaudio builds its triangles,
    from the FFT bins' and the mel points' frequencies, which give the same float32 values)."""
    from onnx import TensorProto, helper, numpy_helper

    config = edge.front_end.config
    win, n_fft, n_bins = config.win_length, config.n_fft, edge.front_end.n_bins
    offset = (n_fft - win) // 2
    _drop_initializer(graph, BASIS_NAME)
    _drop_initializer(graph, FILTERBANK_NAME)
    bin_hz, mel_hz = (value.numpy() for value in edge.front_end.filterbank_points())

    def constant(name: str, value: Any, dtype: Any) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    p = "front_end/basis/"
    i64, f32 = np.int64, np.float32
    nodes: list[tuple[str, list[str], list[str], dict[str, Any]]] = [
        ("Range", [constant(p + "zero", 0, i64), constant(p + "bins", n_bins, i64),
                   constant(p + "one", 1, i64)], [p + "k"], {}),
        ("Range", [constant(p + "first", offset, i64), constant(p + "end", offset + win, i64),
                   p + "one"], [p + "n"], {}),
        ("Unsqueeze", [p + "k", constant(p + "axis1", [1], i64)], [p + "k_column"], {}),
        ("Unsqueeze", [p + "n", constant(p + "axis0", [0], i64)], [p + "n_row"], {}),
        ("Mul", [p + "k_column", p + "n_row"], [p + "kn"], {}),
        ("Mod", [p + "kn", constant(p + "n_fft", n_fft, i64)], [p + "kn_mod"], {}),
        ("Cast", [p + "kn_mod"], [p + "kn_float"], {"to": TensorProto.FLOAT}),
        ("Mul", [p + "kn_float", constant(p + "radians", 2 * math.pi / n_fft, f32)],
         [p + "angle"], {}),
        ("Range", [constant(p + "zero_f", 0.0, f32), constant(p + "win_f", float(win), f32),
                   constant(p + "one_f", 1.0, f32)], [p + "j"], {}),
        ("Mul", [p + "j", constant(p + "window_radians", 2 * math.pi / win, f32)],
         [p + "window_angle"], {}),
        ("Cos", [p + "window_angle"], [p + "window_cos"], {}),
        ("Mul", [p + "window_cos", constant(p + "half", 0.5, f32)], [p + "half_cos"], {}),
        ("Sub", [p + "half", p + "half_cos"], [p + "window"], {}),
        ("Cos", [p + "angle"], [p + "cos"], {}),
        ("Sin", [p + "angle"], [p + "sin"], {}),
        ("Mul", [p + "cos", p + "window"], [p + "real"], {}),
        ("Mul", [p + "sin", p + "window"], [p + "imaginary"], {}),
        ("Concat", [p + "real", p + "imaginary"], [p + "basis_2d"], {"axis": 0}),
        ("Unsqueeze", [p + "basis_2d", p + "axis1"], [BASIS_NAME], {}),
        ("Unsqueeze", [constant(p + "bin_hz", bin_hz, f32), p + "axis1"], [p + "bin_column"],
         {}),
        ("Sub", [p + "bin_column", constant(p + "lower_hz", mel_hz[:-2], f32)],
         [p + "above_lower"], {}),
        ("Div", [p + "above_lower", constant(p + "lower_width", mel_hz[1:-1] - mel_hz[:-2], f32)],
         [p + "rising"], {}),
        ("Sub", [constant(p + "upper_hz", mel_hz[2:], f32), p + "bin_column"],
         [p + "below_upper"], {}),
        ("Div", [p + "below_upper", constant(p + "upper_width", mel_hz[2:] - mel_hz[1:-1], f32)],
         [p + "falling"], {}),
        ("Min", [p + "rising", p + "falling"], [p + "triangle"], {}),
        ("Max", [p + "triangle", constant(p + "zero_weight", 0.0, f32)], [FILTERBANK_NAME], {}),
    ]  # fmt: skip
    built = [
        helper.make_node(op, inputs, outputs, name=f"{p}{index}_{op}", **attributes)
        for index, (op, inputs, outputs, attributes) in enumerate(nodes)
    ]
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(built + existing)


def export_fp32(
    trained: TrainedModel, path: Path, *, cluster_order: Sequence[int] | None = None
) -> EdgeModel:
    """Write ``model.onnx`` for ``trained`` to ``path``; returns the traced `EdgeModel`.

    ``cluster_order`` (a version's numbering) puts pi in cluster-number order. Raises
    `uvac.errors.NotExportableError` for a model the export cannot express.
    """
    import onnx

    edge = EdgeModel(
        trained.model, trained.feature_config, trained.norm_stats, cluster_order=cluster_order
    )
    proto = onnx.load_from_string(_trace(edge))
    _front_end_recipes(proto.graph, edge)
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())
    return edge


class _WindowReader:
    """ONNX Runtime's calibration reader over PCM windows ``(C, window_samples)``."""

    def __init__(self, windows: Tensor, batch_size: int = 16) -> None:
        self._batches: Iterator[Tensor] = iter(windows.split(batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch.numpy().astype(np.float32)}


# Quantising 16-bit activations needs this opset (QuantizeLinear with int16).
INT16_OPSET = 21


class _GenericAdviceFilter(logging.Filter):
    """Drops ONNX Runtime's "consider pre-processing before quantization" lines, which it logs
    on the root logger for every model. The pre-processing it means (symbolic shape inference
    and graph optimisation) is left out on purpose: the exported graph has static shapes
    already, and the int8 file should quantise the very graph of the fp32 file shipped beside
    it, whose agreement with it is what the export's tests and benchmarks measure."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_generic_quantiser_advice() -> Iterator[None]:
    advice = _GenericAdviceFilter()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration_windows: Tensor,
    *,
    activation_bits: int = ACTIVATION_BITS,
) -> None:
    """Static quantisation of ``model.onnx`` to int8 weights, calibrated on
    ``calibration_windows`` ``(C, window_samples)`` float32 PCM (training windows), with
    ``activation_bits`` (8 or 16) activations; the front-end is left float."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if activation_bits not in (8, 16):
        raise ValueError(f"activation_bits must be 8 or 16, got {activation_bits}")
    if calibration_windows.ndim != 2 or calibration_windows.shape[0] == 0:
        raise ValueError("calibration needs at least one window, shaped (C, window_samples)")
    model = onnx.load(str(fp32_path))
    front_end = [node.name for node in model.graph.node if node.name.startswith(FRONT_END_PREFIX)]
    source = fp32_path
    if activation_bits == 16:
        # 16-bit QuantizeLinear needs opset 21. ONNX Runtime would convert the opset 17 graph
        # itself, with a warning to verify the result; we convert it here on purpose (the
        # same onnx.version_converter step), and the export's tests check the int8 file's
        # assignments against the fp32 file's.
        source = int8_path.with_name(f".{int8_path.name}.opset{INT16_OPSET}.onnx")
        onnx.save(onnx.version_converter.convert_version(model, INT16_OPSET), str(source))
    try:
        with _without_generic_quantiser_advice():
            quantize_static(
                str(source),
                str(int8_path),
                _WindowReader(calibration_windows.float()),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt16 if activation_bits == 16 else QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=front_end,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False},
            )
    finally:
        if source != fp32_path:
            source.unlink(missing_ok=True)
    # Shape annotations are optional in ONNX and a fifth of this small file: left out.
    proto = onnx.load(str(int8_path))
    del proto.graph.value_info[:]
    onnx.save(proto, str(int8_path))


def sidecar(
    trained: TrainedModel,
    *,
    cluster_names: Sequence[str | None] | None = None,
    cluster_order: Sequence[int] | None = None,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The input contract and cluster names of an export (``model.json``)."""
    config = trained.feature_config
    rate = config.sample_rate
    samples = window_samples(config)
    decision_hop = config.window_hop_frames * config.hop_length
    names = list(cluster_names) if cluster_names is not None else [None] * trained.n_clusters
    if len(names) != trained.n_clusters:
        raise ValueError(f"{len(names)} cluster names for {trained.n_clusters} clusters")
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", samples],
            "sample_rate": rate,
            "channels": 1,
            "scale": "full scale is +-1.0",
            "window_samples": samples,
            "window_ms": round(1000 * samples / rate, 3),
            "frame_length_samples": config.win_length,
            "fft_size": config.n_fft,
            "frame_hop_samples": config.hop_length,
            "frame_hop_ms": round(1000 * config.hop_length / rate, 3),
            "frames_per_decision": config.window_frames,
            "n_mels": config.n_mels,
        },
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", trained.n_clusters]},
        "decision": {
            "hop_samples": decision_hop,
            "interval_ms": round(1000 * decision_hop / rate, 3),
            "smoothing": {
                "method": "exponential moving average of pi, then a hold time",
                "time_constant_s": DEFAULT_TIME_CONSTANT_S,
                "hold_s": DEFAULT_HOLD_S,
            },
        },
        "n_clusters": trained.n_clusters,
        "cluster_names": names,  # by cluster number, the order of the output's columns
        "cluster_order": list(cluster_order) if cluster_order is not None else None,
        "feature_config": config.to_dict(),
        "files": {"fp32": ONNX_FILE, "int8": INT8_FILE},
        "int8": {"weights": "int8", "activations": f"int{ACTIVATION_BITS}", "front_end": "float32"},
        "source": dict(source or {}),
    }


def export_model(
    trained: TrainedModel,
    out_dir: Path,
    *,
    calibration_windows: Tensor | None,
    cluster_names: Sequence[str | None] | None = None,
    cluster_order: Sequence[int] | None = None,
    source: Mapping[str, Any] | None = None,
) -> ExportedModel:
    """Write the export of ``trained`` into ``out_dir``: ``model.onnx``, ``model.json`` and,
    when calibration windows are given, ``model.int8.onnx``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {ONNX_FILE: out_dir / ONNX_FILE}
    export_fp32(trained, files[ONNX_FILE], cluster_order=cluster_order)
    if calibration_windows is not None:
        files[INT8_FILE] = out_dir / INT8_FILE
        quantize_int8(files[ONNX_FILE], files[INT8_FILE], calibration_windows)
    document = sidecar(
        trained, cluster_names=cluster_names, cluster_order=cluster_order, source=source
    )
    if calibration_windows is None:
        document["files"]["int8"] = None
    files[SIDECAR_FILE] = out_dir / SIDECAR_FILE
    files[SIDECAR_FILE].write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    logger.info("exported %s to %s", ", ".join(sorted(files)), out_dir)
    return ExportedModel(files=files, sidecar=document)
