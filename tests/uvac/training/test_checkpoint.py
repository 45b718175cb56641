"""Checkpoints: exact round trip of model, optimiser and random states; atomic, pickle-free."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from uvac.training.checkpoint import (
    CHECKPOINT_JSON,
    TrainingCheckpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _trained_pair() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).square().mean().backward()
        optimizer.step()
    return model, optimizer


def _checkpoint(epoch: int, shuffle: torch.Generator) -> TrainingCheckpoint:
    model, optimizer = _trained_pair()
    return TrainingCheckpoint(
        epoch=epoch,
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        rng=capture_rng_state(shuffle),
        config={"seed": 1, "epochs": 4},
        history=[{"epoch": 1, "loss": 2.5}],
        extra={"data_fingerprint": "abc"},
    )


def test_round_trip_restores_model_optimizer_and_history(tmp_path: Path) -> None:
    shuffle = torch.Generator().manual_seed(7)
    original = _checkpoint(2, shuffle)
    save_checkpoint(tmp_path, original)
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None
    assert loaded.epoch == 2
    assert loaded.config == original.config
    assert loaded.history == original.history
    assert loaded.extra == original.extra
    assert loaded.model_state.keys() == original.model_state.keys()
    for key, value in original.model_state.items():
        assert torch.equal(loaded.model_state[key], value), key

    _model, optimizer = _trained_pair()
    optimizer.load_state_dict(loaded.optimizer_state)
    reference = original.optimizer_state
    for param_id, state in reference["state"].items():
        for name, value in state.items():
            assert torch.equal(optimizer.state_dict()["state"][param_id][name], value)
    assert optimizer.param_groups[0]["betas"] == reference["param_groups"][0]["betas"]


def test_random_states_are_restored(tmp_path: Path) -> None:
    shuffle = torch.Generator().manual_seed(3)
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    save_checkpoint(tmp_path, _checkpoint(1, shuffle))
    expected = (
        torch.rand(3),
        torch.randperm(10, generator=shuffle),
        np.random.rand(3),
        random.random(),
    )
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    other_shuffle = torch.Generator().manual_seed(99)
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None
    restore_rng_state(loaded.rng, other_shuffle)
    assert torch.equal(torch.rand(3), expected[0])
    assert torch.equal(torch.randperm(10, generator=other_shuffle), expected[1])
    assert np.array_equal(np.random.rand(3), expected[2])
    assert random.random() == expected[3]


def test_newer_checkpoint_replaces_the_older_one(tmp_path: Path) -> None:
    shuffle = torch.Generator().manual_seed(0)
    save_checkpoint(tmp_path, _checkpoint(1, shuffle))
    save_checkpoint(tmp_path, _checkpoint(2, shuffle))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([CHECKPOINT_JSON, "checkpoint-epoch0002.safetensors"])
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded.epoch == 2


def test_no_checkpoint_and_damaged_checkpoints_give_none(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path) is None
    assert load_checkpoint(tmp_path / "missing") is None
    save_checkpoint(tmp_path, _checkpoint(1, torch.Generator()))
    tensors = tmp_path / "checkpoint-epoch0001.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-10] + b"0123456789")
    assert load_checkpoint(tmp_path) is None  # digest mismatch
    (tmp_path / CHECKPOINT_JSON).write_text("{not json")
    assert load_checkpoint(tmp_path) is None


def test_checkpoint_files_hold_no_pickle(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, _checkpoint(1, torch.Generator()))
    document = json.loads((tmp_path / CHECKPOINT_JSON).read_text())
    assert document["format"] == "uvac-training-checkpoint"
    raw = (tmp_path / "checkpoint-epoch0001.safetensors").read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_length])  # safetensors: JSON header, raw tensors
    assert "model.0.weight" in header and "rng.torch_cpu" in header
    assert not any(p.suffix in {".pt", ".pth", ".pkl"} for p in tmp_path.iterdir())
