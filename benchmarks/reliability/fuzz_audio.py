"""Fuzz ``uvac.audio.decoding.load_audio``: every case decodes or raises ``AudioError``; nothing
else.

The parent (``run_fuzz``) never decodes anything itself. It runs batches of cases in child
processes (``python -m benchmarks.reliability.fuzz_audio --child ...``), each with an address
space cap (RLIMIT_AS: the size after imports plus ``memory_mb``) and a wall-clock timeout per
batch. A child prints one JSON line per finished case, so when it hangs, is killed by the cap
or crashes in C, the parent knows exactly which case it was on: that case is counted as a
crash ("hang", "killed by signal N", "exit N") and the next child starts after it.

Outcomes per case: ``audio`` (an ``Audio`` that is float32, mono, non-empty, finite, at the
requested rate), ``audio-error`` (an ``AudioError`` subclass, counted per class), or a crash:
any other exception, an ``Audio`` that breaks the contract, a hang, a dead child.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FuzzReport:
    seed: int
    cases: int = 0
    crashes: list[dict[str, Any]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # audio / error class / crash
    kinds: Counter[str] = field(default_factory=Counter)
    child_peak_rss_mb: float = 0.0
    child_rss_after_import_mb: float = 0.0
    slowest_case_ms: float = 0.0
    slowest_case: str = ""
    memory_hungry: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    memory_cap_mb: int = 0
    batch_timeout_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "cases": self.cases,
            "crashes": len(self.crashes),
            "crash_details": self.crashes[:50],
            "outcomes": dict(self.outcomes.most_common()),
            "kinds": dict(self.kinds.most_common()),
            "child_peak_rss_mb": round(self.child_peak_rss_mb, 1),
            "child_rss_after_import_mb": round(self.child_rss_after_import_mb, 1),
            "slowest_case_ms": round(self.slowest_case_ms, 1),
            "slowest_case": self.slowest_case,
            "cases_that_raised_peak_rss": sorted(
                self.memory_hungry, key=lambda case: -case["peak_jump_mb"]
            )[:5],
            "seconds": round(self.seconds, 1),
            "memory_cap_mb_above_baseline": self.memory_cap_mb,
            "batch_timeout_s": self.batch_timeout_s,
        }


# --- child ---------------------------------------------------------------------------


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _check_audio(audio: Any, *, sample_rate: int) -> str | None:
    """Why ``audio`` breaks the loader's contract, or None."""
    import numpy as np

    from uvac.audio import Audio

    if not isinstance(audio, Audio):
        return f"returned {type(audio).__name__}, not Audio"
    samples = audio.samples
    if not isinstance(samples, np.ndarray) or samples.dtype != np.float32:
        return f"samples are {getattr(samples, 'dtype', type(samples))}, not float32"
    if samples.ndim != 1 or samples.size == 0:
        return f"samples have shape {samples.shape}"
    if not np.isfinite(samples).all():
        return "samples hold NaN or inf"
    if audio.sample_rate != sample_rate:
        return f"sample_rate {audio.sample_rate} != requested {sample_rate}"
    return None


def _child_main(arguments: argparse.Namespace) -> int:
    import torch

    from benchmarks.reliability.fuzz_cases import base_recordings, make_case
    from uvac.audio import load_audio
    from uvac.errors import AudioError

    torch.set_num_threads(1)
    bases = base_recordings(arguments.seed)
    # Cap the address space at what the imports took plus the budget: a decoder that tries
    # to allocate gigabytes for a lying header gets MemoryError (or dies) instead of the host.
    baseline_kb = _status_kb("VmSize")
    cap = (baseline_kb * 1024) + arguments.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    print(json.dumps({"ready": True, "rss_kb": _status_kb("VmRSS")}), flush=True)

    crash_dir = Path(arguments.crash_dir) if arguments.crash_dir else None
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child
    # started from a large parent (pytest late in a full run) would report the parent's size.
    peak_kb = _status_kb("VmHWM")
    for index in range(arguments.start, arguments.stop):
        case = make_case(index, seed=arguments.seed, bases=bases)
        if crash_dir is not None:
            # Written before decoding, removed after: a case that kills us stays on disk.
            crash_dir.mkdir(parents=True, exist_ok=True)
            pending = crash_dir / f"case-{arguments.seed}-{index}.bin"
            pending.write_bytes(case.data)
        started = time.perf_counter()
        line: dict[str, Any] = {"i": index, "kind": case.kind}
        try:
            audio = load_audio(
                case.data, sample_rate=case.load_sample_rate, max_seconds=case.max_seconds
            )
        except AudioError as error:
            line["outcome"] = type(error).__name__
        except BaseException as error:  # the point of fuzzing: anything else is a crash
            line["outcome"] = "crash"
            line["error"] = f"{type(error).__name__}: {error}"[:500]
            line["traceback"] = traceback.format_exc(limit=6)[-2000:]
        else:
            problem = _check_audio(audio, sample_rate=case.load_sample_rate)
            line["outcome"] = "audio" if problem is None else "crash"
            if problem is not None:
                line["error"] = f"contract: {problem}"
        line["ms"] = round((time.perf_counter() - started) * 1000, 2)
        new_peak_kb = _status_kb("VmHWM")
        if new_peak_kb - peak_kb > 16 * 1024:  # this case raised the peak noticeably
            line["peak_jump_mb"] = round((new_peak_kb - peak_kb) / 1024, 1)
        peak_kb = max(peak_kb, new_peak_kb)
        if crash_dir is not None and line["outcome"] != "crash":
            pending.unlink(missing_ok=True)
        print(json.dumps(line), flush=True)
    peak_kb = _status_kb("VmHWM")
    print(json.dumps({"done": True, "peak_rss_kb": peak_kb}), flush=True)
    return 0


# --- parent --------------------------------------------------------------------------


def _describe(index: int, *, seed: int) -> dict[str, Any]:
    """Regenerate case ``index`` to say what it was (in the parent, without decoding it)."""
    from benchmarks.reliability.fuzz_cases import base_recordings, make_case

    case = make_case(index, seed=seed, bases=_cached_bases(seed, base_recordings))
    return {
        "index": index,
        "kind": case.kind,
        "description": case.description,
        "bytes": len(case.data),
        "load_sample_rate": case.load_sample_rate,
        "max_seconds": case.max_seconds,
    }


_BASES: dict[int, Any] = {}


def _cached_bases(seed: int, factory: Any) -> Any:
    if seed not in _BASES:
        _BASES[seed] = factory(seed)
    return _BASES[seed]


def _run_child(
    *,
    seed: int,
    start: int,
    stop: int,
    memory_mb: int,
    timeout_s: float,
    crash_dir: Path | None,
) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
    """Run cases [start, stop) in one child; returns (case lines, summary, how it ended)."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.reliability.fuzz_audio",
        "--child",
        "--seed",
        str(seed),
        "--start",
        str(start),
        "--stop",
        str(stop),
        "--memory-mb",
        str(memory_mb),
    ]
    if crash_dir is not None:
        command += ["--crash-dir", str(crash_dir)]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    ended: str | None = None
    try:
        completed = subprocess.run(
            command, cwd=REPO_ROOT, env=environment, capture_output=True, timeout=timeout_s
        )
        stdout = completed.stdout
        if completed.returncode < 0:
            ended = f"killed by signal {signal.Signals(-completed.returncode).name}"
        elif completed.returncode != 0:
            tail = completed.stderr.decode(errors="replace").strip().splitlines()[-1:]
            ended = f"exit {completed.returncode}: {' '.join(tail)}"
    except subprocess.TimeoutExpired as timeout:
        stdout = timeout.stdout or b""
        ended = f"hang: batch timeout of {timeout_s:g} s"
    lines: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for raw in stdout.decode(errors="replace").splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if "i" in record:
            lines.append(record)
        else:
            summary.update(record)
    return lines, summary, ended


def run_fuzz(
    *,
    cases: int = 10_000,
    seed: int = 0,
    batch_size: int = 1000,
    memory_mb: int = 1024,
    batch_timeout_s: float = 240.0,
    crash_dir: Path | None = None,
) -> FuzzReport:
    """Run ``cases`` cases in child processes; returns counts, crashes and memory."""
    report = FuzzReport(seed=seed, memory_cap_mb=memory_mb, batch_timeout_s=batch_timeout_s)
    started = time.monotonic()
    position = 0
    while position < cases:
        stop = min(cases, position + batch_size)
        lines, summary, ended = _run_child(
            seed=seed,
            start=position,
            stop=stop,
            memory_mb=memory_mb,
            timeout_s=batch_timeout_s,
            crash_dir=crash_dir,
        )
        for line in lines:
            report.cases += 1
            report.kinds[line["kind"]] += 1
            report.outcomes[line["outcome"]] += 1
            if line["ms"] > report.slowest_case_ms:
                report.slowest_case_ms = line["ms"]
                report.slowest_case = _describe(line["i"], seed=seed)["description"]
            if "peak_jump_mb" in line:
                report.memory_hungry.append(
                    {
                        **_describe(line["i"], seed=seed),
                        "peak_jump_mb": line["peak_jump_mb"],
                        "outcome": line["outcome"],
                    }
                )
            if line["outcome"] == "crash":
                report.crashes.append(
                    {
                        **_describe(line["i"], seed=seed),
                        "error": line.get("error"),
                        "traceback": line.get("traceback"),
                    }
                )
        if "rss_kb" in summary:
            report.child_rss_after_import_mb = max(
                report.child_rss_after_import_mb, summary["rss_kb"] / 1024
            )
        if "peak_rss_kb" in summary:
            report.child_peak_rss_mb = max(report.child_peak_rss_mb, summary["peak_rss_kb"] / 1024)
        finished_through = lines[-1]["i"] + 1 if lines else position
        if ended is not None and "done" not in summary:
            if finished_through < stop and summary.get("ready"):
                # The child died or hung on this case: a crash, and the next child skips it.
                report.cases += 1
                report.outcomes["crash"] += 1
                described = _describe(finished_through, seed=seed)
                report.kinds[described["kind"]] += 1
                report.crashes.append({**described, "error": ended})
                finished_through += 1
            elif not summary.get("ready"):
                raise RuntimeError(f"the fuzz child failed before its first case ({ended})")
        position = max(finished_through, position + 1) if ended else stop
        logger.info("fuzz: %d/%d cases, %d crashes", report.cases, cases, len(report.crashes))
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--stop", type=int, default=0)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--memory-mb", type=int, default=1024)
    parser.add_argument("--batch-timeout", type=float, default=240.0)
    parser.add_argument("--crash-dir", default=None)
    arguments = parser.parse_args(argv)
    if arguments.child:
        return _child_main(arguments)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run_fuzz(
        cases=arguments.cases,
        seed=arguments.seed,
        batch_size=arguments.batch_size,
        memory_mb=arguments.memory_mb,
        batch_timeout_s=arguments.batch_timeout,
        crash_dir=Path(arguments.crash_dir) if arguments.crash_dir else None,
    )
    print(json.dumps(report.to_json(), indent=2))
    return 0 if not report.crashes else 1


if __name__ == "__main__":
    raise SystemExit(main())
