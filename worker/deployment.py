"""One Redis database, one deployment.

RQ's queue names (``training``, ``evaluation``) carry no deployment, so two deployments on one
Redis database would take each other's jobs: a worker of one would train on a data set id the
other's volumes hold. Each deployment therefore has an id, kept in its model store
(`DEPLOYMENT_FILE`, made on first use; the API and every worker share the store), and names
its RQ workers ``uvac.<deployment id>.<random>``. A worker refuses to start, and the API
refuses to enqueue (503 `deployment-conflict`), while workers of another deployment are
registered on the same database. The remedy is one Redis database per deployment
(``UVAC_REDIS_URL=redis://host:6379/N``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path

from redis import Redis
from rq import Worker

from service_config import Settings
from worker.errors import WorkerError

__all__ = [
    "DEPLOYMENT_FILE",
    "DeploymentConflict",
    "check_no_other_deployment",
    "deployment_id",
    "deployment_of",
    "foreign_workers",
    "worker_name",
]

DEPLOYMENT_FILE = ".deployment-id"
_WORKER_PREFIX = "uvac."


class DeploymentConflict(WorkerError):
    """Workers of another deployment take jobs from this Redis database."""

    status = 503
    slug = "deployment-conflict"
    title = "Another deployment uses this Redis database"


def deployment_of(settings: Settings) -> str:
    """The deployment's id: with the models in object storage, a digest of their location
    (every host of the deployment shares it, while their local folders differ); otherwise the
    id kept in the local model store (`deployment_id`)."""
    location = settings.model_store_location
    if not location.startswith("file://"):
        return hashlib.sha256(location.encode("utf-8")).hexdigest()[:12]
    return deployment_id(settings.model_store_path)


def deployment_id(store_root: Path) -> str:
    """The deployment's id, read from the model store, or made there once (the first
    process to write it wins; the others read what it wrote)."""
    path = store_root / DEPLOYMENT_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    store_root.mkdir(parents=True, exist_ok=True)
    candidate = store_root / f"{DEPLOYMENT_FILE}.{uuid.uuid4().hex}.tmp"
    candidate.write_text(uuid.uuid4().hex[:12] + "\n", encoding="utf-8")
    try:
        os.link(candidate, path)  # fails if another process got there first
    except FileExistsError:
        pass
    finally:
        candidate.unlink()
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value.isalnum():
        raise DeploymentConflict(f"{path} does not hold a deployment id")
    return value


def worker_name(deployment: str, name: str | None = None) -> str:
    """The RQ worker name that says which deployment a worker serves."""
    return f"{_WORKER_PREFIX}{deployment}.{name or uuid.uuid4().hex}"


def foreign_workers(redis: Redis, deployment: str) -> list[str]:
    """Names of the live workers on this database that serve another deployment (workers
    not named by uvac, started by hand with plain RQ, are not counted)."""
    mine = f"{_WORKER_PREFIX}{deployment}."
    names = [worker.name for worker in Worker.all(connection=redis)]
    return sorted(n for n in names if n.startswith(_WORKER_PREFIX) and not n.startswith(mine))


def check_no_other_deployment(redis: Redis, deployment: str) -> None:
    """Raise `DeploymentConflict` while another deployment's workers use this database."""
    others = foreign_workers(redis, deployment)
    if others:
        database = redis.connection_pool.connection_kwargs.get("db", 0)
        raise DeploymentConflict(
            f"Redis database {database} is in use by the workers of another deployment "
            f"({', '.join(others[:3])}); give each deployment its own Redis database "
            "(UVAC_REDIS_URL=redis://host:6379/N)."
        )
