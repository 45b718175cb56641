"""Cluster browser benchmark: what the map costs the worker and what the page costs a browser
(`results/browser_page.json`), and the README's screenshot (`docs/cluster-browser.png`).

1. ESC-10 with the bundled model: the data set registered, the bundled model published, its
   map drawn by `worker.cluster_map.map_files` (every window through the sound encoder,
   t-SNE, neighbours) and timed; then `worker.jobs.run_evaluation`, which keeps the map and
   draws the report.
2. t-SNE alone on 6,000 synthetic 512-value windows (3,000 recordings of two windows): the
   projection's cost at the issue's size, whatever the encoder costs.
3. The page in Debian's chromium (Selenium, chromium-driver), served by the production
   uvicorn command with API keys on and opened with a page link: seconds from `driver.get`
   until the map is drawn, the bytes it loads; a click on a point (its recording plays); an
   ESC-10 recording chosen in the live panel and streamed to the version's stream at twice
   real time (its decisions drawn); a screenshot.

Usage (from the repository root; a few minutes)::

    .venv/bin/python benchmarks/browser_page.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from benchmarks.common import LoadMonitor, machine_info, write_results  # noqa: E402
from benchmarks.server_harness import free_port  # noqa: E402

logger = logging.getLogger("browser_page")
KEY = "benchmark-key"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _map_esc10(data_dir: Path, esc10: Path, threads: int) -> dict[str, Any]:
    from app.default_model import publish_default_model
    from dataset_store import DatasetStore
    from model_store import ModelStore
    from service_config import Settings
    from uvac.selection import renumbered
    from uvac.training import load_trained_model
    from worker.cluster_map import map_files
    from worker.job_support import dataset_items
    from worker.jobs import run_evaluation

    settings = Settings(data_dir=data_dir, torch_threads=threads, device="cpu")
    datasets = DatasetStore(settings.datasets_path)
    manifest = datasets.get(datasets.register_folder(esc10).id)
    ref = publish_default_model(store_root=settings.model_store_path, serve_ref="scenes@production")
    assert ref is not None, "no bundled model"
    store = ModelStore(settings.model_store_path)
    version = store.get(ref)
    trained = renumbered(load_trained_model(version.path), version.metadata)
    started = time.perf_counter()
    files = map_files(
        trained,
        dataset_items(datasets, manifest),
        manifest=manifest,
        metadata=version.metadata,
        n_jobs=threads,
    )
    map_seconds = time.perf_counter() - started
    store.write_report(ref, files=files)
    run_evaluation({"model_ref": ref, "dataset_id": manifest.id}, job=None, settings=settings)
    document = json.loads(files["cluster_map.json"])
    return {
        "model": ref,
        "recordings": len(document["recordings"]),
        "windows": document["n_windows"],
        "map_seconds": round(map_seconds, 2),
        "map_bytes": len(files["cluster_map.json"]),
        "projection": document["projection"],
    }


def _tsne_at_issue_size(threads: int) -> dict[str, Any]:
    from reports.cluster_map import WindowTable, build_cluster_map

    rng = np.random.default_rng(0)
    recordings, k, dimensions = 3_000, 10, 512
    classes = rng.integers(0, k, recordings)
    recording = np.repeat(np.arange(recordings), 2)
    centres = rng.normal(size=(k, dimensions)) * 3
    table = WindowTable(
        recordings=[f"c{c}/r{i:04d}.wav" for i, c in enumerate(classes)],
        labels=[f"class {c}" for c in classes],
        recording=recording,
        starts_s=np.tile([0.0, 2.5], recordings),
        ends_s=np.tile([5.0, 7.5], recordings),
        embeddings=centres[classes[recording]] + rng.normal(size=(recording.size, dimensions)),
        probabilities=rng.dirichlet(np.full(k, 0.2), size=recording.size),
    )
    started = time.perf_counter()
    document = build_cluster_map(table, dataset={"id": "synthetic", "digest": ""}, n_jobs=threads)
    return {
        "recordings": recordings,
        "windows": int(recording.size),
        "dimensions": dimensions,
        "seconds": round(time.perf_counter() - started, 2),
        "map_bytes": len(json.dumps(document, separators=(",", ":"))),
    }


def _live_file(driver: Any, clip: Path) -> dict[str, Any]:
    """Stream ``clip`` from the page's live panel at 2x; what the panel showed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "live-file").send_keys(str(clip))
    driver.find_element(By.CSS_SELECTOR, "#live-speed option[value='2']").click()
    started = time.perf_counter()
    driver.find_element(By.ID, "live-file-start").click()
    WebDriverWait(driver, 120).until(
        lambda d: (
            d.find_element(By.ID, "live-section").get_attribute("data-state")
            in ("finished", "error")
        )
    )
    section = driver.find_element(By.ID, "live-section")
    return {
        "file": clip.name,
        "state": section.get_attribute("data-state"),
        "decisions": int(section.get_attribute("data-decisions") or 0),
        "seconds_to_final": round(time.perf_counter() - started, 2),
        "status": driver.find_element(By.ID, "live-status").text,
    }


def _page(data_dir: Path, screenshot: Path, live_clip: Path) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    environment = {
        **os.environ,
        "UVAC_DATA_DIR": str(data_dir),
        "UVAC_API_KEYS": KEY,
        "UVAC_DEVICE": "cpu",
        "UVAC_REDIS_URL": "redis://127.0.0.1:1/0",  # the page needs no Redis
    }
    command = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    log = (data_dir / "server.log").open("wb")
    server = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,2300"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        links = httpx.post(
            f"{url}/v1/models/scenes/versions/1/page-links", headers={"X-API-Key": KEY}
        ).json()
        opens = []
        for _ in range(3):
            started = time.perf_counter()
            driver.get(links["browser"])
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.dataset.ready === 'true'")
            )
            opens.append(round(time.perf_counter() - started, 3))
        drawn = int(driver.find_element(By.ID, "map").get_attribute("data-points-drawn") or 0)
        canvas = driver.find_element(By.ID, "map")
        x, y = driver.execute_script("return window.uvacBrowser.canvasPoint(7)")
        width = driver.execute_script("return arguments[0].getBoundingClientRect().width", canvas)
        scale = width / int(canvas.get_attribute("width") or 720)
        ActionChains(driver).move_to_element_with_offset(
            canvas, int(x * scale - width / 2), int(y * scale - width / 2)
        ).click().perform()
        time.sleep(1.5)
        playing = driver.execute_script(
            "const p = document.getElementById('player'); return [p.paused, p.currentTime];"
        )
        live = _live_file(driver, live_clip)
        driver.execute_script("window.scrollTo(0, 0)")  # choosing the file scrolled down
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        sizes = {
            path: len(httpx.get(url + path, headers={"X-API-Key": KEY}).content)
            for path in (
                "/v1/models/scenes/versions/1/browser",
                "/v1/models/scenes/versions/1/browser/data",
                "/v1/models/scenes/versions/1/clusters",
                "/v1/page-assets/browser.js",
                "/v1/page-assets/browser.css",
                "/v1/page-assets/live.js",
                "/v1/page-assets/live-capture.js",
            )
        }
        return {
            "open_seconds": opens,
            "points_drawn": drawn,
            "clicked_point_playing": {"paused": playing[0], "current_time": playing[1]},
            "live_file": live,
            "bytes": sizes,
            "total_bytes": sum(sizes.values()),
            "chromium": driver.capabilities.get("browserVersion"),
        }
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=20)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--esc10", type=Path, default=REPO.parent / "shared/data/esc10")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/browser_page.json")
    parser.add_argument("--screenshot", type=Path, default=REPO / "docs/cluster-browser.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch, LoadMonitor() as load:
        data_dir = Path(scratch)
        esc10 = _map_esc10(data_dir, args.esc10, args.threads)
        logger.info("ESC-10 map: %s", esc10)
        live_clip = sorted((args.esc10 / "002 - Rain").glob("*.ogg"))[0]
        page = _page(data_dir, args.screenshot, live_clip)
        logger.info("page: %s", page)
        tsne = _tsne_at_issue_size(args.threads)
        logger.info("t-SNE at 3,000 recordings: %s", tsne)
    write_results(
        args.out,
        {
            "machine": machine_info(),
            "threads": args.threads,
            "esc10_map": esc10,
            "esc10_page": page,
            "tsne_3000_recordings": tsne,
            "load": load.summary(),
        },
    )


if __name__ == "__main__":
    main()
