"""Job submissions per caller, bounded: each API key (or, with keys off, each client address)
may submit at most `Settings.job_submissions_per_minute` jobs (training, evaluation,
distillation, preparation) in any 60 s; beyond, a 429 problem with `Retry-After` (the seconds
until the oldest submission of the last 60 s leaves the window). Each caller's submissions
are a Redis sorted set of their times, so every API process of a deployment shares them; a
refused submission is not kept (a client that retries too early is not punished further).
A refused submission costs one Redis round trip: it is checked before the data set is read
or the job sized.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Annotated, Any, cast

from fastapi import Depends, Request

from app.auth import ANONYMOUS
from app.deps import CallerDep, RedisDep, SettingsDep
from app.problems import ApiProblem

__all__ = ["SubmissionAllowance", "check_submission_rate"]

_WINDOW_SECONDS = 60
_KEY_PREFIX = "uvac:submissions"


def _submitter(request: Request, caller: str) -> str:
    if caller != ANONYMOUS:
        return caller
    host = request.client.host if request.client is not None else "unknown"
    return f"client:{host}"


def check_submission_rate(
    request: Request, caller: CallerDep, redis: RedisDep, settings: SettingsDep
) -> None:
    """Count this submission against its caller's last 60 s; 429 beyond the allowance."""
    allowance = settings.job_submissions_per_minute
    if allowance == 0:  # off
        return
    now = time.time()
    key = f"{_KEY_PREFIX}:{_submitter(request, caller)}"
    member = f"{now:.6f}:{uuid.uuid4().hex}"
    pipeline = redis.pipeline()
    pipeline.zremrangebyscore(key, "-inf", now - _WINDOW_SECONDS)
    pipeline.zadd(key, {member: now})
    pipeline.zcard(key)
    pipeline.expire(key, _WINDOW_SECONDS + 1)
    pipeline.zrange(key, 0, 0, withscores=True)
    results = cast(list[Any], pipeline.execute())
    count, oldest = int(results[2]), results[4]
    if count > allowance:
        redis.zrem(key, member)
        oldest_at = float(oldest[0][1]) if oldest else now
        retry_after = max(1, math.ceil(oldest_at + _WINDOW_SECONDS - now))
        raise ApiProblem(
            status=429,
            slug="too-many-submissions",
            detail=f"At most {allowance} job submissions a minute are accepted from one "
            f"caller; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


SubmissionAllowance = Annotated[None, Depends(check_submission_rate)]
