"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds at most one complete checkpoint:

- ``checkpoint-epoch{N:04d}.safetensors``: model state (``model.*``), the optimiser's tensors
  (``optimizer.state.{param}.{name}``) and the random generators' states (``rng.*``);
- ``checkpoint.json``: the completed epoch count, the train config, the optimiser's other fields
  (param groups, non-tensor state), numpy's and Python's random states, the history so far, and
  the SHA-256 of the tensors file.

Both are written to a temporary file and renamed into place; ``checkpoint.json`` goes last, so it
is the commit point: a run killed mid-write leaves the previous checkpoint readable. Older tensor
files are removed once the new JSON is in place.
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from uvac.hashing import file_sha256

__all__ = [
    "CHECKPOINT_JSON",
    "RngState",
    "TrainingCheckpoint",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_JSON = "checkpoint.json"
CHECKPOINT_FORMAT = "uvac-training-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


@dataclass
class RngState:
    """Every random generator a training run draws from."""

    torch_cpu: Tensor  # uint8, torch.get_rng_state()
    torch_cuda: list[Tensor] = field(default_factory=list)  # uint8, one per CUDA device
    shuffle: Tensor | None = None  # uint8, the data-order generator's state
    numpy: dict[str, Any] = field(default_factory=dict)  # JSON-able MT19937 state
    python: list[Any] = field(default_factory=list)  # JSON-able random.getstate()


@dataclass
class TrainingCheckpoint:
    """The state a training run needs to continue after ``epoch`` completed epochs."""

    epoch: int
    model_state: dict[str, Tensor]
    optimizer_state: dict[str, Any]  # an optimizer.state_dict()
    rng: RngState
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-able, e.g. a data fingerprint


def capture_rng_state(shuffle: torch.Generator | None = None) -> RngState:
    """The current state of torch's (CPU and CUDA), numpy's and Python's generators."""
    numpy_state = np.random.get_state(legacy=False)
    assert isinstance(numpy_state, dict)
    numpy_json = {
        "bit_generator": numpy_state["bit_generator"],
        "key": numpy_state["state"]["key"].tolist(),
        "pos": int(numpy_state["state"]["pos"]),
        "has_gauss": int(numpy_state["has_gauss"]),
        "cached_gaussian": float(numpy_state["gauss"]),
    }
    version, internal, gauss_next = random.getstate()
    return RngState(
        torch_cpu=torch.get_rng_state(),
        torch_cuda=list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        shuffle=shuffle.get_state() if shuffle is not None else None,
        numpy=numpy_json,
        python=[version, list(internal), gauss_next],
    )


def restore_rng_state(state: RngState, shuffle: torch.Generator | None = None) -> None:
    """Put every generator back where `capture_rng_state` found it."""
    torch.set_rng_state(state.torch_cpu)
    if state.torch_cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.torch_cuda)
    if shuffle is not None and state.shuffle is not None:
        shuffle.set_state(state.shuffle)
    if state.numpy:
        np.random.set_state(
            (
                state.numpy["bit_generator"],
                np.asarray(state.numpy["key"], dtype=np.uint32),
                state.numpy["pos"],
                state.numpy["has_gauss"],
                state.numpy["cached_gaussian"],
            )
        )
    if state.python:
        version, internal, gauss_next = state.python
        random.setstate((version, tuple(internal), gauss_next))


def _split_optimizer_state(
    optimizer_state: dict[str, Any],
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimizer state dict -> (tensors by flat name, the JSON-able rest)."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in optimizer_state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.state.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": optimizer_state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    prefix = "optimizer.state."
    for key, value in tensors.items():
        if key.startswith(prefix):
            param_id, name = key[len(prefix) :].split(".", 1)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, values in rest.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    param_groups = []
    for group in rest["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])  # JSON turned Adam's tuple into a list
        param_groups.append(group)
    return {"state": state, "param_groups": param_groups}


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)`` then rename it onto ``path`` (same folder, so atomic)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(descriptor)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(directory: Path, checkpoint: TrainingCheckpoint) -> Path:
    """Write ``checkpoint`` into ``directory`` (created if needed); returns the JSON's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    optimizer_tensors, optimizer_rest = _split_optimizer_state(checkpoint.optimizer_state)
    tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in checkpoint.model_state.items()}
    tensors.update(optimizer_tensors)
    tensors["rng.torch_cpu"] = checkpoint.rng.torch_cpu
    for index, cuda_state in enumerate(checkpoint.rng.torch_cuda):
        tensors[f"rng.torch_cuda.{index}"] = cuda_state
    if checkpoint.rng.shuffle is not None:
        tensors["rng.shuffle"] = checkpoint.rng.shuffle
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    tensors_name = f"checkpoint-epoch{checkpoint.epoch:04d}.safetensors"
    tensors_path = directory / tensors_name
    _atomic_write(tensors_path, lambda path: save_file(tensors, str(path)))
    document = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "epoch": checkpoint.epoch,
        "tensors_file": tensors_name,
        "tensors_sha256": file_sha256(tensors_path),
        "config": checkpoint.config,
        "optimizer": optimizer_rest,
        "rng": {"numpy": checkpoint.rng.numpy, "python": checkpoint.rng.python},
        "history": checkpoint.history,
        "extra": checkpoint.extra,
    }
    json_path = directory / CHECKPOINT_JSON
    _atomic_write(json_path, lambda path: path.write_text(json.dumps(document, indent=1)))
    for stale in directory.glob("checkpoint-epoch*.safetensors"):
        if stale.name != tensors_name:
            stale.unlink(missing_ok=True)
    logger.debug("checkpoint after epoch %d written to %s", checkpoint.epoch, directory)
    return json_path


def load_checkpoint(directory: Path) -> TrainingCheckpoint | None:
    """The checkpoint in ``directory``, or None when there is none (or it is unusable, which is
    logged: a damaged checkpoint must not stop a fresh run)."""
    json_path = Path(directory) / CHECKPOINT_JSON
    if not json_path.is_file():
        return None
    try:
        return _read_checkpoint(Path(directory), json.loads(json_path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("ignoring unusable checkpoint in %s: %s", directory, error)
        return None


def _read_checkpoint(directory: Path, document: dict[str, Any]) -> TrainingCheckpoint:
    if document.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"not a training checkpoint: format={document.get('format')!r}")
    if document.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"unsupported checkpoint version {document.get('format_version')}")
    tensors_path = directory / document["tensors_file"]
    if file_sha256(tensors_path) != document["tensors_sha256"]:
        raise ValueError(f"{tensors_path.name} does not match its recorded SHA-256")
    tensors = load_file(str(tensors_path), device="cpu")

    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    cuda_keys = sorted(
        (k for k in tensors if k.startswith("rng.torch_cuda.")),
        key=lambda k: int(k.rsplit(".", 1)[-1]),
    )
    rng = RngState(
        torch_cpu=tensors["rng.torch_cpu"],
        torch_cuda=[tensors[k] for k in cuda_keys],
        shuffle=tensors.get("rng.shuffle"),
        numpy=document["rng"]["numpy"],
        python=document["rng"]["python"],
    )
    return TrainingCheckpoint(
        epoch=int(document["epoch"]),
        model_state=model_state,
        optimizer_state=_join_optimizer_state(tensors, document["optimizer"]),
        rng=rng,
        config=document["config"],
        history=document["history"],
        extra=document["extra"],
    )
