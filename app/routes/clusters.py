"""A version's clusters: list them with names, sizes and identity; name one, clear a name."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path

from app.deps import ModelStoreDep
from app.openapi_docs import problem_responses
from app.routes.models import ModelNamePath, VersionPath
from app.schemas import ModelRefPublic
from app.schemas.clusters import ClusterList, ClusterNameUpdate, ClusterPublic
from model_store import AnyModelStore, ModelVersion
from model_store.cluster_names import cluster_names, set_cluster_name
from uvac.selection import NAME_CARRY_SHARE

router = APIRouter(tags=["models"])

ClusterPath = Annotated[int, Path(ge=0, le=9_999, description="The cluster number.")]


def _n_clusters(version: ModelVersion) -> int:
    recorded = version.metadata.get("n_clusters")
    if isinstance(recorded, int):
        return recorded
    document = json.loads((version.path / "model.json").read_text(encoding="utf-8"))
    return int(document["n_clusters"])


def _cluster_list(store: AnyModelStore, name: str, number: int) -> ClusterList:
    version = store.get(f"{name}:v{number}")
    k = _n_clusters(version)
    names = cluster_names(store, version, n_clusters=k)
    recorded = {
        entry.get("number"): entry
        for entry in version.metadata.get("clusters") or []
        if isinstance(entry, dict)
    }
    identity: dict[str, Any] = version.metadata.get("cluster_identity") or {}
    matched = {
        entry.get("number"): entry
        for entry in identity.get("clusters") or []
        if isinstance(entry, dict)
    }
    suggestions: dict[str, Any] = version.metadata.get("name_suggestions") or {}
    data = []
    for cluster in range(k):
        facts, match = recorded.get(cluster, {}), matched.get(cluster, {})
        cluster_name = names.get(str(cluster))
        suggestion = suggestions.get(str(cluster)) or {}
        suggested = suggestion.get("name") if cluster_name is None else None
        data.append(
            ClusterPublic(
                number=cluster,
                name=cluster_name,
                size=facts.get("size"),
                agreement=match.get("agreement"),
                previous_number=match.get("previous"),
                new=match.get("new"),
                typical_clips=list(facts.get("typical_clips") or []),
                needs_name=cluster_name is None
                and (suggested is not None or (match.get("new") is True and bool(names))),
                suggested_name=suggested,
                kept_share=match.get("kept_share"),
            )
        )
    return ClusterList(
        model=ModelRefPublic(
            name=version.name, version=version.version, ref=version.ref, sha256=version.sha256
        ),
        n_clusters=k,
        previous=identity.get("previous"),
        agreement=identity.get("agreement"),
        disappeared=list(identity.get("disappeared") or []),
        share_for_name=NAME_CARRY_SHARE,
        data=data,
        count=k,
    )


@router.get(
    "/models/{name}/versions/{version}/clusters",
    response_model=ClusterList,
    summary="List a version's clusters",
    description="Each cluster with its name, its size in the training set, its agreement with "
    "the earlier version it was matched to, and the ids of its most typical training clips.",
    responses=problem_responses(401, 403, 404, 422),
)
async def list_clusters(
    name: ModelNamePath, version: VersionPath, store: ModelStoreDep
) -> ClusterList:
    return await asyncio.to_thread(_cluster_list, store, name, version)


def _rename(
    store: AnyModelStore, name: str, number: int, cluster: int, new_name: str | None
) -> ClusterPublic:
    version = store.get(f"{name}:v{number}")
    set_cluster_name(
        store, version, cluster=cluster, name=new_name, n_clusters=_n_clusters(version)
    )
    return _cluster_list(store, name, number).data[cluster]


@router.put(
    "/models/{name}/versions/{version}/clusters/{cluster}",
    response_model=ClusterPublic,
    summary="Name a cluster, or clear its name",
    description="Sets the name (a program label) of one cluster of a version; "
    '`{"name": null}` clears it. The version itself stays immutable: names live beside it, '
    "and carry over to the clusters of the next version that continue this one closely "
    "enough (`share_for_name` in the listing). `/v1/cluster` answers the name at once.",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def name_cluster(
    name: ModelNamePath,
    version: VersionPath,
    cluster: ClusterPath,
    body: ClusterNameUpdate,
    store: ModelStoreDep,
) -> ClusterPublic:
    return await asyncio.to_thread(_rename, store, name, version, cluster, body.name)


@router.delete(
    "/models/{name}/versions/{version}/clusters/{cluster}/name",
    response_model=ClusterPublic,
    summary="Clear a cluster's name",
    description="The cluster answers `cluster_name: null` in `/v1/cluster` at once, whatever "
    'name the version was published with. The same as a PUT with `{"name": null}`.',
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def clear_cluster_name(
    name: ModelNamePath, version: VersionPath, cluster: ClusterPath, store: ModelStoreDep
) -> ClusterPublic:
    return await asyncio.to_thread(_rename, store, name, version, cluster, None)
