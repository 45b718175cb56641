"""The device export of a stored version: ONNX (fp32, int8) and the JSON sidecar.

A distilled student carries its export in its version (``export/``, checksummed with the rest,
calibrated at distillation). For another exportable version (a log-mel conv-GRU Cat. UVAC at
16 kHz) the fp32 file and the sidecar are made on request from the verified version; its int8
file needs calibration recordings, so it is made by the CLI (``uvac export --calibration``),
not here. A version the export cannot express is a 422 ``model-not-exportable``.

The sidecar's ``cluster_names`` are always the names as they are now: they are data the
fitting backend edits (``PUT .../clusters/{k}``), while a stored sidecar was written when its
version was published. Everything else in it is served as stored.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from app.deps import ModelStoreDep
from app.file_responses import RangeFileResponse, range_responses
from app.openapi_docs import problem_responses
from app.schemas.jobs import MODEL_NAME_PATTERN
from model_store import AnyModelStore, NotFound
from model_store import ModelVersion as StoredVersion
from model_store.cluster_names import current_cluster_names
from uvac.edge import EXPORT_FILES, INT8_FILE, ONNX_FILE, SIDECAR_FILE

router = APIRouter(tags=["models"])

EXPORT_FOLDER = "export"  # as worker.distill publishes it
ModelNamePath = Annotated[str, Path(pattern=MODEL_NAME_PATTERN)]
VersionPath = Annotated[int, Path(ge=1, le=999_999_999)]
_MEDIA_TYPES = {
    ONNX_FILE: "application/octet-stream",
    INT8_FILE: "application/octet-stream",
    SIDECAR_FILE: "application/json",
}


def _exportable_version(store: AnyModelStore, name: str, version: int) -> StoredVersion:
    """The version, if its model can be exported (else `NotExportableError`, a 422)."""
    from uvac.edge import check_exportable_document
    from uvac.training import MODEL_JSON

    stored = store.get(f"{name}:v{version}")
    try:
        document = json.loads((stored.path / MODEL_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NotFound(f"{stored.ref} has no readable {MODEL_JSON}: {error}") from error
    check_exportable_document(document)
    return stored


_ExportKey = tuple[str, str, tuple[str | None, ...]]  # (ref, sha256, cluster names)


class _BuiltExports:
    """Each generated export built once: requests for one that is being built wait for it,
    later ones are served from memory (the last `size` exports)."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._building: dict[_ExportKey, threading.Lock] = {}
        self._built: OrderedDict[_ExportKey, dict[str, bytes]] = OrderedDict()

    def get(self, key: _ExportKey, build: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
        with self._lock:
            if key in self._built:
                self._built.move_to_end(key)
                return self._built[key]
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                if key in self._built:
                    return self._built[key]
            files = build()
            with self._lock:
                self._built[key] = files
                while len(self._built) > self._size:
                    self._built.popitem(last=False)
                self._building.pop(key, None)
            return files


# The files depend only on the key (a version's checksummed content and its names), so one
# cache serves every app in the process.
_BUILT_EXPORTS = _BuiltExports()


def _generated(store: AnyModelStore, stored: StoredVersion, file_name: str) -> bytes:
    """``model.onnx`` or ``model.json`` of a version without a stored export."""
    from uvac.edge import export_model
    from uvac.selection import cluster_order_from
    from uvac.training import load_trained_model

    verified = store.load_verified(stored.ref)
    trained = load_trained_model(verified.path)
    n_clusters = trained.n_clusters
    names = current_cluster_names(store, verified, n_clusters=n_clusters, model_info=trained.info)
    cluster_names = tuple(names.get(str(number)) for number in range(n_clusters))

    def build() -> dict[str, bytes]:
        with tempfile.TemporaryDirectory(prefix="uvac-export-") as folder:
            exported = export_model(
                trained,
                FilePath(folder),
                calibration_windows=None,
                cluster_names=list(cluster_names),
                cluster_order=cluster_order_from(verified.metadata, n_clusters=n_clusters),
                source={"model": verified.ref, "sha256": verified.sha256},
            )
            return {name: path.read_bytes() for name, path in exported.files.items()}

    key = (verified.ref, verified.sha256, cluster_names)
    return _BUILT_EXPORTS.get(key, build)[file_name]


def _stored_sidecar(store: AnyModelStore, stored: StoredVersion, path: FilePath) -> bytes:
    """A stored sidecar with each cluster's name as it is now (a name never set stays): the
    stored bytes themselves while no name has changed."""
    stored_bytes = path.read_bytes()
    sidecar = json.loads(stored_bytes)
    published = sidecar.get("cluster_names")
    if not isinstance(published, list):
        return stored_bytes
    current = current_cluster_names(store, stored, n_clusters=len(published))
    names = [current.get(str(number), name) for number, name in enumerate(published)]
    if names == published:
        return stored_bytes
    return json.dumps({**sidecar, "cluster_names": names}, indent=2).encode("utf-8")


@router.get(
    "/models/{name}/versions/{version}/export",
    summary="List a version's device export files and show its input contract",
    responses=problem_responses(401, 403, 404, 422),
)
def get_export(name: ModelNamePath, version: VersionPath, store: ModelStoreDep) -> dict[str, Any]:
    stored = _exportable_version(store, name, version)
    folder = stored.path / EXPORT_FOLDER
    base = f"/v1/models/{name}/versions/{version}/export"
    stored_files = {f: folder / f for f in EXPORT_FILES if (folder / f).is_file()}
    if SIDECAR_FILE in stored_files:
        sidecar_bytes = _stored_sidecar(store, stored, stored_files[SIDECAR_FILE])
    else:
        sidecar_bytes = _generated(store, stored, SIDECAR_FILE)
    sizes = {name: path.stat().st_size for name, path in stored_files.items()}
    sizes[SIDECAR_FILE] = len(sidecar_bytes)  # what the download serves
    files = [
        {
            "name": file_name,
            "url": f"{base}/{file_name}",
            "bytes": sizes[file_name] if file_name in stored_files else None,
            "stored": file_name in stored_files,
        }
        for file_name in EXPORT_FILES
        if file_name in stored_files or file_name != INT8_FILE
    ]
    sidecar = json.loads(sidecar_bytes)
    return {"model": stored.ref, "sha256": stored.sha256, "files": files, "sidecar": sidecar}


@router.get(
    "/models/{name}/versions/{version}/export/{file_name}",
    summary="Download one file of a version's device export",
    response_class=RangeFileResponse,
    responses={
        200: {
            "description": "The file",
            "content": {"application/octet-stream": {}, "application/json": {}},
        },
        **range_responses(),
        **problem_responses(401, 403, 404, 422),
    },
)
def get_export_file(
    name: ModelNamePath, version: VersionPath, file_name: str, store: ModelStoreDep
) -> Response:
    if file_name not in EXPORT_FILES:
        raise NotFound(f"No export file {file_name!r}; the export has {', '.join(EXPORT_FILES)}.")
    stored = _exportable_version(store, name, version)
    path = stored.path / EXPORT_FOLDER / file_name
    headers = {"Content-Disposition": f'attachment; filename="{name}-v{version}-{file_name}"'}
    if path.is_file() and file_name == SIDECAR_FILE:
        content = _stored_sidecar(store, stored, path)
        return Response(content, media_type=_MEDIA_TYPES[file_name], headers=headers)
    if path.is_file():
        return RangeFileResponse(path, media_type=_MEDIA_TYPES[file_name], headers=headers)
    if file_name == INT8_FILE:
        raise NotFound(
            f"{stored.ref} has no stored int8 export: int8 needs calibration recordings. "
            "Distil a student (POST /v1/distill), or run `uvac export MODEL --out DIR "
            "--calibration RECORDINGS` on the model."
        )
    content = _generated(store, stored, file_name)
    return Response(content, media_type=_MEDIA_TYPES[file_name], headers=headers)
