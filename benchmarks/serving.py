"""Serving benchmark: the real API under uvicorn against the raw in-process pipeline.

    .venv/bin/python benchmarks/serving.py                    # full run, about 4 minutes
    .venv/bin/python benchmarks/serving.py --seconds 3 --warmup-seconds 1 --raw-seconds 2

What it does, in one run:

1. Builds a model store in a temporary folder holding the model the service ships with (the
   bundle in ``app/default_model/bundle/`` when it is a Cat. UVAC, else an untrained Cat. UVAC
   of the default preset (``DEFAULT_PRESET``), which costs the same to run; ``--model``
   overrides) and aliases it ``bench@production``.
2. Measures the raw pipeline in this process with the same torch thread count as the server:
   decode (`uvac.audio.decoding.load_audio` from WAV bytes) + features
   (`FeatureExtractor.windows_batch`) + h (`model.cluster_probabilities` under
   `torch.inference_mode`), batched at 64 clips, for the 1 s and the 10 s clip; also each stage
   alone and one clip at a time; and the answer pipeline: decode + `Clusterer.cluster_batch`
   with speech detection, everything the API's answer holds (level, speech, novelty).
3. Starts the production command (``python -m uvicorn app.main:create_app --factory
   --no-access-log --ws-per-message-deflate false``) in a child process with
   ``UVAC_TORCH_THREADS`` at the API's default,
   ``UVAC_REDIS_URL=redis://127.0.0.1:6379/15`` and the temporary store, waits for ``/readyz``,
   then posts 16 kHz 16-bit WAV clips (noise + tones) to ``POST /v1/cluster`` from 1, 4 and 16
   concurrent keep-alive connections, each load point for a fixed duration after a warm-up.
   The client writes prebuilt requests on raw asyncio streams (an HTTP library would cost
   more client CPU than the server spends on a 1 s clip on this 2-core machine); every
   response is parsed and checked.
4. Restarts the server with ``UVAC_INFERENCE_MAX_BATCH=1`` and repeats concurrency 16: the
   micro-batching on/off comparison.
5. Serves the same model with BentoML (`benchmarks.peers.bentoml_peer`: adaptive batching on,
   then off, one server at a time, the same thread count and encoder precision) in the Python
   that ``--bentoml-python`` or ``UVAC_BENCH_BENTOML_PYTHON`` names, and posts the 1 s clip to
   it at concurrency 1 and 16 (``peers.bentoml``).

Besides latency percentiles and throughput it records, per load point, the server's CPU
seconds per request, the client's CPU share, and the mean batch size of the forward passes
(from the server's ``/metrics``), plus machine load during the run: figures taken while other
processes run are not final. Writes ``benchmarks/results/serving.json``.

The server's process and store are `benchmarks.server_harness`, the load generator
`benchmarks.load`; this script measures the raw pipeline and runs the points.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    LoadMonitor,
    describe_model,
    machine_info,
    rate_per_s,
    synthetic_clip,
    wav_bytes,
    write_results,
)
from benchmarks.load import load_point  # noqa: E402
from benchmarks.peers.bentoml_peer import PEER_PYTHON_ENV, measure_bentoml  # noqa: E402
from benchmarks.server_harness import (  # noqa: E402
    SERVE_REF,
    SERVER_ENCODER_PRECISION,
    SERVER_TORCH_THREADS,
    build_store,
    running_server,
)
from service_config import Settings  # noqa: E402
from uvac.audio import FeatureExtractor, configure_encoder_precision, load_audio  # noqa: E402
from uvac.evaluation import ClipResult, Clusterer  # noqa: E402
from uvac.training import TrainedModel  # noqa: E402

logger = logging.getLogger("benchmarks.serving")

RAW_BATCH = 64
CLIP_SECONDS = {"1s": 1.0, "10s": 10.0}


# ----------------------------------------------------------------------------- raw pipeline


def measure_raw_pipeline(
    trained: TrainedModel, clips: dict[str, bytes], *, seconds: float
) -> dict[str, Any]:
    """Clips per second of decode + features + h in this process (see the module docstring)."""
    config = trained.feature_config
    extractor = FeatureExtractor(config, trained.norm_stats)
    clusterer = Clusterer(trained, detect_speech=True)  # what the API answers with
    model = trained.model.eval()
    sample_rate = config.sample_rate

    def decode(batch: Sequence[bytes]) -> list[Any]:
        return [load_audio(data, sample_rate=sample_rate, max_seconds=600.0) for data in batch]

    def h(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model.cluster_probabilities(features, mask)

    results: dict[str, Any] = {}
    for label, data in clips.items():
        batch = [data] * RAW_BATCH
        audios = decode(batch)
        windows, _ = extractor.windows_batch(audios)
        one_audio = audios[:1]
        one_windows, _ = extractor.windows_batch(one_audio)

        def pipeline(batch: list[bytes] = batch) -> torch.Tensor:
            decoded = decode(batch)
            batch_windows, _ = extractor.windows_batch(decoded)
            return h(batch_windows.features, batch_windows.mask)

        def pipeline_one(data: bytes = data) -> torch.Tensor:
            decoded = decode([data])
            one, _ = extractor.windows_batch(decoded)
            return h(one.features, one.mask)

        def answer(batch: list[bytes] = batch) -> list[ClipResult]:
            return clusterer.cluster_batch(decode(batch))

        share = seconds / 8  # eight measurements per clip length
        total = rate_per_s(pipeline, items_per_step=RAW_BATCH, seconds=2 * share)
        answers = rate_per_s(answer, items_per_step=RAW_BATCH, seconds=2 * share)
        stages = {
            "decode": rate_per_s(partial(decode, batch), items_per_step=RAW_BATCH, seconds=share),
            "features": rate_per_s(
                partial(extractor.windows_batch, audios), items_per_step=RAW_BATCH, seconds=share
            ),
            "h": rate_per_s(
                partial(h, windows.features, windows.mask), items_per_step=RAW_BATCH, seconds=share
            ),
        }
        single = rate_per_s(pipeline_one, items_per_step=1, seconds=share / 2)
        h_single = rate_per_s(
            partial(h, one_windows.features, one_windows.mask), items_per_step=1, seconds=share / 2
        )
        results[label] = {
            "clips_per_s": total["per_s"],
            "best_batch_clips_per_s": total["best_step_per_s"],
            "answer_clips_per_s": answers["per_s"],
            "windows_per_clip": len(windows) // RAW_BATCH,
            "stage_ms_per_clip_at_64": {
                stage: round(1000.0 / rate["per_s"], 4) for stage, rate in stages.items()
            },
            "one_clip_pipeline_ms": single["median_step_ms"],
            "one_clip_h_ms": h_single["median_step_ms"],
        }
    return results


# ----------------------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per point")
    parser.add_argument("--warmup-seconds", type=float, default=2.0, help="unmeasured lead-in")
    parser.add_argument("--raw-seconds", type=float, default=24.0, help="raw pipeline, in all")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--clips", nargs="+", default=list(CLIP_SECONDS), choices=CLIP_SECONDS)
    parser.add_argument(
        "--no-batching-off", action="store_true", help="skip the UVAC_INFERENCE_MAX_BATCH=1 run"
    )
    parser.add_argument(
        "--model",
        choices=["auto", "bundle", "preset"],
        default="auto",
        help="auto: the bundled default model when it is a Cat. UVAC, else an untrained one "
        "of the default preset",
    )
    parser.add_argument(
        "--bentoml-python",
        default=os.environ.get(PEER_PYTHON_ENV, sys.executable),
        help=f"the Python that serves the BentoML peer (default: ${PEER_PYTHON_ENV}, else this "
        "one); benchmarks/README.md says how to make its environment",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the BentoML peer")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "serving.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per /metrics scrape
    args = parse_args(argv)
    torch.set_num_threads(SERVER_TORCH_THREADS)  # the raw pipeline runs as the server does
    encoder_bf16 = configure_encoder_precision(SERVER_ENCODER_PRECISION)
    defaults = Settings()
    monitor = LoadMonitor()
    with monitor, tempfile.TemporaryDirectory(prefix="uvac-serving-bench-") as scratch:
        scratch_dir = Path(scratch)
        trained, source, version_path = build_store(scratch_dir / "models", model_choice=args.model)
        sample_rate = trained.feature_config.sample_rate
        n_clusters = trained.model.n_clusters
        wavs = {
            label: wav_bytes(
                synthetic_clip(seconds=CLIP_SECONDS[label], sample_rate=sample_rate, seed=1),
                sample_rate=sample_rate,
            )
            for label in args.clips
        }
        logger.info("model from %s; measuring the raw pipeline", source)
        raw = measure_raw_pipeline(trained, wavs, seconds=args.raw_seconds)
        logger.info("raw pipeline: %s", {k: v["clips_per_s"] for k, v in raw.items()})

        server_args = {"data_dir": scratch_dir, "store_dir": scratch_dir / "models"}
        clips: dict[str, dict[str, Any]] = {label: {} for label in args.clips}
        with running_server(log_dir=scratch_dir, extra_env={}, **server_args) as server:
            for label in args.clips:
                for concurrency in args.concurrency:
                    point = load_point(
                        server, wav=wavs[label], n_clusters=n_clusters, concurrency=concurrency,
                        warmup_s=args.warmup_seconds, seconds=args.seconds,
                    )  # fmt: skip
                    clips[label][f"c{concurrency}"] = point
                    logger.info("%s c%d: %s", label, concurrency, point)
        batching_off: dict[str, Any] = {}
        if not args.no_batching_off:
            with running_server(
                log_dir=scratch_dir, extra_env={"UVAC_INFERENCE_MAX_BATCH": "1"}, **server_args
            ) as server:
                for label in args.clips:
                    point = load_point(
                        server, wav=wavs[label], n_clusters=n_clusters, concurrency=16,
                        warmup_s=args.warmup_seconds, seconds=args.seconds,
                    )  # fmt: skip
                    batching_off[label] = point
                    logger.info("batching off, %s c16: %s", label, point)
        peers: dict[str, Any] = {}
        if not args.no_peers and "1s" in wavs:
            peers["bentoml"] = measure_bentoml(
                python=args.bentoml_python, store_dir=scratch_dir / "models", serve_ref=SERVE_REF,
                wav=wavs["1s"], n_clusters=n_clusters, concurrency=[1, 16],
                warmup_s=args.warmup_seconds, seconds=args.seconds,
                torch_threads=SERVER_TORCH_THREADS, encoder_precision=SERVER_ENCODER_PRECISION,
                log_dir=scratch_dir,
            )  # fmt: skip
        load = monitor.summary()

    document = build_document(
        args=args, trained=trained, source=source, raw=raw, clips=clips,
        batching_off=batching_off, defaults=defaults, load=load, version_path=version_path,
        encoder_bf16=encoder_bf16, peers=peers,
    )  # fmt: skip
    write_results(args.output, document)
    print(json.dumps(document["summary"], indent=2))
    return 0


def build_document(
    *,
    args: argparse.Namespace,
    trained: TrainedModel,
    source: str,
    raw: dict[str, Any],
    clips: dict[str, dict[str, Any]],
    batching_off: dict[str, Any],
    defaults: Settings,
    load: dict[str, Any],
    version_path: Path,
    encoder_bf16: bool,
    peers: dict[str, Any],
) -> dict[str, Any]:
    raw_by_clip = {label: result["clips_per_s"] for label, result in raw.items()}
    first_clip = "1s" if "1s" in raw_by_clip else next(iter(raw_by_clip))
    summary: dict[str, Any] = {"raw_pipeline_clips_per_s": raw_by_clip}
    for label, points in clips.items():
        if "c16" in points:
            ratio = points["c16"]["throughput"] / raw_by_clip[label]
            summary[f"c16_over_raw_{label}"] = round(ratio, 3)
            answer_ratio = points["c16"]["throughput"] / raw[label]["answer_clips_per_s"]
            summary[f"c16_over_answer_pipeline_{label}"] = round(answer_ratio, 3)
            if label in batching_off:
                summary[f"c16_batching_off_throughput_{label}"] = batching_off[label]["throughput"]
                summary[f"c16_batching_on_throughput_{label}"] = points["c16"]["throughput"]
        if "c1" in points:
            summary[f"c1_p50_ms_{label}"] = points["c1"]["p50_ms"]
    bentoml = peers.get("bentoml", {})
    ours_c16 = clips.get("1s", {}).get("c16", {}).get("throughput")
    if bentoml.get("measured") and ours_c16 is not None:
        summary["bentoml_best_variant"] = bentoml["best_variant"]
        summary["bentoml_c16_throughput_1s"] = bentoml["c16"]["throughput"]
        summary["c16_over_bentoml_1s"] = round(ours_c16 / bentoml["c16"]["throughput"], 3)
    c1_p50 = clips.get("1s", {}).get("c1", {}).get("p50_ms") or 1e9
    targets = {
        "c16_throughput_at_least_half_of_raw": {
            label: summary.get(f"c16_over_raw_{label}", 0.0) >= 0.5 for label in clips
        },
        "c1_p50_at_most_5ms_1s_clip": c1_p50 <= 5.0,
        # Issue 23's targets.
        "c16_throughput_at_least_0_9_of_raw_1s": summary.get("c16_over_raw_1s", 0.0) >= 0.9,
        "c16_throughput_at_least_1_2_of_bentoml_1s": summary.get("c16_over_bentoml_1s", 0.0) >= 1.2,
        "c1_p50_at_most_30ms_1s_clip": c1_p50 <= 30.0,
    }
    return {
        "benchmark": "serving",
        "final": bool(load["idle_enough"]),
        "note": "figures taken while other processes ran are not final; see load"
        if not load["idle_enough"]
        else "taken on an idle machine",
        "machine": machine_info(),
        "load": load,
        "settings": {
            "seconds_per_point": args.seconds,
            "warmup_seconds": args.warmup_seconds,
            "raw_seconds": args.raw_seconds,
            "server_command": "python -m uvicorn app.main:create_app --factory --no-access-log "
            "--ws-per-message-deflate false",
            "server_torch_threads": SERVER_TORCH_THREADS,
            "raw_pipeline_torch_threads": SERVER_TORCH_THREADS,
            "encoder_precision": SERVER_ENCODER_PRECISION,
            "encoder_bf16": encoder_bf16,  # what that setting chose on this CPU
            "inference_max_batch": defaults.inference_max_batch,
            "inference_max_wait_ms": defaults.inference_max_wait_ms,
            "raw_batch": RAW_BATCH,
            "client": "asyncio streams, prebuilt keep-alive requests, one connection per "
            "concurrent client, every response parsed and checked",
            "endpoint": "POST /v1/cluster (multipart, field 'file')",
            "audio": "16 kHz 16-bit PCM WAV, noise plus three wobbling tones",
        },
        "model": {"source": source, "version_path": version_path.name, **describe_model(trained)},
        "raw_pipeline_clips_per_s": raw_by_clip[first_clip],
        "raw_pipeline_clips_per_s_by_clip": raw_by_clip,
        "raw_pipeline": raw,
        "clips": clips,
        "batching_off_c16": batching_off,
        "peers": peers,
        "summary": summary,
        "targets_met": targets,
    }


if __name__ == "__main__":
    sys.exit(main())
