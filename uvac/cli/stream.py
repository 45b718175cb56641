"""``uvac stream``: send a recording (or stdin) to a server's ``WS /v1/stream`` as it would be
heard, and print the environment it decides every hop.

::

    uvac stream FILE --url ws://127.0.0.1:8000/v1/stream [--api-key KEY] [--model REF]
    arecord -f S16_LE -c 1 -r 44100 -t raw | uvac stream - --sample-rate 44100 --url ...

A file is decoded at the rate the server's ``ready`` message names and sent in frames of
``--frame-ms``, paced at real time (``--speed`` times it); stdin is raw mono PCM in
``--encoding`` at ``--sample-rate``, sent as it arrives and never faster than that pace.
Each decision prints one line, with silence, an unknown sound and (``--speech``) the speech
share when there is any (``--json``: the server's messages as they are). Exit codes:
0 when the server closed with 1000 after its ``final``, 1 when it refused the stream (its
problem's detail on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from uvac.audio import load_audio

__all__ = ["StreamOutcome", "add_stream_command", "encode_pcm", "stream_audio"]

ENCODINGS = ("pcm_s16le", "pcm_f32le")


def add_stream_command(commands: Any, common: argparse.ArgumentParser) -> None:
    stream = commands.add_parser(
        "stream", parents=[common], help="stream a recording to a server, print its decisions"
    )
    stream.set_defaults(command=_stream_command)
    stream.add_argument("source", metavar="FILE|-", help="an audio file, or - for raw PCM on stdin")
    stream.add_argument(
        "--url", default="ws://127.0.0.1:8000/v1/stream", help="the server's stream URL"
    )
    stream.add_argument(
        "--api-key", default=os.environ.get("UVAC_API_KEY"), help="default: $UVAC_API_KEY"
    )
    stream.add_argument("--model", help="a model reference (default: the served model)")
    stream.add_argument("--encoding", choices=ENCODINGS, default="pcm_s16le")
    stream.add_argument("--sample-rate", type=int, help="the rate of stdin's PCM")
    stream.add_argument("--frame-ms", type=float, default=100.0, help="audio per frame")
    stream.add_argument("--speed", type=float, default=1.0, help="multiple of real time")
    stream.add_argument("--json", action="store_true", help="print the server's messages")
    stream.add_argument(
        "--speech", action="store_true", help="ask for each window's speech share (costs CPU)"
    )


class StreamOutcome:
    """How a stream ended: the close code, the final message or the error's problem."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.final: dict[str, Any] | None = None
        self.problem: dict[str, Any] | None = None


def encode_pcm(samples: np.ndarray, encoding: str) -> bytes:
    """Float samples in [-1, 1] -> little-endian PCM bytes."""
    if encoding == "pcm_s16le":
        return np.round(np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
    return np.asarray(samples, dtype="<f4").tobytes()


async def stream_audio(
    url: str,
    frames: Callable[[dict[str, Any]], AsyncIterator[bytes]],
    *,
    config: dict[str, Any],
    api_key: str | None = None,
    on_message: Callable[[dict[str, Any]], None] = lambda message: None,
) -> StreamOutcome:
    """Open a stream, send ``frames(ready)`` then eof, hand every server message to
    ``on_message``; how it ended."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    headers = {"X-API-Key": api_key} if api_key else None
    outcome = StreamOutcome()
    async with connect(url, additional_headers=headers, max_size=None) as websocket:
        await websocket.send(json.dumps({"type": "config", **config}))
        ready = json.loads(await websocket.recv())
        on_message(ready)
        if ready.get("type") != "ready":
            outcome.problem = ready.get("problem")
            await _wait_closed(websocket, outcome)
            return outcome

        async def send_all() -> None:
            try:
                async for frame in frames(ready):
                    await websocket.send(frame)
                await websocket.send(json.dumps({"type": "eof"}))
            except ConnectionClosed:
                pass  # the server refused the stream: the receiver reads why

        sender = asyncio.create_task(send_all())
        try:
            async for text in websocket:
                message = json.loads(text)
                on_message(message)
                if message.get("type") == "final":
                    outcome.final = message
                elif message.get("type") == "error":
                    outcome.problem = message.get("problem")
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        await _wait_closed(websocket, outcome)
    return outcome


async def _wait_closed(websocket: Any, outcome: StreamOutcome) -> None:
    await websocket.wait_closed()
    outcome.code = websocket.close_code


async def paced(chunks: AsyncIterator[bytes], *, bytes_per_second: float) -> AsyncIterator[bytes]:
    """``chunks`` no faster than ``bytes_per_second``."""
    started = time.monotonic()
    sent = 0
    async for chunk in chunks:
        due = started + sent / bytes_per_second
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield chunk
        sent += len(chunk)


def _file_frames(path: Path, args: argparse.Namespace) -> Callable[[dict[str, Any]], Any]:
    def frames(ready: dict[str, Any]) -> AsyncIterator[bytes]:
        rate = int(ready["sample_rate"])
        samples = load_audio(path, sample_rate=rate).samples
        step = max(1, round(args.frame_ms / 1000 * rate))

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, samples.shape[0], step):
                yield encode_pcm(samples[start : start + step], args.encoding)

        width = 2 if args.encoding == "pcm_s16le" else 4
        return paced(chunks(), bytes_per_second=rate * width * args.speed)

    return frames


def _stdin_frames(stdin: BinaryIO, args: argparse.Namespace) -> Callable[[dict[str, Any]], Any]:
    def frames(ready: dict[str, Any]) -> AsyncIterator[bytes]:
        rate = int(ready["sample_rate"])
        width = 2 if args.encoding == "pcm_s16le" else 4
        size = max(width, round(args.frame_ms / 1000 * rate) * width)

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                chunk = await asyncio.to_thread(stdin.read, size)
                if not chunk:
                    return
                yield chunk

        return paced(chunks(), bytes_per_second=rate * width * args.speed)

    return frames


def _print_message(message: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(message), flush=True)
        return
    kind = message.get("type")
    if kind == "ready":
        model = message["model"]["ref"]
        print(
            f"streaming to {model}: {message['window_s']:g} s windows every "
            f"{message['hop_s']:g} s at {message['sample_rate']} Hz",
            flush=True,
        )
    elif kind == "decision":
        pi = message["probabilities"][message["assignment"]]
        print(
            f"{message['start_s']:8.2f}-{message['end_s']:.2f} s  cluster "
            f"{_label(message['assignment'], message['cluster_name'])} ({pi:.2f})  program "
            f"{_label(message['program'], message['program_name'])}{_sound_facts(message)}",
            flush=True,
        )
    elif kind == "final":
        print(
            f"whole stream ({message['duration_s']:.2f} s): cluster "
            f"{_label(message['assignment'], message['cluster_name'])} "
            f"({message['confidence']:.2f})",
            flush=True,
        )


def _label(number: int, name: str | None) -> str:
    return f"{number} {name}" if name else str(number)


def _sound_facts(decision: dict[str, Any]) -> str:
    """What a person reads next to the cluster: silence, an unknown sound, speech."""
    facts = []
    if decision.get("silence"):
        facts.append("silence")
    if decision.get("unknown"):
        facts.append(f"UNKNOWN sound (novelty {decision['novelty']:.2f})")
    if decision.get("speech") is not None:
        facts.append(f"speech {decision['speech']:.2f}")
    return "  " + ", ".join(facts) if facts else ""


def _stream_command(args: argparse.Namespace) -> int:
    config: dict[str, Any] = {"encoding": args.encoding, "speech": args.speech}
    if args.model:
        config["model"] = args.model
    if args.source == "-":
        if args.sample_rate is None:
            print("uvac stream: error: reading stdin needs --sample-rate", file=sys.stderr)
            return 2
        config["sample_rate"] = args.sample_rate
        frames = _stdin_frames(sys.stdin.buffer, args)
    else:
        frames = _file_frames(Path(args.source), args)
    outcome = asyncio.run(
        stream_audio(
            args.url,
            frames,
            config=config,
            api_key=args.api_key,
            on_message=lambda message: _print_message(message, as_json=args.json),
        )
    )
    if outcome.problem is not None:
        print(
            f"uvac stream: closed with {outcome.code}: {outcome.problem.get('detail')}",
            file=sys.stderr,
        )
        return 1
    return 0 if outcome.code == 1000 and outcome.final is not None else 1
