"""The service's settings: one typed class, read from `UVAC_*` environment variables.

The API, the workers, `uvac-serve` and the enqueue helpers all take the same `Settings`
object: the data folders, Redis and device are shared; the job timings are read by the worker
and by the API when it enqueues (timeouts and time-to-live are fixed when a job is created);
the upload and serving limits are the API's. Only entry points call `get_settings()`; the
code behind them takes the object as an argument. Tests build a `Settings(...)` and pass it
in; they never touch the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from object_storage import S3Options

HOUR = 3600
DAY = 24 * HOUR
MEGABYTE = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service can be configured with (docs/architecture.md lists them)."""

    model_config = SettingsConfigDict(env_prefix="UVAC_", extra="ignore", frozen=True)

    data_dir: Path = Path("./var")
    model_store_dir: Path | None = None
    datasets_dir: Path | None = None
    checkpoints_dir: Path | None = None
    # Object storage (README, "More than one host"): a URL per store, or one base URL with
    # models/, datasets/ and checkpoints/ beneath it. Unset: the folders above (file://).
    # s3:// URLs are reached through the s3_* settings; empty ones fall back to the usual AWS
    # variables and files. Each host keeps what it downloads in cache_dir, at most
    # cache_max_bytes.
    storage_url: str | None = None
    model_store_url: str | None = None
    datasets_url: str | None = None
    checkpoints_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    cache_dir: Path | None = None
    cache_max_bytes: int = Field(default=10 * 1024 * MEGABYTE, ge=0)
    # How long a load of an exact version (name:vN) trusts this process's last read of it
    # from S3 before reading it again: a version deleted on another host can still be loaded
    # here that long (README, "More than one host").
    s3_revalidate_seconds: float = Field(default=5.0, ge=0)
    redis_url: str = "redis://127.0.0.1:6379/0"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_level: str = "INFO"
    # A training request whose n_clusters is a range runs a sweep: at most this many
    # candidates (K values x temperature ends x lambdas), each trained once per seed.
    max_sweep_candidates: int = Field(default=24, ge=1)
    # `uvac-serve` and `uvac-api` listen here.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # The model reference the API serves.
    serve_model: str = "scenes@production"

    # Intra-op threads per workload (uvac.device.choose_thread_policy): each of the
    # `host_processes` torch processes of the service on this host (the API and the
    # workers; uvac-serve sets it for its children) gets cores // host_processes; an
    # encoder pass, a convolutional network and the API's inference thread use that share,
    # the perceptrons on embeddings train with the count measured fastest (1). Overrides:
    # `encoder_threads`, `training_threads` (both kinds of network), and `torch_threads`
    # for every workload at once. ONNX Runtime (the speech encoder) takes the encoder's.
    host_processes: int = Field(default=1, ge=1)
    torch_threads: int | None = Field(default=None, ge=1)
    encoder_threads: int | None = Field(default=None, ge=1)
    training_threads: int | None = Field(default=None, ge=1)

    # The store of encoder embeddings beside the data sets (<datasets_dir>/.embeddings,
    # uvac.audio.embedding_cache): least recently used entries go beyond this many bytes.
    embedding_cache_max_bytes: int = Field(default=2 * 1024 * MEGABYTE, ge=1)

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

    # The sound encoder under bf16 autocast where the CPU has native bf16 ("auto"), always
    # ("bf16") or never ("fp32"); see uvac.audio.encoders.configure_encoder_precision.
    encoder_precision: Literal["auto", "fp32", "bf16"] = "auto"

    # Upload and request limits. The longest clip accepted (max_audio_seconds) must fit in an
    # upload as the plainest recorders write it: 600 s of 16-bit stereo WAV at 48 kHz is
    # 110 MiB (tests/app/test_upload_limits.py holds the two defaults together).
    max_upload_bytes: int = Field(default=128 * MEGABYTE, ge=1)
    max_dataset_upload_bytes: int = Field(default=1024 * MEGABYTE, ge=1)
    max_json_body_bytes: int = Field(default=1 * MEGABYTE, ge=1)
    # Data set uploads read and unpacked at once; each one's memory is bounded, so this
    # bounds them all (429 with Retry-After beyond).
    max_concurrent_dataset_uploads: int = Field(default=2, ge=1)
    # Job submissions (train, evaluate, distill, prepare) one API key, or one client address
    # when keys are off, may make in a clock minute (429 with Retry-After beyond; 0: no limit).
    job_submissions_per_minute: int = Field(default=30, ge=0)
    # A floor on how fast an upload's body must arrive once the grace period is over
    # (408 below it), so a slow client cannot hold a request or an upload slot for ever.
    min_upload_bytes_per_second: float = Field(default=16 * 1024, gt=0)
    upload_grace_seconds: float = Field(default=10.0, ge=0)
    max_audio_seconds: float = Field(default=600.0, gt=0)
    # What one recording may decode to, in samples (rate x seconds x channels) at its own
    # rate, checked on its header before decoding: a compressed file of silence at a high
    # rate is small on the wire and huge decoded. The default is 600 s of 48 kHz stereo.
    max_audio_samples: int = Field(default=600 * 48_000 * 2, ge=1)
    # Recordings decoded at once in the API, whichever route they came by (cluster, batch,
    # data set ingestion); others wait for a slot.
    max_concurrent_decodes: int = Field(default=2, ge=1)
    max_batch_files: int = Field(default=16, ge=1)
    # All clips of one /v1/cluster/batch request together (413 above, counted while decoding).
    max_batch_audio_seconds: float = Field(default=600.0, gt=0)

    # Micro-batching of inference.
    inference_max_batch: int = Field(default=64, ge=1)
    inference_max_wait_ms: float = Field(default=2.0, ge=0)
    # Inference threads running forward passes side by side, each with the API's serving
    # threads divided among them (app.batching). Unset: one lane per serving thread.
    inference_lanes: int | None = Field(default=None, ge=1)
    # Clips longer than this are clustered in steps of `inference_windows_per_step` windows,
    # with waiting short clips served between steps (app.batching).
    inference_long_clip_seconds: float = Field(default=30.0, gt=0)
    inference_windows_per_step: int = Field(default=1, ge=1)

    # Live streams (WS /v1/stream, app/streaming): how many at once, how long one lasts (its
    # audio or its open time), how long it may stay silent, and how far ahead of real time
    # its audio may run (max_speed times the open time plus burst_seconds).
    max_streams: int = Field(default=32, ge=1)
    stream_max_seconds: float = Field(default=3600.0, gt=0)
    stream_idle_seconds: float = Field(default=15.0, gt=0)
    stream_max_speed: float = Field(default=2.0, ge=1)
    stream_burst_seconds: float = Field(default=10.0, gt=0)
    # A window is started this long before its last sample arrives: the encoder works on what
    # was heard, leaving less to do once the window is whole (app.streaming; 0: never).
    stream_early_start_seconds: float = Field(default=0.5, ge=0)

    # Model serving.
    model_poll_seconds: float = Field(default=2.0, gt=0)
    model_cache_size: int = Field(default=4, ge=1)

    # Jobs. A training request whose estimated memory (data set windows, model, one step;
    # app.training_limits) is over this is refused when it is submitted.
    max_training_memory_bytes: int = Field(default=8 * 1024 * MEGABYTE, ge=1)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    redis_timeout_seconds: float = Field(default=2.0, gt=0)
    redis_retry_after_seconds: int = Field(default=5, ge=1)

    # Access. Empty `api_keys` switches authentication off; empty `cors_origins` allows no
    # cross-origin browser calls.
    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # How long a page link (app/page_sessions.py: the report and cluster browser in a
    # browser, with keys on) stays valid.
    page_link_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    @field_validator("job_retry_intervals", mode="before")
    @classmethod
    def _split_integers(cls, value: object) -> object:
        # The environment gives "10,60,300"; Python callers pass a sequence.
        if isinstance(value, str):
            return tuple(int(item) for item in value.split(",") if item.strip())
        return value

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_strings(cls, value: object) -> object:
        # The environment gives "a,b,c"; Python callers may pass a list or tuple.
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

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

    def _store_url(self, explicit: str | None, folder: str, default: Path) -> str:
        if explicit:
            return explicit
        if self.storage_url:
            return f"{self.storage_url.rstrip('/')}/{folder}"
        return default.absolute().as_uri()

    @property
    def model_store_location(self) -> str:
        """The model store's URL (``file://`` of `model_store_path` unless set)."""
        return self._store_url(self.model_store_url, "models", self.model_store_path)

    @property
    def datasets_location(self) -> str:
        return self._store_url(self.datasets_url, "datasets", self.datasets_path)

    @property
    def checkpoints_location(self) -> str:
        return self._store_url(self.checkpoints_url, "checkpoints", self.checkpoints_path)

    @property
    def cache_path(self) -> Path:
        """This host's cache of downloaded objects."""
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"

    def s3_options(self) -> S3Options:
        secret = self.s3_secret_access_key
        return S3Options(
            endpoint_url=self.s3_endpoint_url or None,
            region=self.s3_region or None,
            access_key_id=self.s3_access_key_id or None,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )

    def thread_overrides(self) -> dict[str, int | None]:
        """The fixed thread counts per workload of `uvac.device.choose_thread_policy`."""
        training = self.training_threads or self.torch_threads
        return {
            "encoder": self.encoder_threads or self.torch_threads,
            "network": training,
            "small_network": training,
            "serving": self.torch_threads,
        }

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
