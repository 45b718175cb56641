"""Data sets: upload an archive of recordings, list, get, delete."""

from __future__ import annotations

import asyncio
from typing import Annotated, BinaryIO, cast

from fastapi import APIRouter, Path, Request, Response

from app.deps import (
    DatasetStoreDep,
    DatasetUploadSlot,
    DecodeSlotsDep,
    PageDep,
    RedisDep,
    SettingsDep,
)
from app.openapi_docs import problem_responses
from app.problems import ApiProblem
from app.schemas import DatasetList, DatasetPublic
from app.uploads import multipart_openapi, read_multipart_files
from dataset_store import DatasetManifest, IngestLimits
from worker import queues

router = APIRouter(tags=["datasets"])

DATASET_ID_PATH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
DatasetIdPath = Annotated[str, Path(pattern=DATASET_ID_PATH_PATTERN)]
# Archives larger than this are spooled to a temporary file while they arrive.
_SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024


def _public(manifest: DatasetManifest) -> DatasetPublic:
    return DatasetPublic.model_validate(manifest.to_dict())


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetPublic,
    summary="Upload a data set",
    description="A zip or tar (optionally gzip-compressed) of audio files as the multipart "
    "field `file`, optionally with a `labels.csv` (`path,label`). Every file is decoded; "
    "the ones that cannot be used are listed under `rejected` with the reason. At most "
    "`max_concurrent_dataset_uploads` are processed at once; beyond, a 429 with Retry-After.",
    responses=problem_responses(400, 401, 403, 408, 413, 415, 422, 429),
    openapi_extra=multipart_openapi(field_name="file", description="The archive."),
    dependencies=[DatasetUploadSlot],
)
async def upload_dataset(
    request: Request,
    response: Response,
    datasets: DatasetStoreDep,
    settings: SettingsDep,
    slots: DecodeSlotsDep,
) -> DatasetPublic:
    (part,) = await read_multipart_files(
        request,
        field_name="file",
        max_part_bytes=settings.max_dataset_upload_bytes,
        spool_bytes=_SPOOL_IN_MEMORY_BYTES,
        setting="UVAC_MAX_DATASET_UPLOAD_BYTES",
    )
    limits = IngestLimits(
        max_audio_seconds=settings.max_audio_seconds,
        max_audio_samples=settings.max_audio_samples,
        decode_slots=slots,
    )
    try:
        part.file.seek(0)
        archive = cast(BinaryIO, part.file)  # a SpooledTemporaryFile is a binary file
        manifest = await asyncio.to_thread(
            datasets.ingest_archive, archive, filename=part.filename, limits=limits
        )
    finally:
        part.close()
    response.headers["Location"] = f"/v1/datasets/{manifest.id}"
    return _public(manifest)


@router.get(
    "/datasets",
    response_model=DatasetList,
    summary="List data sets (newest first)",
    responses=problem_responses(401, 403, 422),
)
def list_datasets(datasets: DatasetStoreDep, page: PageDep) -> DatasetList:
    manifests, total = datasets.list(offset=page.offset, limit=page.limit)
    return DatasetList(data=[_public(manifest) for manifest in manifests], count=total)


@router.get(
    "/datasets/{dataset_id}",
    response_model=DatasetPublic,
    summary="Get a data set's manifest",
    responses=problem_responses(401, 403, 404, 422),
)
def get_dataset(dataset_id: DatasetIdPath, datasets: DatasetStoreDep) -> DatasetPublic:
    return _public(datasets.get(dataset_id))


@router.delete(
    "/datasets/{dataset_id}",
    status_code=204,
    summary="Delete a data set",
    description="Refused with 409 `dataset-in-use` while a queued or running job uses it.",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def delete_dataset(
    dataset_id: DatasetIdPath, datasets: DatasetStoreDep, redis: RedisDep
) -> Response:
    datasets.get(dataset_id)  # 404 first
    using = queues.active_jobs_using_dataset(redis, dataset_id)
    if using:
        raise ApiProblem(
            status=409,
            slug="dataset-in-use",
            detail=f"Data set {dataset_id} is used by {len(using)} job(s) not yet ended "
            f"({', '.join(using[:5])}); cancel them or wait for them to end, then delete it.",
        )
    datasets.delete(dataset_id)
    return Response(status_code=204)
