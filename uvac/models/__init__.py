"""Clustering models, built by name.

``build_model(model_type, **hyperparameters)`` is how everything else makes a model (the
trainer from its config, `uvac.artifact` from a saved ``model.json``), so a new model type only
has to be added to `MODEL_TYPES`.
"""

from __future__ import annotations

from typing import Any

from uvac.models.base import ClusterModel, LossParts, VariationalClusterModel
from uvac.models.cat_uvac import CatUVAC
from uvac.models.gmm_uvac import GmmUVAC
from uvac.models.kmeans import KMeansClusterer

__all__ = [
    "MODEL_TYPES",
    "CatUVAC",
    "ClusterModel",
    "GmmUVAC",
    "KMeansClusterer",
    "LossParts",
    "VariationalClusterModel",
    "build_model",
]

MODEL_TYPES: dict[str, type[ClusterModel]] = {
    CatUVAC.model_type: CatUVAC,
    GmmUVAC.model_type: GmmUVAC,
    KMeansClusterer.model_type: KMeansClusterer,
}


def build_model(model_type: str, **hyperparameters: Any) -> ClusterModel:
    """A fresh model of ``model_type`` ("cat-uvac", "uvac-gmm" or "kmeans").

    Raises ValueError for an unknown type and TypeError for arguments the type does not take.
    """
    try:
        model_class = MODEL_TYPES[model_type]
    except KeyError:
        known = ", ".join(sorted(MODEL_TYPES))
        raise ValueError(f"unknown model type {model_type!r}; known: {known}") from None
    return model_class(**hyperparameters)
