"""The HTML pages the API serves to browsers, and their script and style (served by
`GET /v1/page-assets/{file}`: the pages need nothing from the internet).

`render_browser_page` fills the cluster browser's HTML shell; every value is escaped. The
scripts (`browser.js`: the map, playback, the clusters; `live.js`: the live panel, with its
AudioWorklet `live-capture.js`) read the page's data from the API with relative URLs, so the
same page works behind a path prefix, and write user text (names, labels, file names) only
as text nodes.
"""

from __future__ import annotations

import html
from pathlib import Path

__all__ = ["PAGE_ASSETS", "asset_path", "render_browser_page"]

_HERE = Path(__file__).resolve().parent
PAGE_ASSETS = {
    "browser.js": "text/javascript; charset=utf-8",
    "browser.css": "text/css; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "live-capture.js": "text/javascript; charset=utf-8",
}


def asset_path(file_name: str) -> Path:
    """The file of a known asset (the caller checks the name against `PAGE_ASSETS`)."""
    return _HERE / file_name


def render_browser_page(*, ref: str, has_sweep: bool) -> str:
    """The cluster browser's HTML for one version (the script fills it)."""
    title = html.escape(ref)
    sweep = (
        '<section id="sweep"><h2>Choosing K</h2>'
        '<img src="report/sweep.png" alt="Scores of each K the sweep tried"></section>'
        if has_sweep
        else ""
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Clusters of {title}</title>
<link rel="stylesheet" href="/v1/page-assets/browser.css">
<script src="/v1/page-assets/browser.js" defer></script>
<script src="/v1/page-assets/live.js" defer></script>
</head>
<body>
<header>
<h1>Clusters of <span id="model-ref">{title}</span></h1>
<p id="summary">Loading the map…</p>
<p><a href="report/index.html">Evaluation report</a></p>
</header>
<main>
<section id="map-section">
<div id="map-controls">
<label>Colour by <select id="colour-by"><option value="cluster">cluster</option></select></label>
<span id="hint">Click a point to play its recording from that window.</span>
</div>
<canvas id="map" width="720" height="720" aria-label="Map of the recordings' windows"></canvas>
<p id="map-legend"></p>
</section>
<aside id="details">
<h2>Selected window</h2>
<div id="selection"><p>Nothing selected.</p></div>
<audio id="player" controls preload="none"></audio>
<h3>Nearest neighbours (full embedding space)</h3>
<ol id="neighbours"></ol>
</aside>
</main>
<section id="clusters-section">
<h2>Clusters</h2>
<p id="rename-status" role="status"></p>
<table id="clusters">
<thead><tr><th></th><th>#</th><th>Name</th><th>In the map</th>
<th id="training-size-head" hidden>Training clips</th><th>Agreement</th>
<th>Typical recordings</th></tr></thead>
<tbody></tbody>
</table>
</section>
<section id="confusion-section" hidden>
<h2>Clusters and labels (windows)</h2>
<table id="confusion"></table>
</section>
{sweep}
<section id="live-section" data-state="idle" data-decisions="0">
<h2>Live</h2>
<p>Stream a recording, or this computer's microphone, to this version and watch the
environment it hears and the program it would choose, as they change.</p>
<div id="live-controls">
<label>Recording <input type="file" id="live-file" accept="audio/*"></label>
<label>Speed <select id="live-speed"><option value="1">real time</option>
<option value="2">2×</option></select></label>
<button type="button" id="live-file-start">Stream the recording</button>
<button type="button" id="live-mic-start">Stream the microphone</button>
<button type="button" id="live-stop" disabled>Stop</button>
</div>
<p id="live-status" role="status"></p>
<p id="live-now"></p>
<canvas id="live-timeline" width="720" height="46"
aria-label="The environment and the program over the last minute"></canvas>
<p class="hint">Upper row: each window's cluster (the environment heard); lower row: the
program in force (smoothed, switching once another cluster has led for a while). The
cluster's row in the table is marked while it is heard.</p>
</section>
</body>
</html>
"""
