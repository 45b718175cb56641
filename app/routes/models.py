"""Model store views: list models and versions, read reports, move aliases."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response

from app.deps import ModelHolderDep, ModelStoreDep, PageDep
from app.file_responses import RangeFileResponse, range_responses
from app.openapi_docs import problem_responses
from app.report_figures import current_figure
from app.schemas import (
    AliasPublic,
    AliasRollback,
    AliasUpdate,
    ModelList,
    ModelSummary,
    ModelVersionList,
    ModelVersionPublic,
)
from app.schemas.jobs import MODEL_ALIAS_PATTERN, MODEL_NAME_PATTERN
from model_store import AnyModelStore, NotFound, ReportNotFound
from model_store import ModelVersion as StoredVersion
from model_store.cluster_names import current_cluster_names
from model_store.promotion import FigureComparison, check_promotion

router = APIRouter(tags=["models"])

REPORT_FILE = "report.json"
ModelNamePath = Annotated[str, Path(pattern=MODEL_NAME_PATTERN)]
VersionPath = Annotated[int, Path(ge=1, le=999_999_999)]
AliasPath = Annotated[str, Path(pattern=MODEL_ALIAS_PATTERN)]
# Report files are flat names with an extension we know how to serve.
_REPORT_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,100}\.(html|png|svg|json|csv|txt)$")
_MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "png": "image/png",
    "svg": "image/svg+xml",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}
# A report page may show its own figures and inline styles, and nothing else.
_REPORT_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"


_EVALUATION_KEYS = ("n_clips", "accuracy", "nmi", "clusters_used")
_ON_TRAINING = "the recordings the model was trained on (they overstate how it does on new ones)"


def _metrics_of(version: StoredVersion, report_dir: FilePath | None) -> dict[str, Any] | None:
    """What is known of a version's quality, each part saying which recordings it comes from:
    its final training numbers (on its training recordings), its figures on the recordings its
    training held out (both metadata written at publish) and the model row of its latest
    evaluation report (`report.json`, with the report's ``evaluated_on``)."""
    metrics: dict[str, Any] = {}
    training = version.metadata.get("training")
    if isinstance(training, dict) and isinstance(training.get("final"), dict):
        metrics["training"] = {**training["final"], "computed_on": _ON_TRAINING}
    held_out = version.metadata.get("held_out")
    if isinstance(held_out, dict) and isinstance(held_out.get("metrics"), dict):
        metrics["held_out"] = {**held_out["metrics"], "computed_on": held_out.get("description")}
    report = _read_report(report_dir)
    if report is not None:
        rows = report.get("rows")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            evaluation = {key: rows[0].get(key) for key in _EVALUATION_KEYS}
            dataset = report.get("dataset")
            evaluation["dataset_id"] = dataset.get("id") if isinstance(dataset, dict) else None
            evaluated_on = report.get("evaluated_on")
            if isinstance(evaluated_on, dict):
                evaluation["split"] = evaluated_on.get("split")
                evaluation["computed_on"] = evaluated_on.get("description")
                evaluation["warning"] = evaluated_on.get("warning")
            else:  # a report written before reports said which recordings they used
                evaluation["computed_on"] = "not recorded (a report older than held-out splits)"
            metrics["evaluation"] = evaluation
        elif isinstance(report.get("metrics"), dict):
            metrics["evaluation"] = report["metrics"]
    return metrics or None


def _read_report(report_dir: FilePath | None) -> dict[str, Any] | None:
    if report_dir is None or not (report_dir / REPORT_FILE).is_file():
        return None
    try:
        document = json.loads((report_dir / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a report being replaced or unreadable is not worth failing the view
    return document if isinstance(document, dict) else None


def version_public(
    version: StoredVersion, *, report_dir: FilePath | None = None, with_metrics: bool = True
) -> ModelVersionPublic:
    return ModelVersionPublic(
        name=version.name,
        version=version.version,
        ref=version.ref,
        sha256=version.sha256,
        created_at=version.created_at,
        aliases=list(version.aliases),
        metadata=version.metadata,
        metrics=_metrics_of(version, report_dir) if with_metrics else None,
        has_report=report_dir is not None,
    )


@router.get(
    "/models",
    response_model=ModelList,
    summary="List models",
    responses=problem_responses(401, 403),
)
def list_models(store: ModelStoreDep) -> ModelList:
    summaries = [ModelSummary.model_validate(summary.to_dict()) for summary in store.list_models()]
    return ModelList(data=summaries, count=len(summaries))


@router.get(
    "/models/{name}/versions",
    response_model=ModelVersionList,
    summary="List a model's versions (newest first)",
    responses=problem_responses(401, 403, 404, 422),
)
def list_versions(name: ModelNamePath, store: ModelStoreDep, page: PageDep) -> ModelVersionList:
    versions, total = store.list_versions(name, offset=page.offset, limit=page.limit)
    # Metrics (which mean reading each report) are on the single-version route only.
    data = [
        version_public(version, report_dir=store.report_path(version.ref), with_metrics=False)
        for version in versions
    ]
    return ModelVersionList(data=data, count=total)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelVersionPublic,
    summary="Get one version: metadata, aliases and metrics",
    responses=problem_responses(401, 403, 404, 422),
)
def get_version(
    name: ModelNamePath, version: VersionPath, store: ModelStoreDep
) -> ModelVersionPublic:
    ref = f"{name}:v{version}"
    stored = store.get(ref)
    return version_public(stored, report_dir=store.report_path(ref))


def _report_dir(store: ModelStoreDep, name: str, version: int) -> FilePath:
    ref = f"{name}:v{version}"
    report_dir = store.report_path(ref)
    if report_dir is None:
        raise ReportNotFound(f"{ref} has no report yet; run POST /v1/evaluate to make one.")
    return report_dir


@router.get(
    "/models/{name}/versions/{version}/report",
    summary="Get a version's evaluation report (report.json)",
    response_model=dict[str, Any],
    responses=problem_responses(401, 403, 404, 422),
)
def get_report(name: ModelNamePath, version: VersionPath, store: ModelStoreDep) -> dict[str, Any]:
    path = _report_dir(store, name, version) / REPORT_FILE
    if not path.is_file():
        raise ReportNotFound(f"{name}:v{version} has no {REPORT_FILE}.")
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


@router.get(
    "/models/{name}/versions/{version}/report/{file_name}",
    summary="Get one file of a version's report (HTML page, PNG figures)",
    response_class=RangeFileResponse,
    responses={
        200: {"description": "The file", "content": {"text/html": {}, "image/png": {}}},
        **range_responses(),
        **problem_responses(401, 403, 404, 422),
    },
)
def get_report_file(
    name: ModelNamePath, version: VersionPath, file_name: str, store: ModelStoreDep
) -> RangeFileResponse:
    match = _REPORT_FILE_NAME.fullmatch(file_name)
    if match is None:
        raise ReportNotFound(f"No report file {file_name!r}.")
    report_dir = _report_dir(store, name, version)
    path = report_dir / file_name
    # The name pattern already excludes separators and "..": this is the second lock.
    if path.resolve().parent != report_dir.resolve() or not path.is_file():
        raise ReportNotFound(f"No report file {file_name!r} for {name}:v{version}.")
    headers = {"Content-Security-Policy": _REPORT_CSP, "X-Content-Type-Options": "nosniff"}
    if file_name == "index.html":
        stored = store.get(f"{name}:v{version}")
        page = _index_page(store, stored, report_dir, path)
        return HTMLResponse(page, headers=headers)  # type: ignore[return-value]
    if match.group(1) == "png":
        # A figure that names clusters is drawn again with the names now; revalidated, as a
        # rename changes it.
        figure = current_figure(store, store.get(f"{name}:v{version}"), report_dir, file_name)
        if figure is not None:
            return Response(  # type: ignore[return-value]
                figure, media_type="image/png", headers={**headers, "Cache-Control": "no-cache"}
            )
    return RangeFileResponse(path, media_type=_MEDIA_TYPES[match.group(1)], headers=headers)


def _index_page(
    store: AnyModelStore, version: StoredVersion, report_dir: FilePath, path: FilePath
) -> str:
    """The report's page with the clusters named as they are now: drawn again from
    ``report.json``, or for a report this code cannot read, its stored page with the names
    table filled in."""
    # Imported here: `reports` brings matplotlib, which only report pages need.
    from reports import (
        CURRENT_NAMES_MARKER,
        REPORT_FORMAT,
        current_names_section,
        report_page,
    )

    report = _read_report(report_dir) or {}
    rows = report.get("rows") or [{}]
    k = version.metadata.get("n_clusters") or (rows[0] or {}).get("n_clusters")
    if not isinstance(k, int):
        return path.read_text(encoding="utf-8").replace(CURRENT_NAMES_MARKER, "")
    names = current_cluster_names(store, version, n_clusters=k)
    if report.get("format") == REPORT_FORMAT:
        try:
            return report_page(report, current_names=names, n_clusters=k)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # a report of another shape: its stored page, with the names table
    section = current_names_section(names, n_clusters=k)
    return path.read_text(encoding="utf-8").replace(CURRENT_NAMES_MARKER, section)


@router.put(
    "/models/{name}/aliases/{alias}",
    response_model=AliasPublic,
    summary="Promote a version to an alias, or roll the alias back",
    description='`{"version": N}` points `name@alias` at version N; `{"rollback": true}` '
    "moves it back to its previous target. A version whose figures on its held-out recordings "
    "are worse than those of the version the alias points at now is refused with a 409 that "
    'names them, unless the body says `"force": true` (then it is promoted and logged). '
    "A rollback is not checked. The API picks up a change of the alias it "
    "serves within `model_poll_seconds`; a change made through this route is loaded before "
    "the answer.",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def set_alias(
    name: ModelNamePath,
    alias: AliasPath,
    body: AliasUpdate,
    store: ModelStoreDep,
    holder: ModelHolderDep,
) -> AliasPublic:
    worse: list[FigureComparison] = []
    if isinstance(body, AliasRollback):
        target = await asyncio.to_thread(store.rollback, name, alias)
    else:
        ref = f"{name}:v{body.version}"
        worse = await asyncio.to_thread(_check_promotion, store, ref, alias, body.force)
        target = await asyncio.to_thread(store.promote, ref, alias)
    if holder.serve_ref == f"{name}@{alias}":
        # Load the new target before answering, so a client that promotes and then clusters
        # gets the new model (a refused target keeps the old one; /readyz says why).
        await holder.refresh()
    return AliasPublic(
        name=name,
        alias=alias,
        version=target.version,
        ref=target.ref,
        worse_figures=[dataclasses.asdict(figure) for figure in worse],
    )


def _check_promotion(
    store: ModelStoreDep, ref: str, alias: str, force: bool
) -> list[FigureComparison]:
    new = store.get(ref)
    try:
        current: StoredVersion | None = store.get(f"{new.name}@{alias}")
    except NotFound:
        current = None
    return check_promotion(new, current, alias=alias, force=force)
