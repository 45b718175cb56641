"""Request and response bodies, split by direction (`...Request` in, `...Public` out).

Lists are `{data, count}` where `count` is the total, not the page length.
"""

from app.schemas.cluster import (
    BatchItemResult,
    BatchResult,
    ClusterResult,
    ModelRefPublic,
    WindowPublic,
)
from app.schemas.datasets import DatasetFile, DatasetList, DatasetPublic, RejectedFile
from app.schemas.health import CheckResult, Liveness, ModelCheck, Readiness, ServiceIndex
from app.schemas.jobs import (
    EvaluateRequest,
    JobError,
    JobList,
    JobProgress,
    JobPublic,
    JobStatusFilter,
    TrainRequest,
)
from app.schemas.models import (
    AliasPublic,
    AliasRollback,
    AliasToVersion,
    AliasUpdate,
    ModelList,
    ModelSummary,
    ModelVersionList,
    ModelVersionPublic,
)
from app.schemas.problem import ProblemPublic, ValidationErrorItem

__all__ = [
    "AliasPublic",
    "AliasRollback",
    "AliasToVersion",
    "AliasUpdate",
    "BatchItemResult",
    "BatchResult",
    "CheckResult",
    "ClusterResult",
    "DatasetFile",
    "DatasetList",
    "DatasetPublic",
    "EvaluateRequest",
    "JobError",
    "JobList",
    "JobProgress",
    "JobPublic",
    "JobStatusFilter",
    "Liveness",
    "ModelCheck",
    "ModelList",
    "ModelRefPublic",
    "ModelSummary",
    "ModelVersionList",
    "ModelVersionPublic",
    "ProblemPublic",
    "Readiness",
    "RejectedFile",
    "ServiceIndex",
    "TrainRequest",
    "ValidationErrorItem",
    "WindowPublic",
]
