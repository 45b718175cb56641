"""The ``uvac`` commands of the device path: ``distill`` a student and ``export`` a model.

::

    uvac distill TEACHER_DIR DATA_DIR --out MODEL_DIR [--epochs 60] [--seed 0] [--split train]
    uvac export MODEL_DIR --out DIR [--calibration DATA_DIR] [--split train]

``export`` writes ``model.onnx`` and ``model.json`` (the sidecar), and ``model.int8.onnx``
when ``--calibration`` names recordings to calibrate on (the model's training recordings).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import tqdm

from uvac.audio import AudioFolder, Split, load_audio
from uvac.training import load_trained_model, save_trained_model

__all__ = ["add_edge_commands"]


def _split(name: str) -> Split | None:
    return None if name == "all" else ("train" if name == "train" else "test")


def add_edge_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``distill`` and ``export`` to the ``uvac`` sub-command parsers."""
    distill = commands.add_parser(
        "distill", parents=[common], help="train a small device student to reproduce a model"
    )
    distill.set_defaults(command=_distill)
    distill.add_argument("teacher_dir", type=Path, metavar="TEACHER_DIR")
    distill.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    distill.add_argument("--out", type=Path, required=True, help="folder to save the student in")
    distill.add_argument("--split", choices=("train", "test", "all"), default="train")
    distill.add_argument("--epochs", type=int, default=None, help="default: 60")
    distill.add_argument("--seed", type=int, default=0)
    distill.add_argument("--checkpoint-dir", type=Path, help="checkpoints; resume from one here")

    export = commands.add_parser(
        "export", parents=[common], help="write a model's device export (ONNX, int8, sidecar)"
    )
    export.set_defaults(command=_export)
    export.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    export.add_argument("--out", type=Path, required=True, help="folder for the export files")
    export.add_argument(
        "--calibration", type=Path, metavar="DATA_DIR",
        help="recordings to calibrate the int8 file on (without it, no int8 file)",
    )  # fmt: skip
    export.add_argument("--split", choices=("train", "test", "all"), default="train")


def _clips(data_dir: Path, split: str, rate: int, desc: str) -> tuple[AudioFolder, list[Any]]:
    folder = AudioFolder.scan(data_dir, split=_split(split))
    return folder, [
        load_audio(item.path, sample_rate=rate).samples
        for item in tqdm.tqdm(folder.items, unit="clip", desc=desc)
    ]


def _distill(args: argparse.Namespace) -> int:
    from uvac.edge import STUDENT_FEATURES, DistillConfig, distill, teacher_targets

    teacher = load_trained_model(args.teacher_dir)
    config = DistillConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    folder = AudioFolder.scan(args.data_dir, split=_split(args.split))
    targets = teacher_targets(
        teacher,
        [
            load_audio(item.path, sample_rate=teacher.feature_config.sample_rate)
            for item in tqdm.tqdm(folder.items, unit="clip", desc="teacher")
        ],
    )
    _, clips = _clips(args.data_dir, args.split, STUDENT_FEATURES.sample_rate, "loading at 16 kHz")
    with tqdm.tqdm(total=config.epochs, unit="epoch", desc="distilling") as bar:

        def on_progress(progress: Any) -> None:
            bar.set_postfix(loss=f"{progress.loss:.3f}", agree=f"{progress.agreement:.2f}")
            if progress.epoch_done:
                bar.update(progress.epoch - bar.n)

        student = distill(
            clips,
            targets,
            config=config,
            progress=on_progress,
            checkpoint_dir=args.checkpoint_dir,
            info={"teacher": {"path": str(args.teacher_dir)}},
        )
    save_trained_model(args.out, student)
    print(f"saved the cat-uvac-h student to {args.out}")
    return 0


def _cluster_names(model_dir: Path, n_clusters: int) -> list[str | None] | None:
    """Names from a model store version's metadata.json, when the folder is one."""
    path = model_dir / "metadata.json"
    if not path.is_file():
        return None
    names = json.loads(path.read_text(encoding="utf-8")).get("cluster_names")
    if isinstance(names, list) and len(names) == n_clusters:
        return [str(name) for name in names]
    return None


def _export(args: argparse.Namespace) -> int:
    from uvac.edge import calibration_windows, export_model

    trained = load_trained_model(args.model_dir)
    calibration = None
    if args.calibration is not None:
        rate = trained.feature_config.sample_rate
        _, clips = _clips(args.calibration, args.split, rate, "calibration recordings")
        calibration = calibration_windows(clips, trained.feature_config)
    exported = export_model(
        trained,
        args.out,
        calibration_windows=calibration,
        cluster_names=_cluster_names(args.model_dir, trained.n_clusters),
        source={"model_dir": str(args.model_dir)},
    )
    for path in sorted(exported.files.values()):
        print(f"{path} ({path.stat().st_size} bytes)")
    if calibration is None:
        print("no int8 file: give --calibration DATA_DIR to make one", file=sys.stderr)
    return 0
