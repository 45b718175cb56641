"""Page sessions: how a browser, which cannot put `X-API-Key` on a request, opens a version's
pages (the evaluation report, the cluster browser) and the audio they play.

One mechanism for every page:

1. A caller with a key asks for a link: `POST /v1/models/{name}/versions/{v}/page-links`.
   The answer holds the page URLs with a `page_token` query parameter.
2. The token is signed (HMAC-SHA256), short-lived (`UVAC_PAGE_LINK_SECONDS`) and scoped to
   one version: it opens paths under ``/v1/models/{name}/versions/{v}/`` only, read-only,
   except renaming that version's clusters (`PUT .../clusters/{k}`).
3. On the first request the token arrives in the URL; the answer sets it as a cookie
   (HttpOnly, SameSite=Strict, ``Path`` = the version's prefix), so the page's figures, data,
   audio and rename calls carry it without the page knowing it. A cross-site page cannot
   send it (SameSite=Strict), and a write must also carry `X-UVAC-Page: 1`, a header that
   a cross-origin form cannot set and a cross-origin script cannot send without CORS.

The signing secret is derived from the deployment's API keys, so every API process of a
deployment accepts the others' links without another setting, and removing a key (or
rotating them all) ends the sessions it opened: the token names the key's digest, which
must still be a configured key's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

from starlette.datastructures import Headers, QueryParams
from starlette.types import Scope

from app.auth import key_digest
from service_config import Settings

__all__ = [
    "COOKIE_NAME",
    "PAGE_HEADER",
    "QUERY_PARAMETER",
    "PageSession",
    "issue_token",
    "page_session",
    "session_cookie",
    "version_scope",
]

QUERY_PARAMETER = "page_token"
COOKIE_NAME = "uvac_page"
PAGE_HEADER = "x-uvac-page"
_TOKEN = re.compile(r"^(\d{1,12})\.([0-9a-f]{16})\.([A-Za-z0-9_-]{1,400})\.([A-Za-z0-9_-]{43})$")
_SCOPE = re.compile(r"^/v1/models/[^/]+/versions/[0-9]+/$")
_RENAME = re.compile(r"^clusters/[0-9]{1,4}$")


def version_scope(name: str, version: int) -> str:
    """The path prefix a version's page token opens."""
    return f"/v1/models/{name}/versions/{version}/"


@dataclass(frozen=True)
class PageSession:
    """A valid token: the caller's identity (its key's digest), its scope and its expiry."""

    identity: str
    scope: str
    expires: int
    from_query: bool
    token: str

    def allows(self, method: str, path: str) -> bool:
        if not path.startswith(self.scope):
            return False
        if method in ("GET", "HEAD"):
            return True
        return method == "PUT" and _RENAME.fullmatch(path[len(self.scope) :]) is not None


def _secret(settings: Settings) -> bytes:
    material = b"\x00".join(key.encode("utf-8") for key in sorted(settings.api_keys))
    return hashlib.sha256(b"uvac page token\x00" + material).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(settings: Settings, payload: str) -> str:
    return _b64(hmac.new(_secret(settings), payload.encode("utf-8"), hashlib.sha256).digest())


def issue_token(settings: Settings, *, identity: str, scope: str, now: float | None = None) -> str:
    """A token for ``identity`` (a key digest) opening ``scope`` for the configured time."""
    expires = int(now if now is not None else time.time()) + settings.page_link_seconds
    payload = f"{expires}.{identity}.{_b64(scope.encode('utf-8'))}"
    return f"{payload}.{_signature(settings, payload)}"


def _verify(settings: Settings, token: str, *, from_query: bool) -> PageSession | None:
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    expires_text, identity, scope_b64, signature = match.groups()
    payload = f"{expires_text}.{identity}.{scope_b64}"
    if not hmac.compare_digest(signature, _signature(settings, payload)):
        return None
    if int(expires_text) < time.time():
        return None
    if identity not in {key_digest(key) for key in settings.api_keys}:
        return None  # the key that opened it was removed
    try:
        scope = base64.urlsafe_b64decode(scope_b64 + "=" * (-len(scope_b64) % 4)).decode("utf-8")
    except ValueError:
        return None
    if _SCOPE.fullmatch(scope) is None:
        return None
    return PageSession(
        identity=identity,
        scope=scope,
        expires=int(expires_text),
        from_query=from_query,
        token=token,
    )


def page_session(settings: Settings, scope: Scope) -> tuple[PageSession | None, bool]:
    """The request's page session, and whether it presented a token at all (so an expired
    or foreign one can be told from none). A write needs `X-UVAC-Page`."""
    headers = Headers(scope=scope)
    candidates: list[tuple[str, bool]] = []
    query_token = QueryParams(scope.get("query_string", b"")).get(QUERY_PARAMETER)
    if query_token:
        candidates.append((query_token, True))
    cookie_header = headers.get("cookie")
    if cookie_header:
        cookie = SimpleCookie()
        try:
            cookie.load(cookie_header)
        except Exception:  # a malformed Cookie header is no session, not a 500
            cookie = SimpleCookie()
        if COOKIE_NAME in cookie:
            candidates.append((cookie[COOKIE_NAME].value, False))
    method, path = str(scope.get("method", "GET")), str(scope.get("path", ""))
    for token, from_query in candidates:
        session = _verify(settings, token, from_query=from_query)
        if session is None or not session.allows(method, path):
            continue
        if method not in ("GET", "HEAD") and headers.get(PAGE_HEADER) != "1":
            continue
        return session, True
    return None, bool(candidates)


def session_cookie(session: PageSession) -> str:
    """The `Set-Cookie` value that keeps a session opened by a link for its page's requests."""
    max_age = max(0, session.expires - int(time.time()))
    return (
        f"{COOKIE_NAME}={session.token}; Max-Age={max_age}; Path={session.scope}; "
        "HttpOnly; SameSite=Strict"
    )
