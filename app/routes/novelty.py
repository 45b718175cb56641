"""A version's novelty score: read it, and set its false-alarm rate without retraining."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.deps import ModelStoreDep
from app.openapi_docs import problem_responses
from app.problems import ApiProblem
from app.routes.models import ModelNamePath, VersionPath
from app.schemas import ModelRefPublic
from app.schemas.novelty import NoveltyPublic, NoveltyUpdate
from model_store import AnyModelStore
from model_store.novelty_settings import edited_false_alarm_rate, set_false_alarm_rate
from uvac.training import load_novelty

router = APIRouter(tags=["models"])


def _novelty(store: AnyModelStore, name: str, number: int) -> NoveltyPublic:
    version = store.get(f"{name}:v{number}")
    reference = ModelRefPublic(
        name=version.name, version=version.version, ref=version.ref, sha256=version.sha256
    )
    novelty = load_novelty(version.path)
    if novelty is None:
        return NoveltyPublic(model=reference, available=False)
    rate = edited_false_alarm_rate(store, version) or novelty.calibration.false_alarm_rate
    return NoveltyPublic(
        model=reference,
        available=True,
        method=novelty.score.to_dict()["method"],
        false_alarm_rate=rate,
        calibrated_false_alarm_rate=novelty.calibration.false_alarm_rate,
        threshold=novelty.calibration.threshold(rate),
        held_out_windows=int(novelty.calibration.held_out_scores.shape[0]),
    )


def _set_rate(store: AnyModelStore, name: str, number: int, rate: float) -> NoveltyPublic:
    version = store.get(f"{name}:v{number}")
    if load_novelty(version.path) is None:
        raise ApiProblem(
            status=422,
            slug="no-novelty-score",
            detail=f"{version.ref} was published without a novelty score; retrain it to get one.",
        )
    set_false_alarm_rate(store, version, rate=rate)
    return _novelty(store, name, number)


@router.get(
    "/models/{name}/versions/{version}/novelty",
    response_model=NoveltyPublic,
    summary="Read a version's novelty score",
    description="Whether the version has a novelty score, its false-alarm rate now and at "
    "training, and the threshold that rate gives.",
    responses=problem_responses(401, 403, 404, 422),
)
async def read_novelty(
    name: ModelNamePath, version: VersionPath, store: ModelStoreDep
) -> NoveltyPublic:
    return await asyncio.to_thread(_novelty, store, name, version)


@router.put(
    "/models/{name}/versions/{version}/novelty",
    response_model=NoveltyPublic,
    summary="Set a version's false-alarm rate",
    description="The share of known recordings `/v1/cluster` answers as `unknown`, in (0, "
    "0.5]; the version stays immutable (the setting lives beside it) and answers use it at "
    "once. A rate outside the range is a 422.",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def update_novelty(
    name: ModelNamePath, version: VersionPath, body: NoveltyUpdate, store: ModelStoreDep
) -> NoveltyPublic:
    return await asyncio.to_thread(_set_rate, store, name, version, body.false_alarm_rate)
