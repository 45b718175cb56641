"""A trained model on disk: ``weights.safetensors`` + ``model.json``, rebuilt from those alone.

- ``weights.safetensors``: the model's state (keys ``model.*``) and the training set's
  normalisation statistics (keys ``norm_stats.*``, `NormStats.to_tensors`).
- ``model.json``: ``{"format": "uvac-model", "format_version": 1, "model_type",
  "hyperparameters", "n_clusters", "feature_config", "info"}``; ``info`` holds the training
  config, a history summary, the data set digest, the creation time and the code version.
  A model whose front-end is a pretrained encoder also has ``"encoder"``: the encoder's
  `uvac.audio.encoders.EncoderIdentity` (package, version, weight file and its SHA-256). Loading
  refuses the model (`EncoderMismatchError`) when the installed encoder is another one.
- ``novelty.safetensors`` + ``novelty.json`` (optional): the model's novelty score and its
  calibration (`uvac.novelty`): tensors ``score.*`` and ``calibration.*``, and ``{"format":
  "uvac-novelty", "format_version": 1, "score": {...}, "calibration": {...}}``. A model saved
  before the score existed has neither file and loads with ``novelty`` None; one file without
  the other is an `ArtifactError`.

No pickle: tensors go through safetensors, everything else through JSON, and
`load_trained_model` validates both, raising `uvac.errors.ArtifactError` with a message that
names the file and the problem.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from uvac.audio import FeatureConfig, NormStats, check_encoder_identity, load_encoder
from uvac.errors import ArtifactError
from uvac.models import (
    LOADABLE_MODEL_TYPES,
    ClusterModel,
    build_model,
    with_current_argument_names,
)
from uvac.novelty import Calibration, FittedNovelty, NoveltyScore

if TYPE_CHECKING:
    from uvac.training.config import TrainConfig
    from uvac.training.history import TrainingHistory

__all__ = [
    "MODEL_JSON",
    "NOVELTY_JSON",
    "NOVELTY_WEIGHTS",
    "WEIGHTS_FILE",
    "TrainedModel",
    "code_version",
    "load_novelty",
    "load_trained_model",
    "save_trained_model",
    "training_info",
]

logger = logging.getLogger(__name__)

MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.safetensors"
ARTIFACT_FORMAT = "uvac-model"
ARTIFACT_FORMAT_VERSION = 1
_MODEL_PREFIX = "model."
_NORM_PREFIX = "norm_stats."
NOVELTY_JSON = "novelty.json"
NOVELTY_WEIGHTS = "novelty.safetensors"
NOVELTY_FORMAT = "uvac-novelty"
NOVELTY_FORMAT_VERSION = 1
_SCORE_PREFIX = "score."
_CALIBRATION_PREFIX = "calibration."


@dataclass
class TrainedModel:
    """A model with the feature settings and statistics it was trained with."""

    model: ClusterModel
    feature_config: FeatureConfig
    norm_stats: NormStats
    info: dict[str, Any] = field(default_factory=dict)
    novelty: FittedNovelty | None = None  # None for models saved before the score existed

    @property
    def model_type(self) -> str:
        return self.model.model_type

    @property
    def n_clusters(self) -> int:
        return self.model.n_clusters


def code_version() -> str:
    """The installed uvac-service version ("unknown" when run from an uninstalled tree)."""
    try:
        return metadata.version("uvac-service")
    except metadata.PackageNotFoundError:
        return "unknown"


def training_info(
    *,
    model: ClusterModel,
    config: TrainConfig,
    history: TrainingHistory,
    dataset_digest: str | None = None,
    data_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``info`` document of a freshly trained model (JSON-able)."""
    return {
        "model_type": model.model_type,
        "hyperparameters": model.hyperparameters(),
        "n_clusters": model.n_clusters,
        "train_config": config.to_dict(),
        "training": history.summary(),
        "data": dict(data_summary or {}),
        "dataset_digest": dataset_digest,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
    }


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(descriptor)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_trained_model(directory: Path, trained: TrainedModel) -> None:
    """Write ``weights.safetensors`` and ``model.json`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = trained.model
    tensors: dict[str, Tensor] = {
        _MODEL_PREFIX + name: value.detach().cpu().contiguous()
        for name, value in model.state_dict().items()
    }
    tensors.update(trained.norm_stats.to_tensors())
    document = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_FORMAT_VERSION,
        "model_type": model.model_type,
        "hyperparameters": model.hyperparameters(),
        "n_clusters": model.n_clusters,
        "feature_config": trained.feature_config.to_dict(),
        "info": trained.info,
    }
    if trained.feature_config.uses_encoder:
        document["encoder"] = load_encoder(trained.feature_config.frontend).identity.to_dict()
    text = json.dumps(document, indent=2, sort_keys=True)  # fails before writing if not JSON-able
    _atomic_write(directory / WEIGHTS_FILE, lambda path: save_file(tensors, str(path)))
    _atomic_write(directory / MODEL_JSON, lambda path: path.write_text(text + "\n"))
    if trained.novelty is not None:
        _save_novelty(directory, trained.novelty)


def _save_novelty(directory: Path, novelty: FittedNovelty) -> None:
    tensors = {
        **novelty.score.to_tensors(_SCORE_PREFIX),
        **novelty.calibration.to_tensors(_CALIBRATION_PREFIX),
    }
    document = {
        "format": NOVELTY_FORMAT,
        "format_version": NOVELTY_FORMAT_VERSION,
        "score": novelty.score.to_dict(),
        "calibration": novelty.calibration.to_dict(),
    }
    text = json.dumps(document, indent=2, sort_keys=True)
    _atomic_write(directory / NOVELTY_WEIGHTS, lambda path: save_file(tensors, str(path)))
    _atomic_write(directory / NOVELTY_JSON, lambda path: path.write_text(text + "\n"))


def load_novelty(directory: Path) -> FittedNovelty | None:
    """The novelty score saved beside a model, None when the model has none."""
    document_path, weights_path = directory / NOVELTY_JSON, directory / NOVELTY_WEIGHTS
    if not document_path.exists() and not weights_path.exists():
        return None
    try:
        document = json.loads(document_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ArtifactError(f"{NOVELTY_JSON} is missing beside {NOVELTY_WEIGHTS}") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{NOVELTY_JSON} is not readable JSON: {error}") from error
    if not isinstance(document, dict) or document.get("format") != NOVELTY_FORMAT:
        raise ArtifactError(f"{NOVELTY_JSON}: not a {NOVELTY_FORMAT!r} document")
    if document.get("format_version") != NOVELTY_FORMAT_VERSION:
        raise ArtifactError(
            f"{NOVELTY_JSON}: format_version {document.get('format_version')!r} is not supported"
        )
    tensors = _read_weights(weights_path)
    try:
        score = NoveltyScore.from_stored(tensors, document["score"], prefix=_SCORE_PREFIX)
        calibration = Calibration.from_stored(
            tensors, document["calibration"], prefix=_CALIBRATION_PREFIX
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{NOVELTY_WEIGHTS} does not fit {NOVELTY_JSON}: {error}") from error
    return FittedNovelty(score=score, calibration=calibration)


def load_trained_model(directory: Path) -> TrainedModel:
    """Rebuild a `TrainedModel` from ``directory``; the model comes back on the CPU, in eval
    mode. Raises `ArtifactError` for missing, unreadable or inconsistent files."""
    directory = Path(directory)
    document = _read_model_json(directory / MODEL_JSON)
    tensors = _read_weights(directory / WEIGHTS_FILE)

    try:
        feature_config = FeatureConfig.from_dict(document["feature_config"])
    except (TypeError, ValueError) as error:
        raise ArtifactError(f"{MODEL_JSON}: invalid feature_config: {error}") from error
    try:
        norm_stats = NormStats.from_tensors(
            {k: v for k, v in tensors.items() if k.startswith(_NORM_PREFIX)}
        )
    except ValueError as error:
        raise ArtifactError(f"{WEIGHTS_FILE}: invalid normalisation statistics: {error}") from error
    if norm_stats.feature_bins != feature_config.feature_bins:
        raise ArtifactError(
            f"{WEIGHTS_FILE}: normalisation statistics have {norm_stats.feature_bins} feature "
            f"bins, the feature config {feature_config.feature_bins}"
        )

    if feature_config.uses_encoder:
        recorded = document.get("encoder")
        if not isinstance(recorded, dict) or recorded.get("name") != feature_config.frontend:
            raise ArtifactError(
                f"{MODEL_JSON}: the {feature_config.frontend} front-end needs an 'encoder' "
                "record naming it"
            )
        check_encoder_identity(recorded)

    model = _build(document)
    _check_model_matches_features(model, feature_config)
    unknown = sorted(
        k for k in tensors if not k.startswith(_MODEL_PREFIX) and not k.startswith(_NORM_PREFIX)
    )
    if unknown:
        raise ArtifactError(f"{WEIGHTS_FILE}: unexpected tensors {', '.join(unknown[:5])}")
    state = {k[len(_MODEL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        # Missing or unexpected keys, or a shape that does not match the hyperparameters.
        raise ArtifactError(f"{WEIGHTS_FILE} does not fit {MODEL_JSON}: {error}") from error
    model.eval()
    info = document.get("info", {})
    return TrainedModel(
        model=model,
        feature_config=feature_config,
        norm_stats=norm_stats,
        info=dict(info),
        novelty=load_novelty(directory),
    )


def _read_model_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ArtifactError(f"{path.name} is missing in {path.parent}") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{path.name} is not readable JSON: {error}") from error
    if not isinstance(document, dict):
        raise ArtifactError(f"{path.name} must hold a JSON object")
    if document.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{path.name}: format {document.get('format')!r} is not {ARTIFACT_FORMAT!r}"
        )
    if document.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise ArtifactError(
            f"{path.name}: format_version {document.get('format_version')!r} is not supported "
            f"(this code reads {ARTIFACT_FORMAT_VERSION})"
        )
    expected_types = {
        "model_type": str,
        "hyperparameters": dict,
        "n_clusters": int,
        "feature_config": dict,
    }
    for key, expected in expected_types.items():
        if not isinstance(document.get(key), expected):
            raise ArtifactError(f"{path.name}: {key!r} missing or not a {expected.__name__}")
    if not isinstance(document.get("info", {}), dict):
        raise ArtifactError(f"{path.name}: 'info' must be an object")
    return document


def _read_weights(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise ArtifactError(f"{path.name} is missing in {path.parent}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error type for corrupt files
        raise ArtifactError(f"{path.name} is not a readable safetensors file: {error}") from error


def _build(document: Mapping[str, Any]) -> ClusterModel:
    model_type = document["model_type"]
    if model_type not in LOADABLE_MODEL_TYPES:
        known = ", ".join(sorted(LOADABLE_MODEL_TYPES))
        raise ArtifactError(f"{MODEL_JSON}: unknown model_type {model_type!r} (known: {known})")
    hyperparameters = with_current_argument_names(document["hyperparameters"])
    try:
        model = build_model(model_type, **hyperparameters)
    except (TypeError, ValueError) as error:
        raise ArtifactError(f"{MODEL_JSON}: invalid hyperparameters: {error}") from error
    if model.n_clusters != document["n_clusters"]:
        raise ArtifactError(
            f"{MODEL_JSON}: n_clusters {document['n_clusters']} disagrees with the "
            f"hyperparameters ({model.n_clusters})"
        )
    return model


def _check_model_matches_features(model: ClusterModel, feature_config: FeatureConfig) -> None:
    # The models' n_features is the feature bins per frame: mel bins, cepstral coefficients
    # or embedding values.
    n_bins = getattr(model, "n_features", feature_config.feature_bins)
    if n_bins != feature_config.feature_bins:
        raise ArtifactError(
            f"{MODEL_JSON}: the model takes {n_bins} feature bins, the feature config gives "
            f"{feature_config.feature_bins}"
        )
    n_frames = getattr(model, "n_frames", None)
    if n_frames is not None and n_frames != feature_config.frames_per_window:
        raise ArtifactError(
            f"{MODEL_JSON}: the model takes {n_frames}-frame windows, the feature config gives "
            f"{feature_config.frames_per_window}"
        )
