"""A refused request changes nothing on disk: no folder, lock file or leftover appears.

One request per kind of refusal the service has (unknown model, version, alias, data set;
unusable upload; invalid job), all against one running app, with the data folder compared
file by file before and after.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

from fastapi.testclient import TestClient

from tests.app.helpers import tone_wav
from tests.disk_state import snapshot


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_with_link() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        link = tarfile.TarInfo("a.wav")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return buffer.getvalue()


def _upload(data: bytes) -> dict[str, Any]:
    return {"files": {"file": ("set.zip", data, "application/octet-stream")}}


REFUSED: list[tuple[str, str, dict[str, Any], int]] = [
    ("PUT", "/v1/models/ghost/aliases/production", {"json": {"version": 1}}, 404),
    ("PUT", "/v1/models/ghost/aliases/production", {"json": {"rollback": True}}, 404),
    ("PUT", "/v1/models/scenes/aliases/production", {"json": {"version": 9}}, 404),
    ("PUT", "/v1/models/scenes/aliases/staging", {"json": {"rollback": True}}, 404),
    ("GET", "/v1/models/ghost/versions", {}, 404),
    ("GET", "/v1/models/ghost/versions/1/report", {}, 404),
    ("POST", "/v1/datasets", _upload(b"not an archive at all" * 30), 415),
    ("POST", "/v1/datasets", _upload(_zip({"notes.txt": b"no audio"})), 400),
    ("POST", "/v1/datasets", _upload(_zip({"../up.wav": tone_wav(0.2)})), 400),
    ("POST", "/v1/datasets", _upload(_tar_with_link()), 400),
    ("DELETE", "/v1/datasets/ds_000000000000", {}, 404),
    ("POST", "/v1/evaluate", {"json": {"model_ref": "ghost:v1", "dataset_id": "ds_x"}}, 404),
    ("POST", "/v1/train", {"json": {"dataset_id": "ds_000000000000", "n_clusters": 3}}, 404),
    ("POST", "/v1/cluster", {"files": {"file": ("a.wav", b"not audio" * 50)}}, 415),
]


def test_refused_requests_change_nothing_on_disk(client: TestClient, settings) -> None:
    before = snapshot(settings.data_dir)
    for method, path, arguments, status in REFUSED:
        response = client.request(method, path, **arguments)
        assert response.status_code == status, (method, path, response.text)
    assert snapshot(settings.data_dir) == before
    assert [model["name"] for model in client.get("/v1/models").json()["data"]] == ["scenes"]
