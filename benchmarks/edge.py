"""Edge benchmark: distil the bundled model into a device student, export it, and measure
what it costs and how faithful it is (`results/edge.json`).

1. Teacher: the bundled model (Cat. UVAC on the sound encoder's ESC-10 embeddings). Its pi
   for every ESC-10 clip comes from the shared embedding cache (`embedding_cache.py`), so the
   encoder runs once per machine.
2. Student: `uvac.edge.distillation.distill` on the training split's clips at 16 kHz (the official
   split of `quality.py`: fold 1 is the test split), each clip's target its teacher pi.
3. Faithful: on the test clips, the student's clip assignments (the API's pipeline:
   `uvac.evaluation.inference.Clusterer`) against the teacher's (``teacher_agreement``) and against
   the labels (Hungarian accuracy, ``student_accuracy`` beside ``teacher_accuracy``).
4. Exact: the fp32 ONNX export against the torch pipeline on every test window
   (``onnx_max_abs_diff``, max |delta pi|), the int8 export's clip assignments against fp32's
   (``int8_agreement``).
5. Cost: parameters, multiply-accumulates per decision and per second of audio (the file as
   it runs, each decision recomputing its window; and a streaming device that computes each
   frame once), file sizes, ONNX Runtime latency per decision at 1 thread and the real-time
   factor (compute seconds per second of audio), fp32 and int8.

Usage (from the repository root; minutes, most of them the student's training)::

    UVAC_BENCH_CACHE=... .venv/bin/python benchmarks/edge.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    BUNDLE_DIR,
    RESULTS_DIR,
    LoadMonitor,
    machine_info,
    write_results,
)
from benchmarks.embedding_cache import cached_embeddings  # noqa: E402
from uvac.audio import AudioFolder, DatasetItem, EmbeddingWindower, FeatureConfig, load_audio  # noqa: E402
from uvac.edge import (  # noqa: E402
    INT8_FILE,
    ONNX_FILE,
    STUDENT_FEATURES,
    DistillConfig,
    EdgeModel,
    TeacherWindows,
    calibration_windows,
    distill,
    export_model,
    multiply_accumulates,
    quantize_int8,
    window_samples,
)
from uvac.evaluation import Clusterer, aggregate_windows  # noqa: E402
from uvac.metrics import unsupervised_accuracy  # noqa: E402
from uvac.training import Progress, TrainedModel, load_trained_model, save_trained_model  # noqa: E402

logger = logging.getLogger("benchmarks.edge")

# Every agreement and accuracy below is on these clips only.
AGREEMENT_ON = "ESC-10's test split (fold 1): held out of the teacher's and the student's training"


def teacher_clip_pi(teacher: TrainedModel, items: list[DatasetItem]) -> np.ndarray:
    """The teacher's clip pi ``(N, K)`` from cached raw embeddings."""
    cache = cached_embeddings(items, teacher.feature_config)
    windower = EmbeddingWindower(teacher.feature_config, teacher.norm_stats)
    rows = []
    with torch.inference_mode():
        for item in items:
            windows = windower.standardise(cache[str(item.path)])
            pi = teacher.model.cluster_probabilities(windows.features, windows.mask)
            rows.append(aggregate_windows(pi, windows.activity).numpy())
    return np.stack(rows)


def load_clips(items: list[DatasetItem], rate: int) -> list[np.ndarray]:
    return [load_audio(item.path, sample_rate=rate).samples for item in items]


def student_windows(
    student: TrainedModel, clips: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per clip: the torch pipeline's window pi ``(W, K)`` and the PCM windows ``(W, N)``."""
    clusterer = Clusterer(student)
    config = student.feature_config
    rate, length = config.sample_rate, window_samples(config)
    pis, pcms = [], []
    for samples in clips:
        (result,) = clusterer.cluster_batch([load_audio_samples(samples, rate)])
        starts = [round(window.start_s * rate) for window in result.windows]
        padded = np.pad(samples, (0, max(0, length - len(samples))))
        pcms.append(np.stack([padded[start : start + length] for start in starts]))
        pis.append(np.array([window.probabilities for window in result.windows]))
    return pis, pcms


def load_audio_samples(samples: np.ndarray, rate: int) -> Any:
    from uvac.audio import Audio

    return Audio.from_samples(samples, sample_rate=rate)


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_windows(session: Any, pcms: list[np.ndarray]) -> list[np.ndarray]:
    return [session.run(None, {"pcm": pcm.astype(np.float32)})[0] for pcm in pcms]


def latency(session: Any, window: np.ndarray, *, seconds: float = 5.0) -> dict[str, float]:
    single = window[None].astype(np.float32)
    for _ in range(20):
        session.run(None, {"pcm": single})
    durations: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        session.run(None, {"pcm": single})
        durations.append(time.perf_counter() - begin)
    return {
        "median_ms": round(float(np.median(durations)) * 1000, 4),
        "p95_ms": round(float(np.percentile(durations, 95)) * 1000, 4),
        "runs": len(durations),
    }


def clip_assignments(window_pis: list[np.ndarray]) -> np.ndarray:
    # Every window of these clips is full of audio: the activity weights are equal.
    return np.array([int(np.argmax(pi.mean(axis=0))) for pi in window_pis])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--esc10", default=str(REPO.parent / "shared/data/esc10"))
    parser.add_argument("--teacher", default=str(BUNDLE_DIR))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=DistillConfig.epochs)
    parser.add_argument("--distill", default="{}", help="DistillConfig overrides as JSON")
    parser.add_argument("--features", default="{}", help="STUDENT_FEATURES overrides as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(REPO / "var" / "edge"), help="student and export")
    parser.add_argument("--reuse-student", action="store_true", help="skip training if saved")
    parser.add_argument("--out", default=str(RESULTS_DIR / "edge.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    work = Path(args.work)

    teacher = load_trained_model(Path(args.teacher))
    train_items = AudioFolder.scan(args.esc10, split="train").items
    test_items = AudioFolder.scan(args.esc10, split="test").items
    teacher_train = teacher_clip_pi(teacher, train_items)
    teacher_test = teacher_clip_pi(teacher, test_items)
    labels = [item.label for item in test_items]
    teacher_accuracy = unsupervised_accuracy(labels, teacher_test.argmax(1))

    config = DistillConfig.from_dict(
        {**DistillConfig().to_dict(), "epochs": args.epochs, "seed": args.seed}
        | json.loads(args.distill)
    )
    rate = 16000
    train_clips = load_clips(train_items, rate)
    test_clips = load_clips(test_items, rate)
    student_dir = work / "student"
    monitor = LoadMonitor()
    with monitor:
        if args.reuse_student and (student_dir / "model.json").is_file():
            student = load_trained_model(student_dir)
            train_seconds = None
        else:
            targets = [
                TeacherWindows(starts_s=[0.0], ends_s=[len(c) / rate], probabilities=pi[None])
                for c, pi in zip(train_clips, torch.from_numpy(teacher_train).float(), strict=True)
            ]

            def report(progress: Progress) -> None:
                if progress.epoch_done:
                    logger.info(
                        "epoch %d/%d loss %.4f agreement %.3f eta %.0f s",
                        progress.epoch, progress.epochs, progress.loss, progress.agreement,
                        progress.eta_seconds or 0.0,
                    )  # fmt: skip

            started = time.monotonic()
            features = FeatureConfig.from_dict(
                STUDENT_FEATURES.to_dict() | json.loads(args.features)
            )
            student = distill(
                train_clips, targets, config=config, feature_config=features, progress=report
            )
            train_seconds = round(time.monotonic() - started, 1)
            save_trained_model(student_dir, student)

    test_pis, test_pcms = student_windows(student, test_clips)
    student_test = clip_assignments(test_pis)
    teacher_assign = teacher_test.argmax(1)
    calibration = calibration_windows(train_clips, student.feature_config)
    exported = export_model(
        student, work / "export", calibration_windows=calibration, cluster_names=None
    )
    fp32 = ort_session(exported.files[ONNX_FILE])
    int8 = ort_session(exported.files[INT8_FILE])
    onnx_pis = run_windows(fp32, test_pcms)
    int8_pis = run_windows(int8, test_pcms)
    # The variant with 8-bit activations too, for the record (the export's are 16-bit).
    a8_path = work / "export-a8" / INT8_FILE
    a8_path.parent.mkdir(parents=True, exist_ok=True)
    quantize_int8(exported.files[ONNX_FILE], a8_path, calibration, activation_bits=8)
    a8_pis = run_windows(ort_session(a8_path), test_pcms)
    edge = EdgeModel(student.model, student.feature_config, student.norm_stats)
    with torch.inference_mode():
        edge_pis = [edge(torch.from_numpy(pcm)).numpy() for pcm in test_pcms]
    onnx_diff = max(float(np.abs(a - b).max()) for a, b in zip(onnx_pis, test_pis, strict=True))
    onnx_edge_diff = max(
        float(np.abs(a - b).max()) for a, b in zip(onnx_pis, edge_pis, strict=True)
    )
    fp32_assign, int8_assign = clip_assignments(onnx_pis), clip_assignments(int8_pis)
    same_window = [a.argmax(1) == b.argmax(1) for a, b in zip(int8_pis, onnx_pis, strict=True)]
    int8_window_agreement = float(np.mean(np.concatenate(same_window)))

    feature_config = student.feature_config
    decision_hop = feature_config.window_hop_frames * feature_config.hop_length
    decisions_per_second = rate / decision_hop
    macs = multiply_accumulates(edge)
    frames_per_second = rate / feature_config.hop_length
    streaming_macs = (
        macs["front_end_per_frame"] * frames_per_second + macs["network"] * decisions_per_second
    )
    window = test_pcms[0][0]
    latency_fp32, latency_int8 = latency(fp32, window), latency(int8, window)
    latency_a8 = latency(ort_session(a8_path), window)
    student_parameters = sum(p.numel() for p in student.model.parameters())
    document = {
        "teacher": {"path": "app/default_model/bundle", "model_type": teacher.model_type},
        "student": {
            "model_type": student.model_type,
            "hyperparameters": student.model.hyperparameters(),
            "feature_config": feature_config.to_dict(),
            "distill_config": config.to_dict(),
            "train_seconds": train_seconds,
        },
        "test_clips": len(test_items),
        "student_parameters": student_parameters,
        "student_macs_per_decision": macs,
        "decisions_per_second": round(decisions_per_second, 4),
        "student_macs_per_second": round(macs["total"] * decisions_per_second),
        "student_macs_per_second_streaming": round(streaming_macs),
        "fp32_bytes": exported.files[ONNX_FILE].stat().st_size,
        "int8_bytes": exported.files[INT8_FILE].stat().st_size,
        "teacher_accuracy": round(teacher_accuracy, 4),
        "student_accuracy": round(unsupervised_accuracy(labels, student_test), 4),
        "teacher_agreement": round(float(np.mean(student_test == teacher_assign)), 4),
        "agreement_on": AGREEMENT_ON,
        "onnx_max_abs_diff": onnx_diff,
        "onnx_vs_torch_edge_max_abs_diff": onnx_edge_diff,
        "int8_agreement": round(float(np.mean(int8_assign == fp32_assign)), 4),
        "int8_window_agreement": round(int8_window_agreement, 4),
        "int8_accuracy": round(unsupervised_accuracy(labels, int8_assign), 4),
        "int8_teacher_agreement": round(float(np.mean(int8_assign == teacher_assign)), 4),
        "int8_activations": exported.sidecar["int8"]["activations"],
        "int8_a8_bytes": a8_path.stat().st_size,
        "int8_a8_agreement": round(float(np.mean(clip_assignments(a8_pis) == fp32_assign)), 4),
        "latency_ms_int8_a8": latency_a8,
        "latency_ms_fp32": latency_fp32,
        "latency_ms_int8": latency_int8,
        "real_time_factor_fp32": round(latency_fp32["median_ms"] / 1000 * decisions_per_second, 6),
        "real_time_factor_int8": round(latency_int8["median_ms"] / 1000 * decisions_per_second, 6),
        "threads": args.threads,
        "machine": machine_info(),
        "load_during_training": monitor.summary(),
    }
    write_results(Path(args.out), document)
    for key in (
        "student_parameters", "student_macs_per_second", "int8_bytes", "teacher_accuracy",
        "student_accuracy", "teacher_agreement", "onnx_max_abs_diff", "int8_agreement",
    ):  # fmt: skip
        print(f"{key}: {document[key]}")


if __name__ == "__main__":
    main()
