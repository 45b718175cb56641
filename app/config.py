"""Service settings: one typed class, read from `UVAC_*` environment variables.

The names the API shares with the workers (data folders, Redis, device) come from
`worker.config.SharedSettings`, so both read the same environment the same way. Tests
build a `Settings(...)` and pass it to `create_app`; they never touch the environment.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from worker.config import SharedSettings

MEGABYTE = 1024 * 1024


class Settings(SharedSettings):
    """Everything the API can be configured with (environment prefix `UVAC_`)."""

    serve_model: str = "scenes@production"
    # Both cores of the machine the service was sized for: with a pretrained encoder, the
    # forward pass is the request's cost, and the one inference thread (app.batching) runs it
    # with this many intra-op threads while uploads decode on others.
    torch_threads: int = Field(default=2, ge=1)
    # The sound encoder under bf16 autocast where the CPU has native bf16 ("auto"), always
    # ("bf16") or never ("fp32"); see uvac.encoders.configure_encoder_precision.
    encoder_precision: Literal["auto", "fp32", "bf16"] = "auto"

    # Upload and request limits.
    max_upload_bytes: int = Field(default=20 * MEGABYTE, ge=1)
    max_dataset_upload_bytes: int = Field(default=1024 * MEGABYTE, ge=1)
    max_json_body_bytes: int = Field(default=1 * MEGABYTE, ge=1)
    # Data set uploads read and unpacked at once; each one's memory is bounded, so this
    # bounds them all (429 with Retry-After beyond).
    max_concurrent_dataset_uploads: int = Field(default=2, ge=1)
    max_audio_seconds: float = Field(default=600.0, gt=0)
    max_batch_files: int = Field(default=16, ge=1)
    # All clips of one /v1/cluster/batch request together (413 above, counted while decoding).
    max_batch_audio_seconds: float = Field(default=600.0, gt=0)

    # Micro-batching of inference.
    inference_max_batch: int = Field(default=64, ge=1)
    inference_max_wait_ms: float = Field(default=2.0, ge=0)

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

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_comma_separated(cls, value: object) -> object:
        # The environment gives "a,b,c"; Python callers may pass a list or tuple.
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
