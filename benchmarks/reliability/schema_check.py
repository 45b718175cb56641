"""schemathesis against the API's own OpenAPI document, on a real uvicorn server.

The server runs with API keys configured (schemathesis sends the key, and its
``ignored_auth`` check sends wrong ones) and a tiny model, against Redis database 14. Every
check schemathesis has is on. Two counts come out:

- ``schemathesis_5xx``: 5xx responses the server actually sent during the run, read from its
  own ``/metrics`` counters (every response counts, not only the ones schemathesis reported);
- ``schema_violations``: unique failures of the response-conformance checks (body schema,
  status code, content type, headers), as schemathesis reports them.

All other failures are listed by type with the operations they hit.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks.reliability.harness import (
    DEFAULT_REDIS_DB,
    REPO_ROOT,
    publish_tiny_model,
    running_api,
)

logger = logging.getLogger(__name__)

API_KEY = "reliability-key"
# schemathesis failure types that mean "a response broke the declared contract".
CONFORMANCE_FAILURES = frozenset(
    {
        "JsonSchemaError",
        "MalformedJson",
        "UndefinedStatusCode",
        "UndefinedContentType",
        "MissingContentType",
        "MalformedMediaType",
        "MissingHeaders",
        "JsonSchemaHeaderError",
    }
)
SERVER_ERROR_FAILURES = frozenset({"ServerError"})
_COUNT_LINE = re.compile(
    r"^uvac_http_request_duration_seconds_count\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$"
)


def server_status_counts(base_url: str) -> dict[str, int]:
    """``{"METHOD route status": count}`` from the server's Prometheus counters."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    counts: dict[str, int] = {}
    for line in text.splitlines():
        match = _COUNT_LINE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        key = f"{labels.get('method')} {labels.get('route')} {labels.get('status')}"
        counts[key] = counts.get(key, 0) + int(float(match["value"]))
    return counts


def run_schema_check(
    *,
    work_dir: Path | None = None,
    max_examples: int = 50,
    seed: int = 0,
    redis_url: str = f"redis://127.0.0.1:6379/{DEFAULT_REDIS_DB}",
    max_time_s: int | None = None,
) -> dict[str, Any]:
    work = Path(work_dir or tempfile.mkdtemp(prefix="uvac-schemathesis-"))
    data_dir = work / "data"
    publish_tiny_model(data_dir / "models")
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    report_path = work / "schemathesis.json"
    try:
        with running_api(
            data_dir=data_dir,
            redis_url=redis_url,
            log_path=work / "api.log",
            # The submission rate limit would answer most job routes with 429 after the first
            # minute; the run is after every operation's validation and answers.
            env={"UVAC_API_KEYS": API_KEY, "UVAC_JOB_SUBMISSIONS_PER_MINUTE": "0"},
        ) as server:
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "run", f"{server.url}/openapi.json",
                "--checks", "all",
                "--max-examples", str(max_examples),
                "--seed", str(seed),
                "--workers", "2",
                "--phases", "examples,coverage,fuzzing,stateful",
                "--header", f"X-API-Key: {API_KEY}",
                "--request-timeout", "30",
                "--report", "json",
                "--report-json-path", str(report_path),
                "--suppress-health-check", "all",
            ]  # fmt: skip
            if max_time_s is not None:
                command += ["--max-time", str(max_time_s)]
            completed = subprocess.run(
                command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=3600
            )
            (work / "schemathesis.txt").write_text(completed.stdout + completed.stderr)
            statuses = server_status_counts(server.url)
    finally:
        client.flushdb()
        client.close()

    report = json.loads(report_path.read_text())
    failures = report.get("failures") or []
    by_type = {
        failure["type"]: {
            "code": failure.get("code"),
            "title": failure.get("title"),
            "count": failure.get("count"),
            "operations": failure.get("operations"),
        }
        for failure in failures
    }
    five_xx = {key: count for key, count in statuses.items() if key.rsplit(" ", 1)[-1][0] == "5"}
    return {
        "schemathesis_5xx": sum(five_xx.values()),
        "server_5xx_by_route": five_xx,
        "schemathesis_reported_server_errors": sum(
            f.get("count") or 0 for f in failures if f["type"] in SERVER_ERROR_FAILURES
        ),
        "schema_violations": sum(
            f.get("count") or 0 for f in failures if f["type"] in CONFORMANCE_FAILURES
        ),
        "failures_by_type": by_type,
        "test_cases": report.get("test_cases"),
        "operations": report.get("operations"),
        "requests_by_status": _by_status(statuses),
        "errors": report.get("errors") or [],
        "exit_code": completed.returncode,
        "seed": seed,
        "max_examples": max_examples,
        "output_tail": (completed.stdout or "")[-3000:],
        "work_dir": str(work),
    }


def _by_status(statuses: dict[str, int]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for key, count in statuses.items():
        status = key.rsplit(" ", 1)[-1]
        totals[status] = totals.get(status, 0) + count
    return dict(sorted(totals.items()))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    result = run_schema_check(max_examples=int(sys.argv[1]) if len(sys.argv) > 1 else 20)
    result.pop("output_tail")
    print(json.dumps(result, indent=2))
