"""`Idempotency-Key` for job submissions: a retried POST returns the job it first created.

The key is stored in Redis as `uvac:idempotency:<sha256(caller, route, key)>` ->
`{"job_id", "request_sha256"}` with `SET NX EX ttl`, before the job is enqueued, so two
concurrent retries cannot both enqueue. Reusing a key with a different request body is a
409 problem (`idempotency-key-reused`): silently returning a job that does something else
than the caller now asks for would be worse than an error. Keys are scoped per API key (and
per route), so two callers that pick the same key get two jobs, and a retry never returns
another caller's job. The jobs themselves are not private to a key: a deployment is one
tenant (app/auth.py).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from app.problems import ApiProblem

KEY_PREFIX = "uvac:idempotency:"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Reservation:
    """The job id to use, and whether it was created by an earlier request."""

    job_id: str
    replayed: bool


def request_digest(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _redis_key(*, caller: str, scope: str, idempotency_key: str) -> str:
    material = f"{caller}\0{scope}\0{idempotency_key}".encode()
    return KEY_PREFIX + hashlib.sha256(material).hexdigest()


def reserve_job_id(
    client: redis.Redis,
    *,
    idempotency_key: str | None,
    caller: str,
    scope: str,
    params: dict[str, Any],
    ttl_seconds: int,
) -> Reservation:
    """A fresh job id, or the one an earlier request with the same key was given."""
    job_id = str(uuid.uuid4())
    if idempotency_key is None:
        return Reservation(job_id=job_id, replayed=False)
    if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
        raise ApiProblem(
            status=400,
            slug="bad-idempotency-key",
            detail=f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.",
        )
    key = _redis_key(caller=caller, scope=scope, idempotency_key=idempotency_key)
    digest = request_digest(params)
    record = json.dumps({"job_id": job_id, "request_sha256": digest})
    if client.set(key, record, nx=True, ex=ttl_seconds):
        return Reservation(job_id=job_id, replayed=False)
    stored_raw = client.get(key)
    if stored_raw is None:  # expired between SET and GET: take it now
        client.set(key, record, ex=ttl_seconds)
        return Reservation(job_id=job_id, replayed=False)
    stored = json.loads(stored_raw)
    if stored.get("request_sha256") != digest:
        raise ApiProblem(
            status=409,
            slug="idempotency-key-reused",
            detail="This Idempotency-Key was already used for a different request body; "
            "use a new key for a new request.",
            extensions={"job_id": stored.get("job_id")},
        )
    return Reservation(job_id=str(stored["job_id"]), replayed=True)


def release(client: redis.Redis, *, idempotency_key: str | None, caller: str, scope: str) -> None:
    """Forget a reservation whose job could not be enqueued, so a retry can try again."""
    if idempotency_key:
        client.delete(_redis_key(caller=caller, scope=scope, idempotency_key=idempotency_key))
