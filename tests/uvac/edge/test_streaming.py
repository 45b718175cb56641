"""The device's decision loop and the smoothing of pi (uvac/streaming.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.uvac.edge_fixtures import class_clips, tiny_student
from uvac.audio.decoding import Audio
from uvac.edge.device_model import window_samples
from uvac.edge.onnx_export import ONNX_FILE, export_model
from uvac.edge.streaming import ProgramSmoother, decision_starts, device_decisions, smooth_timeline
from uvac.evaluation.inference import Clusterer


def test_decision_starts_are_every_hop_while_a_full_window_fits() -> None:
    assert decision_starts(100, window_samples=40, hop_samples=20) == [0, 20, 40, 60]
    assert decision_starts(39, window_samples=40, hop_samples=20) == []
    with pytest.raises(ValueError):
        decision_starts(100, window_samples=0, hop_samples=20)


def test_the_device_loop_gives_the_apis_windows_timeline(tmp_path) -> None:
    torch.set_num_threads(1)
    student, _, _ = tiny_student()
    config = student.feature_config
    exported = export_model(student, tmp_path, calibration_windows=None)
    session = ort.InferenceSession(
        str(exported.files[ONNX_FILE]), providers=["CPUExecutionProvider"]
    )
    clips, _ = class_clips(per_class=1, seconds=1.0, seed=3)
    recording = np.concatenate(clips)  # low tone, high tone, noise: a scene that changes
    (api,) = Clusterer(student).cluster_batch([Audio.from_samples(recording, sample_rate=16000)])

    length, hop = window_samples(config), config.window_hop_frames * config.hop_length
    device = list(
        device_decisions(
            recording,
            lambda window: session.run(None, {"pcm": window[None]})[0][0],
            window_samples=length,
            hop_samples=hop,
        )
    )
    api_starts = [round(window.start_s * 16000) for window in api.windows]
    device_starts = [start for start, _ in device]
    # The API ends a recording with a window aligned to its last sample; a stream has none.
    assert api_starts[: len(device_starts)] == device_starts
    assert len(api_starts) - len(device_starts) in (0, 1)
    for (_, device_pi), window in zip(device, api.windows, strict=False):
        np.testing.assert_allclose(device_pi, window.probabilities, atol=1e-4)
    programs = [
        d.program for d in smooth_timeline([pi for _, pi in device], interval_s=hop / 16000)
    ]
    assert programs[0] == int(np.argmax(device[0][1]))


def test_smoothing_keeps_the_program_through_a_flickering_scene() -> None:
    flicker = [[0.55, 0.45], [0.45, 0.55]] * 20
    raw = smooth_timeline(flicker, interval_s=0.32, time_constant_s=0.0, hold_s=0.0)
    assert len({d.program for d in raw}) == 2  # unsmoothed, the program follows every decision
    smoothed = smooth_timeline(flicker, interval_s=0.32)
    assert {d.program for d in smoothed} == {0}


def test_a_lasting_change_switches_the_program_after_the_hold_time() -> None:
    interval, hold = 0.5, 2.0
    timeline = [[0.9, 0.1]] * 6 + [[0.1, 0.9]] * 20
    decisions = smooth_timeline(timeline, interval_s=interval, time_constant_s=1.0, hold_s=hold)
    programs = [d.program for d in decisions]
    first_switch = programs.index(1)
    leads = [int(np.argmax(d.smoothed)) for d in decisions]
    took_the_lead = leads.index(1)
    assert took_the_lead >= 6
    assert (first_switch - took_the_lead) * interval >= hold
    assert (first_switch - took_the_lead - 1) * interval < hold
    assert programs[first_switch:] == [1] * (len(programs) - first_switch)
    assert programs[:first_switch] == [0] * first_switch


def test_the_smoother_checks_its_input() -> None:
    smoother = ProgramSmoother()
    smoother.update([0.5, 0.5], 0.0)
    with pytest.raises(ValueError):
        smoother.update([0.2, 0.3, 0.5], 0.5)
    with pytest.raises(ValueError):
        smoother.update([0.5, 0.5], -1.0)
    with pytest.raises(ValueError):
        ProgramSmoother(hold_s=-1.0)
