"""Live-stream benchmark: how many real-time streams one API process holds on this machine.

    .venv/bin/python benchmarks/streaming.py                 # full run, under 10 minutes
    .venv/bin/python benchmarks/streaming.py --quick         # a smoke run (short, few steps)

What it does, in one run:

1. Publishes the bundled default model (the sound encoder, 5 s windows every 2.5 s, 44.1 kHz)
   in a temporary store.
2. Measures the encoder-bound limit in this process, before the server starts, with the
   server's precision: the CPU seconds one decision window costs through
   `Clusterer.cluster_batch` (the whole inference of a window: its spectrogram, the encoder,
   h; decode-free, the windows are arrays), at batches of 1 and 8 windows, with 1 torch thread
   (no OpenMP spin-waiting in the CPU time) and with 2. The limit is
   ``cores x hop / CPU seconds per window`` with the cheapest of those per-window costs (the
   highest, strictest limit; ``encoder_cost.limit_from`` names which), each setting the
   cheapest of three interleaved rounds. The server runs its
   default inference lanes (one per serving thread, each with one intra-op thread).
3. Starts the production uvicorn command and streams ESC-10 recordings (one clip of every
   class after another, each stream from its own place in that loop) to ``WS /v1/stream`` as
   16-bit PCM in 100 ms frames, paced at real time (a frame is sent when its last sample has
   been "heard"), from one asyncio process with the `websockets` client; every frame is
   framed and masked before the streams start, so sending one is a socket write. Streams
   start at random phases within one hop, as real sessions would.
4. One stream for ``--single-seconds``: decision latency p50 / p95 and the server's CPU
   seconds per second of stream. Then steps the number of concurrent streams up (`StepSearch`:
   doubling, then bisecting); a step is held when every stream ends with 1000 and the p95
   decision latency is at most 250 ms. The clients share the machine's two cores with the
   server (on uvloop where installed); each step records their CPU share beside the server's,
   and what became of the server's early starts (``early_starts``, by outcome).

A decision's latency is from the send of the frame that holds its window's last sample to
the decision's arrival at the client. Writes ``benchmarks/results/streaming.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from app.serve import uvicorn_command  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    LoadMonitor,
    describe_model,
    machine_info,
    percentile_ms,
    write_results,
)
from benchmarks.server_harness import (  # noqa: E402
    SERVER_ENCODER_PRECISION,
    SERVER_TORCH_THREADS,
    build_store,
    running_server,
)
from benchmarks.stream_queue import ideal_streams_held  # noqa: E402
from uvac.audio import Audio, AudioFolder, LiveWindows, configure_encoder_precision, load_audio  # noqa: E402
from uvac.cli.stream import encode_pcm  # noqa: E402
from uvac.device import configure_threads  # noqa: E402
from uvac.evaluation import Clusterer  # noqa: E402
from uvac.training import TrainedModel  # noqa: E402

logger = logging.getLogger("benchmarks.streaming")

ESC10_DIR = REPO_ROOT.parent / "shared" / "data" / "esc10"
TARGET_P95_MS = 250.0
FRAME_S = 0.1
CORES = 2
COST_ROUNDS = 3  # rounds of the encoder-cost measurement, the cheapest kept per setting
_WRITE_BUFFER_BYTES = 64 * 1024  # a client's unsent bytes before it waits for the socket


def scene_loop(data_dir: Path, *, sample_rate: int, clips_per_class: int = 2) -> np.ndarray:
    """ESC-10 clips, ``clips_per_class`` of every class in turn, one after another."""
    folder = AudioFolder.scan(data_dir)
    by_label: dict[str, list[Path]] = {}
    for item in sorted(folder.items, key=lambda item: str(item.relpath)):
        by_label.setdefault(str(item.label), []).append(item.path)
    pieces = []
    for round_index in range(clips_per_class):
        for label in sorted(by_label):
            paths = by_label[label]
            pieces.append(
                load_audio(paths[round_index % len(paths)], sample_rate=sample_rate).samples
            )
    return np.concatenate(pieces)


def encoder_cost(trained: TrainedModel, audio: np.ndarray, windows: LiveWindows) -> dict[str, Any]:
    """CPU and wall seconds per decision window, by batch size and thread count."""
    configure_encoder_precision(SERVER_ENCODER_PRECISION)
    clusterer = Clusterer(trained, device="cpu")
    clips = [
        Audio.from_samples(
            audio[start : start + windows.window_samples], sample_rate=windows.sample_rate
        )
        for start in range(0, 8 * windows.hop_samples, windows.hop_samples)
    ]
    results: dict[str, Any] = {}
    # Each setting is timed in COST_ROUNDS interleaved rounds and keeps its cheapest: a
    # moment's slowdown of the host during one round would otherwise lower the limit.
    for _ in range(COST_ROUNDS):
        for threads in (1, SERVER_TORCH_THREADS):
            configure_threads(threads)
            for batch in (1, 8):
                group = clips[:batch]
                no_speech = [False] * batch  # as the streams ask (their config leaves speech out)
                clusterer.cluster_batch(group, speech=no_speech)  # warm-up
                repeats = max(2, 16 // batch)
                cpu_started, wall_started = time.process_time(), time.perf_counter()
                for _ in range(repeats):
                    clusterer.cluster_batch(group, speech=no_speech)
                windows_done = repeats * batch
                key = f"threads_{threads}_batch_{batch}"
                measured = {
                    "cpu_s_per_window": round(
                        (time.process_time() - cpu_started) / windows_done, 4
                    ),
                    "wall_s_per_window": round(
                        (time.perf_counter() - wall_started) / windows_done, 4
                    ),
                }
                if key not in results or (
                    measured["cpu_s_per_window"] < results[key]["cpu_s_per_window"]
                ):
                    results[key] = measured
    limit_from = min(results, key=lambda key: results[key]["cpu_s_per_window"])
    cheapest = results[limit_from]["cpu_s_per_window"]
    return {
        "per_window": results,
        "limit_from": limit_from,
        "cpu_s_per_window": cheapest,
        "encoder_bound_limit": round(CORES * windows.hop_s / cheapest, 2),
    }


def ideal_queue(cost: dict[str, Any], *, hop_s: float) -> dict[str, Any]:
    """The streams a server without overhead would hold at the target (`stream_queue`): the
    server's lanes of one thread, each window costing the wall time measured for it."""
    per_window = cost["per_window"]
    costs_s = {
        batch: per_window[f"threads_1_batch_{batch}"]["wall_s_per_window"] for batch in (1, 8)
    }
    held = ideal_streams_held(
        costs_s=costs_s,
        hop_s=hop_s,
        target_s=TARGET_P95_MS / 1000,
        most=math.ceil(2 * cost["encoder_bound_limit"]),
        lanes=SERVER_TORCH_THREADS,
    )
    return {
        "streams_held": held,
        "share_of_limit": round(held / cost["encoder_bound_limit"], 3),
        "lanes": SERVER_TORCH_THREADS,
        "wall_s_per_window_by_batch": costs_s,
        "model": "benchmarks/stream_queue.py: the streams' random phases, each free lane "
        "taking its even share of the waiting windows; no other cost",
    }


class StreamRun:
    """One stream's record: decision latencies, how it closed."""

    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self.close_code: int | None = None
        self.error: str | None = None
        self.decisions = 0


def wire_frames(audio: np.ndarray, *, offset: int, n_frames: int, frame: int) -> list[bytes]:
    """A stream's audio frames as the bytes a client puts on the socket: 16-bit PCM from
    ``offset`` on (round the loop), each frame a masked binary WebSocket frame."""
    from websockets.frames import Frame, Opcode

    positions = (offset + np.arange(n_frames * frame)) % len(audio)
    pcm = encode_pcm(audio[positions], "pcm_s16le")
    width = 2 * frame
    return [
        Frame(Opcode.BINARY, pcm[k * width : (k + 1) * width]).serialize(mask=True)
        for k in range(n_frames)
    ]


async def one_stream(url: str, wires: list[bytes], *, start_at: float, rate: int) -> StreamRun:
    """Open a stream at ``start_at`` (``time.perf_counter()``) and send ``wires`` at real
    time, one every `FRAME_S`."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, ConnectionClosedError
    from websockets.protocol import State

    run = StreamRun()
    frame = round(FRAME_S * rate)
    await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    async with connect(url, max_size=None) as websocket:
        await websocket.send(json.dumps({"type": "config", "encoding": "pcm_s16le"}))
        ready = json.loads(await websocket.recv())
        if int(ready["sample_rate"]) != rate:
            raise RuntimeError(f"the server takes {ready['sample_rate']} Hz, not {rate}")
        sent_at: list[float] = []

        async def send() -> None:
            transport = websocket.transport
            started = time.perf_counter()
            for index, wire in enumerate(wires):
                due = started + (index + 1) * FRAME_S  # when its last sample was "heard"
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if websocket.protocol.state is not State.OPEN:
                    return  # the server refused the stream: its error message says why
                sent_at.append(time.perf_counter())
                transport.write(wire)
                if transport.get_write_buffer_size() > _WRITE_BUFFER_BYTES:
                    with contextlib.suppress(ConnectionClosed):  # the server stopped reading:
                        await websocket.drain()  # wait, as the library's send would
            with contextlib.suppress(ConnectionClosed):  # the server may close meanwhile
                await websocket.send(json.dumps({"type": "eof"}))

        sender = asyncio.create_task(send())
        try:
            async for text in websocket:
                arrived = time.perf_counter()
                message = json.loads(text)
                if message["type"] == "decision":
                    last_sample = round(message["end_s"] * rate) - 1
                    run.latencies_s.append(arrived - sent_at[last_sample // frame])
                    run.decisions += 1
                elif message["type"] == "error":
                    run.error = message["problem"]["detail"]
        except ConnectionClosedError as closed:
            # Past the knee a stream's backlog fills, the server stops reading its socket
            # (by design), and the client's keepalive ping goes unanswered: a failed stream,
            # not a failed benchmark.
            run.error = run.error or str(closed)
        await sender
        await websocket.wait_closed()
        run.close_code = websocket.close_code
    return run


async def run_step(
    url: str,
    audio: np.ndarray,
    *,
    streams: int,
    seconds: float,
    hop_s: float,
    seed: int,
    rate: int,
) -> list[StreamRun]:
    rng = random.Random(seed)
    frame = round(FRAME_S * rate)
    # Every stream's frames are encoded and framed before any stream starts, so that sending
    # one costs a socket write (the clients share the machine with the server, and the
    # library's send path costs several times that per frame); and each stream starts at its
    # own phase from one time for all, so that the set-up of one stream delays no other's
    # start (starts that slip to the end of the set-up would open streams in step, which
    # then complete their windows at the same moment for the whole run).
    wires = [
        wire_frames(
            audio, offset=rng.randrange(len(audio)), n_frames=int(seconds / FRAME_S), frame=frame
        )
        for _ in range(streams)
    ]
    begin = time.perf_counter()
    tasks = [
        one_stream(url, stream_wires, start_at=begin + rng.uniform(0.0, hop_s), rate=rate)
        for stream_wires in wires
    ]
    return list(await asyncio.gather(*tasks))


def _client_loop(step: Coroutine[Any, Any, list[StreamRun]]) -> list[StreamRun]:
    """uvloop where installed (uvicorn[standard] brings it): cheaper per frame sent."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(step)
    return uvloop.run(step)


def run_clients(step: Coroutine[Any, Any, list[StreamRun]]) -> tuple[list[StreamRun], float]:
    """Run a step's clients; their runs and the CPU seconds this process spent on them."""
    started = time.process_time()
    runs = _client_loop(step)
    return runs, time.process_time() - started


def summarise(
    runs: Sequence[StreamRun],
    *,
    streams: int,
    wall_s: float,
    server_cpu_s: float,
    client_cpu_s: float,
) -> dict[str, Any]:
    latencies = [latency for run in runs for latency in run.latencies_s]
    closed_ok = all(run.close_code == 1000 and run.error is None for run in runs)
    p95 = percentile_ms(latencies, 95)
    return {
        "streams": streams,
        "decisions": len(latencies),
        "p50_ms": percentile_ms(latencies, 50),
        "p95_ms": p95,
        "p99_ms": percentile_ms(latencies, 99),
        "max_ms": percentile_ms(latencies, 100),
        "all_closed_1000": closed_ok,
        "errors": sorted({run.error for run in runs if run.error}),
        "server_cpu_s": round(server_cpu_s, 2),
        "server_cpu_share_of_machine": round(server_cpu_s / (wall_s * CORES), 3),
        "client_cpu_share_of_machine": round(client_cpu_s / (wall_s * CORES), 3),
        "held": bool(closed_ok and p95 is not None and p95 <= TARGET_P95_MS),
    }


class StepSearch:
    """The stream counts to try: doubling from 2 while they hold, then halving the gap
    between the most held and the fewest not held until they are neighbours (one stream is
    about 2 % of the limit here, near the 70 % line), the counts pass twice the
    encoder-bound limit, or the time budget is spent."""

    def __init__(self, *, limit: float, quick: bool, budget_s: float) -> None:
        self.limit = limit
        self.quick = quick
        self.deadline = time.monotonic() + budget_s
        self.held = 0
        self.failed: int | None = None
        self.tried: list[int] = []

    def next_count(self) -> int | None:
        if self.quick:
            return None if self.tried else 2
        if time.monotonic() > self.deadline:
            return None
        if self.failed is None:
            count = 2 if not self.tried else 2 * self.held
            return count if count <= 2 * self.limit else None
        if self.failed - self.held <= 1:
            return None
        return (self.held + self.failed) // 2

    def record(self, count: int, *, held: bool) -> None:
        self.tried.append(count)
        if held:
            self.held = max(self.held, count)
        else:
            self.failed = count if self.failed is None else min(self.failed, count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--single-seconds", type=float, default=60.0)
    parser.add_argument("--step-seconds", type=float, default=25.0)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "streaming.json")
    parser.add_argument("--data", type=Path, default=ESC10_DIR)
    parser.add_argument(
        "--budget-seconds", type=float, default=400.0, help="no new step after this long"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.single_seconds, args.step_seconds = 12.0, 10.0

    monitor = LoadMonitor()
    with monitor, tempfile.TemporaryDirectory(prefix="uvac-stream-bench-") as scratch:
        root = Path(scratch)
        trained, source, _ = build_store(root / "models", model_choice="bundle")
        windows = LiveWindows.of(trained.feature_config)
        rate = windows.sample_rate
        audio = scene_loop(args.data, sample_rate=windows.sample_rate)
        cost = encoder_cost(trained, audio, windows)
        logger.info("encoder: %s", cost)
        ideal = ideal_queue(cost, hop_s=windows.hop_s)
        logger.info("an ideal server of %d lanes: %s", SERVER_TORCH_THREADS, ideal)
        limit = cost["encoder_bound_limit"]
        model_description = describe_model(trained)
        del trained

        steps: list[dict[str, Any]] = []
        with running_server(
            data_dir=root / "data",
            store_dir=root / "models",
            log_dir=root,
            extra_env={"UVAC_MAX_STREAMS": "10000"},  # the step search finds the limit
        ) as server:
            url = f"ws://127.0.0.1:{server.port}/v1/stream"
            run_clients(run_step(url, audio, streams=1, seconds=6.0, hop_s=0.0, seed=0, rate=rate))
            cpu_before, started = server.cpu_seconds(), time.monotonic()
            runs, client_cpu_s = run_clients(
                run_step(
                    url, audio, streams=1, seconds=args.single_seconds, hop_s=0.0, seed=1, rate=rate
                )
            )
            single = summarise(
                runs,
                streams=1,
                wall_s=time.monotonic() - started,
                server_cpu_s=server.cpu_seconds() - cpu_before,
                client_cpu_s=client_cpu_s,
            )
            single["server_cpu_s_per_stream_second"] = round(
                single["server_cpu_s"] / args.single_seconds, 4
            )
            logger.info("single stream: %s", single)
            search = StepSearch(limit=limit, quick=args.quick, budget_s=args.budget_seconds)
            while (count := search.next_count()) is not None:
                batches_before = server.batch_counters()
                starts_before = server.early_start_counters()
                cpu_before, started = server.cpu_seconds(), time.monotonic()
                runs, client_cpu_s = run_clients(
                    run_step(
                        url,
                        audio,
                        streams=count,
                        seconds=args.step_seconds,
                        hop_s=windows.hop_s,
                        seed=count,
                        rate=rate,
                    )
                )
                step = summarise(
                    runs,
                    streams=count,
                    wall_s=time.monotonic() - started,
                    server_cpu_s=server.cpu_seconds() - cpu_before,
                    client_cpu_s=client_cpu_s,
                )
                clips, batches = (
                    after - before
                    for after, before in zip(server.batch_counters(), batches_before, strict=True)
                )
                step["mean_batch_size"] = round(clips / batches, 2) if batches else None
                step["early_starts"] = {
                    outcome: int(count - starts_before.get(outcome, 0.0))
                    for outcome, count in server.early_start_counters().items()
                }
                logger.info("step: %s", step)
                steps.append(step)
                search.record(count, held=step["held"])
        held = [step for step in steps if step["held"]]
        best = held[-1] if held else None
        document = {
            "benchmark": "streaming",
            "command": "python benchmarks/streaming.py" + (" --quick" if args.quick else ""),
            "model": {"source": source, **model_description},
            "window_s": windows.window_s,
            "hop_s": windows.hop_s,
            "frame_s": FRAME_S,
            "target_p95_ms": TARGET_P95_MS,
            "streams_held": best["streams"] if best else 0,
            "encoder_bound_limit": limit,
            "held_share_of_limit": round((best["streams"] if best else 0) / limit, 3),
            "ideal_server": ideal,
            "p95_decision_latency_ms": best["p95_ms"] if best else None,
            "single_stream": {
                "p50_ms": single["p50_ms"],
                "p95_ms": single["p95_ms"],
                "server_cpu_s_per_stream_second": single["server_cpu_s_per_stream_second"],
                "seconds": args.single_seconds,
                **{k: single[k] for k in ("decisions", "p99_ms", "max_ms", "all_closed_1000")},
            },
            "encoder_cost": cost,
            "steps": steps,
            "server": {
                "command": " ".join(["python", *uvicorn_command("127.0.0.1", 0)[1:]]),
                "inference_lanes": SERVER_TORCH_THREADS,
                "threads_per_lane": 1,
                "torch_threads": SERVER_TORCH_THREADS,
                "encoder_precision": SERVER_ENCODER_PRECISION,
            },
            "machine": machine_info(),
            "load": monitor.summary(),
        }
    write_results(args.output, document)
    print(
        json.dumps(
            {
                k: document[k]
                for k in (
                    "streams_held",
                    "encoder_bound_limit",
                    "p95_decision_latency_ms",
                    "single_stream",
                )
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
