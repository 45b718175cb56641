"""Training and evaluation jobs (`/v1/train`, `/v1/evaluate`, `/v1/jobs`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from app.messages import plain_message
from app.schemas.closed import ClosedModel, LaxEnum
from app.schemas.features import FeatureOverrides
from app.schemas.hyperparameters import check_model_hyperparameters, describe_options
from model_store.refs import ALIAS_PATTERN, NAME_PATTERN
from uvac.audio import DEFAULT_HELD_OUT_SHARE, FeatureConfig
from uvac.training import DEFAULT_PRESET, PRESETS, Progress, TrainConfig, build_configs

# The model store's own rules (model_store/refs.py), so the schema accepts exactly the
# references the store does: `x:v00` or `x@1st` would pass a looser pattern and then be
# refused by the store.
MODEL_NAME_PATTERN = rf"^{NAME_PATTERN}$"
MODEL_ALIAS_PATTERN = rf"^{ALIAS_PATTERN}$"
MODEL_REF_PATTERN = rf"^{NAME_PATTERN}(:v[1-9][0-9]{{0,8}}|@{ALIAS_PATTERN})?$"
DATASET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class JobStatusFilter(StrEnum):
    """The job statuses (mirrors worker.queues.JobStatus)."""

    queued = "queued"
    started = "started"
    canceling = "canceling"
    finished = "finished"
    failed = "failed"
    canceled = "canceled"
    deferred = "deferred"
    scheduled = "scheduled"
    stopped = "stopped"


# The names of uvac.training.presets.PRESETS, as an enum in the schema (built from the engine's own
# table, so a new preset appears in the API without a second list to keep in step).
PresetName = StrEnum("PresetName", {name: name for name in PRESETS})  # type: ignore[misc]


class ClusterRange(ClosedModel):
    """A range of K to sweep (both ends included): the job trains every K and chooses one."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"min": 3, "max": 15}]}
    )

    min: int = Field(ge=2, le=256, description="The smallest K tried.")
    max: int = Field(ge=2, le=256, description="The largest K tried.")

    @model_validator(mode="after")
    def _not_reversed(self) -> ClusterRange:
        if self.max < self.min:
            raise ValueError(
                f"the K range {self.min}..{self.max} is empty: max must be at least min"
            )
        return self


class SweepOptions(ClosedModel):
    """What else a sweep varies, and how it measures stability (`uvac/selection.py`)."""

    model_config = ConfigDict(extra="forbid")

    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] | None = Field(
        default=None,
        min_length=2,
        max_length=10,
        description="Seeds each candidate is trained with (default 0, 1, 2); stability is "
        "the mean adjusted Rand index between their assignments.",
    )
    temperature_end: list[Annotated[float, Field(gt=0, le=100)]] | None = Field(
        default=None, min_length=1, max_length=8, description="End temperatures to try."
    )
    lambda_kl: list[Annotated[float, Field(ge=0, le=1000)]] | None = Field(
        default=None, min_length=1, max_length=8, description="KL weights to try."
    )
    stability_threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Least stability of a candidate that can be chosen (default 0.8).",
    )
    subsample: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Share of the clips each seed trains on while stability is measured "
        "(default 0.8); the chosen candidate is then trained on all of them.",
    )

    @field_validator("seeds")
    @classmethod
    def _different_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("the seeds must differ")
        return value


class TrainRequest(ClosedModel):
    """A training job. Every optional value left out comes from the `preset` (its feature
    settings and training recipe), then from the engine's defaults."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "dataset_id": "ds_0123456789ab",
                    "model_type": "cat-uvac",
                    "n_clusters": 8,
                    "model_name": "scenes",
                    "epochs": 30,
                    "lambda_kl": 1.0,
                    "temperature_start": 1.0,
                    "temperature_end": 0.5,
                    "seed": 0,
                },
                {
                    "dataset_id": "ds_0123456789ab",
                    "n_clusters": 10,
                    "preset": "paper",
                    "features": {"n_mels": 64, "window_seconds": 1.0, "f_max": None},
                    "learning_rate": 0.0005,
                    "final_learning_rate": 0.00005,
                    "batch_size": 32,
                    "model_hyperparameters": {"conv_channels": [8, 16, 16, 32]},
                },
            ]
        },
    )

    dataset_id: str = Field(pattern=DATASET_ID_PATTERN)
    model_type: Literal["cat-uvac", "uvac-gmm", "kmeans"] = "cat-uvac"
    n_clusters: Annotated[int, Field(ge=2, le=256)] | ClusterRange = Field(
        description='K, the number of clusters; or a range `{"min": 3, "max": 15}`, '
        "which trains every K of the range with several seeds, scores each without labels and "
        "publishes the one the documented rule chooses (`sweep` tunes it). A range with more "
        "candidates than `UVAC_MAX_SWEEP_CANDIDATES` is a 422."
    )
    sweep: SweepOptions | None = Field(
        default=None, description="Sweep options; only with `n_clusters` as a range."
    )
    reference_dataset_id: str | None = Field(
        default=None,
        pattern=DATASET_ID_PATTERN,
        description="Recordings on which the new model's clusters are matched to the earlier "
        "version's (default: the training set).",
    )
    model_name: str = Field(default="scenes", pattern=MODEL_NAME_PATTERN)
    held_out_share: float | None = Field(
        default=None,
        ge=0,
        lt=1,
        description="Share of the data set's recordings held out of training (default "
        f"{DEFAULT_HELD_OUT_SHARE:g}): whole recordings, stratified by label when every "
        "recording has one, chosen by a fixed rule (`uvac/audio/holdout.py`). They are never "
        "used to fit the model, its normalisation or its start; the version records them and "
        "its figures on them, and `POST /v1/evaluate` on this data set uses them by default. "
        "0 trains on every recording (and leaves no held-out figures).",
    )
    preset: Annotated[PresetName, LaxEnum] = Field(
        default=PresetName(DEFAULT_PRESET),
        description="The recipe the other settings start from; explicit values win over it. "
        + " ".join(f"`{name}`: {preset.description}." for name, preset in PRESETS.items()),
    )
    features: FeatureOverrides | None = Field(
        default=None,
        description="Feature settings to change from the preset's. Unknown keys are a 422; "
        "so are combinations the engine refuses (e.g. `win_length` over `n_fft`).",
    )
    epochs: int | None = Field(default=None, ge=1, le=10_000)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    learning_rate: float | None = Field(
        default=None, gt=0, le=1, description="Adam's initial learning rate."
    )
    final_learning_rate: float | None = Field(
        default=None, gt=0, le=1, description="The learning rate the schedule decays to."
    )
    lambda_kl: float | None = Field(
        default=None, ge=0, le=1000, description="Weight of the KL terms."
    )
    temperature_start: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Gumbel-Softmax temperature at the start of training. Must be at least "
        "`temperature_end` (the schedule anneals downwards); otherwise a 422. A schema cannot "
        "compare two fields, so this rule is checked on the request.",
    )
    temperature_end: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Temperature at the end of training; at most `temperature_start` (the "
        "preset's, when `temperature_start` is left out), else a 422.",
    )
    # What every random generator the training uses accepts (NumPy's and scikit-learn's
    # seeds are 32-bit).
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    model_hyperparameters: dict[str, Any] | None = Field(
        default=None,
        description="Options for the model's constructor, merged key by key over the "
        'preset\'s, e.g. `{"conv_channels": [8, 16, 16, 32]}`. `n_clusters`, `n_features` and '
        "`n_frames` come from the other settings and may not be set here. The options each "
        f"`model_type` takes: {describe_options()}. Any other key, or a value of the wrong "
        "JSON type, is a 422 that names the key and lists the allowed ones.",
    )

    @field_validator("n_clusters", mode="wrap")
    @classmethod
    def _one_error_for_n_clusters(cls, value: Any, handler: Any) -> int | ClusterRange:
        """Either form, with one error at ``n_clusters`` (not one per member of the union)."""
        if isinstance(value, dict | ClusterRange):
            try:
                return ClusterRange.model_validate(value)
            except ValidationError as error:
                # One clause per problem, without pydantic's "Value error, " prefixes.
                reasons = "; ".join(
                    ".".join(str(part) for part in item["loc"]) + ": " + plain_message(item["msg"])
                    if item["loc"]
                    else plain_message(item["msg"])
                    for item in error.errors()
                )
                raise ValueError(reasons) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError('n_clusters is a number K or a range {"min": K1, "max": K2}')
        if not 2 <= value <= 256:
            raise ValueError(f"n_clusters must lie in 2..256, got {value}")
        return value

    @field_validator("model_hyperparameters")
    @classmethod
    def _options_the_model_takes(
        cls, value: dict[str, Any] | None, info: ValidationInfo
    ) -> dict[str, Any] | None:
        """Check the keys against the chosen model's constructor now: the worker would meet
        a typo only when it builds the model, after loading the data set."""
        model_type = info.data.get("model_type")  # absent when it was itself invalid
        if value is not None and model_type is not None:
            check_model_hyperparameters(model_type, value)
        return value

    @model_validator(mode="after")
    def _engine_accepts_the_configuration(self) -> TrainRequest:
        """Apply the preset as the worker will, so a configuration the engine refuses is a
        422 now rather than a failed job later."""
        if self.sweep is not None and not isinstance(self.n_clusters, ClusterRange):
            raise ValueError('sweep options need n_clusters as a range {"min": .., "max": ..}')
        try:
            _, config = self.configs()
        except (TypeError, ValueError) as error:
            raise ValueError(str(error)) from error
        ends = [config.temperature_end, *(self.sweep.temperature_end or [] if self.sweep else [])]
        for end in ends:
            if end > config.temperature_start:
                raise ValueError(
                    f"temperature_end ({end:g}) must not exceed temperature_start "
                    f"({config.temperature_start:g}): the schedule anneals downwards"
                )
        return self

    def configs(self) -> tuple[FeatureConfig, TrainConfig]:
        """The feature and training configurations the worker will run (preset applied)."""
        return build_configs(
            str(self.preset),
            feature_overrides=self.features.overrides() if self.features else None,
            train_overrides=self._train_overrides(),
        )

    def _train_overrides(self) -> dict[str, Any]:
        overrides = self.model_dump(
            exclude_none=True,
            exclude={"dataset_id", "model_name", "preset", "features", "sweep",
                     "reference_dataset_id", "held_out_share"},
        )  # fmt: skip
        if isinstance(self.n_clusters, ClusterRange):  # the largest model bounds the memory
            overrides["n_clusters"] = self.n_clusters.max
        return overrides

    def job_params(self) -> dict[str, Any]:
        """The worker's params dict: optional values that were not given are left out (the
        preset too, when it was not named: the worker applies the same default)."""
        params = self.model_dump(exclude_none=True, exclude={"preset", "features"})
        if "preset" in self.model_fields_set:
            params["preset"] = str(self.preset)
        if self.features is not None:
            params["features"] = self.features.overrides()
        return params


class EvaluateRequest(ClosedModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"model_ref": "scenes@production", "dataset_id": "ds_0123456789ab"}]
        },
    )

    model_ref: str = Field(pattern=MODEL_REF_PATTERN, description="`name`, `name:vN`, `name@alias`")
    dataset_id: str = Field(
        pattern=DATASET_ID_PATTERN,
        description="The data set to evaluate on: the model's own (the one it was trained on) "
        "or another.",
    )
    split: Literal["held-out", "all"] | None = Field(
        default=None,
        description="Which of the data set's recordings: `held-out` (those the model's "
        "training held out; only on the model's own data set) or `all`. Default: `held-out` "
        "on the model's own data set when it held recordings out, else `all`. The report says "
        "in words which recordings it used, with a warning when any of them trained the model.",
    )
    unknown_dataset_id: str | None = Field(
        default=None,
        pattern=DATASET_ID_PATTERN,
        description="A data set known to be foreign to the model: the report's `novelty` "
        "section then gives AUROC, FPR at 95 % TPR and the share of each set flagged unknown.",
        examples=["ds_ba9876543210"],
    )

    def job_params(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


# The engine's progress record is the schema: the training loop, the job's meta and this
# API spell its fields once (uvac.training.progress). Unknown keys in an older job's meta are
# ignored.
JobProgress = Progress


class JobError(BaseModel):
    type: str
    message: str


class JobPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "6a1f0e4c-51b2-4d7e-9c1a-0f2e3d4c5b6a",
                    "kind": "train",
                    "status": "started",
                    "params": {
                        "dataset_id": "ds_0123456789ab",
                        "model_type": "cat-uvac",
                        "n_clusters": 8,
                    },
                    "progress": {"epoch": 3, "epochs": 30, "loss": 41.2, "eta_seconds": 95.0},
                    "result": None,
                    "error": None,
                    "enqueued_at": "2025-01-01T10:00:00+00:00",
                    "started_at": "2025-01-01T10:00:01+00:00",
                    "ended_at": None,
                }
            ]
        }
    )

    id: str
    kind: str = Field(description="`train`, `evaluate`, `distill` or `prepare`.")
    status: str
    params: dict[str, Any] = Field(default_factory=dict)
    progress: JobProgress | None = None
    result: dict[str, Any] | None = Field(
        default=None, description="For a finished job: the published model version or report."
    )
    error: JobError | None = None
    enqueued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None


class JobList(BaseModel):
    data: list[JobPublic]
    count: int = Field(description="Total number of matching jobs (not just this page).")
