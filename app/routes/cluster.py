"""`POST /cluster` and `POST /cluster/batch`: cluster uploaded clips with a loaded model."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.deps import BatcherDep, DecodeSlotsDep, ModelHolderDep, SettingsDep
from app.openapi_docs import problem_responses
from app.problems import ApiProblem, problem_document, problem_from_exception, request_id_of
from app.schemas import (
    BatchItemResult,
    BatchResult,
    ClusterResult,
    ModelRefPublic,
    ProblemPublic,
    WindowPublic,
)
from app.schemas.jobs import MODEL_REF_PATTERN
from app.serving import LoadedModel
from app.uploads import UploadedPart, decode_audio, multipart_openapi, read_multipart_files
from uvac.audio import Audio
from uvac.errors import AudioTooLongError
from uvac.evaluation import ClipResult, clip_verdict

logger = logging.getLogger(__name__)

router = APIRouter(tags=["clustering"])

ModelQuery = Annotated[
    str | None,
    Query(
        alias="model",
        pattern=MODEL_REF_PATTERN,
        description="Use this model instead of the served one: `name:vN` or `name@alias`.",
        examples=["scenes:v3"],
    ),
]


def _result_or_error(
    model: LoadedModel, clip: ClipResult | BaseException
) -> ClusterResult | BaseException:
    return clip if isinstance(clip, BaseException) else to_cluster_result(model, clip)


def to_cluster_result(model: LoadedModel, clip: ClipResult) -> ClusterResult:
    version = model.version
    verdict = clip_verdict(
        model.trained,
        raw=[window.novelty_score for window in clip.windows],
        activity=[window.activity for window in clip.windows],
        silence=[bool(window.silence) for window in clip.windows],
        false_alarm_rate=model.false_alarm_rate(),
    )
    windows = None
    if len(clip.windows) > 1:  # longer than one window: give the timeline
        windows = [
            WindowPublic(
                start_s=window.start_s,
                end_s=window.end_s,
                probabilities=list(window.probabilities),
                assignment=window.assignment,
                level_dbfs=window.level_dbfs,
                silence=window.silence,
                speech=window.speech,
                novelty=window.novelty if unknown is not None else None,
                unknown=unknown,
            )
            for window, unknown in zip(clip.windows, verdict.window_unknown, strict=True)
        ]
    return ClusterResult(
        model=ModelRefPublic(
            name=version.name, version=version.version, ref=version.ref, sha256=version.sha256
        ),
        n_clusters=len(clip.probabilities),
        probabilities=list(clip.probabilities),
        assignment=clip.assignment,
        confidence=clip.confidence,
        duration_s=clip.duration_s,
        windows=windows,
        cluster_name=model.cluster_name(clip.assignment),
        level_dbfs=clip.level_dbfs,
        silence=clip.silence,
        speech=clip.speech,
        novelty=verdict.novelty,
        unknown=verdict.unknown,
    )


async def _decode_part(
    part: UploadedPart,
    *,
    model: LoadedModel,
    batcher: BatcherDep,
    settings: SettingsDep,
    slots: DecodeSlotsDep,
    max_seconds: float,
) -> Audio:
    try:
        with batcher.expecting():
            return await decode_audio(
                part.read_bytes(),
                sample_rate=model.sample_rate,
                max_seconds=max_seconds,
                max_samples=settings.max_audio_samples,
                slots=slots,
            )
    finally:
        part.close()


async def _cluster_part(
    part: UploadedPart,
    *,
    model: LoadedModel,
    batcher: BatcherDep,
    settings: SettingsDep,
    slots: DecodeSlotsDep,
) -> ClusterResult:
    audio = await _decode_part(
        part,
        model=model,
        batcher=batcher,
        settings=settings,
        slots=slots,
        max_seconds=settings.max_audio_seconds,
    )
    clip = await batcher.submit(model=model, audio=audio)
    return to_cluster_result(model, clip)


async def _decode_batch(
    parts: list[UploadedPart],
    *,
    model: LoadedModel,
    batcher: BatcherDep,
    settings: SettingsDep,
    slots: DecodeSlotsDep,
) -> list[Audio | Exception]:
    """Each part's audio or its error, decoded one after the other so that the batch's
    total stays within `max_batch_audio_seconds` however long its files say they are."""
    decoded: list[Audio | Exception] = []
    remaining = settings.max_batch_audio_seconds
    for index, part in enumerate(parts):
        max_seconds = min(settings.max_audio_seconds, remaining)
        try:
            audio = await _decode_part(
                part,
                model=model,
                batcher=batcher,
                settings=settings,
                slots=slots,
                max_seconds=max_seconds,
            )
        except AudioTooLongError as error:
            if max_seconds >= settings.max_audio_seconds:
                decoded.append(error)  # this clip alone is over the per-clip cap
                continue
            for unread in parts[index + 1 :]:
                unread.close()
            raise ApiProblem(
                status=413,
                slug="batch-too-long",
                detail=f"The recordings of this batch last more than "
                f"{settings.max_batch_audio_seconds:g} s in all (with {part.filename!r}), the "
                "most one batch may hold; send fewer or shorter files per request.",
            ) from None
        except Exception as error:  # one bad file does not fail the others
            decoded.append(error)
            continue
        remaining -= audio.duration_s
        decoded.append(audio)
    return decoded


@router.post(
    "/cluster",
    response_model=ClusterResult,
    summary="Cluster one audio clip",
    description="Upload one recording (WAV, FLAC, Ogg or MP3, recognised by content; any "
    "rate, mono or multi-channel) as the multipart field `file`; M4A/AAC is refused with a "
    "415 that names it. Answers the cluster posterior pi of the served model "
    "(or of `?model=`), and a per-window timeline for clips longer than one window.",
    responses=problem_responses(400, 401, 403, 404, 408, 413, 415, 422, 503),
    openapi_extra=multipart_openapi(field_name="file", description="The audio file."),
)
async def cluster(
    request: Request,
    holder: ModelHolderDep,
    batcher: BatcherDep,
    settings: SettingsDep,
    slots: DecodeSlotsDep,
    model_ref: ModelQuery = None,
) -> ClusterResult:
    # Resolve the model before reading the body: without one, do not read an upload for nothing.
    model = await holder.resolve(model_ref)
    (part,) = await read_multipart_files(
        request,
        field_name="file",
        max_part_bytes=settings.max_upload_bytes,
        setting="UVAC_MAX_UPLOAD_BYTES",
    )
    return await _cluster_part(part, model=model, batcher=batcher, settings=settings, slots=slots)


@router.post(
    "/cluster/batch",
    response_model=BatchResult,
    summary="Cluster several audio clips",
    description="Upload up to `max_batch_files` recordings as repeated multipart fields "
    "`files`. Each file gets a result or a problem; one bad file does not fail the others. "
    "The whole request body is capped at `max_upload_bytes`, the clips' total duration at "
    "`max_batch_audio_seconds` (413 `batch-too-long`).",
    responses=problem_responses(400, 401, 403, 404, 408, 413, 415, 422, 503),
    openapi_extra=multipart_openapi(
        field_name="files", description="The audio files.", multiple=True
    ),
)
async def cluster_batch(
    request: Request,
    holder: ModelHolderDep,
    batcher: BatcherDep,
    settings: SettingsDep,
    slots: DecodeSlotsDep,
    model_ref: ModelQuery = None,
) -> BatchResult:
    model = await holder.resolve(model_ref)
    parts = await read_multipart_files(
        request,
        field_name="files",
        max_part_bytes=settings.max_upload_bytes,
        max_body_bytes=settings.max_upload_bytes,
        max_files=settings.max_batch_files,
        setting="UVAC_MAX_UPLOAD_BYTES",
    )
    decoded = await _decode_batch(
        parts, model=model, batcher=batcher, settings=settings, slots=slots
    )
    # Submitted together, so the clips share forward passes.
    audios = [audio for audio in decoded if isinstance(audio, Audio)]
    submitted = (batcher.submit(model=model, audio=audio) for audio in audios)
    clips = iter(await asyncio.gather(*submitted, return_exceptions=True))
    outcomes = [
        audio if isinstance(audio, Exception) else _result_or_error(model, next(clips))
        for audio in decoded
    ]
    items = []
    for part, outcome in zip(parts, outcomes, strict=True):
        if isinstance(outcome, ClusterResult):
            items.append(BatchItemResult(filename=part.filename, result=outcome))
            continue
        if not isinstance(outcome, Exception):
            raise outcome  # CancelledError and friends are not per-file errors
        problem = problem_from_exception(outcome)
        if problem.status >= 500:
            logger.error("batch item %s failed", part.filename, exc_info=outcome)
        document = problem_document(request, problem, request_id=request_id_of(request))
        items.append(
            BatchItemResult(filename=part.filename, error=ProblemPublic.model_validate(document))
        )
    return BatchResult(data=items, count=len(items))
