"""Training and inference speed of Cat. UVAC as a model FLOP utilisation (MFU).

    .venv/bin/python benchmarks/training_speed.py                 # full run, about 3 minutes
    .venv/bin/python benchmarks/training_speed.py --seconds 2 --threads 2

In one run, with an explicit torch thread count (``--threads``, default 2):

1. the machine's matrix-multiply rate: ``torch.mm`` of two 2048 x 2048 matrices, best of
   several, in float32 and in bfloat16;
2. for each input shape (the default preset's, and the reference prototype's 1 s x 64 mel bins when
   it differs): training steps per second at batch 64 (forward, backward and Adam, the loss as
   `uvac.training.pipeline` computes it) and h-only inference (`cluster_probabilities` under
   `torch.inference_mode`) at batch 1 and 64, in float32 and under ``torch.autocast("cpu",
   dtype=torch.bfloat16)``, as `TrainConfig.bf16_autocast` and `Clusterer(bf16_autocast=True)` run
   them;
3. the FLOPs per clip of what runs (`torch.utils.flop_counter.FlopCounterMode`: convolutions,
   their backward, matrix multiplies, GRU cells), so that MFU = FLOPs per clip x clips per
   second / the GEMM rate of the same precision;
4. where a training step spends its time (torch.profiler, top operators), and a check that
   the project's bf16 options run end to end (one tiny `uvac.training.trainer.fit` epoch with
   ``bf16_autocast=True``, a `Clusterer` with ``bf16_autocast=True``).

Rates are items per second over the whole measured time; ``best_step_per_s`` is the fastest
single step, the figure least disturbed by other processes. Writes
``benchmarks/results/training_speed.json`` with the machine's load during the run: figures
taken while other processes run are not final.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    LoadMonitor,
    default_configs,
    machine_info,
    preset_model,
    rate_per_s,
    synthetic_trained_model,
    write_results,
)
from benchmarks.encoder_speed import measure_encoders  # noqa: E402
from uvac.audio import FeatureConfig  # noqa: E402
from uvac.device import configure_threads  # noqa: E402
from uvac.evaluation import Clusterer  # noqa: E402
from uvac.models import CatUVAC  # noqa: E402
from uvac.training import TrainConfig, Trainer, fit  # noqa: E402

logger = logging.getLogger("benchmarks.training_speed")

BATCH = 64
# The paper's network on 1 s x 64 mel bins: the reference prototype's input shape.
PAPER_SHAPE_FEATURES = FeatureConfig(n_mels=64, window_seconds=1.0)
PAPER_SHAPE_TRAINING = TrainConfig(n_clusters=10)
# Keys of the results file that benchmarks/embedding_jobs.py writes; a run here keeps them.
EMBEDDING_JOB_KEYS = ("embedding_cache", "busy_host")


# ----------------------------------------------------------------------------- GEMM


def _best_rate(function: Callable[[], object], *, flops: float, repeats: int) -> dict[str, float]:
    for _ in range(2):
        function()
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        durations.append(time.perf_counter() - started)
    durations.sort()
    return {
        "best_gflops": round(flops / durations[0] / 1e9, 1),
        "median_gflops": round(flops / durations[len(durations) // 2] / 1e9, 1),
    }


def gemm_gflops(*, size: int, dtype: torch.dtype, repeats: int) -> dict[str, Any]:
    """The machine's matrix-multiply rate, three ways; ``best_gflops`` is the fastest.

    ``torch_mm``: ``size`` x ``size`` x ``size`` with ``torch.mm`` (MKL's sgemm for float32,
    oneDNN for bfloat16). ``onednn_conv1x1``: the same product as a 1 x 1 convolution.
    ``onednn_conv3x3``: a 3 x 3 convolution of 128 channels on 64 maps of 16 x 16, the kind of
    work oneDNN (which runs the model's convolutions) is tuned for. On AMD CPUs MKL's float32
    path runs well below oneDNN, so MFU against ``torch.mm`` alone can exceed 1.
    """
    flops = 2.0 * size**3
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    image = torch.randn(1, size, 1, size).to(dtype)  # (1, C_in, 1, W): W columns of C_in
    kernel = torch.randn(size, size, 1, 1).to(dtype)  # (C_out, C_in, 1, 1)
    maps = torch.randn(64, 128, 16, 16).to(dtype)  # (B, C, H, W)
    kernel3 = torch.randn(128, 128, 3, 3).to(dtype)  # (C_out, C_in, 3, 3)
    conv3_flops = 2.0 * 64 * 128 * 16 * 16 * 128 * 9
    conv2d = torch.nn.functional.conv2d
    rates = {
        "torch_mm": _best_rate(partial(torch.mm, a, b, out=out), flops=flops, repeats=repeats),
        "onednn_conv1x1": _best_rate(partial(conv2d, image, kernel), flops=flops, repeats=repeats),
        "onednn_conv3x3": _best_rate(
            partial(conv2d, maps, kernel3, padding=1), flops=conv3_flops, repeats=repeats
        ),
    }
    return {**rates, "best_gflops": max(rate["best_gflops"] for rate in rates.values())}


# ----------------------------------------------------------------------------- the model


def autocast(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def trainer_step(
    model: CatUVAC, x: torch.Tensor, mask: torch.Tensor, *, config: TrainConfig
) -> Callable[[], object]:
    """One step of the training loop's own step function (`Trainer.train_step`) on the whole
    batch ``x``, so that the benchmark times exactly what training runs (the loss, the
    augmentation-consistency term when the recipe has one, autocast, backward, Adam), not a
    copy of it that could drift."""
    trainer = Trainer(model=model, features=x, mask=mask, config=config, device=torch.device("cpu"))
    every_window = torch.arange(x.shape[0])  # (B,)
    return partial(trainer.train_step, every_window, config.temperature_start)


def h_only(model: CatUVAC, x: torch.Tensor, mask: torch.Tensor, *, bf16: bool) -> torch.Tensor:
    with torch.inference_mode(), autocast(bf16):
        return model.cluster_probabilities(x, mask)


def flops_per_clip(function: Callable[[], object], *, batch: int) -> tuple[float, dict[str, float]]:
    """FLOPs per clip of ``function`` (one batch), and their split by operator."""
    counter = FlopCounterMode(display=False)
    with counter:
        function()
    by_op: dict[str, float] = {}
    for operator, count in counter.get_flop_counts().get("Global", {}).items():
        by_op[str(operator).removeprefix("aten.")] = round(count / batch / 1e6, 3)
    return counter.get_total_flops() / batch, by_op


def profile_top_ops(function: Callable[[], object], *, steps: int = 3, top: int = 12) -> list[Any]:
    """Operators with the most self CPU time over a few calls (share of the total)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            function()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events) or 1.0
    ranked = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:top]
    return [
        {
            "op": event.key,
            "self_share": round(event.self_cpu_time_total / total, 3),
            "self_ms_per_step": round(event.self_cpu_time_total / steps / 1000.0, 3),
            "calls_per_step": event.count // steps,
        }
        for event in ranked
    ]


def measure_shape(
    *,
    feature_config: FeatureConfig,
    train_config: TrainConfig,
    seconds: float,
    gemm: dict[str, dict[str, float]],
    precisions: Sequence[str],
    profile: bool,
) -> dict[str, Any]:
    """Training and inference rates of one input shape, per precision, with MFU."""
    model = preset_model(feature_config, train_config)
    _, n_frames, n_bins = feature_config.input_shape
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 1, n_frames, n_bins, generator=generator)  # (B, 1, T, F)
    mask = torch.ones(BATCH, n_frames)  # (B, T): full windows, as 1 s training clips are
    steps = {
        precision: trainer_step(
            model, x, mask, config=dataclasses.replace(
                train_config, bf16_autocast=precision == "bf16", device="cpu"
            ),
        )
        for precision in precisions
    }  # fmt: skip

    step = steps["fp32"]
    model.train()
    train_flops, train_flops_by_op = flops_per_clip(step, batch=BATCH)
    model.eval()
    infer_flops, _ = flops_per_clip(partial(h_only, model, x, mask, bf16=False), batch=BATCH)
    result: dict[str, Any] = {
        "input_shape": [1, n_frames, n_bins],
        "consistency_weight": train_config.consistency_weight,
        "hyperparameters": model.hyperparameters(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_gflop_per_clip": round(train_flops / 1e9, 5),
        "train_mflop_per_clip_by_op": train_flops_by_op,
        "infer_gflop_per_clip": round(infer_flops / 1e9, 5),
    }
    share = seconds / 3  # train, infer at 64, infer at 1
    for precision in precisions:
        bf16 = precision == "bf16"
        model.train()
        step = steps[precision]
        train = rate_per_s(step, items_per_step=BATCH, seconds=share)
        profile_ops = profile_top_ops(step) if profile else None
        model.eval()
        infer64 = rate_per_s(
            partial(h_only, model, x, mask, bf16=bf16), items_per_step=BATCH, seconds=share
        )
        infer1 = rate_per_s(
            partial(h_only, model, x[:1], mask[:1], bf16=bf16), items_per_step=1, seconds=share
        )
        peak = gemm[precision]["best_gflops"] * 1e9
        result[precision] = {
            "train_clips_per_s": train["per_s"],
            "train_best_step_clips_per_s": train["best_step_per_s"],
            "train_step_ms": train["median_step_ms"],
            "mfu": round(train_flops * train["per_s"] / peak, 4),
            "mfu_best_step": round(train_flops * train["best_step_per_s"] / peak, 4),
            "mfu_vs_fp32_gemm": round(
                train_flops * train["per_s"] / (gemm["fp32"]["best_gflops"] * 1e9), 4
            ),
            "infer_bs1_clips_per_s": infer1["per_s"],
            "infer_bs1_ms": infer1["median_step_ms"],
            "infer_bs64_clips_per_s": infer64["per_s"],
            "infer_bs64_ms_per_clip": round(1000.0 / infer64["per_s"], 4),
            "infer_bs64_mfu": round(infer_flops * infer64["per_s"] / peak, 4),
            "train_profile_top_ops": profile_ops,
        }
        logger.info("%s %s: %s", result["input_shape"], precision, result[precision])
    if "bf16" in result and "fp32" in result:
        result["bf16_over_fp32_train"] = round(
            result["bf16"]["train_clips_per_s"] / result["fp32"]["train_clips_per_s"], 3
        )
        result["bf16_pi_max_abs_diff"] = round(
            float(
                (h_only(model, x, mask, bf16=True) - h_only(model, x, mask, bf16=False)).abs().max()
            ),
            5,
        )
    return result


# ----------------------------------------------------------------------------- bf16 options


def check_bf16_options() -> dict[str, Any]:
    """Do `TrainConfig.bf16_autocast` and `Clusterer(bf16_autocast=True)` run and give sane
    numbers? One tiny epoch and one inference batch, not a speed figure."""
    feature_config = PAPER_SHAPE_FEATURES
    _, n_frames, n_bins = feature_config.input_shape
    generator = torch.Generator().manual_seed(1)
    features = torch.rand(96, 1, n_frames, n_bins, generator=generator)
    mask = torch.ones(96, n_frames)
    report: dict[str, Any] = {}
    try:
        config = TrainConfig(
            n_clusters=4, epochs=1, batch_size=32, bf16_autocast=True, device="cpu"
        )
        _, history = fit(features, mask, config=config)
        loss = history.epochs[-1].loss
        report["train_bf16_autocast"] = {
            "runs": True,
            "loss_finite": bool(torch.isfinite(torch.tensor(loss))),
        }
    except Exception as error:  # report, do not fail the benchmark
        report["train_bf16_autocast"] = {"runs": False, "error": f"{type(error).__name__}: {error}"}
    try:
        trained = synthetic_trained_model()
        _, frames, bins = trained.feature_config.input_shape
        windows = torch.rand(8, 1, frames, bins, generator=generator)  # (8, 1, T, F)
        window_mask = torch.ones(8, frames)
        fp32 = Clusterer(trained, device="cpu").cluster_features(windows, window_mask)
        bf16 = Clusterer(trained, device="cpu", bf16_autocast=True).cluster_features(
            windows, window_mask
        )
        report["clusterer_bf16_autocast"] = {
            "runs": True,
            "dtype": str(bf16.dtype),
            "rows_sum_to_1": bool(torch.allclose(bf16.sum(dim=1), torch.ones(8), atol=1e-4)),
            "max_abs_diff_to_fp32": round(float((bf16 - fp32).abs().max()), 5),
        }
    except Exception as error:
        report["clusterer_bf16_autocast"] = {
            "runs": False,
            "error": f"{type(error).__name__}: {error}",
        }
    return report


# ----------------------------------------------------------------------------- the run


def shapes_to_measure(names: Sequence[str]) -> Iterator[tuple[str, FeatureConfig, TrainConfig]]:
    default_features, default_training = default_configs()
    seen: set[str] = set()
    for name in names:
        if name == "default":
            features, training = default_features, default_training
        elif name == "paper":
            features, training = PAPER_SHAPE_FEATURES, PAPER_SHAPE_TRAINING
        else:
            raise ValueError(f"unknown shape {name!r}")
        key = json.dumps(
            [features.input_shape, training.n_clusters, training.model_hyperparameters],
            sort_keys=True,
        )
        if key in seen:
            logger.info("shape %s is the same network as one already measured", name)
            continue
        seen.add(key)
        yield name, features, training


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="measured time per shape and precision"
    )
    parser.add_argument("--gemm-size", type=int, default=2048)
    parser.add_argument("--gemm-repeats", type=int, default=10)
    parser.add_argument("--shapes", nargs="+", default=["default", "paper"])
    parser.add_argument(
        "--headline",
        default="default",
        help="the shape whose figures go to the top-level keys (default or paper)",
    )
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="skip the operator profile")
    parser.add_argument("--no-encoders", action="store_true", help="skip the encoders' cost")
    parser.add_argument("--encoder-seconds", type=float, default=5.0, help="per encoder point")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "training_speed.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    configure_threads(args.threads, interop_threads=1)
    precisions = ["fp32"] if args.no_bf16 else ["fp32", "bf16"]
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    with LoadMonitor() as monitor:
        gemm = {
            precision: gemm_gflops(
                size=args.gemm_size, dtype=dtypes[precision], repeats=args.gemm_repeats
            )
            for precision in precisions
        }
        logger.info("GEMM: %s", gemm)
        shapes = {
            name: measure_shape(
                feature_config=features, train_config=training, seconds=args.seconds,
                gemm=gemm, precisions=precisions, profile=not args.no_profile,
            )
            for name, features, training in shapes_to_measure(args.shapes)
        }  # fmt: skip
        options = check_bf16_options() if not args.no_bf16 else {}
        encoders = None
        if not args.no_encoders:
            encoders = measure_encoders(
                gemm=lambda dtype: gemm_gflops(
                    size=args.gemm_size, dtype=dtype, repeats=args.gemm_repeats
                )["best_gflops"],
                seconds=args.encoder_seconds,
            )
            configure_threads(args.threads, interop_threads=1)
        load = monitor.summary()
    headline_name = args.headline if args.headline in shapes else next(iter(shapes))
    headline = shapes[headline_name]
    keys = ("train_clips_per_s", "mfu", "infer_bs1_clips_per_s", "infer_bs64_clips_per_s")
    document: dict[str, Any] = {
        "benchmark": "training_speed",
        "final": bool(load["idle_enough"]),
        "note": "figures taken while other processes ran are not final; see load"
        if not load["idle_enough"]
        else "taken on an idle machine",
        "machine": machine_info(),
        "load": load,
        "settings": {
            "threads": args.threads,
            "batch": BATCH,
            "seconds_per_shape_and_precision": args.seconds,
            "gemm": f"best of {args.gemm_repeats}: torch.mm {args.gemm_size}^3, the same "
            "product as a 1x1 convolution, a 3x3 convolution (oneDNN); MFU is against the "
            "fastest",
            "flops": "torch.utils.flop_counter.FlopCounterMode, forward+backward (training), "
            "forward of h (inference); optimizer and element-wise ops not counted",
            "headline_shape": headline_name,
        },
        "gemm_gflops": gemm["fp32"]["best_gflops"],
        "gemm_torch_mm_gflops": gemm["fp32"]["torch_mm"]["best_gflops"],
        **{key: headline["fp32"][key] for key in keys},
    }
    if "bf16" in headline:
        document["bf16"] = {
            "gemm_gflops": gemm["bf16"]["best_gflops"],
            "gemm_torch_mm_gflops": gemm["bf16"]["torch_mm"]["best_gflops"],
            **{key: headline["bf16"][key] for key in keys},
            "train_speedup_over_fp32": headline.get("bf16_over_fp32_train"),
        }
    document.update(
        {
            "gemm": gemm,
            "shapes": shapes,
            "bf16_options": options,
            "encoders": encoders,
            "targets_met": {
                name: {
                    "fp32_mfu_at_least_0.6": shape["fp32"]["mfu"] >= 0.6,
                    "bf16_train_at_least_3x_fp32": (shape.get("bf16_over_fp32_train") or 0) >= 3.0,
                }
                for name, shape in shapes.items()
            },
        }
    )
    if args.output.is_file():  # embedding_jobs.py's keys: measured apart, kept here
        earlier = json.loads(args.output.read_text())
        document.update({key: earlier[key] for key in EMBEDDING_JOB_KEYS if key in earlier})
    write_results(args.output, document)
    summary = {key: document[key] for key in ("gemm_gflops", *keys)}
    print(json.dumps({**summary, "bf16": document.get("bf16"), "load": load}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
