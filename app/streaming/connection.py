"""`WS /v1/stream`: one live stream from handshake to close (protocol: README "Live streams",
close codes: `app.streaming.protocol`).

The key is checked before the socket is accepted (a refusal is the HTTP problem the other
routes answer). A version's own stream (`WS /v1/models/{name}/versions/{v}/stream`, the
cluster browser's live view) is pinned to that version and also accepts the version's page
session (`app.page_sessions`): the cookie a page link set, from a page of the same origin.

Then two tasks share the socket: the receiver reads frames, enforces the limits, windows the
samples (`StreamSession`) and queues the windows they complete (bounded: a full queue stops
it reading the socket); the decider has the app's micro-batcher cluster each window beside
every other stream's and upload's, and sends the decisions in order. The windows skip
speech detection unless the config asks for speech, and while a stream is open no pass
takes every serving thread (`app.batching`). A watchdog beside the receiver ends an idle or
over-long stream, so reading a frame costs no timer of its own. Whichever ends the stream
(eof, a limit, the client leaving), the stream's slot is given back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import Message

from app.auth import authenticate, presented_key
from app.batching import EarlyStart
from app.logging import stream_id_var
from app.page_sessions import page_session
from app.problems import PROBLEM_MEDIA_TYPE, ApiProblem, problem_document, problem_from_exception
from app.schemas import ModelRefPublic
from app.schemas.stream import (
    ENCODINGS,
    StreamConfig,
    StreamDecision,
    StreamError,
    StreamFinal,
    StreamLimits,
    StreamReady,
)
from app.services import Services
from app.serving import LoadedModel
from app.streaming.protocol import PcmDecoder, close_code, refusal
from app.streaming.session import Decision, StreamSession, Window
from service_config import Settings
from uvac.audio import Audio, LiveWindows, streaming_obstacles
from uvac.edge import ProgramSmoother
from uvac.evaluation import ClipResult, clip_verdict

logger = logging.getLogger(__name__)

SUBPROTOCOL = "uvac.v1"
KEY_SUBPROTOCOL_PREFIX = "uvac.key."
"""Browsers cannot set headers on a WebSocket: they offer ``["uvac.v1", "uvac.key.<key>"]``
as subprotocols, and the server answers ``uvac.v1`` (never echoing the key)."""

_RETRY_AFTER_S = 5


def stream_key(websocket: WebSocket) -> str | None:
    """The API key of a stream: `X-API-Key`, a bearer token, or the subprotocol token."""
    headers = websocket.headers
    key = presented_key(
        api_key=headers.get("x-api-key"), authorization=headers.get("authorization")
    )
    if key:
        return key
    for offered in _subprotocols(websocket):
        if offered.startswith(KEY_SUBPROTOCOL_PREFIX) and len(offered) > len(
            KEY_SUBPROTOCOL_PREFIX
        ):
            return offered[len(KEY_SUBPROTOCOL_PREFIX) :]
    return None


def _subprotocols(websocket: WebSocket) -> Sequence[str]:
    return list(websocket.scope.get("subprotocols") or [])


def _same_origin(websocket: WebSocket) -> bool:
    """The page that opened the socket is served by this host (browsers always send Origin
    on a WebSocket handshake; a page of another origin on the same site could otherwise use
    the cookie, which SameSite does not stop)."""
    origin, host = websocket.headers.get("origin"), websocket.headers.get("host")
    if not origin or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def _check_caller(websocket: WebSocket, settings: Settings, *, pinned: str | None) -> None:
    """A key, or for a version's own stream, that version's page session: else the 401/403."""
    key = stream_key(websocket)
    if key is None and pinned is not None and settings.auth_enabled:
        session, _ = page_session(settings, websocket.scope)
        if session is not None and _same_origin(websocket):
            return
    authenticate(settings, key)


async def serve_stream(
    websocket: WebSocket, services: Services, *, pinned: str | None = None
) -> None:
    """Serve one stream; ``pinned`` (``name:vN``) fixes the model, for a version's stream."""
    stream_id = uuid.uuid4().hex
    stream_id_var.set(stream_id)
    try:
        _check_caller(websocket, services.settings, pinned=pinned)
    except ApiProblem as error:
        logger.info("stream refused before accepting: %s", error.slug)
        await _deny(websocket, error, stream_id=stream_id)
        return
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in _subprotocols(websocket) else None
    await websocket.accept(subprotocol=subprotocol)
    slots = services.streams
    code = 1000
    try:
        if not slots.try_acquire():
            busy = refusal(
                503,
                "too-many-streams",
                f"{slots.limit} streams are open, the most this server takes; retry in "
                f"{_RETRY_AFTER_S} s.",
                retry_after_s=_RETRY_AFTER_S,
            )
            code = await _close_with(websocket, busy, stream_id=stream_id)
            return
        try:
            logger.info("stream opened (%d open)", slots.open)
            with services.batcher.steady_load():
                code = await _run(websocket, services, stream_id=stream_id, pinned=pinned)
        finally:
            slots.release()
            logger.info("stream closed with %d (%d open)", code, slots.open)
    finally:
        services.metrics.streams_closed.labels(code=str(code)).inc()


async def _run(
    websocket: WebSocket, services: Services, *, stream_id: str, pinned: str | None
) -> int:
    """Serve the stream; the close code it ended with."""
    opened_at = time.monotonic()
    try:
        connection = await _open(
            websocket, services, stream_id=stream_id, opened_at=opened_at, pinned=pinned
        )
        await connection.serve()
    except WebSocketDisconnect as gone:
        logger.info("client left (close code %s)", gone.code)
        return int(gone.code)
    except ApiProblem as error:
        return await _close_with(websocket, error, stream_id=stream_id)
    except Exception as error:  # a bug: say so and close with 1011
        logger.exception("stream failed")
        return await _close_with(websocket, error, stream_id=stream_id)
    await websocket.close(code=1000)
    return 1000


class _Connection:
    """An accepted, configured stream: the receiver and decider tasks and the ending."""

    def __init__(
        self,
        websocket: WebSocket,
        services: Services,
        *,
        model: LoadedModel,
        session: StreamSession,
        decoder: PcmDecoder,
        opened_at: float,
        speech: bool,
    ) -> None:
        self.websocket = websocket
        self.speech = speech  # run the speech detector on every window
        self.services = services
        self.settings = services.settings
        self.model = model
        self.session = session
        self.decoder = decoder
        self.opened_at = opened_at
        self.ready_at = time.monotonic()
        windows = session.windows
        # Windows cut but not yet decided, at most about UVAC_STREAM_BURST_SECONDS of audio.
        depth = max(1, int(self.settings.stream_burst_seconds / windows.hop_s))
        self.pending: asyncio.Queue[list[Window] | None] = asyncio.Queue(maxsize=depth)
        # Windows started before they were whole (`StreamSession.heard_early`), by index.
        self.early: dict[int, EarlyStart] = {}
        self.begun_again: set[int] = set()  # windows whose first start was superseded
        # Only an encoder that can start early does (a log-mel window costs little anyway).
        lead = round(self.settings.stream_early_start_seconds * windows.sample_rate)
        starts_early = model.clusterer.starts_early
        self.early_lead = lead if starts_early and lead < windows.window_samples else 0
        self._waiting_since: float | None = None  # the receiver waits for a frame since

    async def serve(self) -> None:
        receiver = asyncio.create_task(self._receive(), name="uvac-stream-receive")
        decider = asyncio.create_task(self._decide(), name="uvac-stream-decide")
        try:
            done, _ = await asyncio.wait({receiver, decider}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises the first failure
            await decider  # the receiver saw eof: let the decider finish the queue
        finally:
            for task in (receiver, decider):
                task.cancel()
            await asyncio.gather(receiver, decider, return_exceptions=True)
            for early in self.early.values():  # windows the stream ended inside
                self.services.batcher.drop_start(early)
        await self._finish()

    async def _receive(self) -> None:
        """Read until eof, with the watchdog ending an idle or over-long stream."""
        reading = asyncio.create_task(self._read(), name="uvac-stream-read")
        watching = asyncio.create_task(self._watch(), name="uvac-stream-watch")
        try:
            done, _ = await asyncio.wait({reading, watching}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in (reading, watching):
                task.cancel()
            await asyncio.gather(reading, watching, return_exceptions=True)

    async def _read(self) -> None:
        settings = self.settings
        rate = self.session.windows.sample_rate
        received = 0
        while True:
            self._waiting_since = time.monotonic()
            message = await self.websocket.receive()
            self._waiting_since = None
            data = message.get("bytes")
            if data is not None:
                samples = self.decoder.decode(data)
                arrived = time.perf_counter()
                received += samples.shape[0]
                _check_pace(received / rate, settings, ready_at=self.ready_at)
                windows = self.session.add(samples, arrived_at=arrived)
                self._check_early_starts(samples)
                self._start_early()
                if windows:
                    await self.pending.put(windows)
                continue
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(
                    code=message.get("code", 1000), reason=message.get("reason")
                )
            kind = _message_type(message.get("text"))
            if kind == "keepalive":
                continue
            if kind == "eof":
                await self.pending.put(None)
                return
            raise refusal(
                400,
                "invalid-message",
                f"Expected binary audio, 'keepalive' or 'eof' after the config, got {kind!r}.",
            )

    async def _watch(self) -> None:
        """Raise the stream's refusal once it has waited for a frame longer than the idle
        timeout, or been open longer than the maximum; the reader marks when it waits."""
        settings = self.settings
        idle = settings.stream_idle_seconds
        ends_at = self.opened_at + settings.stream_max_seconds
        while True:
            now = time.monotonic()
            if now >= ends_at:
                raise _too_long(settings)
            waiting_since = self._waiting_since
            if waiting_since is not None and now - waiting_since >= idle:
                raise _idle(settings)
            due = (now if waiting_since is None else waiting_since) + idle
            await asyncio.sleep(min(due, ends_at) - now)

    def _start_early(self) -> None:
        rate = self.session.windows.sample_rate
        for index, heard in self.session.heard_early(self.early_lead):
            self.early[index] = self.services.batcher.start_window(
                model=self.model, heard=Audio.from_samples(heard, sample_rate=rate)
            )

    def _check_early_starts(self, samples: np.ndarray) -> None:
        """Drop each start that the just-added ``samples`` show cannot finish its window (for
        the sound encoder, a sample louder than the heard peak it normalised by), and begin
        that window once more on all it has heard: its embedding then still starts before the
        window is whole. A window is begun again at most once, so a rising sound costs at
        most two starts before its whole pass. A window begun again late in its lead still
        gains, against a whole pass after its end (benchmarks/README.md, live streams)."""
        if not self.early:
            return
        windows, clusterer = self.session.windows, self.model.clusterer
        first = self.session.received_samples - samples.shape[0]  # the stream sample of [0]
        for index, early in list(self.early.items()):
            begin = index * windows.hop_samples - first
            later = samples[max(0, begin) : max(0, begin + windows.window_samples)]
            if later.size == 0 or clusterer.start_holds(early.heard, later):
                continue
            del self.early[index]
            self.services.batcher.drop_start(early, outcome="superseded")
            heard = self.session.heard_of(index)
            if heard is None or index in self.begun_again:
                continue
            self.begun_again.add(index)
            self.early[index] = self.services.batcher.start_window(
                model=self.model, heard=Audio.from_samples(heard, sample_rate=windows.sample_rate)
            )

    async def _decide(self) -> None:
        while True:
            windows = await self.pending.get()
            if windows is None:
                return
            results = await asyncio.gather(*(self._cluster(window) for window in windows))
            for window, result in zip(windows, results, strict=True):
                await self._send_decision(self.session.decide(window, result))

    async def _cluster(self, window: Window) -> ClipResult:
        self.begun_again.discard(window.index)
        audio = Audio.from_samples(window.samples, sample_rate=self.session.windows.sample_rate)
        return await self.services.batcher.submit(
            model=self.model,
            audio=audio,
            speech=self.speech,
            started=self.early.pop(window.index, None),
        )

    async def _send_decision(self, decision: Decision) -> None:
        await self.websocket.send_text(decision_message(self.model, decision).model_dump_json())
        latency = time.perf_counter() - decision.window.completed_at
        self.services.metrics.stream_decision_latency.observe(latency)

    async def _finish(self) -> None:
        if self.decoder.pending_bytes:
            raise refusal(
                400,
                "invalid-message",
                f"The audio ended inside a sample ({self.decoder.pending_bytes} byte(s) of "
                f"{self.decoder.encoding} left over).",
            )
        if self.session.received_samples == 0:
            raise refusal(422, "empty-audio", "The stream ended before any audio arrived.")
        extractor = self.model.clusterer.extractor
        clips = self.session.closing_clips(extractor.window_start_samples)
        submitted = (
            self.services.batcher.submit(model=self.model, audio=clip, speech=False)
            for clip in clips
        )
        final = self.session.final(list(await asyncio.gather(*submitted)))
        message = StreamFinal(
            model=_model_ref(self.model),
            duration_s=final.duration_s,
            decisions=final.decisions,
            n_clusters=self.model.n_clusters,
            probabilities=final.probabilities,
            assignment=final.assignment,
            confidence=final.confidence,
            cluster_name=self.model.cluster_name(final.assignment),
        )
        await self.websocket.send_text(message.model_dump_json())
        logger.info("stream finished: %.2f s, %d decisions", final.duration_s, final.decisions)


def decision_message(model: LoadedModel, decision: Decision) -> StreamDecision:
    """One decision's message. The window's fields are the `windows` entry /v1/cluster gives
    (``decision.result.windows[0]``), its novelty verdict decided as there."""
    window = decision.result.windows[0]
    unknown = clip_verdict(
        model.trained,
        raw=[window.novelty_score],
        activity=[window.activity],
        silence=[bool(window.silence)],
        false_alarm_rate=model.false_alarm_rate(),
    ).window_unknown[0]
    rate = model.sample_rate
    start = decision.window.start
    return StreamDecision(
        level_dbfs=window.level_dbfs,
        silence=window.silence,
        speech=window.speech,
        novelty=window.novelty if unknown is not None else None,
        unknown=unknown,
        index=decision.window.index,
        start_s=start / rate,
        end_s=(start + decision.window.samples.shape[0]) / rate,
        probabilities=list(window.probabilities),
        assignment=window.assignment,
        cluster_name=model.cluster_name(window.assignment),
        smoothed_probabilities=decision.smoothed.smoothed,
        program=decision.smoothed.program,
        program_name=model.cluster_name(decision.smoothed.program),
    )


async def _open(
    websocket: WebSocket,
    services: Services,
    *,
    stream_id: str,
    opened_at: float,
    pinned: str | None,
) -> _Connection:
    """Read the config, resolve the model, answer `ready`."""
    settings = services.settings
    message = await _receive_within(websocket, settings, opened_at=opened_at)
    config = _parse_config(message)
    if pinned is not None and config.model not in (None, pinned):
        raise refusal(
            400,
            "invalid-message",
            f"This stream is {pinned}'s; leave out the config's model or name {pinned}.",
        )
    model = await services.holder.resolve(pinned or config.model)
    obstacles = streaming_obstacles(model.trained.feature_config)
    if obstacles:
        raise refusal(
            422,
            "model-not-streamable",
            f"{model.version.ref} cannot be streamed: " + "; ".join(obstacles) + ".",
        )
    if config.encoding not in ENCODINGS:
        raise refusal(
            415,
            "unsupported-audio",
            f"Encoding {config.encoding!r} is not supported; send one of {', '.join(ENCODINGS)}.",
        )
    if config.sample_rate is not None and config.sample_rate != model.sample_rate:
        raise refusal(
            415,
            "unsupported-audio",
            f"{model.version.ref} takes audio at {model.sample_rate} Hz, not "
            f"{config.sample_rate} Hz; resample before sending.",
            sample_rate=model.sample_rate,
        )
    windows = LiveWindows.of(model.trained.feature_config)
    smoother = ProgramSmoother(time_constant_s=config.time_constant_s, hold_s=config.hold_s)
    session = StreamSession(model=model, windows=windows, smoother=smoother)
    ready = StreamReady(
        stream_id=stream_id,
        model=_model_ref(model),
        sample_rate=windows.sample_rate,
        encoding=config.encoding,
        window_s=windows.window_s,
        hop_s=windows.hop_s,
        window_samples=windows.window_samples,
        hop_samples=windows.hop_samples,
        n_clusters=model.n_clusters,
        cluster_names=[model.cluster_name(number) for number in range(model.n_clusters)],
        time_constant_s=config.time_constant_s,
        hold_s=config.hold_s,
        limits=StreamLimits(
            max_seconds=settings.stream_max_seconds,
            idle_seconds=settings.stream_idle_seconds,
            max_speed=settings.stream_max_speed,
            burst_seconds=settings.stream_burst_seconds,
        ),
    )
    await websocket.send_text(ready.model_dump_json())
    logger.info(
        "stream ready on %s (%s at %d Hz)", model.version.ref, config.encoding, model.sample_rate
    )
    return _Connection(
        websocket,
        services,
        model=model,
        session=session,
        decoder=PcmDecoder(config.encoding),
        opened_at=opened_at,
        speech=config.speech,
    )


def _parse_config(message: Message) -> StreamConfig:
    text = message.get("text")
    if text is None:
        raise refusal(400, "invalid-message", "The first message must be the JSON config.")
    try:
        return StreamConfig.model_validate_json(text)
    except ValidationError as error:
        errors = [
            {"loc": list(item["loc"]), "msg": item["msg"]}
            for item in error.errors(include_url=False)
        ]
        raise refusal(
            400, "invalid-message", "The config is not valid: " + _summary(errors), errors=errors
        ) from None


def _summary(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in errors)


def _message_type(text: str | None) -> str:
    try:
        document = json.loads(text or "")
    except json.JSONDecodeError:
        raise refusal(400, "invalid-message", "A text message must be JSON.") from None
    kind = document.get("type") if isinstance(document, dict) else None
    return kind if isinstance(kind, str) else "a message without a type"


async def _receive_within(websocket: WebSocket, settings: Settings, *, opened_at: float) -> Message:
    """The next message, within the idle timeout and the session's time left (the config;
    after it, `_Connection._watch` keeps these limits)."""
    left = settings.stream_max_seconds - (time.monotonic() - opened_at)
    timeout = min(settings.stream_idle_seconds, left)
    try:
        if timeout <= 0:
            raise TimeoutError
        message = await asyncio.wait_for(websocket.receive(), timeout)
    except TimeoutError:
        if timeout < settings.stream_idle_seconds:
            raise _too_long(settings) from None
        raise _idle(settings) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(code=message.get("code", 1000), reason=message.get("reason"))
    return message


def _check_pace(received_s: float, settings: Settings, *, ready_at: float) -> None:
    if received_s > settings.stream_max_seconds:
        raise _too_long(settings)
    allowed = settings.stream_max_speed * (time.monotonic() - ready_at)
    if received_s > allowed + settings.stream_burst_seconds:
        raise refusal(
            429,
            "too-fast",
            f"{received_s:.1f} s of audio arrived in {time.monotonic() - ready_at:.1f} s; a "
            f"stream may run at most {settings.stream_max_speed:g} times real time plus "
            f"{settings.stream_burst_seconds:g} s ahead. Pace the audio as it is heard.",
        )


def _idle(settings: Settings) -> ApiProblem:
    return refusal(
        408,
        "idle-timeout",
        f"Nothing arrived for {settings.stream_idle_seconds:g} s; send audio or a "
        "'keepalive' at least that often.",
    )


def _too_long(settings: Settings) -> ApiProblem:
    return refusal(
        413,
        "stream-too-long",
        f"A stream lasts at most {settings.stream_max_seconds:g} s (of audio or open time); "
        "open a new one to go on.",
    )


def _model_ref(model: LoadedModel) -> ModelRefPublic:
    version = model.version
    return ModelRefPublic(
        name=version.name, version=version.version, ref=version.ref, sha256=version.sha256
    )


async def _close_with(websocket: WebSocket, error: BaseException, *, stream_id: str) -> int:
    """Send the error message and close with its code; the code."""
    problem = problem_from_exception(error)
    code = close_code(problem)
    if problem.status == 503 and "retry_after_s" not in problem.extensions:
        problem.extensions["retry_after_s"] = _retry_after(problem.headers)
    document = problem_document(websocket, problem, request_id=None)
    document["stream_id"] = stream_id
    logger.info("closing the stream with %d: %s", code, problem.slug)
    try:
        await websocket.send_text(StreamError(code=code, problem=document).model_dump_json())
        await websocket.close(code=code, reason=problem.slug)
    except (WebSocketDisconnect, RuntimeError, OSError):
        logger.info("the client left before the error could be sent")
    return code


def _retry_after(headers: dict[str, str]) -> int:
    try:
        return int(headers.get("Retry-After", _RETRY_AFTER_S))
    except ValueError:
        return _RETRY_AFTER_S


async def _deny(websocket: WebSocket, error: ApiProblem, *, stream_id: str) -> None:
    """Refuse the handshake with the HTTP problem, where the server can send one."""
    problem = problem_from_exception(error)
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(code=1008)  # the server answers the handshake with a 403
        return
    document = problem_document(websocket, problem, request_id=stream_id)
    response = JSONResponse(
        document,
        status_code=problem.status,
        headers={**problem.headers, "X-Request-ID": stream_id},
        media_type=PROBLEM_MEDIA_TYPE,
    )
    await websocket.send_denial_response(response)
