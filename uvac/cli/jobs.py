"""``uvac jobs watch JOB_ID``: follow a job of a running service from the command line.

::

    uvac jobs watch JOB_ID [--url http://127.0.0.1:8000] [--api-key KEY] [--interval 2]

It polls ``GET /v1/jobs/{id}`` of the API (``--url``, or ``UVAC_API_URL``; the key from
``--api-key`` or ``UVAC_API_KEY``) and draws the job's phase as a progress bar: the encoder's
files, the start's partition batches, the epochs' batches, a sweep's runs, an evaluation's
clips, the matching's files. It ends with the job: exit code 0 and the result for a finished
job, 1 and the error for a failed, canceled or stopped one (or when the API refuses). Only the
HTTP API is used, through the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

import tqdm

__all__ = ["add_job_commands", "phase_position"]

DEFAULT_API_URL = "http://127.0.0.1:8000"
_ENDED_OK = {"finished"}
_ENDED_BADLY = {"failed", "canceled", "stopped"}


def add_job_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``jobs watch`` to the ``uvac`` sub-command parsers."""
    jobs = commands.add_parser("jobs", parents=[common], help="follow jobs of a running service")
    actions = jobs.add_subparsers(dest="jobs_action", required=True, metavar="ACTION")
    watch = actions.add_parser("watch", help="a job's progress bar, until it ends")
    watch.set_defaults(command=_watch)
    watch.add_argument("job_id", metavar="JOB_ID")
    watch.add_argument(
        "--url",
        default=os.environ.get("UVAC_API_URL", DEFAULT_API_URL),
        help=f"the API's address (default: $UVAC_API_URL or {DEFAULT_API_URL})",
    )
    watch.add_argument(
        "--api-key",
        default=os.environ.get("UVAC_API_KEY"),
        help="sent as X-API-Key (default: $UVAC_API_KEY)",
    )
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between polls")


def phase_position(progress: dict[str, Any] | None) -> tuple[str, int, int | None]:
    """(label, done, total) of a job's progress document; total None when unknown."""
    if not progress:
        return "waiting", 0, None
    phase = str(progress.get("phase") or "running")
    if phase == "sweep":
        label = f"sweep, run {min(progress.get('runs_done') or 0, progress.get('runs') or 0) + 1}"
        return label, int(progress.get("runs_done") or 0), progress.get("runs")
    if progress.get("files") is not None:
        return phase, int(progress.get("files_done") or 0), int(progress["files"])
    if phase in ("training", "distilling") and progress.get("epochs"):
        steps = int(progress.get("steps") or 1)
        epoch = int(progress.get("epoch") or 1)
        done = (epoch - 1) * steps + int(progress.get("step") or 0)
        return f"{phase}, epoch {epoch}/{progress['epochs']}", done, int(progress["epochs"]) * steps
    if progress.get("steps") is not None:
        return phase, int(progress.get("step") or 0), int(progress["steps"])
    return phase, 0, None


def _fetch(url: str, api_key: str | None) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if api_key:
        request.add_header("X-API-Key", api_key)
    with urllib.request.urlopen(request, timeout=10) as response:
        document: dict[str, Any] = json.loads(response.read())
        return document


def _refusal(error: urllib.error.HTTPError) -> str:
    try:
        problem = json.loads(error.read())
        return f"{error.code} {problem.get('title', '')}: {problem.get('detail', '')}".strip()
    except (ValueError, OSError):
        return f"{error.code} {error.reason}"


def _watch(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    job_url = f"{args.url.rstrip('/')}/v1/jobs/{urllib.parse.quote(args.job_id, safe='')}"
    bar = tqdm.tqdm(total=None, file=sys.stderr, dynamic_ncols=True, leave=True)
    label = None
    try:
        while True:
            try:
                job = _fetch(job_url, args.api_key)
            except urllib.error.HTTPError as error:
                print(f"uvac jobs watch: {_refusal(error)}", file=sys.stderr)
                return 1
            except urllib.error.URLError as error:
                reason = f"no answer from {args.url}: {error.reason}"
                print(f"uvac jobs watch: {reason}", file=sys.stderr)
                return 1
            progress = job.get("progress")
            new_label, done, total = phase_position(progress)
            if new_label.split(",")[0] != (label or "").split(",")[0]:
                bar.reset(total=total)
            label = new_label
            bar.total = total
            bar.n = done
            eta = (progress or {}).get("job_eta_seconds") or (progress or {}).get("eta_seconds")
            status = job.get("status")
            bar.set_description(f"{status}: {label}")
            bar.set_postfix_str(f"eta {eta:.0f} s" if eta is not None else "", refresh=False)
            bar.refresh()
            if status in _ENDED_OK:
                bar.close()
                print(json.dumps(job.get("result"), indent=2), file=out)
                return 0
            if status in _ENDED_BADLY:
                bar.close()
                failure = job.get("error") or {}
                reason = f": {failure.get('type')}: {failure.get('message')}" if failure else ""
                print(f"uvac jobs watch: job {args.job_id} {status}{reason}", file=sys.stderr)
                return 1
            time.sleep(args.interval)
    finally:
        bar.close()
