"""The cluster browser: a page per model version, its map data, the audio it plays, and the
page links a browser opens it with when API keys are on (`app.page_sessions`).

The page's HTML is rendered here with every value escaped; its script and style are served
from the package (`app/pages/`), never a CDN. The audio route takes a recording's index in the
version's map, never a path: the map lists only recordings of the data set the version was
trained or evaluated on, and the index is resolved against that data set's manifest, so no
other file can be named.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from app.deps import CallerDep, DatasetStoreDep, ModelStoreDep, SettingsDep
from app.file_responses import RangeFileResponse, range_responses
from app.openapi_docs import problem_responses
from app.page_sessions import QUERY_PARAMETER, issue_token, version_scope
from app.pages import PAGE_ASSETS, asset_path, render_browser_page
from app.problems import ApiProblem
from app.routes.models import REPORT_FILE, ModelNamePath, VersionPath
from app.schemas.browser import PageLinks
from dataset_store import DatasetStore
from model_store import AnyModelStore

router = APIRouter(tags=["models"])
assets_router = APIRouter(tags=["models"])

RecordingPath = Annotated[int, Path(ge=0, le=99_999_999, description="Index in the map.")]
# Scripts and styles from this origin only; the page's audio, data and figures likewise.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'"
)
_NO_SNIFF = {"X-Content-Type-Options": "nosniff"}
_AUDIO_TYPES = (
    (b"RIFF", "audio/wav"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
    (b"ID3", "audio/mpeg"),
)


def _map_path(store: AnyModelStore, name: str, version: int) -> FilePath:
    # Imported here: `reports` brings matplotlib, which only the pages need.
    from reports.cluster_map import CLUSTER_MAP_FILE

    ref = f"{name}:v{version}"
    store.get(ref)  # 404 for an unknown version
    report_dir = store.report_path(ref)
    path = report_dir / CLUSTER_MAP_FILE if report_dir is not None else None
    if path is None or not path.is_file():
        raise ApiProblem(
            status=404,
            slug="cluster-map-not-found",
            detail=f"{ref} has no cluster map yet: it is drawn when a version is published, "
            "or by POST /v1/evaluate for a version published before maps existed.",
        )
    return path


@router.get(
    "/models/{name}/versions/{version}/browser",
    summary="The cluster browser page of a version (HTML)",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **problem_responses(401, 403, 404, 422)},
)
def browser_page(name: ModelNamePath, version: VersionPath, store: ModelStoreDep) -> HTMLResponse:
    map_path = _map_path(store, name, version)
    has_sweep = (map_path.parent / "sweep.png").is_file()
    page = render_browser_page(ref=f"{name}:v{version}", has_sweep=has_sweep)
    return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_CSP, **_NO_SNIFF})


@router.get(
    "/models/{name}/versions/{version}/browser/data",
    summary="The cluster browser's map data (cluster_map.json)",
    response_class=RangeFileResponse,
    responses={
        200: {"content": {"application/json": {}}},
        **range_responses(),
        **problem_responses(401, 403, 404, 422),
    },
)
def browser_data(
    name: ModelNamePath, version: VersionPath, store: ModelStoreDep
) -> RangeFileResponse:
    return RangeFileResponse(
        _map_path(store, name, version), media_type="application/json", headers=_NO_SNIFF
    )


def _audio_file(
    store: AnyModelStore, datasets: DatasetStore, name: str, version: int, recording: int
) -> FilePath:
    map_path = _map_path(store, name, version)
    document: dict[str, Any] = json.loads(map_path.read_text(encoding="utf-8"))
    recordings = document.get("recordings") or []
    if recording >= len(recordings):
        raise ApiProblem(
            status=404,
            slug="recording-not-found",
            detail=f"The map of {name}:v{version} lists {len(recordings)} recordings.",
        )
    dataset_id = str((document.get("dataset") or {}).get("id"))
    if dataset_id not in _version_datasets(store, name, version):
        raise ApiProblem(
            status=404,
            slug="recording-not-found",
            detail="The map's data set is not one this version was trained or evaluated on.",
        )
    manifest = datasets.get(dataset_id)  # a deleted data set is its own 404
    relative = str(recordings[recording]["path"])
    if relative not in {entry.path for entry in manifest.files}:
        raise ApiProblem(
            status=404,
            slug="recording-not-found",
            detail="The recording is no longer in its data set.",
        )
    root = datasets.path(dataset_id).resolve()
    path = (root / relative).resolve()
    # The manifest lists only files unpacked inside the data set; this is the second lock.
    if not path.is_relative_to(root) or not path.is_file():
        raise ApiProblem(
            status=404, slug="recording-not-found", detail="The recording cannot be read."
        )
    return path


def _version_datasets(store: AnyModelStore, name: str, version: int) -> set[str]:
    ref = f"{name}:v{version}"
    found: set[str] = set()
    trained_on = store.get(ref).metadata.get("dataset")
    if isinstance(trained_on, dict) and trained_on.get("id"):
        found.add(str(trained_on["id"]))
    report_dir = store.report_path(ref)
    if report_dir is not None and (report_dir / REPORT_FILE).is_file():
        report = json.loads((report_dir / REPORT_FILE).read_text(encoding="utf-8"))
        evaluated = report.get("dataset") if isinstance(report, dict) else None
        if isinstance(evaluated, dict) and evaluated.get("id"):
            found.add(str(evaluated["id"]))
    return found


def _audio_type(path: FilePath) -> str:
    with path.open("rb") as file:
        head = file.read(12)
    for magic, media_type in _AUDIO_TYPES:
        if head.startswith(magic):
            return media_type
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # an MP3 frame without an ID3 tag
    return "application/octet-stream"


@router.get(
    "/models/{name}/versions/{version}/browser/audio/{recording}",
    summary="Play one recording of the version's map (HTTP Range requests supported)",
    response_class=RangeFileResponse,
    responses={
        200: {"content": {"audio/wav": {}, "audio/flac": {}, "audio/ogg": {}, "audio/mpeg": {}}},
        **range_responses(),
        **problem_responses(401, 403, 404, 422),
    },
)
async def browser_audio(
    name: ModelNamePath,
    version: VersionPath,
    recording: RecordingPath,
    store: ModelStoreDep,
    datasets: DatasetStoreDep,
) -> RangeFileResponse:
    path = await asyncio.to_thread(_audio_file, store, datasets, name, version, recording)
    media_type = await asyncio.to_thread(_audio_type, path)
    # RangeFileResponse answers Range requests (206; 400 and 416 as problems) itself.
    return RangeFileResponse(
        path, media_type=media_type, headers={**_NO_SNIFF, "Cache-Control": "private, max-age=300"}
    )


@router.post(
    "/models/{name}/versions/{version}/page-links",
    response_model=PageLinks,
    summary="Links that open a version's pages in a browser",
    description="A browser cannot send `X-API-Key`. With keys on, this answers the report's "
    "and the cluster browser's URLs with a signed `page_token` that opens this version's pages, "
    "their data and audio, and renaming its clusters, for `UVAC_PAGE_LINK_SECONDS`. Without "
    "keys the URLs need no token.",
    responses=problem_responses(401, 403, 404, 422),
)
def page_links(
    name: ModelNamePath,
    version: VersionPath,
    store: ModelStoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    request: Request,
) -> PageLinks:
    store.get(f"{name}:v{version}")
    scope = version_scope(name, version)
    query, expires_at = "", None
    if settings.auth_enabled:
        token = issue_token(settings, identity=caller, scope=scope)
        query = f"?{QUERY_PARAMETER}={token}"
        expires_at = datetime.fromtimestamp(int(token.split(".", 1)[0]), UTC)
    base = str(request.base_url).rstrip("/")
    return PageLinks(
        browser=f"{base}{scope}browser{query}",
        report=f"{base}{scope}report/index.html{query}",
        expires_at=expires_at,
    )


@assets_router.get(
    "/page-assets/{file_name}",
    summary="A script or style of the pages (served here: the pages use no CDN)",
    response_class=RangeFileResponse,
    include_in_schema=False,
)
def page_asset(file_name: str) -> RangeFileResponse:
    if file_name not in PAGE_ASSETS:
        raise ApiProblem(status=404, slug="not-found", detail=f"No page asset {file_name!r}.")
    return RangeFileResponse(
        asset_path(file_name),
        media_type=PAGE_ASSETS[file_name],
        headers={**_NO_SNIFF, "Cache-Control": "no-cache"},
    )
