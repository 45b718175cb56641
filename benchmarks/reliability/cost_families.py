"""Fuzz families of small requests that could cost the server far more than their size (issue
#22), each against a fresh real uvicorn server:

- ``high-rate-audio``: FLACs of mostly silence at 96 to 655,350 Hz, 10 to 600 s, mono and
  stereo, some with headers that lie about their length, on ``/v1/cluster``, the batch route
  and inside a data set upload;
- ``long-names``: tar.gz archives of up to 2,000 entries whose names run up to 64 KiB (with
  control and bidi characters), then ``GET /v1/datasets?limit=1``; the answers' and the
  manifests' sizes are recorded;
- ``numeric-headers``: tars whose PAX numeric records (size, mtime, uid, the record length
  itself) hold up to 10,000 digits, signs, spaces or non-ASCII digits;
- ``concurrent-exports``: 12 concurrent downloads of an export built on request, for a fresh
  version each round;
- ``wide-json``: JSON bodies of up to 75,000 unknown keys (top level and nested) on the
  JSON routes, with ``/livez`` timed meanwhile;
- ``slow-uploads``: two clients trickling a byte every half second into the data set upload
  slots, while an ordinary upload is retried until it gets through;
- ``head-of-line``: the latency of 1 s clips sent one after the other while a 600 s clip is
  clustered, with the bundled default model (an encoder model, the costly case).

The report of each is `fuzz_families.FamilyReport` (cases, 5xx, crashes, peak memory above
idle) with extra figures under ``extra``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import socket
import statistics
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from benchmarks.reliability.contract_families import contract_runners
from benchmarks.reliability.fuzz_families import FamilyReport, _check_response, _warm_up
from benchmarks.reliability.harness import (
    MODEL_NAME,
    MODEL_SAMPLE_RATE,
    ApiServer,
    publish_tiny_model,
    running_api,
    tiny_trained_model,
    tone_wav,
)
from benchmarks.reliability.hostile_inputs import (
    gzip_stream,
    pax_record,
    tar_with_pax_payload,
    zip_with_members,
)
from benchmarks.reliability.rss import PeakRss

logger = logging.getLogger(__name__)

COST_FAMILIES = (
    "high-rate-audio",
    "long-names",
    "numeric-headers",
    "concurrent-exports",
    "wide-json",
    "slow-uploads",
    "head-of-line",
)
MEGABYTE = 1024 * 1024
HEAD_OF_LINE_TARGET_P95_S = 1.0


# --- inputs ----------------------------------------------------------------------------------


def silent_flac(
    seconds: float, rate: int, *, channels: int = 1, block_seconds: float = 5.0
) -> bytes:
    """A FLAC of silence with a short tone, written block by block (never whole in memory)."""
    buffer = io.BytesIO()
    frames_left = round(seconds * rate)
    block = max(1, round(block_seconds * rate))
    with sf.SoundFile(
        buffer, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16"
    ) as sink:
        first = True
        while frames_left > 0:
            count = min(block, frames_left)
            data = np.zeros((count, channels), dtype=np.float32)
            if first:
                tone_frames = min(count, rate // 10)
                data[:tone_frames, :] = (
                    0.3 * np.sin(2 * np.pi * 440 * np.arange(tone_frames) / rate)[:, None]
                )
                first = False
            sink.write(data)
            frames_left -= count
    return buffer.getvalue()


def _lying_length(flac: bytes, total_samples: int) -> bytes:
    patched = bytearray(flac)
    patched[21] = (patched[21] & 0xF0) | ((total_samples >> 32) & 0x0F)
    patched[22:26] = (total_samples & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(patched)


_FLACS: dict[tuple[Any, ...], bytes] = {}


def _flac(seconds: float, rate: int, channels: int = 1, *, declared: int | None = None) -> bytes:
    key = (seconds, rate, channels, declared)
    if key not in _FLACS:
        flac = silent_flac(seconds, rate, channels=channels)
        _FLACS[key] = flac if declared is None else _lying_length(flac, declared)
    return _FLACS[key]


# (seconds, rate, channels, declared frames or None): the worst accepted (600 s at 96 kHz,
# the samples cap), the files (600 s at 655,350 Hz; 192 kHz), stereo, and headers
# that understate (0: unknown) or overstate the length.
HIGH_RATE_FILES = (
    (600.0, 96_000, 1, None),
    (600.0, 655_350, 1, None),
    (300.0, 192_000, 1, None),
    (150.0, 192_000, 2, None),
    (60.0, 384_000, 1, None),
    (10.0, 655_350, 2, None),
    (600.0, 96_000, 1, 0),
    (30.0, 192_000, 1, 10**9),
)


def _high_rate_cases(rng: random.Random) -> Iterator[tuple[str, str, dict[str, Any]]]:
    routes = ("/v1/cluster", "/v1/cluster/batch", "/v1/datasets")
    index = 0
    while True:
        seconds, rate, channels, declared = HIGH_RATE_FILES[index % len(HIGH_RATE_FILES)]
        route = routes[(index // len(HIGH_RATE_FILES)) % len(routes)]
        index += 1
        flac = _flac(seconds, rate, channels, declared=declared)
        kind = f"{seconds:g}s@{rate}x{channels}{'' if declared is None else f'/declared{declared}'}"
        if route == "/v1/datasets":
            files = {"file": ("a.zip", zip_with_members([("a/x.flac", flac)]))}
        else:
            field = "files" if route.endswith("batch") else "file"
            files = {field: ("x.flac", flac, "audio/flac")}
        yield kind, route, files


def _long_names_archive(rng: random.Random) -> tuple[str, bytes]:
    count = rng.choice([10, 200, 2_000])
    length = rng.choice([1_100, 20_000, 65_000])
    style = rng.choice(["plain", "control", "bidi"])
    filler = {"plain": "n", "control": "\x01\n", "bidi": "\u202ea"}[style]

    def chunks() -> Iterator[bytes]:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for index in range(count):
                name = f"{index}/" + (filler * length)[:length]
                info = tarfile.TarInfo(name)
                archive.addfile(info, io.BytesIO(b""))
                if out.tell() > 4 * MEGABYTE:
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
            wav = tone_wav(0.5, sample_rate=MODEL_SAMPLE_RATE)
            info = tarfile.TarInfo("ok.wav")
            info.size = len(wav)
            archive.addfile(info, io.BytesIO(wav))
        yield out.getvalue()

    return f"{count}x{length}-{style}", gzip_stream(chunks())


_NUMERIC_VALUES = (
    b"9" * 4_301,
    b"9" * 10_000,
    b"1" + b"0" * 30,
    b"-1",
    b" 12",
    b"1e9",
    "١٢٣".encode(),
    b"0x10",
    b"",
)


def _numeric_header_archive(rng: random.Random) -> tuple[str, bytes]:
    value = rng.choice(_NUMERIC_VALUES)
    shape = rng.choice(["size", "mtime", "uid", "record-length"])
    wav = tone_wav(0.5, sample_rate=MODEL_SAMPLE_RATE)
    if shape == "record-length":
        payload = value + b" comment=x\n"
    else:
        payload = pax_record(shape.encode(), value)
    return f"{shape}:{len(value)}digits", tar_with_pax_payload(payload, member=wav)


def _wide_bodies(rng: random.Random) -> tuple[str, str, str, bytes]:
    width = rng.choice([11, 1_000, 20_000, 75_000])
    nested = rng.random() < 0.3
    routes = [
        ("POST", "/v1/train", {"dataset_id": "ds_0123456789ab"}),
        ("POST", "/train", {"dataset_id": "ds_0123456789ab"}),
        ("POST", "/v1/distill", {"teacher_ref": MODEL_NAME, "dataset_id": "ds_0123456789ab"}),
        ("PUT", f"/v1/models/{MODEL_NAME}/versions/1/clusters/0", {"name": "Rain"}),
        (
            "POST",
            "/v1/evaluate",
            {"model_ref": f"{MODEL_NAME}:v1", "dataset_id": "ds_0123456789ab"},
        ),
    ]
    method, path, base = rng.choice(routes)
    wide = {f"k{i}": 1 for i in range(width)}
    body = {**base, "sweep": wide} if nested and path.endswith("train") else {**base, **wide}
    return f"{width}{'-nested' if nested else ''}", method, path, json.dumps(body).encode()


# --- running ---------------------------------------------------------------------------------


def _timed_livez(server: ApiServer, stop: threading.Event, worst: list[float]) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            started = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                client.get(f"{server.url}/livez")
            worst[0] = max(worst[0], time.perf_counter() - started)
            time.sleep(0.05)


def _run_high_rate(report: FamilyReport, server: ApiServer, count: int, seed: int, hidden) -> None:
    cases = _high_rate_cases(random.Random(seed))
    # Built before the memory is watched (the client's own work is not the server's).
    for seconds, rate, channels, declared in HIGH_RATE_FILES:
        _flac(seconds, rate, channels, declared=declared)
    sizes = {}
    with httpx.Client(timeout=600) as client, PeakRss(server.pid) as rss:
        for _ in range(count):
            kind, route, files = next(cases)
            response = client.post(f"{server.url}{route}", files=files)
            report.cases += 1
            report.kinds[f"{route} {kind}"] += 1
            sizes[kind] = len(next(iter(files.values()))[1])
            _check_response(report, kind, response, hidden)
        report.peak_rss_mb = rss.peak / MEGABYTE
    report.extra["upload_bytes"] = sizes


def _run_long_names(report: FamilyReport, server: ApiServer, count: int, seed: int, hidden) -> None:
    rng = random.Random(seed)
    archives = [_long_names_archive(rng) for _ in range(count)]
    largest_answer = 0
    list_seconds: list[float] = []
    with httpx.Client(timeout=600) as client, PeakRss(server.pid) as rss:
        for kind, archive in archives:
            response = client.post(f"{server.url}/v1/datasets", files={"file": ("a.tgz", archive)})
            report.cases += 1
            report.kinds[kind] += 1
            _check_response(report, kind, response, hidden)
            largest_answer = max(largest_answer, len(response.content))
            started = time.perf_counter()
            listing = client.get(f"{server.url}/v1/datasets", params={"limit": 1})
            list_seconds.append(time.perf_counter() - started)
            _check_response(report, f"list after {kind}", listing, hidden)
            largest_answer = max(largest_answer, len(listing.content))
        report.peak_rss_mb = rss.peak / MEGABYTE
    report.extra.update(
        largest_answer_bytes=largest_answer,
        archive_bytes_max=max(len(archive) for _, archive in archives),
        list_limit_1_seconds_max=round(max(list_seconds), 3),
    )


def _run_numeric(report: FamilyReport, server: ApiServer, count: int, seed: int, hidden) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=120) as client, PeakRss(server.pid) as rss:
        for _ in range(count):
            kind, archive = _numeric_header_archive(rng)
            response = client.post(f"{server.url}/v1/datasets", files={"file": ("a.tar", archive)})
            report.cases += 1
            report.kinds[kind.split(":")[0]] += 1
            _check_response(report, kind, response, hidden)
        report.peak_rss_mb = rss.peak / MEGABYTE


def _publish_exportable(store_root: Path, seed: int) -> int:
    import dataclasses

    from model_store import ModelStore
    from uvac.training import save_trained_model

    trained = tiny_trained_model(seed=seed)
    config = dataclasses.replace(trained.feature_config, sample_rate=16_000)
    trained = dataclasses.replace(trained, feature_config=config)
    with ModelStore(store_root).publish("edge", metadata={"seed": seed}) as staging:
        save_trained_model(Path(staging), trained)
    return staging.version.version


def _run_exports(
    report: FamilyReport, server: ApiServer, count: int, seed: int, hidden, store_root: Path
) -> None:
    rounds = max(1, count // 12)
    with httpx.Client(timeout=120) as client, PeakRss(server.pid) as rss:
        for round_index in range(rounds):
            version = _publish_exportable(store_root, seed + round_index)
            base = f"{server.url}/v1/models/edge/versions/{version}/export"
            paths = [f"{base}/model.onnx", f"{base}/model.json", base] * 4

            def get(path: str) -> httpx.Response:
                return client.get(path)

            with ThreadPoolExecutor(max_workers=len(paths)) as pool:
                for path, response in zip(paths, pool.map(get, paths), strict=True):
                    report.cases += 1
                    report.kinds[path.rsplit("/", 1)[-1]] += 1
                    _check_response(report, path, response, hidden)
                    if response.status_code != 200:
                        report.fail(path, f"{response.status_code}: {response.text[:200]}")
        report.peak_rss_mb = rss.peak / MEGABYTE


def _run_wide_json(report: FamilyReport, server: ApiServer, count: int, seed: int, hidden) -> None:
    rng = random.Random(seed)
    stop = threading.Event()
    worst_livez = [0.0]
    largest_answer = 0
    watcher = threading.Thread(target=_timed_livez, args=(server, stop, worst_livez))
    with httpx.Client(timeout=120) as client, PeakRss(server.pid) as rss:
        watcher.start()
        try:
            for _ in range(count):
                kind, method, path, body = _wide_bodies(rng)
                headers = {"content-type": "application/json"}
                response = client.request(
                    method, f"{server.url}{path}", content=body, headers=headers
                )
                report.cases += 1
                report.kinds[f"{method} {path.split('/')[-1] or path}"] += 1
                _check_response(report, kind, response, hidden)
                largest_answer = max(largest_answer, len(response.content))
        finally:
            stop.set()
            watcher.join()
        report.peak_rss_mb = rss.peak / MEGABYTE
    report.extra.update(
        largest_answer_bytes=largest_answer, livez_worst_seconds=round(worst_livez[0], 3)
    )


def _trickle(port: int, stop: threading.Event, statuses: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/datasets HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            b"Content-Length: 1000000\r\n\r\n--xyz\r\n"
        )
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                head = sock.recv(64)
            except TimeoutError:
                try:
                    sock.sendall(b"C")
                except OSError:
                    break
                continue
            if head:
                statuses.append(int(head.split(b" ", 2)[1]))
            break


def _run_slow_uploads(
    report: FamilyReport, server: ApiServer, count: int, seed: int, hidden
) -> None:
    archive = zip_with_members([("a/x.wav", tone_wav(0.5, sample_rate=MODEL_SAMPLE_RATE))])
    waits: list[float] = []
    slow_statuses: list[int] = []
    with httpx.Client(timeout=60) as client, PeakRss(server.pid) as rss:
        for _ in range(count):
            stop = threading.Event()
            trickles = [
                threading.Thread(target=_trickle, args=(server.port, stop, slow_statuses))
                for _ in range(2)
            ]
            for thread in trickles:
                thread.start()
            time.sleep(0.5)
            started = time.monotonic()
            report.cases += 1
            while True:
                response = client.post(
                    f"{server.url}/v1/datasets", files={"file": ("a.zip", archive)}
                )
                _check_response(report, "ordinary upload", response, hidden)
                if response.status_code == 201:
                    break
                if time.monotonic() - started > 60:
                    report.fail("ordinary upload", "starved for 60 s by two slow clients")
                    break
                time.sleep(0.5)
            waits.append(time.monotonic() - started)
            stop.set()
            for thread in trickles:
                thread.join()
        report.peak_rss_mb = rss.peak / MEGABYTE
    report.extra.update(
        ordinary_upload_wait_seconds_max=round(max(waits), 2),
        slow_client_statuses=sorted(set(slow_statuses)),
    )


def _run_head_of_line(report: FamilyReport, server: ApiServer, count: int, rate: int) -> None:
    long_clip = silent_flac(600.0, rate)
    rng = np.random.default_rng(0)
    short = io.BytesIO()
    sf.write(short, (0.1 * rng.standard_normal(rate)).astype(np.float32), rate, format="WAV")
    short_wav = short.getvalue()
    latencies: list[float] = []
    long_result: dict[str, Any] = {}

    def send_long() -> None:
        started = time.perf_counter()
        with httpx.Client(timeout=600) as client:
            response = client.post(
                f"{server.url}/v1/cluster", files={"file": ("long.flac", long_clip)}
            )
        long_result.update(status=response.status_code, seconds=time.perf_counter() - started)

    with httpx.Client(timeout=600) as client, PeakRss(server.pid) as rss:
        client.post(f"{server.url}/v1/cluster", files={"file": ("s.wav", short_wav)})  # warm
        sender = threading.Thread(target=send_long)
        sender.start()
        time.sleep(3.0)  # upload and decode; the clip is then being clustered
        while sender.is_alive() and len(latencies) < count:
            started = time.perf_counter()
            response = client.post(f"{server.url}/v1/cluster", files={"file": ("s.wav", short_wav)})
            latencies.append(time.perf_counter() - started)
            report.cases += 1
            _check_response(report, "1 s clip", response, ())
            time.sleep(0.2)
        sender.join()
        report.peak_rss_mb = rss.peak / MEGABYTE
    if long_result.get("status") != 200:
        report.fail("600 s clip", f"answered {long_result.get('status')}")
    ordered = sorted(latencies) or [float("nan")]
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    report.extra.update(
        short_clip_p95_seconds=round(p95, 3),
        short_clip_median_seconds=round(statistics.median(ordered), 3),
        short_clip_max_seconds=round(ordered[-1], 3),
        short_clips=len(latencies),
        long_clip_seconds=round(long_result.get("seconds", float("nan")), 1),
        target_p95_seconds=HEAD_OF_LINE_TARGET_P95_S,
    )
    if p95 >= HEAD_OF_LINE_TARGET_P95_S:
        report.fail("1 s clip", f"p95 latency {p95:.2f} s while a 600 s clip is clustered")


def run_cost_families(
    *,
    work_dir: Path,
    cases: int,
    seed: int,
    redis_url: str,
    families: tuple[str, ...] = COST_FAMILIES,
) -> dict[str, dict[str, Any]]:
    """Run each family against a fresh server; returns their reports."""
    from benchmarks.server_harness import build_store

    hidden = tuple({str(work_dir), str(work_dir.resolve())})
    runners: dict[str, Callable[..., None]] = {
        "high-rate-audio": lambda r, s, d: _run_high_rate(r, s, min(cases, 48), seed, hidden),
        "long-names": lambda r, s, d: _run_long_names(r, s, min(cases, 12), seed, hidden),
        "numeric-headers": lambda r, s, d: _run_numeric(r, s, cases, seed, hidden),
        "concurrent-exports": lambda r, s, d: _run_exports(
            r, s, min(cases, 120), seed, hidden, d / "models"
        ),
        "wide-json": lambda r, s, d: _run_wide_json(r, s, min(cases, 200), seed, hidden),
        "slow-uploads": lambda r, s, d: _run_slow_uploads(r, s, min(cases, 3), seed, hidden),
        **contract_runners(cases=cases, seed=seed, hidden=hidden),
    }
    results: dict[str, dict[str, Any]] = {}
    for name in families:
        family_dir = work_dir / name
        data_dir = family_dir / "data"
        report = FamilyReport(name=name)
        started = time.monotonic()
        env = {"UVAC_LOG_LEVEL": "WARNING"}
        if name == "strict-json":
            # Hundreds of job submissions a minute: the rate limit (tested on its own) would
            # answer most with 429 before the body is read, and the family is after the 422s.
            env["UVAC_JOB_SUBMISSIONS_PER_MINUTE"] = "0"
        rate = MODEL_SAMPLE_RATE
        if name == "head-of-line":
            trained, _, _ = build_store(data_dir / "models", model_choice="bundle")
            rate = trained.feature_config.sample_rate
            env.update(UVAC_SERVE_MODEL="bench@production", UVAC_TORCH_THREADS="2")
        else:
            publish_tiny_model(data_dir / "models")
        with running_api(
            data_dir=data_dir, redis_url=redis_url, log_path=family_dir / "api.log", env=env
        ) as server:
            if name == "head-of-line":
                report.idle_rss_mb = PeakRss(server.pid).current() / MEGABYTE
                _run_head_of_line(report, server, min(cases, 100), rate)
            else:
                report.idle_rss_mb = _warm_up(server)
                runners[name](report, server, data_dir)
        report.seconds = time.monotonic() - started
        results[name] = {**report.to_json(), **report.extra}
        logger.info(
            "cost family %s: %d cases, %d 5xx, %d crashes, peak RSS +%.1f MB %s",
            name,
            report.cases,
            report.status_5xx,
            report.crashes,
            results[name]["peak_rss_mb_above_idle"],
            report.extra,
        )
    return results
