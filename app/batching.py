"""Micro-batching: concurrent requests share one forward pass.

Each request puts `(model, audio)` on an asyncio queue and awaits a future. One consumer
task takes the first waiting item, then keeps collecting until it has `max_batch` clips,
`max_batch_seconds` of audio, or `max_wait_s` has passed since the first item; then it runs
`Clusterer.cluster_batch` for each model version in the batch on a single dedicated thread
(torch is never called from two request threads at once, and the event loop never runs it)
and resolves the futures. While a batch runs, new requests queue up and form the next one,
so under load batches grow by themselves.

The consumer only waits for clips it knows are coming: requests announce themselves with
`expecting()` while they decode their upload. With nothing announced, a lone request runs
at once instead of paying `max_wait_s` for company that will not arrive (the latency of a
single client); with uploads still decoding, it waits for them, at most `max_wait_s`.

Requests whose caller went away (cancelled futures) are dropped before the forward pass.

Long clips (over `long_clip_seconds`) take their own lane: rather than one forward pass that
holds the inference thread for the whole recording (a minute for a 600 s clip with an
encoder), each is clustered in steps of `windows_per_step` windows
(`Clusterer.cluster_in_steps`), and the consumer serves every waiting short batch between
two steps. Several long clips take their steps in turn.

With ``lanes`` above 1, that many inference threads run forward passes side by side (each
with ``lane_setup`` run once in it, e.g. its torch thread count): the consumer hands work to
whichever lane is free, and a pass takes at most its even share of what waits (or is
announced) over all the lanes, busy ones included, rather than one lane taking everything:
a busy lane is soon free for the rest, and the clips of a pass are all answered at its end,
so a share's answers come sooner than a whole backlog's. On a CPU, two lanes of one intra-op
thread do more work per second than one lane of two (no thread waits on the other within an
operation), and the sound encoder gains nothing from batches over two 5 s windows
(benchmarks/README.md, live streams), so many small concurrent requests (live streams) gain
from lanes and lose nothing from small batches. A pass that has the machine to itself (every
other lane idle and nothing waiting) runs with ``alone_setup`` instead (e.g. every serving
thread), so a single request is not held to one lane's share of the cores; ``lane_setup`` is
run again after it.

While a live stream is open (`steady_load`), no pass takes every serving thread: a stream's
windows come every hop, so a lane that is alone now seldom stays alone for its pass, and
the threads it borrows then contend with the other lane and the event loop (an intra-op
thread that waits for a descheduled partner burns CPU for nothing). A caller may also ask
for less per clip: ``submit(speech=False)`` leaves the speech fields out, which spares the
speech detector's own pass over the clip (a large share of what the sound encoder costs);
stream windows do unless their stream's config asks for speech.

A live stream's window can be started before it is whole (`start_window`): the encoder's
work on the samples heard so far (`Clusterer.start_window`) runs on a lane when no short clip
waits and no upload is announced, before long clips' steps, one step (a layer of the network)
at a time, so that a window that comes whole waits for a lane at most a step. The window,
once whole, is submitted with its `EarlyStart` and finished from there. A start that no lane
had taken by then is dropped (the whole pass costs no more than finishing it would), and a
start that failed leaves the window to be embedded whole: starting early only ever saves work.
A stream also drops a start (`drop_start`) as soon as a later sample shows it cannot finish
its window; one a lane is running stops after its current step.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from app.problems import ApiProblem

if TYPE_CHECKING:
    from uvac.audio import Audio, WindowStart
    from uvac.evaluation import ClipResult

logger = logging.getLogger(__name__)


class BatchModel(Protocol):
    """What the batcher needs from a loaded model (app.serving.LoadedModel has it)."""

    @property
    def key(self) -> tuple[str, str]: ...

    @property
    def clusterer(self) -> _ClusterBatch: ...


class _ClusterBatch(Protocol):
    def cluster_batch(
        self,
        audios: Sequence[Audio],
        *,
        speech: Sequence[bool] | None = None,
        started: Sequence[WindowStart | None] | None = None,
    ) -> list[ClipResult]: ...

    def start_window(self, heard: Audio) -> Generator[None, None, WindowStart | None]: ...

    def cluster_in_steps(
        self, audio: Audio, *, windows_per_step: int
    ) -> Generator[None, None, ClipResult]: ...


@dataclass(eq=False)
class _Pending:
    model: BatchModel
    audio: Audio
    future: asyncio.Future[ClipResult] = field(repr=False)
    speech: bool = True  # whether the answer needs the clip's speech fields
    started: WindowStart | None = None  # the encoder's early start of the clip's window


@dataclass(eq=False)
class EarlyStart:
    """A window's early start (`MicroBatcher.start_window`), to hand to `submit`."""

    model: BatchModel = field(repr=False)
    heard: Audio = field(repr=False)
    future: asyncio.Future[WindowStart | None] = field(repr=False)
    running: bool = False  # a lane has taken it
    steps: Generator[None, None, WindowStart | None] | None = field(default=None, repr=False)


@dataclass(eq=False)
class _LongClip:
    pending: _Pending
    steps: Generator[None, None, ClipResult] = field(repr=False)


T = TypeVar("T")

BatchObserver = Callable[[int, float], None]
"""Called with (clips in the forward pass, seconds it took) after every forward pass."""

StartObserver = Callable[[str], None]
"""Called with what became of each early start whose window was submitted: ``"used"`` (the
window is finished from it), ``"dropped"`` (no lane took it in time) or ``"unusable"`` (it
failed, or the samples could not start one); and of each start dropped because a later
sample of its window showed it could not finish it: ``"superseded"`` (a window may count two,
its first start and the one it was begun again with)."""


class MicroBatcher:
    """Collects concurrent clips into batches; see the module docstring."""

    def __init__(
        self,
        *,
        max_batch: int,
        max_wait_s: float,
        max_batch_seconds: float = 600.0,
        long_clip_seconds: float | None = None,
        windows_per_step: int = 32,
        observer: BatchObserver | None = None,
        start_observer: StartObserver | None = None,
        lanes: int = 1,
        lane_setup: Callable[[], None] | None = None,
        alone_setup: Callable[[], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        self._lanes = lanes
        self._lane_setup = lane_setup
        self._alone_setup = alone_setup if lanes > 1 else None
        self._free_lanes = lanes
        self._lane_freed = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._max_batch = max_batch
        self._max_wait_s = max(0.0, max_wait_s)
        self._max_batch_seconds = max_batch_seconds
        self._long_clip_seconds = long_clip_seconds
        self._windows_per_step = windows_per_step
        self._long: deque[_LongClip] = deque()
        self._early: deque[EarlyStart] = deque()
        self._observer = observer
        self._start_observer = start_observer
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._expected = 0  # requests decoding audio that they will submit next
        self._steady = 0  # open live streams (`steady_load`)
        self._changed = asyncio.Event()  # set on every submission and announcement change
        self._executor: ThreadPoolExecutor | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=self._lanes,
            thread_name_prefix="uvac-inference",
            initializer=self._lane_setup,
        )
        self._consumer = asyncio.create_task(self._consume_forever(), name="uvac-batcher")

    async def close(self) -> None:
        self._closed = True
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(_shutting_down())
        while self._long:
            long_clip = self._long.popleft()
            if not long_clip.pending.future.done():
                long_clip.pending.future.set_exception(_shutting_down())
        while self._early:
            self._early.popleft().future.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce a clip that will be submitted after this block (decode inside it)."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1
            self._changed.set()

    @contextlib.contextmanager
    def steady_load(self) -> Iterator[None]:
        """Inside, no pass takes every serving thread (a live stream holds it while open)."""
        self._steady += 1
        try:
            yield
        finally:
            self._steady -= 1

    @property
    def steady(self) -> bool:
        """Whether anyone holds `steady_load` now."""
        return self._steady > 0

    async def submit(
        self,
        *,
        model: BatchModel,
        audio: Audio,
        speech: bool = True,
        started: EarlyStart | None = None,
    ) -> ClipResult:
        """Cluster one clip with `model`, batched with whatever else is waiting; with
        ``speech`` False the answer leaves the speech fields out (None); a long clip always
        gets them. ``started``: the clip's window was started early (`start_window`)."""
        if self._closed or self._consumer is None:
            raise _shutting_down()
        window_start = await self._finished_start(started) if started is not None else None
        if self._closed:  # closed while the start ran
            raise _shutting_down()
        future: asyncio.Future[ClipResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(
            _Pending(model=model, audio=audio, future=future, speech=speech, started=window_start)
        )
        self._changed.set()
        return await future

    def start_window(self, *, model: BatchModel, heard: Audio) -> EarlyStart:
        """Begin the encoder's work on a window's first samples ``heard`` on a lane that
        nothing more urgent needs (module docstring); pass the result to `submit` with the
        whole window."""
        if self._closed or self._consumer is None:
            raise _shutting_down()
        early = EarlyStart(
            model=model, heard=heard, future=asyncio.get_running_loop().create_future()
        )
        self._early.append(early)
        self._changed.set()
        return early

    def drop_start(self, early: EarlyStart, *, outcome: str | None = None) -> None:
        """Forget a start whose window will not come (its stream ended) or that could not
        finish it (``outcome`` ``"superseded"``, reported to the start observer); one a lane
        is running stops after its current step."""
        early.future.cancel()
        # Not remove()'s ValueError: its message is built from the start's repr.
        if early in self._early:  # else a lane took it, or it was dropped already
            self._early.remove(early)
        if outcome is not None and self._start_observer is not None:
            self._start_observer(outcome)

    async def _finished_start(self, early: EarlyStart) -> WindowStart | None:
        """What an early start gives its whole window: its result once a lane has taken it,
        else nothing (it is dropped); a start cancelled at shutdown gives nothing either."""
        result = None
        if early.running:
            await asyncio.wait([early.future])  # its outcome is read here, never raised
            result = None if early.future.cancelled() else early.future.result()
        else:
            self.drop_start(early)
        if self._start_observer is not None:
            outcome = "dropped" if not early.running else "unusable" if result is None else "used"
            self._start_observer(outcome)
        return result

    async def _consume_forever(self) -> None:
        while True:
            while self._free_lanes == 0:
                self._lane_freed.clear()
                await self._lane_freed.wait()
            work = await self._next_work()
            if work is None:
                continue
            self._free_lanes -= 1
            task = asyncio.create_task(self._on_lane(work), name="uvac-inference-lane")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _next_work(self) -> list[_Pending] | _LongClip | EarlyStart | None:
        """The next work for a free lane: a short batch when clips wait, else an early start,
        else a long clip's step; None when a batch turned out to hold nothing live."""
        while self._queue.empty() and not self._long and not self._startable():
            self._changed.clear()
            await self._changed.wait()
        if self._queue.empty():
            return self._early.popleft() if self._startable() else self._long.popleft()
        batch = await self._collect()
        short = []
        for pending in batch:
            if pending.future.done():
                continue
            if self._is_long(pending):
                steps = pending.model.clusterer.cluster_in_steps(
                    pending.audio, windows_per_step=self._windows_per_step
                )
                self._long.append(_LongClip(pending=pending, steps=steps))
                self._changed.set()
            else:
                short.append(pending)
        return short or None

    def _startable(self) -> bool:
        """Whether an early start may take a lane: one waits and no upload is on its way
        (a start cannot be interrupted, and the upload's clip would wait for it)."""
        return bool(self._early) and self._expected == 0

    async def _on_lane(self, work: list[_Pending] | _LongClip | EarlyStart) -> None:
        try:
            if isinstance(work, EarlyStart):
                await self._start_early(work)
            elif isinstance(work, _LongClip):
                await self._step_long(work)
            else:
                for group in _group_by_model(work):
                    await self._run(group)
        finally:
            self._free_lanes += 1
            self._lane_freed.set()

    def _is_long(self, pending: _Pending) -> bool:
        limit = self._long_clip_seconds
        return limit is not None and pending.audio.duration_s > limit

    async def _step_long(self, long_clip: _LongClip) -> None:
        """One step of a long clip, which then goes to the back of the long clips' line."""
        assert self._executor is not None
        future = long_clip.pending.future
        if future.done():  # the caller went away
            long_clip.steps.close()
            return
        started = time.perf_counter()
        try:
            finished, result = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._in_lane, self._alone(), _next_step, long_clip.steps
            )
        except asyncio.CancelledError:
            _fail([long_clip.pending], _shutting_down())
            raise
        except Exception as error:
            logger.exception("inference failed for a long clip")
            _fail([long_clip.pending], error)
            return
        if self._observer is not None:
            self._observer(1, time.perf_counter() - started)
        if not finished:
            self._long.append(long_clip)
            self._changed.set()
        elif not future.done():
            assert result is not None
            future.set_result(result)

    async def _start_early(self, early: EarlyStart) -> None:
        """One step of an early start, which then goes back to the front of the starts' line:
        a lane is never held by a start for longer than a step, so a window that comes whole
        meanwhile waits at most that long."""
        assert self._executor is not None
        if early.future.done():  # dropped: its window was whole before a lane was free
            if early.steps is not None:
                early.steps.close()
            return
        if early.steps is None:
            early.steps = early.model.clusterer.start_window(early.heard)
        early.running = True
        try:
            finished, result = await asyncio.get_running_loop().run_in_executor(
                self._executor, _next_step, early.steps
            )
        except asyncio.CancelledError:
            early.future.cancel()
            raise
        except Exception:
            logger.exception("an early start failed: its window will be embedded whole")
            finished, result = True, None
        if not finished and early.future.done():  # dropped during its step: stop here
            early.steps.close()
        elif not finished:
            self._early.appendleft(early)
            self._changed.set()
        elif not early.future.done():
            early.future.set_result(result)

    async def _collect(self) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        first = await self._queue.get()
        batch = [first]
        seconds = first.audio.duration_s
        deadline = loop.time() + self._max_wait_s
        limit = self._max_batch
        if self._lanes > 1:  # a lane's even share of what waits or is announced
            coming = self._queue.qsize() + 1 + self._expected
            limit = min(limit, -(-coming // self._lanes))
        while len(batch) < limit and seconds < self._max_batch_seconds:
            if not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                seconds += item.audio.duration_s
                continue
            remaining = deadline - loop.time()
            if self._expected == 0 or remaining <= 0:
                break  # nobody else is on the way, or we waited long enough
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)
            except TimeoutError:
                break
        return batch

    async def _run(self, group: list[_Pending]) -> None:
        assert self._executor is not None
        clusterer = group[0].model.clusterer
        audios = [pending.audio for pending in group]
        speech = [pending.speech for pending in group]
        early = [pending.started for pending in group]
        cluster = functools.partial(
            clusterer.cluster_batch,
            audios,
            speech=speech,
            started=early if any(start is not None for start in early) else None,
        )
        started = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._in_lane, self._alone(), cluster
            )
        except asyncio.CancelledError:
            _fail(group, _shutting_down())
            raise
        except Exception as error:
            logger.exception("inference failed for a batch of %d clips", len(group))
            _fail(group, error)
            return
        if self._observer is not None:
            self._observer(len(group), time.perf_counter() - started)
        for pending, result in zip(group, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)

    def _alone(self) -> bool:
        """Whether the pass about to start is the only one (its lane already counted busy)
        and may take every serving thread."""
        return (
            self._free_lanes == self._lanes - 1
            and self._queue.empty()
            and not self._long
            and not self.steady
        )

    def _in_lane(self, alone: bool, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in an inference thread, with every serving thread when alone."""
        if not alone or self._alone_setup is None:
            return function(*args)
        self._alone_setup()
        try:
            return function(*args)
        finally:
            if self._lane_setup is not None:
                self._lane_setup()


def _fail(pendings: Sequence[_Pending], error: BaseException) -> None:
    for pending in pendings:
        if not pending.future.done():
            pending.future.set_exception(error)


def _next_step(steps: Generator[None, None, T]) -> tuple[bool, T | None]:
    """Run one step: (False, None) while there are more, (True, result) at the end."""
    try:
        next(steps)
    except StopIteration as stop:
        return True, stop.value
    return False, None


def _group_by_model(batch: list[_Pending]) -> list[list[_Pending]]:
    """Split a batch by model version, keeping arrival order within each group."""
    groups: dict[tuple[str, str], list[_Pending]] = {}
    for pending in batch:
        groups.setdefault(pending.model.key, []).append(pending)
    return list(groups.values())


def _shutting_down() -> ApiProblem:
    return ApiProblem(
        status=503, slug="shutting-down", detail="The server is shutting down; retry shortly."
    )
