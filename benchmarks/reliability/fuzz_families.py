"""Fuzz families against a running server: each a class of input that can make a server answer
500 or take memory in proportion to what the input declares.

- ``archive-headers``: tars whose GNU long-name or PAX headers declare up to 400 MiB, chains of
  extended headers, folder entries carrying data, zips whose central directory lists up to
  300,000 entries or lies about how many (``POST /v1/datasets``);
- ``member-names``: archive members named with bytes that are not UTF-8, components over 255
  bytes, paths thousands of folders deep, control characters, ``..`` and absolute paths, clashes;
- ``multipart-framing``: boundaries of 0 to 6,000 characters, up to 5,000 parts, part headers
  up to 20 KB, cut or malformed framing, on the three upload routes;
- ``report-text``: labels that mean something to mathtext, HTML or format strings, through the
  whole evaluation path (upload with ``labels.csv``, ``POST /v1/evaluate`` run by a real
  worker, the report's JSON and page).

For every family: ``cases``; ``status_5xx``, responses of 500 or more; ``crashes``, anything
else that broke the contract (a connection error or a dead server, a 4xx that is not a
problem document or shows a server path, an evaluation job that failed, user text unescaped
in a report page); ``peak_rss_mb_above_idle``, the peak resident memory of the server above
its idle value after a warm-up, sampled every 10 ms while the family runs. For
``report-text`` it is the memory of the worker and its work horses (shared pages counted
once: the sum of their PSS), above the peak of the same evaluation with plain labels: every
work horse imports torch and matplotlib, which no label causes.

The cases are drawn by `benchmarks.reliability.family_cases`, the memory sampled by
`benchmarks.reliability.rss.PeakRss`; this module runs them and checks the answers.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks.reliability.family_cases import (
    MEGABYTE,
    Case,
    archive_header_case,
    labelled_archive,
    member_name_case,
    multipart_case,
)
from benchmarks.reliability.harness import (
    DEFAULT_REDIS_DB,
    MODEL_NAME,
    MODEL_SAMPLE_RATE,
    ApiServer,
    publish_tiny_model,
    running_api,
    start_worker,
    tone_wav,
)
from benchmarks.reliability.hostile_inputs import zip_with_members
from benchmarks.reliability.rss import PeakRss

logger = logging.getLogger(__name__)

FAMILIES = ("archive-headers", "member-names", "multipart-framing", "report-text")
# The most a family may raise the memory above its idle value (the target).
PEAK_RSS_LIMIT_MB = 300
_PROBLEM_KEYS = ("type", "title", "status", "detail")


@dataclass
class FamilyReport:
    name: str
    cases: int = 0
    status_5xx: int = 0
    crashes: int = 0
    idle_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # a family's own figures

    def fail(self, case: Case | str, reason: str, *, server_error: bool = False) -> None:
        if server_error:
            self.status_5xx += 1
        else:
            self.crashes += 1
        if len(self.failures) < 20:
            kind = case if isinstance(case, str) else case.kind
            self.failures.append({"case": kind, "reason": reason[:300]})

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "status_5xx": self.status_5xx,
            "crashes": self.crashes,
            "peak_rss_mb_above_idle": round(max(0.0, self.peak_rss_mb - self.idle_rss_mb), 1),
            "idle_rss_mb": round(self.idle_rss_mb, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
            "kinds": dict(self.kinds.most_common()),
            "failures": self.failures,
            "seconds": round(self.seconds, 1),
        }


# --- running -------------------------------------------------------------------------------


def _check_response(
    report: FamilyReport, case: Case | str, response: httpx.Response, hidden: tuple[str, ...]
) -> None:
    report.statuses[response.status_code] += 1
    if response.status_code >= 500:
        report.fail(case, f"{response.status_code}: {response.text[:200]}", server_error=True)
        return
    if response.status_code < 400:
        return
    try:
        document = response.json()
    except ValueError:
        report.fail(case, f"{response.status_code} is not JSON: {response.text[:200]}")
        return
    if not response.headers.get("content-type", "").startswith("application/problem+json"):
        report.fail(case, f"{response.status_code} is not problem+json")
    elif not all(document.get(key) for key in _PROBLEM_KEYS):
        report.fail(case, f"{response.status_code} problem lacks a member: {document}")
    elif any(path in response.text for path in hidden):
        report.fail(case, f"{response.status_code} shows a server path: {response.text[:200]}")


def _send(client: httpx.Client, server: ApiServer, case: Case) -> httpx.Response:
    if case.archive is not None:
        files = {"file": ("upload.bin", case.archive, "application/octet-stream")}
        return client.post(f"{server.url}{case.path}", files=files)
    headers = {"content-type": case.content_type.encode("utf-8", "replace")}
    return client.post(f"{server.url}{case.path}", content=case.body, headers=headers)


def _run_requests(
    report: FamilyReport,
    server: ApiServer,
    cases: Iterator[Case],
    *,
    count: int,
    hidden: tuple[str, ...],
) -> None:
    with httpx.Client(timeout=120) as client, PeakRss(server.pid) as rss:
        for case in cases:
            if report.cases >= count:
                break
            try:
                response = _send(client, server, case)
            except httpx.LocalProtocolError:
                continue  # a request the client refuses to send reaches nothing
            except httpx.HTTPError as error:
                report.cases += 1
                report.fail(case, f"{type(error).__name__}: {error}")
                if server.process.poll() is not None:
                    report.fail(case, "the server died")
                    break
                continue
            report.cases += 1
            report.kinds[case.kind.split("@")[0].split("+")[0]] += 1
            _check_response(report, case, response, hidden)
        report.peak_rss_mb = rss.peak / MEGABYTE


def _generated(maker: Callable[[random.Random], Case], seed: int) -> Iterator[Case]:
    rng = random.Random(seed)
    while True:
        yield maker(rng)


def _warm_up(server: ApiServer) -> float:
    """A valid upload and a clip, so the idle value includes what any first request loads."""
    wav = tone_wav(0.5, sample_rate=MODEL_SAMPLE_RATE)
    archive = zip_with_members([("a/x.wav", wav), ("b/y.wav", wav)])
    with httpx.Client(timeout=60) as client:
        for _ in range(3):
            client.post(f"{server.url}/v1/datasets", files={"file": ("w.zip", archive)})
            client.post(f"{server.url}/v1/cluster", files={"file": ("w.wav", wav)})
    time.sleep(1.0)
    return PeakRss(server.pid).current() / MEGABYTE


def _run_reports(
    report: FamilyReport,
    server: ApiServer,
    worker_pid: int,
    *,
    count: int,
    seed: int,
    hidden: tuple[str, ...],
) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=60, base_url=server.url) as client:
        plain = [("a/clip0.wav", tone_wav(0.6, sample_rate=MODEL_SAMPLE_RATE, hz=200.0))]
        plain += [("b/clip1.wav", tone_wav(0.6, sample_rate=MODEL_SAMPLE_RATE, hz=900.0))]
        with PeakRss(worker_pid, tree=True) as baseline:
            _one_report(report, client, "plain labels", zip_with_members(plain), ["a", "b"], hidden)
        report.idle_rss_mb = baseline.peak / MEGABYTE
        _run_labelled(report, client, rng, worker_pid, count=count, hidden=hidden)


def _run_labelled(
    report: FamilyReport,
    client: httpx.Client,
    rng: random.Random,
    worker_pid: int,
    *,
    count: int,
    hidden: tuple[str, ...],
) -> None:
    with PeakRss(worker_pid, tree=True) as rss:
        for index in range(count):
            report.cases += 1
            archive, labels = labelled_archive(rng, index)
            case = f"labels {labels!r}"
            report.kinds["report"] += 1
            try:
                _one_report(report, client, case, archive, labels, hidden)
            except httpx.HTTPError as error:
                report.fail(case, f"{type(error).__name__}: {error}")
        report.peak_rss_mb = rss.peak / MEGABYTE


def _one_report(
    report: FamilyReport,
    client: httpx.Client,
    case: str,
    archive: bytes,
    labels: list[str],
    hidden: tuple[str, ...],
) -> None:
    uploaded = client.post("/v1/datasets", files={"file": ("labelled.zip", archive)})
    _check_response(report, case, uploaded, hidden)
    if uploaded.status_code != 201:
        return
    body = {"model_ref": f"{MODEL_NAME}:v1", "dataset_id": uploaded.json()["id"]}
    submitted = client.post("/v1/evaluate", json=body)
    _check_response(report, case, submitted, hidden)
    if submitted.status_code != 202:
        return
    location = submitted.headers["location"]
    deadline = time.monotonic() + 300
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(location).json()
        if job["status"] in ("finished", "failed", "stopped", "canceled"):
            break
        time.sleep(0.2)
    if job.get("status") != "finished":
        report.fail(case, f"evaluation {job.get('status')}: {job.get('error')}")
        return
    page = client.get(f"/v1/models/{MODEL_NAME}/versions/1/report/index.html")
    _check_response(report, case, page, hidden)
    if "<script>" in page.text:
        report.fail(case, "user text reached the page unescaped")
    document = client.get(f"/v1/models/{MODEL_NAME}/versions/1/report").json()
    found = {clip["label"] for clip in document.get("clips", [])} - {None}
    expected = {label.strip() for label in labels} - {""}  # labels.csv strips cells
    if found != expected:
        report.fail(case, f"report labels {sorted(found)!r}, uploaded {sorted(expected)!r}")


def run_fuzz_families(
    *,
    work_dir: Path,
    cases: int = 300,
    report_cases: int = 30,
    seed: int = 0,
    families: tuple[str, ...] = FAMILIES,
    redis_url: str = f"redis://127.0.0.1:6379/{DEFAULT_REDIS_DB}",
) -> dict[str, dict[str, Any]]:
    """Run each family against a fresh server (and, for ``report-text``, a worker)."""
    makers = {
        "archive-headers": archive_header_case,
        "member-names": member_name_case,
        "multipart-framing": multipart_case,
    }
    results: dict[str, dict[str, Any]] = {}
    client = redis.Redis.from_url(redis_url)
    for name in families:
        family_dir = work_dir / name
        data_dir = family_dir / "data"
        publish_tiny_model(data_dir / "models")
        hidden = tuple({str(work_dir), str(work_dir.resolve())})
        report = FamilyReport(name=name)
        client.flushdb()
        started = time.monotonic()
        try:
            with running_api(
                data_dir=data_dir, redis_url=redis_url, log_path=family_dir / "api.log"
            ) as server:
                if name == "report-text":
                    worker = start_worker(
                        data_dir=data_dir, redis_url=redis_url, log_path=family_dir / "worker.log"
                    )
                    try:
                        _run_reports(
                            report, server, worker.pid, count=report_cases, seed=seed, hidden=hidden
                        )
                    finally:
                        worker.terminate()
                        worker.wait(timeout=30)
                else:
                    report.idle_rss_mb = _warm_up(server)
                    _run_requests(
                        report,
                        server,
                        _generated(makers[name], seed),
                        count=cases,
                        hidden=hidden,
                    )
        finally:
            client.flushdb()
        report.seconds = time.monotonic() - started
        results[name] = report.to_json()
        logger.info(
            "fuzz family %s: %d cases, %d 5xx, %d crashes, peak RSS +%.1f MB",
            name,
            report.cases,
            report.status_5xx,
            report.crashes,
            results[name]["peak_rss_mb_above_idle"],
        )
    client.close()
    return results
