"""Distillation: train a small student (`uvac.models.student.CatUVACStudent`) to reproduce a
trained teacher's pi from what a hearing aid has, log-mel frames of short 16 kHz windows.

The teacher (any trained model, typically one on a pretrained encoder) gives pi for each of
its time-context windows of each training recording (`teacher_targets`). Every epoch, each
recording gives ``crops_per_clip`` random student windows (time shift: any sample offset);
each window is augmented (gain, and white noise at a random signal-to-noise ratio), turned into
features by the exported front-end itself (`uvac.edge.device_model.LogMelFrontEnd`, equal to
`uvac.audio.features.FeatureExtractor` to float rounding), and its target is the pi of the teacher
window whose centre lies nearest the crop's centre. The loss is KL(teacher pi || student pi)
(soft targets; the cross-entropy less the teacher's fixed entropy).

Checkpoints (`uvac.training.checkpoint`), progress and cooperative cancellation follow
`uvac.training.pipeline`: ``should_stop`` is asked before every batch, a stop raises
`RunCancelled`, and a run given the same ``checkpoint_dir`` resumes after the last
completed epoch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from uvac.audio import Audio, EmbeddedItem, FeatureConfig, FeatureExtractor, fit_norm_stats
from uvac.edge.device_model import LogMelFrontEnd, window_samples
from uvac.errors import RunCancelled
from uvac.evaluation import ClipResult, Clusterer
from uvac.models import STUDENT_CONV_CHANNELS, STUDENT_GRU_HIDDEN, CatUVACStudent
from uvac.training import (
    Progress,
    TrainedModel,
    TrainingCheckpoint,
    capture_rng_state,
    code_version,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

__all__ = [
    "STUDENT_FEATURES",
    "DistillConfig",
    "Progress",
    "TeacherWindows",
    "calibration_windows",
    "clip_agreement",
    "distill",
    "embedded_teacher_targets",
    "teacher_targets",
]

# 32 mel bins of 20 ms frames (no overlap), 64 frames (1.28 s) per decision, every 0.64 s:
# the budget of `uvac.models.student` with the front-end counted.
STUDENT_FEATURES = FeatureConfig(
    sample_rate=16000,
    n_fft=320,
    win_length=320,
    hop_length=320,
    n_mels=32,
    window_seconds=1.28,
    window_hop_seconds=0.64,
)


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation run (JSON round trip with `to_dict` / `from_dict`)."""

    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 3e-3
    final_learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    crops_per_clip: int = 8
    gain_db: float = 6.0  # each crop's gain uniform in +-gain_db
    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (10.0, 40.0)  # white noise's SNR, uniform in this range
    mixup_probability: float = 0.0  # a crop mixed with another of its batch, targets alike
    time_masks: int = 2  # SpecAugment-style masks of up to mask_frames frames
    frequency_masks: int = 2  # and of up to mask_bins mel bins, set to 0
    mask_frames: int = 8
    mask_bins: int = 4
    target_temperature: float = 2.0  # teacher pi softened as softmax(log pi / T)
    seed: int = 0
    conv_channels: tuple[int, ...] = STUDENT_CONV_CHANNELS
    gru_hidden: int = STUDENT_GRU_HIDDEN
    gru_layers: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "crops_per_clip", "gru_hidden", "gru_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < self.final_learning_rate <= self.learning_rate:
            raise ValueError("need 0 < final_learning_rate <= learning_rate")
        for name in ("noise_probability", "mixup_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")
        for name in ("time_masks", "frequency_masks", "mask_frames", "mask_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not self.target_temperature > 0:
            raise ValueError("target_temperature must be positive")
        low, high = self.snr_db
        if not low <= high:
            raise ValueError(f"snr_db must be (low, high) with low <= high, got {self.snr_db}")
        if self.gain_db < 0 or self.weight_decay < 0:
            raise ValueError("gain_db and weight_decay must not be negative")
        if len(self.conv_channels) != 4 or min(self.conv_channels) < 1:
            raise ValueError(f"conv_channels needs four positive widths, got {self.conv_channels}")

    def student_hyperparameters(self, *, n_clusters: int, n_features: int) -> dict[str, Any]:
        return {
            "n_clusters": n_clusters,
            "n_features": n_features,
            "conv_channels": list(self.conv_channels),
            "gru_hidden": self.gru_hidden,
            "gru_layers": self.gru_layers,
        }

    def to_dict(self) -> dict[str, Any]:
        document = dataclasses.asdict(self)
        document["snr_db"] = list(self.snr_db)
        document["conv_channels"] = list(self.conv_channels)
        return document

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistillConfig:
        """The settings ``data`` gives, the others default. A ``learning_rate`` given without
        ``final_learning_rate`` ends at the default's share of it (1/30), at most the default
        final rate: a run asked to start lower than usual ends lower too, and one that starts
        at the default or above ends where the default run does."""
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown distillation settings: {', '.join(unknown)}")
        values = dict(data)
        if "learning_rate" in values and "final_learning_rate" not in values:
            values["final_learning_rate"] = _final_rate(values["learning_rate"])
        if "snr_db" in values:
            values["snr_db"] = tuple(float(v) for v in values["snr_db"])
        if "conv_channels" in values:
            values["conv_channels"] = tuple(int(v) for v in values["conv_channels"])
        return cls(**values)


def _final_rate(learning_rate: Any) -> Any:
    """The final rate of a run that names only its starting rate (see `DistillConfig.from_dict`);
    anything but a positive number is left for the config's own check to refuse."""
    default = DistillConfig()
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float):
        return default.final_learning_rate
    share = default.final_learning_rate / default.learning_rate
    return min(default.final_learning_rate, learning_rate * share)


@dataclass(frozen=True)
class TeacherWindows:
    """The teacher's pi over one recording: one row per teacher window."""

    starts_s: list[float]
    ends_s: list[float]
    probabilities: Tensor  # (W, K)

    def target_at(self, centre_s: float) -> Tensor:
        """pi of the window whose centre is nearest ``centre_s`` (K,)."""
        centres = [(start + end) / 2 for start, end in zip(self.starts_s, self.ends_s, strict=True)]
        index = min(range(len(centres)), key=lambda i: abs(centres[i] - centre_s))
        return self.probabilities[index]


@dataclass
class _History:
    epochs: list[dict[str, Any]] = field(default_factory=list)


def teacher_targets(teacher: TrainedModel, audios: Sequence[Audio]) -> list[TeacherWindows]:
    """The teacher's windows and pi for each recording (at the teacher's sample rate)."""
    clusterer = Clusterer(teacher)
    return [_teacher_windows(clusterer.cluster_batch([audio])[0]) for audio in audios]


def embedded_teacher_targets(
    teacher: TrainedModel, embedded: Sequence[EmbeddedItem]
) -> list[TeacherWindows]:
    """`teacher_targets` of recordings whose raw embeddings are known (a teacher on an
    encoder, its embeddings read through the cache, `uvac.audio.embed_items`)."""
    results = Clusterer(teacher).cluster_embedded(embedded, novelty=False)  # pi is the target
    return [_teacher_windows(result) for result in results]


def _teacher_windows(result: ClipResult) -> TeacherWindows:
    return TeacherWindows(
        starts_s=[w.start_s for w in result.windows],
        ends_s=[w.end_s for w in result.windows],
        probabilities=torch.tensor([w.probabilities for w in result.windows]),
    )


def _padded(samples: np.ndarray, length: int) -> np.ndarray:
    if len(samples) >= length:
        return samples
    return np.pad(samples, (0, length - len(samples)))


def calibration_windows(
    clips: Sequence[np.ndarray], config: FeatureConfig, *, per_clip: int = 2, seed: int = 0
) -> Tensor:
    """Evenly spread windows of the training clips ``(C, window_samples)`` for int8
    calibration (``per_clip`` from each, at most 512 in all)."""
    length = window_samples(config)
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(clips))[: max(1, 512 // per_clip)]
    windows = []
    for index in chosen:
        samples = _padded(clips[index], length)
        for start in np.linspace(0, len(samples) - length, per_clip).astype(int):
            windows.append(samples[start : start + length])
    return torch.from_numpy(np.stack(windows).astype(np.float32))


class _Augmenter:
    """Random crops with gain and noise, from a seeded generator (resumable state)."""

    def __init__(self, clips: Sequence[np.ndarray], config: DistillConfig, length: int) -> None:
        self.clips = [torch.from_numpy(_padded(c, length).astype(np.float32)) for c in clips]
        self.config = config
        self.length = length
        self.generator = torch.Generator().manual_seed(config.seed)

    def crop_plan(self) -> tuple[Tensor, Tensor]:
        """(clip index, start sample) of every crop of one epoch, shuffled."""
        n = len(self.clips)
        clip_index = torch.arange(n).repeat(self.config.crops_per_clip)
        room = torch.tensor([len(c) - self.length for c in self.clips], dtype=torch.float64)
        fraction = torch.rand(len(clip_index), generator=self.generator, dtype=torch.float64)
        starts = (fraction * (room[clip_index] + 1)).floor().long()
        order = torch.randperm(len(clip_index), generator=self.generator)
        return clip_index[order], starts[order]

    def batch(self, clip_index: Tensor, starts: Tensor) -> Tensor:
        pcm = torch.stack(
            [
                self.clips[int(c)][int(s) : int(s) + self.length]
                for c, s in zip(clip_index, starts, strict=True)
            ]
        )  # (B, N)
        config, size = self.config, (len(pcm), 1)
        gain_db = (torch.rand(size, generator=self.generator) * 2 - 1) * config.gain_db
        pcm = pcm * torch.pow(10.0, gain_db / 20)
        low, high = config.snr_db
        snr_db = low + torch.rand(size, generator=self.generator) * (high - low)
        noisy = torch.rand(size, generator=self.generator) < config.noise_probability
        rms = pcm.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-5)
        noise = torch.randn(pcm.shape, generator=self.generator) * rms * torch.pow(10, -snr_db / 20)
        return (pcm + noise * noisy).clamp(-1.0, 1.0)

    def mix(self, pcm: Tensor, wanted: Tensor) -> tuple[Tensor, Tensor]:
        """Mixup: a share of the crops mixed with another crop of the batch (their own part
        at least half), and their targets in the same proportions."""
        if self.config.mixup_probability == 0:
            return pcm, wanted
        n = len(pcm)
        partner = torch.randperm(n, generator=self.generator)
        mixed = torch.rand(n, generator=self.generator) < self.config.mixup_probability
        own = 0.5 + 0.5 * torch.rand(n, generator=self.generator)
        own = torch.where(mixed, own, torch.ones_like(own))[:, None]  # (B, 1)
        return own * pcm + (1 - own) * pcm[partner], own * wanted + (1 - own) * wanted[partner]

    def mask(self, features: Tensor) -> Tensor:
        """Zero random bands of frames and of mel bins of ``(B, 1, T, M)`` features."""
        config = self.config
        batch, _, frames, bins = features.shape
        keep = torch.ones(batch, 1, frames, bins)
        for count, width, axis, size in (
            (config.time_masks, config.mask_frames, 2, frames),
            (config.frequency_masks, config.mask_bins, 3, bins),
        ):
            positions = torch.arange(size)
            for _ in range(count):
                widths = torch.randint(0, width + 1, (batch,), generator=self.generator)
                starts = (torch.rand(batch, generator=self.generator) * (size - widths + 1)).long()
                inside = (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])
                shape = (batch, 1, size, 1) if axis == 2 else (batch, 1, 1, size)
                keep = keep * (~inside).float().reshape(shape)
        return features * keep


def distill(
    clips: Sequence[np.ndarray],
    targets: Sequence[TeacherWindows],
    *,
    config: DistillConfig,
    feature_config: FeatureConfig = STUDENT_FEATURES,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: Path | None = None,
    info: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Train a student on ``clips`` (float32 mono at ``feature_config.sample_rate``) to
    reproduce ``targets`` (the teacher's windows of the same clips, `teacher_targets`)."""
    if not clips or len(clips) != len(targets):
        raise ValueError(f"need one teacher target per clip, got {len(clips)} and {len(targets)}")
    n_clusters = int(targets[0].probabilities.shape[1])
    rate = feature_config.sample_rate
    extractor = FeatureExtractor(feature_config)
    stats = fit_norm_stats(
        (extractor.log_mel(Audio.from_samples(c, sample_rate=rate)) for c in clips), feature_config
    )
    front_end = LogMelFrontEnd(feature_config, stats)
    torch.manual_seed(config.seed)
    student = CatUVACStudent(
        **config.student_hyperparameters(
            n_clusters=n_clusters, n_features=feature_config.feature_bins
        )
    )
    optimizer = torch.optim.AdamW(
        student.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    length = window_samples(feature_config)
    augmenter = _Augmenter(clips, config, length)
    history = _History()
    first_epoch = 0
    checkpoint = load_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoint is not None and checkpoint.config == config.to_dict():
        student.load_state_dict(checkpoint.model_state)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        restore_rng_state(checkpoint.rng, augmenter.generator)
        history.epochs = list(checkpoint.history)
        first_epoch = checkpoint.epoch

    started, steps_done = time.monotonic(), 0
    for epoch in range(first_epoch, config.epochs):
        student.train()
        for group in optimizer.param_groups:
            group["lr"] = _cosine(config, epoch)
        clip_index, starts = augmenter.crop_plan()
        batches = list(
            zip(clip_index.split(config.batch_size), starts.split(config.batch_size), strict=True)
        )
        losses, agreements = [], []
        for step, (batch_clips, batch_starts) in enumerate(batches, start=1):
            if should_stop is not None and should_stop():
                raise RunCancelled(f"distillation stopped in epoch {epoch + 1}")
            wanted = torch.stack(
                [
                    targets[int(c)].target_at((int(s) + length / 2) / rate)
                    for c, s in zip(batch_clips, batch_starts, strict=True)
                ]
            )  # (B, K)
            if config.target_temperature != 1.0:
                wanted = torch.softmax(wanted.clamp_min(1e-12).log() / config.target_temperature, 1)
            with torch.no_grad():
                pcm, wanted = augmenter.mix(augmenter.batch(batch_clips, batch_starts), wanted)
                features = augmenter.mask(front_end(pcm))
            logits = student.cluster_logits(features)
            log_student = torch.log_softmax(logits, dim=1)
            loss = (wanted * (wanted.clamp_min(1e-12).log() - log_student)).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps_done += 1
            losses.append(float(loss.detach()))
            agreements.append(float((logits.argmax(1) == wanted.argmax(1)).float().mean()))
            if progress is not None:
                elapsed = time.monotonic() - started
                remaining = (config.epochs - epoch) * len(batches) - step
                progress(
                    Progress(
                        phase="distilling",
                        epoch=epoch + 1,
                        epochs=config.epochs,
                        step=step,
                        steps=len(batches),
                        loss=losses[-1],
                        agreement=agreements[-1],
                        elapsed_seconds=elapsed,
                        eta_seconds=elapsed / steps_done * remaining,
                        epoch_done=step == len(batches),
                    )
                )
        history.epochs.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "agreement": float(np.mean(agreements)),
                "learning_rate": _cosine(config, epoch),
            }
        )
        if checkpoint_dir is not None:
            save_checkpoint(
                checkpoint_dir,
                TrainingCheckpoint(
                    epoch=epoch + 1,
                    model_state=student.state_dict(),
                    optimizer_state=optimizer.state_dict(),
                    rng=capture_rng_state(augmenter.generator),
                    config=config.to_dict(),
                    history=history.epochs,
                ),
            )
    student.eval()
    document = {
        "model_type": student.model_type,
        "hyperparameters": student.hyperparameters(),
        "n_clusters": n_clusters,
        "distillation": {
            "config": config.to_dict(),
            "history": history.epochs,
            "final": history.epochs[-1] if history.epochs else None,
            "resumed_from_epoch": first_epoch or None,
        },
        "data": {"n_clips": len(clips)},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        **dict(info or {}),
    }
    return TrainedModel(
        model=student, feature_config=feature_config, norm_stats=stats, info=document
    )


def _cosine(config: DistillConfig, epoch: int) -> float:
    """Learning rate of ``epoch`` (0-based): cosine from the first to the final rate."""
    if config.epochs == 1:
        return config.learning_rate
    progress = epoch / (config.epochs - 1)
    low, high = config.final_learning_rate, config.learning_rate
    return low + (high - low) * 0.5 * (1 + math.cos(math.pi * progress))


def clip_agreement(
    teacher: Sequence[int] | np.ndarray, student: Sequence[int] | np.ndarray
) -> float:
    """Share of clips the student assigns to the teacher's cluster (both in the teacher's
    output order), e.g. on recordings neither was trained on.

    >>> clip_agreement([0, 1, 2, 2], [0, 1, 2, 0])
    0.75
    """
    teacher_array, student_array = np.asarray(teacher), np.asarray(student)
    if teacher_array.shape != student_array.shape or teacher_array.size == 0:
        raise ValueError("agreement needs the same, non-empty list of clips from both models")
    return float(np.mean(teacher_array == student_array))
