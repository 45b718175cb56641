"""The micro-batcher with a fake clusterer: batching, grouping per model, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from app.batching import EarlyStart, MicroBatcher
from app.problems import ApiProblem
from uvac.audio.decoding import Audio


@dataclass
class FakeClusterer:
    """Answers each clip with its first sample; records the batches it was given."""

    name: str
    batches: list[list[float]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    fail: bool = False
    step_s: float = 0.05
    steps: list[float] = field(default_factory=list)
    speech: list[list[bool] | None] = field(default_factory=list)  # the flags of each batch
    started: list[list[Any] | None] = field(default_factory=list)  # the starts of each batch
    batch_s: float = 0.0  # how long a batch takes
    fail_start: bool = False
    events: list[tuple[str, list[float]]] = field(default_factory=list)  # batches and starts

    def cluster_batch(
        self,
        audios: list[Audio],
        *,
        speech: list[bool] | None = None,
        started: list[Any] | None = None,
    ) -> list[Any]:
        self.threads.add(threading.current_thread().name)
        self.speech.append(speech)
        self.started.append(started)
        self.batches.append([float(audio.samples[0]) for audio in audios])
        self.events.append(("batch", self.batches[-1]))
        time.sleep(self.batch_s)
        if self.fail:
            raise RuntimeError("boom")
        return [(self.name, float(audio.samples[0])) for audio in audios]

    def start_window(self, heard: Audio) -> Any:
        """Three steps of `batch_s` each, then ("started", the first sample); fails with
        `fail_start` in its first step."""
        value = float(heard.samples[0])
        for step in range(3):
            self.events.append(("start", [value]) if step == 0 else ("start step", [value]))
            time.sleep(self.batch_s)
            if self.fail_start:
                raise RuntimeError("the start failed")
            yield
        return ("started", value)

    def cluster_in_steps(self, audio: Audio, *, windows_per_step: int) -> Any:
        """Ten steps of `step_s` each, then the answer cluster_batch would give."""
        for _ in range(10):
            self.threads.add(threading.current_thread().name)
            time.sleep(self.step_s)
            self.steps.append(float(audio.samples[0]))
            yield
        return (self.name, float(audio.samples[0]))


@dataclass(eq=False)
class FakeModel:
    clusterer: FakeClusterer
    key: tuple[str, str]


def _audio(value: float, seconds: float = 0.1) -> Audio:
    samples = np.full(round(seconds * 1000), value, dtype=np.float32)
    return Audio.from_samples(samples, sample_rate=1000)


def _model(name: str) -> FakeModel:
    return FakeModel(clusterer=FakeClusterer(name), key=(name, "sha"))


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def submit_together(model: FakeModel, audios: list[Audio], **options: Any) -> list[Any]:
    """Submit ``audios`` at once to a batcher made with ``options``; their results."""

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(**options)
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(model=model, audio=audio) for audio in audios)
            )
        finally:
            await batcher.close()

    return list(run(scenario()))


def test_concurrent_submissions_share_one_forward_pass() -> None:
    model = _model("a")

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.05)
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(model=model, audio=_audio(i / 10)) for i in range(5))
            )
        finally:
            await batcher.close()

    results = run(scenario())
    assert results == [("a", pytest.approx(i / 10)) for i in range(5)]
    assert len(model.clusterer.batches) == 1
    assert model.clusterer.threads == {"uvac-inference_0"}


def test_batches_never_exceed_max_batch() -> None:
    model = _model("a")

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch=3, max_wait_s=0.05)
        await batcher.start()
        try:
            await asyncio.gather(
                *(batcher.submit(model=model, audio=_audio(0.1)) for _ in range(7))
            )
        finally:
            await batcher.close()

    run(scenario())
    sizes = [len(batch) for batch in model.clusterer.batches]
    assert sum(sizes) == 7 and max(sizes) <= 3


def test_audio_seconds_cap_a_batch() -> None:
    model = _model("a")
    clips = [_audio(0.1, seconds=0.1) for _ in range(6)]
    submit_together(model, clips, max_batch=64, max_wait_s=0.05, max_batch_seconds=0.25)
    assert all(len(batch) <= 3 for batch in model.clusterer.batches)


def test_clips_for_different_models_never_share_a_pass() -> None:
    first, second = _model("a"), _model("b")

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.05)
        await batcher.start()
        try:
            return await asyncio.gather(
                batcher.submit(model=first, audio=_audio(0.1)),
                batcher.submit(model=second, audio=_audio(0.2)),
                batcher.submit(model=first, audio=_audio(0.3)),
            )
        finally:
            await batcher.close()

    results = run(scenario())
    assert [name for name, _ in results] == ["a", "b", "a"]
    assert first.clusterer.batches == [[pytest.approx(0.1), pytest.approx(0.3)]]
    assert second.clusterer.batches == [[pytest.approx(0.2)]]


def test_a_failed_forward_pass_fails_its_requests_and_the_batcher_goes_on() -> None:
    broken, healthy = _model("a"), _model("b")
    broken.clusterer.fail = True

    async def scenario() -> Any:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0)
        await batcher.start()
        try:
            with pytest.raises(RuntimeError, match="boom"):
                await batcher.submit(model=broken, audio=_audio(0.1))
            return await batcher.submit(model=healthy, audio=_audio(0.5))
        finally:
            await batcher.close()

    assert run(scenario()) == ("b", pytest.approx(0.5))


def test_cancelled_requests_are_dropped_before_the_forward_pass() -> None:
    model = _model("a")

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.05)
        await batcher.start()
        try:
            gone = asyncio.ensure_future(batcher.submit(model=model, audio=_audio(0.9)))
            kept = asyncio.ensure_future(batcher.submit(model=model, audio=_audio(0.1)))
            await asyncio.sleep(0)  # both are queued
            gone.cancel()
            assert await kept == ("a", pytest.approx(0.1))
        finally:
            await batcher.close()

    run(scenario())
    assert model.clusterer.batches == [[pytest.approx(0.1)]]


def test_submitting_after_close_is_a_503_problem() -> None:
    from app.problems import ApiProblem

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch=4, max_wait_s=0.0)
        await batcher.start()
        await batcher.close()
        with pytest.raises(ApiProblem) as raised:
            await batcher.submit(model=_model("a"), audio=_audio(0.1))
        assert raised.value.status == 503

    run(scenario())


def test_the_observer_sees_every_pass() -> None:
    model = _model("a")
    observed: list[tuple[int, float]] = []

    async def scenario() -> None:
        batcher = MicroBatcher(
            max_batch=64, max_wait_s=0.05, observer=lambda n, s: observed.append((n, s))
        )
        await batcher.start()
        try:
            await asyncio.gather(
                *(batcher.submit(model=model, audio=_audio(0.1)) for _ in range(4))
            )
        finally:
            await batcher.close()

    run(scenario())
    assert sum(n for n, _ in observed) == 4
    assert all(seconds >= 0 for _, seconds in observed)


def test_a_lone_request_does_not_wait_for_company() -> None:
    model = _model("a")

    async def scenario() -> float:
        batcher = MicroBatcher(max_batch=64, max_wait_s=2.0)
        await batcher.start()
        try:
            started = asyncio.get_running_loop().time()
            await batcher.submit(model=model, audio=_audio(0.1))
            return asyncio.get_running_loop().time() - started
        finally:
            await batcher.close()

    assert run(scenario()) < 1.0  # far below max_wait: nobody else was announced


def test_announced_clips_are_waited_for() -> None:
    model = _model("a")

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch=64, max_wait_s=2.0)
        await batcher.start()

        async def late_request(delay: float, value: float) -> Any:
            with batcher.expecting():
                await asyncio.sleep(delay)  # decoding
            return await batcher.submit(model=model, audio=_audio(value))

        try:
            await asyncio.gather(late_request(0.0, 0.1), late_request(0.05, 0.2))
        finally:
            await batcher.close()

    run(scenario())
    assert model.clusterer.batches == [[pytest.approx(0.1), pytest.approx(0.2)]]


def test_waiting_for_announced_clips_is_bounded_by_max_wait() -> None:
    model = _model("a")

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.02)
        await batcher.start()

        async def slow_request() -> Any:
            with batcher.expecting():
                await asyncio.sleep(0.3)
            return await batcher.submit(model=model, audio=_audio(0.2))

        try:
            slow = asyncio.ensure_future(slow_request())
            await asyncio.sleep(0)
            await batcher.submit(model=model, audio=_audio(0.1))
            assert not slow.done()  # the first clip did not wait 0.3 s for the second
            await slow
        finally:
            await batcher.close()

    run(scenario())
    assert model.clusterer.batches == [[pytest.approx(0.1)], [pytest.approx(0.2)]]


def test_a_short_clip_is_served_between_the_steps_of_a_long_one() -> None:
    model = _model("a")

    async def scenario() -> tuple[list[str], Any, Any]:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0, long_clip_seconds=1.0)
        await batcher.start()
        finished: list[str] = []

        async def timed(name: str, audio: Audio, delay: float) -> Any:
            await asyncio.sleep(delay)
            result = await batcher.submit(model=model, audio=audio)
            finished.append(name)
            return result

        try:
            long_result, short_result = await asyncio.gather(
                timed("long", _audio(0.7, seconds=2.0), 0.0),
                timed("short", _audio(0.2), 0.12),  # after the long clip's second step
            )
        finally:
            await batcher.close()
        return finished, long_result, short_result

    finished, long_result, short_result = run(scenario())
    assert finished == ["short", "long"]
    assert long_result == ("a", pytest.approx(0.7))
    assert short_result == ("a", pytest.approx(0.2))
    # The short clip went through cluster_batch while the long one was still stepping.
    assert model.clusterer.batches == [[pytest.approx(0.2)]]
    assert len(model.clusterer.steps) == 10


def test_long_clips_take_their_steps_in_turn() -> None:
    model = _model("a")
    model.clusterer.step_s = 0.01

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0, long_clip_seconds=1.0)
        await batcher.start()
        try:
            await asyncio.gather(
                batcher.submit(model=model, audio=_audio(0.3, seconds=2.0)),
                batcher.submit(model=model, audio=_audio(0.6, seconds=2.0)),
            )
        finally:
            await batcher.close()

    run(scenario())
    assert model.clusterer.steps[:4] == [pytest.approx(v) for v in (0.3, 0.6, 0.3, 0.6)]


def test_a_long_clip_whose_caller_left_is_dropped() -> None:
    model = _model("a")
    model.clusterer.step_s = 0.02

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0, long_clip_seconds=1.0)
        await batcher.start()
        try:
            task = asyncio.create_task(batcher.submit(model=model, audio=_audio(0.5, 2.0)))
            await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.sleep(0.1)
        finally:
            await batcher.close()

    run(scenario())
    assert len(model.clusterer.steps) < 10


def test_lanes_run_forward_passes_side_by_side() -> None:
    """Two lanes: two batches are inside the model at once (each waits for the other at a
    barrier, which one lane could never pass)."""
    meeting = threading.Barrier(2, timeout=10)
    set_up: list[str] = []

    @dataclass
    class MeetingClusterer(FakeClusterer):
        def cluster_batch(self, audios: list[Audio], **options: Any) -> list[Any]:
            meeting.wait()
            return super().cluster_batch(audios, **options)

    model = FakeModel(clusterer=MeetingClusterer("a"), key=("a", "sha"))

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(
            max_batch=64,
            max_wait_s=0.0,
            lanes=2,
            lane_setup=lambda: set_up.append(threading.current_thread().name),
        )
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(model=model, audio=_audio(0.1)))
            await asyncio.sleep(0.05)  # the first batch is in a lane, waiting at the barrier
            second = await batcher.submit(model=model, audio=_audio(0.2))
            return [await first, second]
        finally:
            await batcher.close()

    results = run(scenario())
    assert results == [("a", pytest.approx(0.1)), ("a", pytest.approx(0.2))]
    assert len(model.clusterer.threads) == 2
    assert sorted(set_up) == sorted(model.clusterer.threads)  # each lane was set up once


def test_waiting_clips_are_shared_by_the_lanes() -> None:
    """No pass takes more than a lane's even share of what waits: the first takes half."""
    model = _model("a")
    clips = [_audio(value) for value in (0.1, 0.2, 0.3, 0.4)]
    submit_together(model, clips, max_batch=64, max_wait_s=0.0, lanes=2)
    sizes = [len(batch) for batch in model.clusterer.batches]
    assert sizes[0] == 2 and max(sizes) == 2 and sum(sizes) == 4


def test_a_pass_in_flight_at_close_fails_with_503() -> None:
    model = _model("a")
    model.clusterer.step_s = 0.2

    async def scenario() -> BaseException | None:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0, long_clip_seconds=1.0, lanes=2)
        await batcher.start()
        request = asyncio.ensure_future(batcher.submit(model=model, audio=_audio(0.5, 2.0)))
        await asyncio.sleep(0.05)  # its first step is running
        await batcher.close()
        return request.exception()

    error = run(scenario())
    assert isinstance(error, ApiProblem) and error.status == 503


def test_a_pass_alone_gets_every_thread_and_shared_passes_their_lane_share() -> None:
    """alone_setup runs before a pass that starts with every other lane idle, lane_setup after
    it; a pass that starts beside another (they meet at a barrier), or while a live stream
    holds `steady_load`, keeps its lane's share."""
    setting: dict[str, str] = {}  # thread -> the setup it last ran
    seen: list[str] = []  # the setting each pass ran under
    meeting = threading.Barrier(2, timeout=10)
    together = threading.Event()

    @dataclass
    class RecordingClusterer(FakeClusterer):
        def cluster_batch(self, audios: list[Audio], **options: Any) -> list[Any]:
            seen.append(setting[threading.current_thread().name])
            if together.is_set():
                meeting.wait()
            return super().cluster_batch(audios, **options)

    def setup(kind: str) -> Any:
        return lambda: setting.__setitem__(threading.current_thread().name, kind)

    model = FakeModel(clusterer=RecordingClusterer("a"), key=("a", "sha"))

    async def scenario() -> None:
        batcher = MicroBatcher(
            max_batch=1, max_wait_s=0.0, lanes=2, lane_setup=setup("lane"), alone_setup=setup("all")
        )
        await batcher.start()
        try:
            with batcher.steady_load():
                await batcher.submit(model=model, audio=_audio(0.05))  # alone, a stream open
            await batcher.submit(model=model, audio=_audio(0.1))  # alone
            together.set()
            first = asyncio.ensure_future(batcher.submit(model=model, audio=_audio(0.2)))
            await asyncio.sleep(0.05)  # the first pass waits at the barrier in one lane
            await batcher.submit(model=model, audio=_audio(0.3))
            await first
        finally:
            await batcher.close()

    run(scenario())
    # The lone passes, then a pass that started alone, then one that started beside it.
    assert seen == ["lane", "all", "all", "lane"]
    assert set(setting.values()) == {"lane"}  # every lane is back to its share afterwards


def test_each_clip_says_whether_it_needs_speech() -> None:
    """Clips that share a pass keep their own speech flag, in the batch's order."""
    model = _model("a")

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(max_batch=8, max_wait_s=0.0)
        await batcher.start()
        try:
            return await asyncio.gather(
                batcher.submit(model=model, audio=_audio(0.1)),
                batcher.submit(model=model, audio=_audio(0.2), speech=False),
                batcher.submit(model=model, audio=_audio(0.3), speech=True),
            )
        finally:
            await batcher.close()

    results = run(scenario())
    assert [value for _, value in results] == pytest.approx([0.1, 0.2, 0.3])
    assert model.clusterer.batches == [pytest.approx([0.1, 0.2, 0.3])]
    assert model.clusterer.speech == [[True, False, True]]


def test_a_free_lane_leaves_the_busy_lane_its_share_of_a_backlog() -> None:
    """With one lane busy, four waiting clips are not all taken by the free lane in one pass:
    each pass takes at most half of what waits (the busy lane is soon free for the rest)."""
    release = threading.Event()
    holding = threading.Event()

    @dataclass
    class HoldingClusterer(FakeClusterer):
        def cluster_batch(self, audios: list[Audio], **options: Any) -> list[Any]:
            if float(audios[0].samples[0]) == pytest.approx(0.9):
                holding.set()
                release.wait(timeout=10)
            return super().cluster_batch(audios, **options)

    model = FakeModel(clusterer=HoldingClusterer("a"), key=("a", "sha"))

    async def scenario() -> None:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0, lanes=2)
        await batcher.start()
        try:
            held = asyncio.ensure_future(batcher.submit(model=model, audio=_audio(0.9)))
            while not holding.is_set():
                await asyncio.sleep(0.01)
            waiting = [batcher.submit(model=model, audio=_audio(v)) for v in (0.1, 0.2, 0.3, 0.4)]
            results = await asyncio.gather(*waiting)
            assert [value for _, value in results] == pytest.approx([0.1, 0.2, 0.3, 0.4])
            release.set()
            await held
        finally:
            release.set()
            await batcher.close()

    run(scenario())
    *backlog, held = model.clusterer.batches  # the held pass records its clip last
    assert held == [pytest.approx(0.9)]
    assert [len(batch) for batch in backlog] == [2, 1, 1]


def _with_busy_lane(model: FakeModel, then: Any, outcomes: list[str] | None = None) -> Any:
    """One lane, busy with a first clip (answer 1.0) while ``then(batcher)`` runs; the first
    clip's result and what ``then`` returned. ``outcomes`` collects the starts' outcomes."""

    async def scenario() -> Any:
        observer = outcomes.append if outcomes is not None else None
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0, start_observer=observer)
        await batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(model=model, audio=_audio(1.0)))
            await asyncio.sleep(0.05)  # the first clip is in the lane
            later = await then(batcher)
            return await first, later
        finally:
            await batcher.close()

    return run(scenario())


def _with_started_window(model: FakeModel, then: Any, outcomes: list[str] | None = None) -> Any:
    """A window started on heard audio (first sample 9.0) on an idle batcher; 50 ms later,
    inside the start's first step, what ``then(batcher, early)`` returns. ``outcomes``
    collects the starts' outcomes."""

    async def scenario() -> Any:
        observer = outcomes.append if outcomes is not None else None
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0, start_observer=observer)
        await batcher.start()
        try:
            early = batcher.start_window(model=model, heard=_audio(9.0))
            await asyncio.sleep(0.05)
            return await then(batcher, early)
        finally:
            await batcher.close()

    return run(scenario())


def test_an_early_start_waits_for_short_clips_and_its_result_reaches_the_window() -> None:
    """A start queued behind short clips runs after them; the window submitted with it is
    clustered with the start's result."""
    model = _model("a")
    model.clusterer.batch_s = 0.2

    async def then(batcher: MicroBatcher) -> Any:
        early = batcher.start_window(model=model, heard=_audio(9.0))
        clips = [
            asyncio.ensure_future(batcher.submit(model=model, audio=_audio(v))) for v in (2.0, 3.0)
        ]
        await asyncio.gather(*clips)
        await asyncio.sleep(0.05)  # the start is in the lane
        return await batcher.submit(model=model, audio=_audio(9.5), started=early)

    outcomes: list[str] = []
    _, window = _with_busy_lane(model, then, outcomes)
    assert window == ("a", 9.5)
    assert outcomes == ["used"]
    assert model.clusterer.events == [
        ("batch", [1.0]),
        ("batch", [2.0, 3.0]),
        ("start", [9.0]),
        ("start step", [9.0]),
        ("start step", [9.0]),
        ("batch", [9.5]),
    ]
    assert model.clusterer.started[-1] == [("started", 9.0)]
    assert model.clusterer.started[:-1] == [None, None]


def test_a_start_no_lane_took_is_dropped_when_its_window_is_whole() -> None:
    """The window comes while its start still waits for a lane: the start never runs and the
    window is clustered whole."""
    model = _model("a")
    model.clusterer.batch_s = 0.2

    async def then(batcher: MicroBatcher) -> Any:
        early = batcher.start_window(model=model, heard=_audio(9.0))
        result = await batcher.submit(model=model, audio=_audio(9.5), started=early)
        return result, early.future.cancelled(), len(batcher._early)

    outcomes: list[str] = []
    _, (window, dropped, still_queued) = _with_busy_lane(model, then, outcomes)
    assert window == ("a", 9.5)
    assert outcomes == ["dropped"]
    assert dropped
    assert still_queued == 0
    assert ("start", [9.0]) not in model.clusterer.events
    assert model.clusterer.started == [None, None]


def test_a_failed_start_leaves_its_window_to_be_clustered_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = _model("a")
    model.clusterer.fail_start = True

    outcomes: list[str] = []

    async def then(batcher: MicroBatcher, early: EarlyStart) -> Any:  # the start failed
        return await batcher.submit(model=model, audio=_audio(9.5), started=early)

    assert _with_started_window(model, then, outcomes) == ("a", 9.5)
    assert outcomes == ["unusable"]
    assert ("start", [9.0]) in model.clusterer.events
    assert model.clusterer.started == [None]
    assert "an early start failed" in caplog.text


def test_no_start_takes_a_lane_while_an_upload_is_announced() -> None:
    """An upload still decoding will submit its clip next: a start, which cannot be
    interrupted, waits until it has."""
    model = _model("a")

    async def scenario() -> Any:
        batcher = MicroBatcher(max_batch=64, max_wait_s=0.0)
        await batcher.start()
        try:
            with batcher.expecting():
                early = batcher.start_window(model=model, heard=_audio(9.0))
                await asyncio.sleep(0.1)
                waited = not early.running
                clip = asyncio.ensure_future(batcher.submit(model=model, audio=_audio(2.0)))
                await asyncio.sleep(0)  # the clip is queued before the announcement ends
            await clip
            await asyncio.wait([early.future], timeout=5)
            return waited, early.future.result()
        finally:
            await batcher.close()

    waited, started = run(scenario())
    assert waited
    assert started == ("started", 9.0)
    assert model.clusterer.events == [
        ("batch", [2.0]),
        ("start", [9.0]),
        ("start step", [9.0]),
        ("start step", [9.0]),
    ]


def test_a_stream_s_dropped_start_leaves_the_queue() -> None:
    """`drop_start` (a stream ended inside the window) takes a waiting start off the queue."""
    model = _model("a")
    model.clusterer.batch_s = 0.2

    async def then(batcher: MicroBatcher) -> Any:
        early = batcher.start_window(model=model, heard=_audio(9.0))
        batcher.drop_start(early)
        return early.future.cancelled(), len(batcher._early)

    _, (cancelled, queued) = _with_busy_lane(model, then)
    assert cancelled and queued == 0
    assert ("start", [9.0]) not in model.clusterer.events


def test_a_superseded_start_stops_after_its_step_and_is_reported() -> None:
    """A stream drops a start a lane is running (a louder sample came): it runs no step
    after the current one, and the observer hears ``superseded``."""
    model = _model("a")
    model.clusterer.batch_s = 0.1
    outcomes: list[str] = []

    async def then(batcher: MicroBatcher, early: EarlyStart) -> bool:
        batcher.drop_start(early, outcome="superseded")
        await asyncio.sleep(0.4)  # time for the two steps it would have run
        return not batcher._early

    assert _with_started_window(model, then, outcomes)
    assert model.clusterer.events == [("start", [9.0])]
    assert outcomes == ["superseded"]


def test_a_clip_that_comes_during_a_start_runs_between_its_steps() -> None:
    """A start holds a lane for one step at a time: a clip submitted meanwhile waits for the
    step, not for the whole start."""
    model = _model("a")
    model.clusterer.batch_s = 0.1

    async def then(batcher: MicroBatcher, early: EarlyStart) -> Any:
        clip = await batcher.submit(model=model, audio=_audio(5.0))
        await asyncio.wait([early.future], timeout=5)
        return clip, early.future.result()

    assert _with_started_window(model, then) == (("a", 5.0), ("started", 9.0))
    assert model.clusterer.events == [
        ("start", [9.0]),
        ("batch", [5.0]),
        ("start step", [9.0]),
        ("start step", [9.0]),
    ]
