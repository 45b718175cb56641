"""A job's checkpoints through the object store: written on one host, resumed on another."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from object_storage import ObjectBackend, S3Options, open_backend
from uvac.training import TrainingCheckpoint, capture_rng_state, load_checkpoint, save_checkpoint
from worker.checkpoint_mirror import CheckpointMirror


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectBackend:
    if request.param == "file":
        return open_backend((tmp_path / "checkpoints").as_uri())
    options: S3Options = request.getfixturevalue("s3_options")
    return open_backend(request.getfixturevalue("s3_url"), s3=options)


def _checkpoint(epoch: int) -> TrainingCheckpoint:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return TrainingCheckpoint(
        epoch=epoch,
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        rng=capture_rng_state(),
        config={"epochs": 10},
        history=[{"epoch": e, "loss": 1.0 / e} for e in range(1, epoch + 1)],
    )


def test_a_job_resumed_on_another_host_continues_from_its_last_epoch(
    backend: ObjectBackend, tmp_path: Path
) -> None:
    first_host = tmp_path / "host-a" / "job1"
    with CheckpointMirror(backend, job_id="job1", local_dir=first_host, interval_s=3600) as mirror:
        save_checkpoint(first_host, _checkpoint(1))
        assert mirror.sync() == 2
        save_checkpoint(first_host, _checkpoint(2))
        save_checkpoint(first_host, _checkpoint(3))
    # The block ended with the folder kept (the worker was shut down): all of it is stored,
    # the tensors files of epochs 1 and 2 no longer.
    stored = backend.list_keys("job1/")
    assert stored == ["job1/checkpoint-epoch0003.safetensors", "job1/checkpoint.json"]

    second_host = tmp_path / "host-b" / "job1"
    with CheckpointMirror(backend, job_id="job1", local_dir=second_host, interval_s=3600):
        resumed = load_checkpoint(second_host)
        assert resumed is not None and resumed.epoch == 3
        assert [entry["epoch"] for entry in resumed.history] == [1, 2, 3]
        save_checkpoint(second_host, _checkpoint(4))
        # The job finishes: settle_publication drops the local folder.
        for path in second_host.iterdir():
            path.unlink()
        second_host.rmdir()
    assert backend.list_keys("job1/") == []
