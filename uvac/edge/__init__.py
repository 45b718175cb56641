"""Models for a hearing aid: a small student distilled from a teacher, exported as ONNX.

Distillation (`distillation`), the device model with its log-mel front-end
(`device_model`), the ONNX export with int8 quantisation (`onnx_export`) and what a device
does on live audio (`streaming`).

Imports `uvac.evaluation`, `uvac.training`, `uvac.audio`, `uvac.models` and the shared leaves.
"""

from __future__ import annotations

from uvac.edge.device_model import (
    EdgeModel,
    LogMelFrontEnd,
    check_exportable,
    check_exportable_document,
    dft_basis,
    multiply_accumulates,
    window_samples,
)
from uvac.edge.distillation import (
    STUDENT_FEATURES,
    DistillConfig,
    Progress,
    TeacherWindows,
    calibration_windows,
    clip_agreement,
    distill,
    embedded_teacher_targets,
    teacher_targets,
)
from uvac.edge.memory import distillation_memory
from uvac.edge.onnx_export import (
    EXPORT_FILES,
    INT8_FILE,
    ONNX_FILE,
    SIDECAR_FILE,
    ExportedModel,
    export_fp32,
    export_model,
    quantize_int8,
    sidecar,
)
from uvac.edge.recordings import StudentSplit, student_split
from uvac.edge.streaming import (
    DEFAULT_HOLD_S,
    DEFAULT_TIME_CONSTANT_S,
    ProgramSmoother,
    SmoothedDecision,
    decision_starts,
    device_decisions,
    smooth_timeline,
)

__all__ = [
    "DEFAULT_HOLD_S",
    "DEFAULT_TIME_CONSTANT_S",
    "EXPORT_FILES",
    "INT8_FILE",
    "ONNX_FILE",
    "SIDECAR_FILE",
    "STUDENT_FEATURES",
    "DistillConfig",
    "EdgeModel",
    "ExportedModel",
    "LogMelFrontEnd",
    "ProgramSmoother",
    "Progress",
    "SmoothedDecision",
    "StudentSplit",
    "TeacherWindows",
    "calibration_windows",
    "check_exportable",
    "check_exportable_document",
    "clip_agreement",
    "decision_starts",
    "device_decisions",
    "dft_basis",
    "distill",
    "distillation_memory",
    "embedded_teacher_targets",
    "export_fp32",
    "export_model",
    "multiply_accumulates",
    "quantize_int8",
    "sidecar",
    "smooth_timeline",
    "student_split",
    "teacher_targets",
    "window_samples",
]
