"""The cluster browser's routes: the page, its data, the audio it plays (Range requests, only
the version's data set), page links with API keys on, and the report's current names."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from app.auth import key_digest
from app.main import create_app
from app.page_sessions import issue_token, version_scope
from dataset_store import DatasetManifest, DatasetStore
from model_store import ModelStore, ModelVersion
from model_store.cluster_names import set_cluster_name
from service_config import Settings
from tests.app.conftest import (
    SAMPLE_RATE,
    make_settings,
    publish_tiny_model,
    tiny_trained_model,
)
from tests.app.helpers import assert_problem, noise_wav, tone_wav
from tests.app.stream_helpers import pcm_bytes, publish_kmeans_model, read_to_close, varied_audio
from tests.audio_fixtures import wav_bytes
from uvac.training import save_trained_model
from worker.cluster_map import map_files
from worker.job_support import dataset_items

KEY = "browser-key"


def _dataset(root: Path, scratch: Path, *, label: str = "tone") -> DatasetManifest:
    source = scratch / f"recordings-{label}"
    (source / label).mkdir(parents=True)
    (source / "noise").mkdir()
    for index in range(3):
        (source / label / f"t{index}.wav").write_bytes(tone_wav(1.5, hz=300.0 + 200 * index))
        (source / "noise" / f"n{index}.wav").write_bytes(noise_wav(1.5, seed=index))
    store = DatasetStore(root)
    return store.get(store.register_folder(source).id)


def _mapped_version(settings: Settings, manifest: DatasetManifest) -> ModelVersion:
    store = ModelStore(settings.model_store_path)
    version = publish_tiny_model(
        store, metadata={"n_clusters": 3, "dataset": {"id": manifest.id}}, alias=None
    )
    items = dataset_items(DatasetStore(settings.datasets_path), manifest)
    files = map_files(tiny_trained_model(), items, manifest=manifest, metadata=version.metadata)
    store.write_report(version.ref, files=files)
    return version


@pytest.fixture
def mapped(settings: Settings, tmp_path: Path) -> tuple[ModelVersion, DatasetManifest]:
    manifest = _dataset(settings.datasets_path, tmp_path)
    return _mapped_version(settings, manifest), manifest


@pytest.fixture
def secured(tmp_path: Path, redis_db) -> Iterator[tuple[TestClient, Settings]]:
    settings = make_settings(tmp_path, api_keys=f"{KEY}, other-key")
    publish_tiny_model(ModelStore(settings.model_store_path))
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_the_page_is_served_with_its_own_script_and_a_strict_policy(
    client: TestClient, mapped: tuple[ModelVersion, DatasetManifest]
) -> None:
    version, _ = mapped
    response = client.get(f"/v1/models/{version.name}/versions/{version.version}/browser")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert '<script src="/v1/page-assets/browser.js"' in response.text
    assert "http://" not in response.text and "https://" not in response.text  # no CDN
    assert '<script src="/v1/page-assets/live.js"' in response.text
    for name in ("browser.js", "live.js", "live-capture.js"):
        script = client.get(f"/v1/page-assets/{name}")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        # User text only ever becomes text nodes; nothing is fetched from elsewhere.
        assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text
        assert "://" not in script.text
    assert client.get("/v1/page-assets/browser.css").status_code == 200
    assert_problem(client.get("/v1/page-assets/secrets.py"), status=404, slug="not-found")


def test_the_data_holds_every_window_of_the_training_recordings(
    client: TestClient, mapped: tuple[ModelVersion, DatasetManifest]
) -> None:
    version, manifest = mapped
    document = client.get(f"/v1/models/scenes/versions/{version.version}/browser/data").json()
    assert document["dataset"]["id"] == manifest.id
    assert sorted(entry["path"] for entry in document["recordings"]) == sorted(
        entry.path for entry in manifest.files
    )
    # 1.5 s clips in 0.5 s windows every 0.25 s: 5 windows each.
    assert len(document["points"]["x"]) == 5 * len(manifest.files)


def test_a_model_with_a_novelty_score_marks_the_foreign_windows(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    from tests.app.novelty_models import TONES_HZ, model_with_novelty, tone_clip

    source = tmp_path / "recordings"
    for folder in ("tone", "noise"):
        (source / folder).mkdir(parents=True)
    for index in range(3):
        clip = wav_bytes(tone_clip(TONES_HZ[index], 50 + index), sample_rate=SAMPLE_RATE)
        (source / "tone" / f"t{index}.wav").write_bytes(clip)
        (source / "noise" / f"n{index}.wav").write_bytes(noise_wav(1.5, seed=index))
    datasets = DatasetStore(settings.datasets_path)
    manifest = datasets.get(datasets.register_folder(source).id)
    store = ModelStore(settings.model_store_path)
    trained = model_with_novelty()  # fitted on tones: the noise recordings are foreign
    with store.publish("scenes", metadata={"n_clusters": 3, "dataset": {"id": manifest.id}}) as (
        staging
    ):
        save_trained_model(Path(staging), trained)
    version = staging.version
    items = dataset_items(datasets, manifest)
    files = map_files(trained, items, manifest=manifest, metadata=version.metadata)
    store.write_report(version.ref, files=files)

    document = client.get(f"/v1/models/scenes/versions/{version.version}/browser/data").json()
    points, novelty = document["points"], document["novelty"]
    assert trained.novelty is not None
    assert novelty["threshold"] == pytest.approx(trained.novelty.calibration.threshold())
    assert novelty["false_alarm_rate"] == trained.novelty.calibration.false_alarm_rate
    noise = [
        index
        for index, recording in enumerate(points["recording"])
        if document["recordings"][recording]["path"].startswith("noise/")
    ]
    assert noise and all(points["unknown"][index] is True for index in noise)
    assert novelty["unknown_windows"] == sum(1 for flag in points["unknown"] if flag)
    assert novelty["unknown_windows"] < len(points["x"])  # the tones are ones it knows
    assert all(
        (score > novelty["threshold"]) == flag
        for score, flag in zip(points["novelty_score"], points["unknown"], strict=True)
    )


def test_a_model_without_a_novelty_score_has_no_verdicts_and_says_why(
    client: TestClient, mapped: tuple[ModelVersion, DatasetManifest]
) -> None:
    version, _ = mapped
    document = client.get(f"/v1/models/scenes/versions/{version.version}/browser/data").json()
    assert document["novelty"] is None
    assert "without a novelty score" in document["novelty_unavailable"]
    assert "unknown" not in document["points"]


def test_audio_is_served_with_its_type_and_byte_ranges(
    client: TestClient, mapped: tuple[ModelVersion, DatasetManifest], settings: Settings
) -> None:
    version, manifest = mapped
    base = f"/v1/models/scenes/versions/{version.version}/browser"
    document = client.get(f"{base}/data").json()
    expected = (
        DatasetStore(settings.datasets_path).path(manifest.id) / document["recordings"][2]["path"]
    ).read_bytes()
    whole = client.get(f"{base}/audio/2")
    assert whole.status_code == 200 and whole.content == expected
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["x-content-type-options"] == "nosniff"
    part = client.get(f"{base}/audio/2", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == expected[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(expected)}"
    outside = client.get(f"{base}/audio/2", headers={"Range": "bytes=99999999-"})
    assert_problem(outside, status=416, slug="range-not-satisfiable")
    assert outside.headers["content-range"] == f"bytes */{len(expected)}"
    malformed = client.get(f"{base}/audio/2", headers={"Range": "lines=1-2"})
    assert "bytes" in assert_problem(malformed, status=400, slug="invalid-range")["detail"]
    assert_problem(client.get(f"{base}/audio/6"), status=404, slug="recording-not-found")
    assert client.get(f"{base}/audio/..%2F..%2Fmodels").status_code in (404, 422)


def test_audio_only_from_the_data_set_the_version_was_trained_or_evaluated_on(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    trained_on = _dataset(settings.datasets_path, tmp_path, label="tone")
    other = _dataset(settings.datasets_path, tmp_path, label="other")
    version = _mapped_version(settings, other)  # a map of a data set the version never saw
    store = ModelStore(settings.model_store_path)
    report = store.report_path(version.ref)
    assert report is not None
    files = {path.name: path.read_bytes() for path in report.iterdir()}
    assert version.metadata["dataset"]["id"] == other.id
    # Publish the same model as trained on another data set, with the foreign map.
    foreign = publish_tiny_model(
        store, metadata={"n_clusters": 3, "dataset": {"id": trained_on.id}}, alias=None
    )
    store.write_report(foreign.ref, files=files)
    response = client.get(f"/v1/models/scenes/versions/{foreign.version}/browser/audio/0")
    assert_problem(response, status=404, slug="recording-not-found")


def test_a_version_without_a_map_is_a_problem(client: TestClient) -> None:
    response = client.get("/v1/models/scenes/versions/1/browser")
    assert_problem(response, status=404, slug="cluster-map-not-found")
    assert_problem(client.get("/v1/models/scenes/versions/9/browser"), status=404,
                   slug="model-not-found")  # fmt: skip


def test_the_report_page_names_clusters_as_they_are_named_now(
    client: TestClient, mapped: tuple[ModelVersion, DatasetManifest], settings: Settings
) -> None:
    version, _ = mapped
    store = ModelStore(settings.model_store_path)
    page = "<html><body><h1>r</h1><!-- uvac:current-cluster-names --></body></html>"
    report = store.report_path(version.ref)
    assert report is not None
    files = {path.name: path.read_bytes() for path in report.iterdir()}
    store.write_report(version.ref, files={**files, "index.html": page.encode()})
    set_cluster_name(store.root, version, cluster=1, name="Café & bar", n_clusters=3)
    response = client.get(f"/v1/models/scenes/versions/{version.version}/report/index.html")
    assert response.status_code == 200
    assert "<td>1</td><td>Café &amp; bar</td>" in response.text


NAMED = ("cluster_map.png", "cluster_sizes.png", "confusion_matrix.png")


def test_the_report_figures_name_clusters_as_they_are_named_now(
    client: TestClient, mapped: tuple[ModelVersion, DatasetManifest], settings: Settings
) -> None:
    from reports import build_report, named_figure
    from tests.reports.test_evaluation_report import (
        HELD_OUT,
        evaluated_on,
        manifest,
        model_row,
        rows_for,
    )

    version, _ = mapped
    store = ModelStore(settings.model_store_path)
    report_dir = store.report_path(version.ref)
    assert report_dir is not None
    cluster_map = json.loads((report_dir / "cluster_map.json").read_text())
    files = build_report(
        rows=rows_for(model_row(labelled=True)),
        model_ref=version.ref,
        model_metadata=version.metadata,
        model_info={},
        dataset=manifest(labelled=True),
        evaluated_on=evaluated_on(manifest(labelled=True), split=None, held_out=HELD_OUT),
        cluster_map=cluster_map,
    )
    map_bytes = (report_dir / "cluster_map.json").read_bytes()
    store.write_report(version.ref, files={**files, "cluster_map.json": map_bytes})
    report = json.loads(files["report.json"])
    base = f"/v1/models/scenes/versions/{version.version}/report"
    before = {name: client.get(f"{base}/{name}") for name in NAMED}
    assert all(response.status_code == 200 for response in before.values())
    assert before["cluster_sizes.png"].content == files["cluster_sizes.png"]  # no names yet

    set_cluster_name(store.root, version, cluster=1, name="Café & bar", n_clusters=3)
    names = {"1": "Café & bar"}
    for name in NAMED:
        response = client.get(f"{base}/{name}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"] == "no-cache"
        assert response.content != before[name].content, name
        assert response.content == named_figure(
            name, report=report, cluster_map=cluster_map, names=names
        )
    page = client.get(f"{base}/index.html").text
    assert "<td>1</td><td>Café &amp; bar</td>" in page


# --- page links: the browser's way in with API keys on ---------------------------------------


def _link(client: TestClient, version: int = 1) -> str:
    response = client.post(
        f"/v1/models/scenes/versions/{version}/page-links", headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_at"] is not None
    assert body["report"].endswith("/report/index.html?page_token=" + body["browser"].split("=")[1])
    return str(body["browser"])


def test_a_browser_without_a_key_is_refused_and_a_link_needs_one(
    secured: tuple[TestClient, Settings],
) -> None:
    client, _ = secured
    assert_problem(client.get("/v1/models/scenes/versions/1/browser"), status=401,
                   slug="unauthenticated")  # fmt: skip
    response = client.post("/v1/models/scenes/versions/1/page-links")
    assert_problem(response, status=401, slug="unauthenticated")
    assert client.get("/v1/page-assets/browser.js").status_code == 200  # no data in it


def test_a_page_link_opens_the_version_and_its_cookie_serves_the_page_requests(
    secured: tuple[TestClient, Settings],
) -> None:
    client, _ = secured
    url = _link(client)
    opened = client.get(url.replace("/browser?", "/clusters?"))
    assert opened.status_code == 200
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/v1/models/scenes/versions/1/" in cookie
    # The cookie alone (as the page's fetches and <audio> send it) now opens the version.
    assert client.get("/v1/models/scenes/versions/1/clusters").status_code == 200
    rename = client.put(
        "/v1/models/scenes/versions/1/clusters/0", json={"name": "Quiet"},
        headers={"X-UVAC-Page": "1"},
    )  # fmt: skip
    assert rename.status_code == 200 and rename.json()["name"] == "Quiet"
    # A write without the page header (a cross-site form could send the cookie) is refused.
    response = client.put("/v1/models/scenes/versions/1/clusters/0", json={"name": "Loud"})
    assert_problem(response, status=401, slug="unauthenticated")


def test_a_page_token_opens_only_its_version_and_only_reads_and_renames(
    secured: tuple[TestClient, Settings],
) -> None:
    client, _ = secured
    token = _link(client).split("page_token=")[1]
    query = {"page_token": token}
    for path in ("/v1/models", "/v1/models/scenes/versions/2/clusters", "/v1/jobs/abc"):
        assert_problem(client.get(path, params=query), status=401, slug="unauthenticated")
    response = client.delete("/v1/models/scenes/versions/1", params=query)
    assert_problem(response, status=401, slug="unauthenticated")
    response = client.put(
        "/v1/models/scenes/aliases/production", params=query, json={"version": 1},
        headers={"X-UVAC-Page": "1"},
    )  # fmt: skip
    assert_problem(response, status=401, slug="unauthenticated")


def test_an_expired_tampered_or_revoked_token_is_refused(
    secured: tuple[TestClient, Settings], tmp_path: Path
) -> None:
    client, settings = secured
    path = "/v1/models/scenes/versions/1/clusters"
    identity = key_digest(KEY)
    scope = version_scope("scenes", 1)
    expired = issue_token(settings, identity=identity, scope=scope, now=time.time() - 7200)
    assert_problem(client.get(path, params={"page_token": expired}), status=401,
                   slug="unauthenticated")  # fmt: skip
    good = issue_token(settings, identity=identity, scope=scope)
    assert client.get(path, params={"page_token": good}).status_code == 200
    client.cookies.clear()  # the answer set the good token as the cookie
    tampered = good.replace(".", ".9", 1)
    assert_problem(client.get(path, params={"page_token": tampered}), status=401,
                   slug="unauthenticated")  # fmt: skip
    # Another deployment's keys (or the key removed) do not accept it.
    rotated = make_settings(tmp_path, api_keys="other-key")
    with TestClient(create_app(rotated)) as other:
        assert_problem(other.get(path, params={"page_token": good}), status=401,
                       slug="unauthenticated")  # fmt: skip


# --- the live view's stream: a version's own WebSocket, opened with the page session -------


@pytest.fixture
def streamed(tmp_path: Path, redis_db) -> Iterator[tuple[TestClient, Settings]]:
    settings = make_settings(tmp_path, api_keys=KEY)
    store = ModelStore(settings.model_store_path)
    publish_kmeans_model(store)  # v1: a model that can be streamed
    publish_kmeans_model(store, seed=1)  # v2
    with TestClient(create_app(settings)) as client:
        yield client, settings


def _page_cookie(client: TestClient, version: int = 1) -> str:
    url = _link(client, version)
    opened = client.get(url.replace("/browser?", "/clusters?"))
    assert opened.status_code == 200
    client.cookies.clear()  # sent explicitly below, as a browser sends it on the handshake
    return opened.headers["set-cookie"].split(";", 1)[0]


def _stream_with(
    client: TestClient, path: str, headers: dict[str, str], config: dict[str, str] | None = None
) -> tuple[list[dict], int]:
    with client.websocket_connect(path, headers=headers) as websocket:
        websocket.send_json({"type": "config", "encoding": "pcm_f32le", **(config or {})})
        websocket.send_bytes(pcm_bytes(varied_audio(1.0), "pcm_f32le"))
        websocket.send_json({"type": "eof"})
        return read_to_close(websocket)


def test_a_page_session_streams_its_own_version_from_its_own_origin(
    streamed: tuple[TestClient, Settings],
) -> None:
    client, _ = streamed
    cookie = _page_cookie(client)
    page = {"cookie": cookie, "origin": "http://testserver"}
    messages, code = _stream_with(client, "/v1/models/scenes/versions/1/stream", page)
    assert code == 1000, messages
    assert messages[0]["type"] == "ready" and messages[0]["model"]["ref"] == "scenes:v1"
    assert [m["type"] for m in messages[1:-1]] == ["decision"] * (len(messages) - 2)
    assert len(messages) > 2 and messages[-1]["type"] == "final"
    # Naming another model in the config of a pinned stream is refused.
    messages, code = _stream_with(
        client, "/v1/models/scenes/versions/1/stream", page, {"model": "scenes:v2"}
    )
    assert code == 4400 and messages[-1]["problem"]["detail"].startswith("This stream is")
    # A key opens a version's stream as it opens /v1/stream.
    _, code = _stream_with(client, "/v1/models/scenes/versions/2/stream", {"X-API-Key": KEY})
    assert code == 1000


@pytest.mark.parametrize(
    ("path", "origin"),
    [
        ("/v1/models/scenes/versions/1/stream", None),  # no Origin: not a page's handshake
        ("/v1/models/scenes/versions/1/stream", "http://testserver:8080"),  # another origin
        ("/v1/models/scenes/versions/2/stream", "http://testserver"),  # another version
        ("/v1/stream", "http://testserver"),  # the general stream takes keys only
    ],
)
def test_the_page_session_opens_no_other_stream(
    streamed: tuple[TestClient, Settings], path: str, origin: str | None
) -> None:
    client, _ = streamed
    headers = {"cookie": _page_cookie(client)}
    if origin is not None:
        headers["origin"] = origin
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect(path, headers=headers),
    ):
        pass
    assert_problem(refused.value, status=401, slug="unauthenticated")
