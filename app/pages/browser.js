// The cluster browser (app/routes/browser.py): a canvas scatter of the version's windows,
// playback from a window's start, neighbours in the full embedding space, cluster names
// edited in place. User text (names, labels, file names) only ever becomes text nodes.
//
// A small canvas scatter rather than a plotting library: a few thousand points redraw in
// milliseconds, a click is a nearest-point search, and the page needs no bundle.
"use strict";

(function () {
  const PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  ];
  const FOREIGN = "#c4c4c4";
  const RADIUS = 3;
  const PICK_RADIUS = 10;
  const state = {
    map: null, clusters: [], selected: -1, colourBy: "cluster", labelIndex: new Map(),
    queue: [], stopAt: null, pointsDrawn: 0, novelty: null,
  };

  function colour(index) {
    if (index < PALETTE.length) return PALETTE[index];
    return "hsl(" + ((index * 137.5) % 360).toFixed(0) + ", 60%, 45%)";
  }

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(await problemText(response));
    return response.json();
  }

  async function problemText(response) {
    try {
      const body = await response.json();
      return body.detail || body.title || String(response.status);
    } catch (error) {
      return String(response.status);
    }
  }

  function clusterName(number) {
    const entry = state.clusters[number];
    return entry && entry.name ? entry.name : "cluster " + number;
  }

  // --- the map ------------------------------------------------------------------------

  // The map's coordinates are in [0, 1] with the aspect ratio kept, so the shorter axis
  // does not reach 1: centre it on the canvas.
  function extent(values) {
    let high = 0;
    for (let index = 0; index < values.length; index += 1) high = Math.max(high, values[index]);
    return high;
  }

  function canvasPoint(index) {
    const canvas = document.getElementById("map");
    const margin = 12;
    const size = Math.min(canvas.width, canvas.height) - 2 * margin;
    const points = state.map.points;
    if (state.offsets === undefined) {
      state.offsets = [(1 - extent(points.x)) / 2, (1 - extent(points.y)) / 2];
    }
    return [
      margin + (points.x[index] + state.offsets[0]) * size,
      margin + (points.y[index] + state.offsets[1]) * size,
    ];
  }

  // A window is foreign when its novelty score passes the threshold at the version's
  // false-alarm rate now (the novelty route), or as the map was drawn when that is not known.
  function foreignThreshold() {
    if (state.novelty && state.novelty.available) return state.novelty.threshold;
    return state.map.novelty ? state.map.novelty.threshold : null;
  }

  function isForeign(index) {
    const scores = state.map.points.novelty_score;
    const threshold = foreignThreshold();
    if (!scores || threshold === null) return false;
    return scores[index] !== null && scores[index] > threshold;
  }

  function pointColour(index) {
    if (isForeign(index)) return FOREIGN;
    const points = state.map.points;
    if (state.colourBy === "label") {
      const label = state.map.recordings[points.recording[index]].label;
      return colour(state.labelIndex.get(label === null ? "(none)" : label));
    }
    return colour(points.cluster[index]);
  }

  function draw() {
    const canvas = document.getElementById("map");
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    const count = state.map.points.x.length;
    // Foreign windows first, so the known ones stay visible where they overlap.
    for (const foreign of [true, false]) {
      for (let index = 0; index < count; index += 1) {
        if (isForeign(index) !== foreign) continue;
        const [x, y] = canvasPoint(index);
        context.fillStyle = pointColour(index);
        context.beginPath();
        context.arc(x, y, RADIUS, 0, 2 * Math.PI);
        context.fill();
      }
    }
    if (state.selected >= 0) {
      const [x, y] = canvasPoint(state.selected);
      context.strokeStyle = "#000";
      context.lineWidth = 2;
      context.beginPath();
      context.arc(x, y, RADIUS + 4, 0, 2 * Math.PI);
      context.stroke();
    }
    state.pointsDrawn = count;
    canvas.dataset.pointsDrawn = String(count);
  }

  function pick(event) {
    const canvas = document.getElementById("map");
    const box = canvas.getBoundingClientRect();
    const x = (event.clientX - box.left) * (canvas.width / box.width);
    const y = (event.clientY - box.top) * (canvas.height / box.height);
    let best = -1;
    let bestDistance = PICK_RADIUS * PICK_RADIUS;
    const count = state.map.points.x.length;
    for (let index = 0; index < count; index += 1) {
      const [px, py] = canvasPoint(index);
      const distance = (px - x) * (px - x) + (py - y) * (py - y);
      if (distance <= bestDistance) {
        best = index;
        bestDistance = distance;
      }
    }
    if (best >= 0) select(best, true);
  }

  // --- playback -----------------------------------------------------------------------

  function audioUrl(recording) {
    return "browser/audio/" + recording;
  }

  function playWindow(index) {
    const points = state.map.points;
    const player = document.getElementById("player");
    const url = new URL(audioUrl(points.recording[index]), document.baseURI).href;
    const start = points.start_s[index];
    state.stopAt = state.queue.length ? points.end_s[index] : null;
    const begin = function () {
      player.currentTime = start;
      player.play().catch(function (error) {
        document.getElementById("hint").textContent = "Playback failed: " + error.message;
      });
    };
    if (player.src === url && player.readyState >= 1) {
      begin();
    } else {
      player.src = url;
      player.addEventListener("loadedmetadata", begin, { once: true });
      player.load();
    }
  }

  function playInRow(indices) {
    state.queue = indices.slice(1);
    if (indices.length) {
      select(indices[0], false);
      playWindow(indices[0]);
    }
  }

  function onTimeUpdate() {
    const player = document.getElementById("player");
    if (state.stopAt !== null && player.currentTime >= state.stopAt) {
      advanceQueue();
    }
  }

  function advanceQueue() {
    if (!state.queue.length) {
      state.stopAt = null;
      return;
    }
    const next = state.queue.shift();
    select(next, false);
    playWindow(next);
  }

  // --- the selected window ------------------------------------------------------------

  function describe(index) {
    const points = state.map.points;
    const recording = state.map.recordings[points.recording[index]];
    const box = document.getElementById("selection");
    box.replaceChildren();
    box.appendChild(element("p", recording.path, "path"));
    const facts = element("p");
    facts.appendChild(element("span", points.start_s[index].toFixed(2) + "–" +
      points.end_s[index].toFixed(2) + " s, "));
    facts.appendChild(element("strong", clusterName(points.cluster[index])));
    if (recording.label !== null) facts.appendChild(element("span", ", label " + recording.label));
    const novelty = state.map.points.novelty;
    if (novelty && novelty[index] !== null && novelty[index] !== undefined) {
      facts.appendChild(element("span", ", novelty " + novelty[index].toFixed(3) +
        (isForeign(index) ? " (foreign)" : "")));
    }
    box.appendChild(facts);
    const bars = element("ul", null, "pi");
    points.pi[index].forEach(function (value, cluster) {
      const item = element("li");
      const bar = element("span", null, "bar");
      bar.style.width = (value * 100).toFixed(1) + "%";
      bar.style.background = colour(cluster);
      item.appendChild(bar);
      item.appendChild(element("span", clusterName(cluster) + " " + value.toFixed(3)));
      bars.appendChild(item);
    });
    box.appendChild(bars);
    const list = document.getElementById("neighbours");
    list.replaceChildren();
    points.neighbours[index].forEach(function (neighbour) {
      const item = element("li");
      const button = element("button", "▶", "play");
      button.title = "Play";
      button.addEventListener("click", function () { select(neighbour, true); });
      item.appendChild(button);
      const neighbourRecording = state.map.recordings[points.recording[neighbour]];
      item.appendChild(element("span", " " + neighbourRecording.path + " @ " +
        points.start_s[neighbour].toFixed(1) + " s · " + clusterName(points.cluster[neighbour])));
      list.appendChild(item);
    });
  }

  function select(index, play) {
    state.selected = index;
    document.getElementById("map").dataset.selected = String(index);
    describe(index);
    draw();
    if (play) {
      state.queue = [];
      playWindow(index);
    }
  }

  // --- clusters -----------------------------------------------------------------------

  async function rename(number, input) {
    const status = document.getElementById("rename-status");
    const name = input.value.trim();
    const response = await fetch("clusters/" + number, {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-UVAC-Page": "1" },
      body: JSON.stringify({ name: name }),
    });
    if (!response.ok) {
      status.textContent = "Not renamed: " + await problemText(response);
      input.value = state.clusters[number].name || "";
      return;
    }
    state.clusters[number] = await response.json();
    status.textContent = "Cluster " + number + " is now named " + name + ".";
    input.dataset.saved = name;
    if (state.selected >= 0) describe(state.selected);
  }

  function plural(count, noun) {
    return count + " " + noun + (count === 1 ? "" : "s");
  }

  // A recording belongs to the cluster of its windows' mean pi, as /v1/cluster pools them.
  function recordingsPerCluster() {
    const points = state.map.points;
    const sums = new Map();
    points.pi.forEach(function (pi, index) {
      const recording = points.recording[index];
      const sum = sums.get(recording) || new Array(pi.length).fill(0);
      pi.forEach(function (value, cluster) { sum[cluster] += value; });
      sums.set(recording, sum);
    });
    const counts = new Array(state.map.n_clusters).fill(0);
    sums.forEach(function (sum) { counts[sum.indexOf(Math.max.apply(null, sum))] += 1; });
    return counts;
  }

  function clusterRows() {
    const body = document.querySelector("#clusters tbody");
    body.replaceChildren();
    const sizes = new Array(state.map.n_clusters).fill(0);
    state.map.points.cluster.forEach(function (cluster) { sizes[cluster] += 1; });
    const recordings = recordingsPerCluster();
    const trainingSizes = state.clusters.some(function (entry) {
      return entry && entry.size !== null && entry.size !== undefined;
    });
    document.getElementById("training-size-head").hidden = !trainingSizes;
    for (let number = 0; number < state.map.n_clusters; number += 1) {
      const entry = state.clusters[number] || {};
      const row = element("tr");
      row.dataset.cluster = String(number);
      const swatch = element("td", null, "swatch");
      swatch.style.background = colour(number);
      row.appendChild(swatch);
      row.appendChild(element("td", number));
      const nameCell = element("td");
      const input = element("input", null, "cluster-name");
      input.type = "text";
      input.maxLength = 64;
      input.value = entry.name || "";
      input.placeholder = "name this cluster";
      input.setAttribute("aria-label", "Name of cluster " + number);
      input.addEventListener("change", function () { rename(number, input); });
      nameCell.appendChild(input);
      row.appendChild(nameCell);
      row.appendChild(element("td", plural(recordings[number], "recording") + ", " +
        plural(sizes[number], "window"), "map-size"));
      if (trainingSizes) {
        row.appendChild(element("td", entry.size !== null && entry.size !== undefined
          ? entry.size : "not recorded", "training-size"));
      }
      const agreement = typeof entry.agreement === "number"
        ? (entry.agreement * 100).toFixed(1) + "%" + (entry.previous_number !== null &&
          entry.previous_number !== undefined ? " of " + entry.previous_number : "")
        : (entry.new ? "new" : "–");
      row.appendChild(element("td", agreement));
      const typicalCell = element("td");
      const typical = state.map.typical[number] || [];
      const button = element("button", "▶ " + typical.length + " in a row", "play-typical");
      button.disabled = typical.length === 0;
      button.addEventListener("click", function () { playInRow(typical); });
      typicalCell.appendChild(button);
      typical.forEach(function (index) {
        const recording = state.map.recordings[state.map.points.recording[index]];
        typicalCell.appendChild(element("span", recording.path, "typical"));
      });
      row.appendChild(typicalCell);
      body.appendChild(row);
    }
  }

  function confusion() {
    const labels = Array.from(state.labelIndex.keys());
    if (!labels.length || (labels.length === 1 && labels[0] === "(none)")) return;
    const colourBy = document.getElementById("colour-by");
    colourBy.appendChild(new Option("label", "label"));
    const counts = labels.map(function () { return new Array(state.map.n_clusters).fill(0); });
    const points = state.map.points;
    points.cluster.forEach(function (cluster, index) {
      const label = state.map.recordings[points.recording[index]].label;
      counts[state.labelIndex.get(label === null ? "(none)" : label)][cluster] += 1;
    });
    const table = document.getElementById("confusion");
    const head = element("tr");
    head.appendChild(element("th", "label \\ cluster"));
    for (let number = 0; number < state.map.n_clusters; number += 1) {
      head.appendChild(element("th", clusterName(number)));
    }
    table.replaceChildren(head);
    labels.forEach(function (label, row) {
      const line = element("tr");
      line.appendChild(element("th", label));
      const total = counts[row].reduce(function (a, b) { return a + b; }, 0) || 1;
      counts[row].forEach(function (count) {
        const cell = element("td", count || "");
        cell.style.background = "rgba(31, 119, 180, " + (count / total).toFixed(2) + ")";
        line.appendChild(cell);
      });
      table.appendChild(line);
    });
    document.getElementById("confusion-section").hidden = false;
  }

  function legend() {
    const box = document.getElementById("map-legend");
    box.replaceChildren();
    const canvas = document.getElementById("map");
    if (!state.map.novelty) {
      box.appendChild(element("span", state.map.novelty_unavailable ||
        "No novelty score: no window is greyed.", "no-novelty"));
      canvas.dataset.foreignWindows = "0";
      return;
    }
    const points = state.map.points;
    const recordings = new Set();
    let windows = 0;
    for (let index = 0; index < points.x.length; index += 1) {
      if (!isForeign(index)) continue;
      windows += 1;
      recordings.add(points.recording[index]);
    }
    const rate = state.novelty && state.novelty.available
      ? state.novelty.false_alarm_rate : state.map.novelty.false_alarm_rate;
    const item = element("span", null, "foreign");
    const swatch = element("span", null, "swatch");
    swatch.style.background = FOREIGN;
    item.appendChild(swatch);
    item.appendChild(element("span", " Foreign: " + plural(windows, "window") + " of " +
      plural(recordings.size, "recording") + " lie beyond the novelty threshold (" +
      (rate * 100).toFixed(1) + " % false-alarm rate: about that share of windows like the " +
      "training ones is greyed too)."));
    box.appendChild(item);
    canvas.dataset.foreignWindows = String(windows);
  }

  // --- start ----------------------------------------------------------------------------

  async function start() {
    const summary = document.getElementById("summary");
    const started = performance.now();
    try {
      const results = await Promise.all([getJson("browser/data"), getJson("clusters")]);
      state.map = results[0];
      state.clusters = results[1].data;
      if (state.map.novelty) {
        // The rate now (it may have been changed since the map was drawn).
        state.novelty = await getJson("novelty").catch(function () { return null; });
      }
    } catch (error) {
      summary.textContent = "The map could not be loaded: " + error.message;
      return;
    }
    state.map.recordings.forEach(function (recording) {
      const label = recording.label === null ? "(none)" : recording.label;
      if (!state.labelIndex.has(label)) state.labelIndex.set(label, state.labelIndex.size);
    });
    const projection = state.map.projection.method;
    summary.textContent = state.map.points.x.length + " windows of " +
      state.map.recordings.length + " recordings (data set " + state.map.dataset.id +
      "), K = " + state.map.n_clusters + ", mapped by " + projection + ".";
    clusterRows();
    confusion();
    draw();
    legend();
    const canvas = document.getElementById("map");
    canvas.addEventListener("click", pick);
    document.getElementById("colour-by").addEventListener("change", function (event) {
      state.colourBy = event.target.value;
      draw();
    });
    const player = document.getElementById("player");
    player.addEventListener("timeupdate", onTimeUpdate);
    player.addEventListener("ended", advanceQueue);
    document.body.dataset.ready = "true";
    document.body.dataset.renderMs = (performance.now() - started).toFixed(1);
  }

  window.uvacBrowser = {
    state: state, canvasPoint: canvasPoint, colour: colour, clusterName: clusterName,
  };
  document.addEventListener("DOMContentLoaded", start);
})();
