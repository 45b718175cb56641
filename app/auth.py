"""API keys: who is calling, from the request's headers.

When `Settings.api_keys` is non-empty every business route requires a key, in `X-API-Key`
or as `Authorization: Bearer <key>`; no key is 401, an unknown key 403. Health, metrics and
the docs are not behind it. A browser opens a version's pages with a signed, short-lived
page token instead (`app.page_sessions`).

The check runs twice on one code path: `app.middleware.ApiKeyMiddleware` refuses a request
before anything reads its body (FastAPI parses a JSON body before it runs a route's
dependencies, so a caller without a key would otherwise see the body's parse errors), and
the `require_api_key` dependency (app/deps.py) gives routes the caller's identity and the
OpenAPI document its security schemes.

Tenancy: one tenant per deployment. Keys tell callers apart only for `Idempotency-Key`
(scoped per key, so two callers cannot replay each other's submissions); data sets, models
and jobs are shared by every key of a deployment, as they are by the workers. A deployment
per tenant (its own volumes, Redis and keys) separates tenants.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi.security.utils import get_authorization_scheme_param

from app.problems import ApiProblem
from service_config import Settings

__all__ = ["ANONYMOUS", "authenticate", "key_digest", "presented_key"]

ANONYMOUS = "anonymous"


def presented_key(*, api_key: str | None, authorization: str | None) -> str | None:
    """The key a request presents: `X-API-Key`, else a bearer token."""
    if api_key:
        return api_key
    scheme, credentials = get_authorization_scheme_param(authorization)
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return None


def authenticate(settings: Settings, presented: str | None) -> str:
    """The caller's identity: a digest of its key, or `ANONYMOUS` when auth is off.

    Raises the 401 (no key) or 403 (unknown key) problem."""
    if not settings.auth_enabled:
        return ANONYMOUS
    if not presented:
        raise ApiProblem(
            status=401,
            slug="unauthenticated",
            detail="Send an API key in the X-API-Key header or as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="uvac"'},
        )
    presented_bytes = presented.encode("utf-8")
    # Compare against every key, in constant time, so timing says nothing about the keys.
    matched = False
    for key in settings.api_keys:
        matched |= hmac.compare_digest(presented_bytes, key.encode("utf-8"))
    if not matched:
        raise ApiProblem(status=403, slug="forbidden", detail="The API key is not valid.")
    return key_digest(presented)


def key_digest(key: str) -> str:
    """A key's identity: short enough to log and to put in a page token, never the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
