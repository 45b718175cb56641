"""Distillation (uvac/distillation.py): a student reproduces its teacher, stops and resumes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.uvac.edge_fixtures import (
    EDGE_FEATURES,
    TINY_DISTILL,
    class_clips,
    one_hot_targets,
    tiny_student,
)
from uvac.audio.decoding import Audio
from uvac.edge.distillation import DistillConfig, TeacherWindows, distill
from uvac.errors import RunCancelled
from uvac.evaluation.inference import Clusterer
from uvac.models import CatUVACStudent


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _assignments(trained, clips) -> list[int]:
    results = Clusterer(trained).cluster_batch(
        [Audio.from_samples(c, sample_rate=16000) for c in clips]
    )
    return [result.assignment for result in results]


def test_the_student_reproduces_its_teacher_on_three_synthetic_classes() -> None:
    student, clips, labels = tiny_student()
    assert isinstance(student.model, CatUVACStudent)
    assert _assignments(student, clips) == labels
    fresh, fresh_labels = class_clips(per_class=4, seed=11)
    agreement = sum(a == b for a, b in zip(_assignments(student, fresh), fresh_labels, strict=True))
    assert agreement / len(fresh) >= 0.9
    history = student.info["distillation"]["history"]
    assert len(history) == TINY_DISTILL.epochs
    assert history[-1]["loss"] < history[0]["loss"]


def test_a_stop_request_cancels_between_batches() -> None:
    clips, labels = class_clips(per_class=2)
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(RunCancelled):
        distill(
            clips,
            one_hot_targets(labels, clips),
            config=TINY_DISTILL,
            feature_config=EDGE_FEATURES,
            should_stop=should_stop,
        )
    assert len(calls) == 3


def test_a_stopped_run_resumes_from_its_checkpoint_to_the_same_student(tmp_path: Path) -> None:
    clips, labels = class_clips(per_class=2)
    targets = one_hot_targets(labels, clips)
    config = dataclasses.replace(TINY_DISTILL, epochs=3)
    steps_per_epoch = -(-len(clips) * config.crops_per_clip // config.batch_size)
    asked = []

    def stop_in_the_third_epoch() -> bool:
        asked.append(1)
        return len(asked) > 2 * steps_per_epoch + 1

    common = dict(config=config, feature_config=EDGE_FEATURES, checkpoint_dir=tmp_path)
    with pytest.raises(RunCancelled):
        distill(clips, targets, should_stop=stop_in_the_third_epoch, **common)
    resumed = distill(clips, targets, **common)
    straight = distill(clips, targets, config=config, feature_config=EDGE_FEATURES)
    assert resumed.info["distillation"]["resumed_from_epoch"] == 2
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=1e-5, atol=1e-6)


def test_each_crop_is_taught_by_the_teacher_window_nearest_its_centre() -> None:
    pi = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    windows = TeacherWindows(starts_s=[0.0, 2.5, 5.0], ends_s=[5.0, 7.5, 10.0], probabilities=pi)
    torch.testing.assert_close(windows.target_at(1.0), pi[0])
    torch.testing.assert_close(windows.target_at(5.2), pi[1])
    torch.testing.assert_close(windows.target_at(9.0), pi[2])


def test_the_config_round_trips_and_refuses_nonsense() -> None:
    config = DistillConfig(epochs=3, snr_db=(5.0, 20.0), conv_channels=(4, 4, 8, 8))
    assert DistillConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        DistillConfig(epochs=0)
    with pytest.raises(ValueError):
        DistillConfig(snr_db=(30.0, 10.0))
    with pytest.raises(ValueError, match="unknown"):
        DistillConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="one teacher target per clip"):
        distill([], [], config=config)


def test_mixup_and_masks_change_the_batch_the_way_they_say() -> None:
    from uvac.edge.distillation import _Augmenter

    config = dataclasses.replace(
        TINY_DISTILL, mixup_probability=1.0, time_masks=1, frequency_masks=1, mask_frames=4
    )
    clips, _ = class_clips(per_class=1)
    augmenter = _Augmenter(clips, config, 1000)
    pcm = torch.stack([torch.from_numpy(c[:1000]) for c in clips])  # (3, 1000)
    wanted = torch.eye(3)
    mixed, mixed_wanted = augmenter.mix(pcm, wanted)
    torch.testing.assert_close(mixed_wanted.sum(dim=1), torch.ones(3))
    assert bool((mixed_wanted.max(dim=1).values >= 0.5).all())  # each crop keeps its own part
    assert not torch.equal(mixed, pcm)
    features = torch.ones(3, 1, 32, 16)
    masked = augmenter.mask(features)
    assert set(masked.unique().tolist()) <= {0.0, 1.0}
    zero_frames = (masked == 0).all(dim=3).sum(dim=2).flatten()  # frames zeroed in every bin
    zero_bins = (masked == 0).all(dim=2).sum(dim=2).flatten()  # bins zeroed in every frame
    assert bool((zero_frames <= config.mask_frames).all())
    assert bool((zero_bins <= config.mask_bins).all())
    # what is zeroed is whole bands: every zero lies in a zeroed frame or a zeroed bin
    in_band = (masked == 0).all(dim=3, keepdim=True) | (masked == 0).all(dim=2, keepdim=True)
    assert bool(((masked == 1) | in_band).all())


def test_a_run_with_every_augmentation_on_trains() -> None:
    clips, labels = class_clips(per_class=2)
    config = dataclasses.replace(
        TINY_DISTILL, epochs=2, mixup_probability=0.5, time_masks=2, frequency_masks=2,
        target_temperature=2.0,
    )  # fmt: skip
    student = distill(
        clips, one_hot_targets(labels, clips), config=config, feature_config=EDGE_FEATURES
    )
    assert len(student.info["distillation"]["history"]) == 2
