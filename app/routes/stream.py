"""`WS /v1/stream`: live audio in, a decision every hop out (app/streaming has the protocol);
and `WS /v1/models/{name}/versions/{v}/stream`, the same pinned to one version, which the
cluster browser's live view opens with its page session.

Outside the business router: its key check is a dependency of HTTP routes, and a stream's
key must be checked before the socket is accepted (`app.streaming.serve_stream` does).
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from app.routes.models import ModelNamePath, VersionPath
from app.services import Services
from app.streaming.connection import serve_stream

router = APIRouter()


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    await serve_stream(websocket, services)


@router.websocket("/models/{name}/versions/{version}/stream")
async def version_stream(websocket: WebSocket, name: ModelNamePath, version: VersionPath) -> None:
    services: Services = websocket.app.state.services
    await serve_stream(websocket, services, pinned=f"{name}:v{version}")
