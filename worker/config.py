"""Worker settings: one typed class, read from `UVAC_*` environment variables.

The shared names (data folders, Redis, torch threads, device) are the ones in
docs/architecture.md, so the API and the worker read the same environment. The job and
recovery timings are the worker's own; the API reads them too when it enqueues (timeouts and
time-to-live are properties of the job, fixed when it is created).

Tests build a `WorkerSettings(...)` and pass it in; they never touch the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

HOUR = 3600
DAY = 24 * HOUR


class SharedSettings(BaseSettings):
    """The settings the API and the workers share (docs/architecture.md): one volume layout,
    one Redis, one device choice. Each side subclasses it with its own settings."""

    model_config = SettingsConfigDict(env_prefix="UVAC_", extra="ignore", frozen=True)

    data_dir: Path = Path("./var")
    model_store_dir: Path | None = None
    datasets_dir: Path | None = None
    checkpoints_dir: Path | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_level: str = "INFO"
    # A training request whose n_clusters is a range runs a sweep: at most this many
    # candidates (K values x temperature ends x lambdas), each trained once per seed.
    max_sweep_candidates: int = Field(default=24, ge=1)

    @model_validator(mode="after")
    def _derive_folders(self) -> Self:
        # Folders default to sub-folders of data_dir, as the architecture page says.
        defaults = {
            "model_store_dir": self.data_dir / "models",
            "datasets_dir": self.data_dir / "datasets",
            "checkpoints_dir": self.data_dir / "checkpoints",
        }
        for name, default in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        return self

    @property
    def model_store_path(self) -> Path:
        assert self.model_store_dir is not None  # filled by _derive_folders
        return self.model_store_dir

    @property
    def datasets_path(self) -> Path:
        assert self.datasets_dir is not None
        return self.datasets_dir

    @property
    def checkpoints_path(self) -> Path:
        assert self.checkpoints_dir is not None
        return self.checkpoints_dir


class WorkerSettings(SharedSettings):
    """Everything a worker (and the code that enqueues its jobs) can be configured with."""

    torch_threads: int = Field(default=2, ge=1)

    # Job lifetimes. RQ's default timeout (180 s) would kill every real training run.
    training_job_timeout: int = Field(default=6 * HOUR, ge=1)
    evaluation_job_timeout: int = Field(default=1 * HOUR, ge=1)
    job_result_ttl: int = Field(default=7 * DAY, ge=1)
    job_failure_ttl: int = Field(default=7 * DAY, ge=1)

    # Retries, only for failures that may pass (Redis hiccups): how many, and the back-off
    # before each one in seconds (the last value repeats).
    job_retry_max: int = Field(default=3, ge=0)
    job_retry_intervals: Annotated[tuple[int, ...], NoDecode] = (10, 60, 300)

    # Liveness. The worker refreshes its running job's heartbeat every
    # `worker_monitor_interval` seconds; a job whose heartbeat is older than that plus
    # `worker_heartbeat_grace` belongs to a dead worker and is re-run from its checkpoint.
    worker_monitor_interval: int = Field(default=10, ge=1)
    worker_heartbeat_grace: int = Field(default=60, ge=1)
    recovery_interval_seconds: float = Field(default=15.0, gt=0)
    max_resumes: int = Field(default=3, ge=0)
    # A checkpoint folder whose job Redis no longer knows is deleted once nothing in it has
    # changed for this long (see worker.checkpoint_sweep).
    orphan_checkpoint_grace_seconds: int = Field(default=1 * DAY, ge=1)

    # Progress: written at least this often (and at every epoch end); the cancel flag is read
    # from Redis at most this often.
    progress_interval_seconds: float = Field(default=2.0, gt=0)
    cancel_poll_seconds: float = Field(default=0.5, gt=0)

    @field_validator("job_retry_intervals", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: object) -> object:
        # The environment gives "10,60,300"; Python callers pass a sequence.
        if isinstance(value, str):
            return tuple(int(item) for item in value.split(",") if item.strip())
        return value


@lru_cache(maxsize=1)
def get_worker_settings() -> WorkerSettings:
    """The process-wide settings, read once from the environment."""
    return WorkerSettings()
