"""Fuzz families for what each answer promises (issue #22's low items), each against a fresh
real uvicorn server:

- ``strict-json``: a value of another JSON type (``true``, ``"0"``, ``8.0`` for an integer,
  ``1`` or ``"yes"`` for a boolean, arrays and objects) at a numeric or boolean field of each
  JSON route, arrays nested up to 200,000 deep and integers of 4,301 to 100,000 digits: every
  answer must be a 422 problem whose `errors` point into the body;
- ``echoed-paths``: data set archives with an entry named by an absolute path, under the
  server's own folders or elsewhere, and entries whose names are drive-relative, flagged UTF-8
  without being UTF-8, or hold control and bidi characters. Every absolute name must come back
  blanked alike (one and the same detail, whatever folder it named); a misflagged or
  unprintable name must skip only its entry, and ``C:name`` must be stored.

Each reports like `fuzz_families.FamilyReport`; a broken promise counts as a crash. They run
through `cost_families.run_cost_families`, a fresh server each.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.reliability.fuzz_families import FamilyReport, _check_response
from benchmarks.reliability.harness import (
    MODEL_NAME,
    MODEL_SAMPLE_RATE,
    ApiServer,
    tone_wav,
)
from benchmarks.reliability.hostile_inputs import zip_with_members, zip_with_misflagged_names
from benchmarks.reliability.rss import PeakRss

logger = logging.getLogger(__name__)

CONTRACT_FAMILIES = ("strict-json", "echoed-paths")
MEGABYTE = 1024 * 1024
_DATASET = "ds_0123456789ab"
_VERSION = f"/v1/models/{MODEL_NAME}/versions/1"

# (method, path, a valid body, the field to spoil, its JSON type)
_FIELDS: list[tuple[str, str, dict[str, Any], tuple[str, ...], str]] = [
    *(
        ("POST", "/v1/train", {"dataset_id": _DATASET, "n_clusters": 4}, (field,), kind)
        for field, kind in [
            ("seed", "integer"),
            ("epochs", "integer"),
            ("batch_size", "integer"),
            ("n_clusters", "integer"),
            ("learning_rate", "number"),
            ("held_out_share", "number"),
            ("lambda_kl", "number"),
        ]
    ),
    ("POST", "/v1/train", {"dataset_id": _DATASET, "n_clusters": 4}, ("features", "n_mels"),
     "integer"),
    ("POST", "/v1/train", {"dataset_id": _DATASET, "n_clusters": 4}, ("features", "time_fit"),
     "boolean"),
    *(
        ("POST", "/v1/distill", {"teacher_ref": MODEL_NAME, "dataset_id": _DATASET}, (field,),
         kind)
        for field, kind in [("epochs", "integer"), ("seed", "integer"),
                            ("crops_per_clip", "integer"), ("learning_rate", "number")]
    ),
    ("POST", "/v1/prepare", {"dataset_id": _DATASET}, ("features", "sample_rate"), "integer"),
    ("PUT", f"/v1/models/{MODEL_NAME}/aliases/production", {"version": 1}, ("version",),
     "integer"),
    ("PUT", f"/v1/models/{MODEL_NAME}/aliases/production", {"version": 1}, ("force",),
     "boolean"),
    ("PUT", f"/v1/models/{MODEL_NAME}/aliases/production", {}, ("rollback",), "true"),
    ("PUT", f"{_VERSION}/novelty", {}, ("false_alarm_rate",), "number"),
]  # fmt: skip
_WRONG: dict[str, list[Any]] = {
    "integer": [True, False, "0", "8", 8.0, 1e3, [], {}, [1]],
    "number": [True, "0.1", "1e-3", [], {}, [0.1]],
    "boolean": [1, 0, "true", "yes", 1.0, [], {}],
    "true": [1, "true", 1.0, [], {}],
}


def _with(body: dict[str, Any], field: tuple[str, ...], value: Any) -> dict[str, Any]:
    spoiled = json.loads(json.dumps(body))
    target = spoiled
    for key in field[:-1]:
        target = target.setdefault(key, {})
    target[field[-1]] = value
    return spoiled


def _strict_case(rng: random.Random) -> tuple[str, str, str, bytes]:
    method, path, body, field, kind = rng.choice(_FIELDS)
    roll = rng.random()
    if roll < 0.15:
        depth = rng.choice([1_000, 10_000, 200_000])
        encoded = json.dumps(_with(body, field, "@")).encode()
        encoded = encoded.replace(b'"@"', b"[" * depth + b"]" * depth)
        return f"nested-{depth}", method, path, encoded
    if roll < 0.3:
        digits = rng.choice([4_301, 10_000, 100_000])
        encoded = json.dumps(_with(body, field, "@")).encode()
        return f"digits-{digits}", method, path, encoded.replace(b'"@"', b"7" * digits)
    value = rng.choice(_WRONG[kind])
    name = f"{kind}<-{json.dumps(value)}"
    return name, method, path, json.dumps(_with(body, field, value)).encode()


def _run_strict_json(
    report: FamilyReport, server: ApiServer, count: int, seed: int, hidden
) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=120) as client, PeakRss(server.pid) as rss:
        for _ in range(count):
            kind, method, path, body = _strict_case(rng)
            headers = {"content-type": "application/json"}
            response = client.request(method, f"{server.url}{path}", content=body, headers=headers)
            report.cases += 1
            report.kinds[kind.split("<-")[0].split("-")[0]] += 1
            _check_response(report, kind, response, hidden)
            if response.status_code != 422:
                report.fail(kind, f"{method} {path}: {response.status_code}, not 422")
            elif not all(e["loc"][:1] == ["body"] for e in response.json().get("errors", [])):
                report.fail(kind, f"{method} {path}: errors outside the body")
        report.peak_rss_mb = rss.peak / MEGABYTE


def _absolute_names(data_dir: Path) -> list[str]:
    """Absolute folders to name entries after: the server's own and others."""
    own = [data_dir.resolve(), data_dir.resolve() / "datasets", data_dir.resolve() / "models"]
    others = ["/etc", "/srv/uvac/data", "/tmp", "/home/someone", "/proc/self", "/var/lib/uvac"]
    return [str(folder) for folder in own] + others


def _run_echoed_paths(
    report: FamilyReport, server: ApiServer, count: int, seed: int, hidden, data_dir: Path
) -> None:
    rng = random.Random(seed)
    wav = tone_wav(0.5, sample_rate=MODEL_SAMPLE_RATE)
    folders = _absolute_names(data_dir)
    absolute_details: dict[str, set[str]] = {}
    with httpx.Client(timeout=120) as client, PeakRss(server.pid) as rss:
        for _ in range(count):
            roll = rng.random()
            if roll < 0.5:
                folder = rng.choice(folders)
                kind = "absolute"
                name = f"{folder}/{rng.randrange(10**6)}.wav"
                archive = zip_with_members([(name, wav), ("ok.wav", wav)])
            elif roll < 0.7:
                kind = "misflagged-utf8"
                archive = zip_with_misflagged_names(
                    [("ok.wav", wav), ("bäd.wav", wav)], raw_names={"bäd": b"b\xff\xfed"}
                )
            elif roll < 0.85:
                kind = "drive-relative"
                archive = zip_with_members([("C:meeting.wav", wav), ("ok.wav", wav)])
            else:
                kind = "control"
                odd = rng.choice(["\r", "\n", "\x07", "\u202e", "\u2066", "\x1b[31m"])
                archive = zip_with_members([(f"a{odd}b.wav", wav), ("ok.wav", wav)])
            response = client.post(
                f"{server.url}/v1/datasets", files={"file": ("upload.zip", archive)}
            )
            report.cases += 1
            report.kinds[kind] += 1
            _check_response(report, kind, response, hidden)
            _check_echo(report, kind, response, absolute_details, folders)
        report.peak_rss_mb = rss.peak / MEGABYTE
    if len(absolute_details) > 1:
        report.fail("absolute", f"answers differ by folder: {sorted(absolute_details)[:3]}")
    report.extra["absolute_name_answers"] = len(absolute_details)


def _check_echo(
    report: FamilyReport,
    kind: str,
    response: httpx.Response,
    absolute_details: dict[str, set[str]],
    folders: list[str],
) -> None:
    status = response.status_code
    if kind == "absolute":
        detail = response.json().get("detail", "") if status == 400 else ""
        if status != 400 or any(folder in detail for folder in folders):
            report.fail(kind, f"{status}: {response.text[:200]}")
        absolute_details.setdefault(detail, set()).add(kind)
        return
    if status != 201:
        report.fail(kind, f"{status}, not 201: {response.text[:200]}")
        return
    document = response.json()
    stored = sorted(entry["path"] for entry in document.get("files", []))
    # A drive-relative name is stored as it is; a misflagged or unprintable one is skipped.
    expected, skipped = (
        (["C:meeting.wav", "ok.wav"], 0) if kind == "drive-relative" else (["ok.wav"], 1)
    )
    if stored != expected or document.get("rejected_count", 0) != skipped:
        report.fail(kind, f"stored {stored}, rejected {document.get('rejected')}")


def contract_runners(
    *, cases: int, seed: int, hidden: tuple[str, ...]
) -> dict[str, Callable[[FamilyReport, ApiServer, Path], None]]:
    """Each family as `cost_families.run_cost_families` runs it: given its report, a fresh
    server (the tiny model published) and the server's data folder."""
    return {
        "strict-json": lambda r, s, d: _run_strict_json(r, s, cases, seed, hidden),
        "echoed-paths": lambda r, s, d: _run_echoed_paths(r, s, min(cases, 300), seed, hidden, d),
    }
