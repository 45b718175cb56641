"""Data set routes: archive upload, manifest, list, get, delete, refusals."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from benchmarks.reliability.hostile_inputs import tar_with_members, zip_with_members
from tests.app.helpers import assert_problem, noise_wav, tone_wav
from tests.audio_fixtures import encode, tone


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _upload(client: TestClient, data: bytes, name: str = "set.zip"):
    return client.post("/v1/datasets", files={"file": (name, data, "application/zip")})


def test_upload_list_get_delete(client: TestClient) -> None:
    archive = _zip(
        {
            "tones/a.wav": tone_wav(0.5),
            "noise/b.wav": noise_wav(0.5),
            "noise/readme.txt": b"not audio",
        }
    )
    response = _upload(client, archive)
    assert response.status_code == 201, response.text
    manifest = response.json()
    dataset_id = manifest["id"]
    assert response.headers["location"] == f"/v1/datasets/{dataset_id}"
    assert sorted(item["path"] for item in manifest["files"]) == ["noise/b.wav", "tones/a.wav"]
    assert sorted(manifest["labels"]) == ["noise", "tones"]
    assert [item["path"] for item in manifest["rejected"]] == ["noise/readme.txt"]
    # A sentence for people, not an internal class name.
    assert manifest["rejected"][0]["reason"].startswith("Not a readable audio file: ")

    assert client.get(f"/v1/datasets/{dataset_id}").json() == manifest
    listing = client.get("/v1/datasets").json()
    assert listing["count"] == 1 and listing["data"][0]["id"] == dataset_id

    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    missing = client.get(f"/v1/datasets/{dataset_id}")
    assert_problem(missing, status=404, slug="dataset-not-found")
    assert_problem(
        client.delete(f"/v1/datasets/{dataset_id}"), status=404, slug="dataset-not-found"
    )


def test_not_an_archive_is_415(client: TestClient) -> None:
    response = _upload(client, b"plain text, not a zip" * 20, name="set.txt")
    assert_problem(response, status=415, slug="unsupported-archive", path="/v1/datasets")


def test_an_archive_without_audio_is_rejected(client: TestClient) -> None:
    response = _upload(client, _zip({"notes.txt": b"hello"}))
    body = assert_problem(response, status=400, slug="archive-rejected")
    assert "notes.txt" in body["detail"]


def test_an_archive_over_the_upload_cap_is_413(tmp_path, redis_db, served_version) -> None:
    from app.main import create_app
    from tests.app.conftest import make_settings

    settings = make_settings(tmp_path, max_dataset_upload_bytes=2000)
    with TestClient(create_app(settings)) as client:
        response = _upload(client, _zip({"a.wav": noise_wav(1.0)}))
    assert_problem(response, status=413, slug="upload-too-large")


AWKWARD_MEMBERS = {
    "not-utf8": b"caf\xe9.wav",
    "component-over-255-bytes": "n" * 300 + ".wav",
    "thousands-of-folders-deep": "d/" * 3000 + "x.wav",
}


# Every awkward name in a tar; in a zip only the text ones (zip names are cp437 or UTF-8 text,
# so a name that is not UTF-8 cannot be written there).
AWKWARD_CASES = [
    pytest.param(archive_format, name, id=f"{archive_format}-{key}")
    for archive_format in ("tar", "zip")
    for key, name in AWKWARD_MEMBERS.items()
    if archive_format == "tar" or isinstance(name, str)
]


@pytest.mark.parametrize(("archive_format", "name"), AWKWARD_CASES)
def test_awkward_member_names_are_listed_as_rejected(
    client: TestClient, tmp_path: Path, archive_format: str, name: str | bytes
) -> None:
    members = [(name, tone_wav(0.5)), ("ok.wav", tone_wav(0.5))]
    if archive_format == "tar":
        archive = tar_with_members(members)
    else:
        archive = zip_with_members([(str(member), data) for member, data in members])

    response = _upload(client, archive, name=f"set.{archive_format}")

    assert response.status_code == 201, response.text
    manifest = response.json()
    assert [item["path"] for item in manifest["files"]] == ["ok.wav"]
    (rejected,) = manifest["rejected"]
    assert rejected["reason"].startswith("not unpacked:")
    assert str(tmp_path) not in response.text


def test_an_archive_of_mp3_recordings_is_a_data_set(client: TestClient) -> None:
    mp3 = encode(tone(440.0, 0.5, sample_rate=8000), sample_rate=8000, format="MP3")
    m4a_named_mp3 = b"\x00\x00\x00\x20ftypM4A " + bytes(2048)
    archive = _zip({"a/1.mp3": mp3, "b/2.mp3": mp3, "b/3.mp3": m4a_named_mp3})

    response = _upload(client, archive)

    assert response.status_code == 201, response.text
    manifest = response.json()
    assert [item["path"] for item in manifest["files"]] == ["a/1.mp3", "b/2.mp3"]
    (rejected,) = manifest["rejected"]
    assert rejected["path"] == "b/3.mp3" and "M4A" in rejected["reason"]
    assert rejected["reason"].startswith("Unsupported audio encoding: ")


def test_uploads_beyond_the_concurrent_limit_are_429(
    tmp_path, redis_db, served_version, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each upload's memory is bounded; the number processed at once is too, so concurrent
    uploads cannot add up past the limit the README states."""
    import threading

    from app.main import create_app
    from dataset_store import DatasetStore
    from tests.app.conftest import make_settings

    started, release = threading.Event(), threading.Event()
    ingest = DatasetStore.ingest_archive

    def slow_ingest(self, *args, **kwargs):
        started.set()
        release.wait(timeout=30)
        return ingest(self, *args, **kwargs)

    monkeypatch.setattr(DatasetStore, "ingest_archive", slow_ingest)
    archive = _zip({"a/x.wav": tone_wav(0.5), "b/y.wav": noise_wav(0.5)})
    settings = make_settings(tmp_path, max_concurrent_dataset_uploads=1)
    with TestClient(create_app(settings)) as client:
        first: dict[str, int] = {}
        thread = threading.Thread(
            target=lambda: first.update(status=_upload(client, archive).status_code)
        )
        thread.start()
        assert started.wait(timeout=30)
        refused = _upload(client, archive)
        release.set()
        thread.join(timeout=30)
        body = assert_problem(refused, status=429, slug="too-many-uploads")
        assert "1" in body["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        assert first["status"] == 201
        assert _upload(client, archive).status_code == 201  # the slot is free again


def test_a_high_rate_recording_over_the_samples_cap_is_rejected_in_an_upload(
    tmp_path, redis_db, served_version
) -> None:
    from app.main import create_app
    from tests.app.conftest import make_settings

    flac = encode(tone(440, 1.0, sample_rate=192_000), sample_rate=192_000, format="FLAC")
    archive = zip_with_members([("high.flac", flac), ("ok.wav", tone_wav(1.0))])
    settings = make_settings(tmp_path, max_audio_samples=100_000)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/v1/datasets", files={"file": ("a.zip", archive, "application/zip")})
        assert answer.status_code == 201, answer.text
        (rejected,) = answer.json()["rejected"]
        assert rejected["path"] == "high.flac"
        assert "samples" in rejected["reason"]
