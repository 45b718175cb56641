"""Clustering models, built by name.

``build_model(model_type, **hyperparameters)`` is how everything else makes a model (the
trainer from its config, `uvac.training.artifact` from a saved ``model.json``), so a new model type
only has to be added to `MODEL_TYPES`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from uvac.models.base import ClusterModel, LossParts, VariationalClusterModel
from uvac.models.cat_uvac import CatUVAC
from uvac.models.gmm_uvac import GmmUVAC
from uvac.models.kmeans import KMeansClusterer
from uvac.models.layers import BLOCK, KERNEL, PADDING, STRIDE, ConvRecurrentEncoder
from uvac.models.student import STUDENT_CONV_CHANNELS, STUDENT_GRU_HIDDEN, CatUVACStudent

__all__ = [
    "BLOCK",
    "DATA_ARGUMENTS",
    "KERNEL",
    "LOADABLE_MODEL_TYPES",
    "MODEL_TYPES",
    "PADDING",
    "STRIDE",
    "STUDENT_CONV_CHANNELS",
    "STUDENT_GRU_HIDDEN",
    "CatUVAC",
    "CatUVACStudent",
    "ClusterModel",
    "ConvRecurrentEncoder",
    "GmmUVAC",
    "KMeansClusterer",
    "LossParts",
    "VariationalClusterModel",
    "build_model",
    "model_options",
    "with_current_argument_names",
]

MODEL_TYPES: dict[str, type[ClusterModel]] = {
    CatUVAC.model_type: CatUVAC,
    GmmUVAC.model_type: GmmUVAC,
    KMeansClusterer.model_type: KMeansClusterer,
}

# What a stored model may be: the trainable types, and the distilled student, which only
# `uvac.edge.distillation` trains.
LOADABLE_MODEL_TYPES: dict[str, type[ClusterModel]] = {
    **MODEL_TYPES,
    CatUVACStudent.model_type: CatUVACStudent,
}

# Constructor arguments the trainer fills in from the config and the data (K, the features'
# bins and frames), never from a config's model_hyperparameters.
# Set by the service from the data, never by a request; "n_mels" is the earlier name of
# "n_features" (kept so that a request using it is refused too).
DATA_ARGUMENTS = frozenset({"n_clusters", "n_features", "n_mels", "n_frames"})

_ARGUMENT_KINDS = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def model_options(model_type: str) -> frozenset[str]:
    """The names ``model_hyperparameters`` may use for ``model_type``: its constructor's
    keyword arguments less `DATA_ARGUMENTS` (read from the signature, so they cannot drift)."""
    parameters = inspect.signature(MODEL_TYPES[model_type].__init__).parameters
    names = {name for name, parameter in parameters.items() if parameter.kind in _ARGUMENT_KINDS}
    return frozenset(names - {"self"} - DATA_ARGUMENTS)


# Constructor arguments that stored models (model.json) may hold under an earlier name.
_RENAMED_ARGUMENTS = {"n_mels": "n_features"}


def with_current_argument_names(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """A stored model's constructor arguments with every renamed one under its current name."""
    return {_RENAMED_ARGUMENTS.get(name, name): value for name, value in hyperparameters.items()}


def build_model(model_type: str, **hyperparameters: Any) -> ClusterModel:
    """A fresh model of ``model_type`` ("cat-uvac", "uvac-gmm", "kmeans" or the distilled
    "cat-uvac-h").

    Raises ValueError for an unknown type and TypeError for arguments the type does not take.
    """
    try:
        model_class = LOADABLE_MODEL_TYPES[model_type]
    except KeyError:
        known = ", ".join(sorted(LOADABLE_MODEL_TYPES))
        raise ValueError(f"unknown model type {model_type!r}; known: {known}") from None
    return model_class(**hyperparameters)
