// The cluster browser's live view: a chosen recording, or this computer's microphone,
// streamed to the version's own WebSocket (WS .../versions/{v}/stream, the protocol of
// WS /v1/stream pinned to this version), and the environment (each window's cluster) and
// the program in force drawn as they change.
//
// The socket is opened with the page's session: the cookie the page link set is limited to
// this version's paths, which the version's stream is under, and the server checks that the
// page is of its own origin. Audio goes as pcm_f32le at the model's rate, which `ready`
// says: a file is decoded straight to that rate (OfflineAudioContext), the microphone is
// captured by an AudioContext at that rate (the browser resamples), or, where a browser
// cannot capture at another rate than the device's, resampled here (linear interpolation).
"use strict";

(function () {
  const STRIP_SECONDS = 60;
  const SEND_EVERY_MS = 100;
  const MIC_SEND_SECONDS = 0.1;
  const live = { socket: null, ready: null, decisions: 0, lastEnd: 0, strip: [], stop: null };

  function byId(id) {
    return document.getElementById(id);
  }

  function section() {
    return byId("live-section");
  }

  function setState(state, text) {
    section().dataset.state = state;
    if (text !== undefined) byId("live-status").textContent = text;
    const busy = state === "connecting" || state === "streaming";
    byId("live-file-start").disabled = busy;
    byId("live-mic-start").disabled = busy || !microphoneAvailable();
    byId("live-stop").disabled = !busy;
  }

  function microphoneAvailable() {
    return Boolean(window.isSecureContext && navigator.mediaDevices &&
      navigator.mediaDevices.getUserMedia && window.AudioWorkletNode);
  }

  function socketUrl() {
    const url = new URL("stream", document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    return url.href;
  }

  // --- the timeline strip ----------------------------------------------------------------

  function drawStrip() {
    const canvas = byId("live-timeline");
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    const offset = Math.max(0, live.lastEnd - STRIP_SECONDS);
    const scale = canvas.width / STRIP_SECONDS;
    const row = (canvas.height - 6) / 2;
    const browser = window.uvacBrowser;
    live.strip.forEach(function (entry) {
      if (entry.to <= offset) return;
      const x = Math.max(0, (entry.from - offset) * scale);
      const width = Math.max(1, (entry.to - offset) * scale - x);
      context.fillStyle = browser.colour(entry.environment);
      context.fillRect(x, 0, width, row);
      context.fillStyle = browser.colour(entry.program);
      context.fillRect(x, row + 6, width, row);
    });
  }

  function highlightRow(environment) {
    document.querySelectorAll("#clusters tbody tr").forEach(function (row) {
      row.classList.toggle("live-environment", row.dataset.cluster === String(environment));
    });
  }

  function onDecision(decision) {
    const browser = window.uvacBrowser;
    const from = live.strip.length ? live.lastEnd : decision.start_s;
    live.strip.push({
      from: from, to: decision.end_s, environment: decision.assignment, program: decision.program,
    });
    live.lastEnd = decision.end_s;
    live.decisions += 1;
    // The names as the page knows them now (a rename on this page shows at once).
    byId("live-now").textContent = decision.end_s.toFixed(1) + " s · environment: " +
      browser.clusterName(decision.assignment) + " · program: " +
      browser.clusterName(decision.program);
    section().dataset.decisions = String(live.decisions);
    section().dataset.environment = String(decision.assignment);
    section().dataset.program = String(decision.program);
    highlightRow(decision.assignment);
    drawStrip();
  }

  function onFinal(final) {
    setState("finished", final.duration_s.toFixed(1) + " s streamed, " + final.decisions +
      (final.decisions === 1 ? " decision" : " decisions") + "; the whole stream is " +
      window.uvacBrowser.clusterName(final.assignment) +
      " (confidence " + final.confidence.toFixed(2) + ").");
  }

  // --- the socket ----------------------------------------------------------------------

  // Opens the stream and resolves with the server's `ready` message.
  function open() {
    live.decisions = 0;
    live.lastEnd = 0;
    live.strip = [];
    section().dataset.decisions = "0";
    drawStrip();
    setState("connecting", "Connecting…");
    return new Promise(function (resolve, reject) {
      const socket = new WebSocket(socketUrl(), ["uvac.v1"]);
      let isReady = false;
      live.socket = socket;
      socket.addEventListener("open", function () {
        socket.send(JSON.stringify({ type: "config", encoding: "pcm_f32le" }));
      });
      socket.addEventListener("message", function (event) {
        const message = JSON.parse(event.data);
        if (message.type === "ready") {
          isReady = true;
          live.ready = message;
          resolve(message);
        } else if (message.type === "decision") {
          onDecision(message);
        } else if (message.type === "final") {
          onFinal(message);
        } else if (message.type === "error") {
          setState("error", "The stream was ended: " + (message.problem.detail ||
            message.problem.title));
        }
      });
      socket.addEventListener("close", function (event) {
        if (live.stop) live.stop(false);
        live.socket = null;
        const state = section().dataset.state;
        if (state === "connecting" || state === "streaming") {
          setState("error", "The stream closed (code " + event.code + ").");
        }
        if (!isReady) reject(new Error("the stream could not be opened (code " + event.code + ")"));
      });
    });
  }

  function send(samples) {
    // Float32Array is little-endian on every platform browsers run on: pcm_f32le as it is.
    if (live.socket && live.socket.readyState === WebSocket.OPEN && samples.length) {
      live.socket.send(samples.buffer.slice(samples.byteOffset,
        samples.byteOffset + samples.byteLength));
    }
  }

  function sendEof() {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) {
      live.socket.send(JSON.stringify({ type: "eof" }));
    }
  }

  // --- a recording ---------------------------------------------------------------------

  function mono(buffer) {
    const samples = new Float32Array(buffer.length);
    for (let channel = 0; channel < buffer.numberOfChannels; channel += 1) {
      const data = buffer.getChannelData(channel);
      for (let index = 0; index < data.length; index += 1) {
        samples[index] += data[index] / buffer.numberOfChannels;
      }
    }
    return samples;
  }

  async function streamFile() {
    const file = byId("live-file").files[0];
    if (!file) {
      setState("idle", "Choose a recording first.");
      return;
    }
    const data = await file.arrayBuffer();
    let ready;
    try {
      ready = await open();
    } catch (error) {
      setState("error", "Not streamed: " + error.message + ".");
      return;
    }
    let samples;
    try {
      const decoder = new OfflineAudioContext(1, 1, ready.sample_rate);
      samples = mono(await decoder.decodeAudioData(data));
    } catch (error) {
      live.socket.close(1000);
      setState("error", "The browser cannot decode " + file.name + " as audio.");
      return;
    }
    const speed = Math.min(Number(byId("live-speed").value), ready.limits.max_speed);
    // A little ahead of the pace (within the server's burst allowance) so decisions keep up.
    const lead = Math.min(1.0, ready.limits.burst_seconds / 2);
    const started = performance.now();
    let sent = 0;
    setState("streaming", "Streaming " + file.name + " (" + (samples.length /
      ready.sample_rate).toFixed(1) + " s) at " + speed + "× real time…");
    const timer = setInterval(function () {
      const seconds = (performance.now() - started) / 1000 * speed + lead;
      const due = Math.min(samples.length, Math.round(seconds * ready.sample_rate));
      if (due > sent) {
        send(samples.subarray(sent, due));
        sent = due;
      }
      if (sent >= samples.length) {
        clearInterval(timer);
        live.stop = null;
        sendEof();
      }
    }, SEND_EVERY_MS);
    live.stop = function (endStream) {
      clearInterval(timer);
      live.stop = null;
      if (endStream) sendEof();
    };
  }

  // --- the microphone ------------------------------------------------------------------

  // Linear interpolation from one rate to another, across blocks (no low-pass: the fallback
  // for browsers that cannot capture at the model's rate).
  function resampler(from, to) {
    if (from === to) return function (block) { return block; };
    const step = from / to;
    let position = 0;
    let last = 0;
    return function (block) {
      const out = [];
      while (position <= block.length - 1) {
        const index = Math.floor(position);
        const fraction = position - index;
        const a = index < 0 ? last : block[index];
        out.push(fraction === 0 ? a : a + (block[index + 1] - a) * fraction);
        position += step;
      }
      position -= block.length;
      last = block[block.length - 1];
      return Float32Array.from(out);
    };
  }

  async function streamMicrophone() {
    if (!microphoneAvailable()) {
      setState("idle", "The microphone needs a secure page (HTTPS, or this computer's own " +
        "address).");
      return;
    }
    let media;
    try {
      media = await navigator.mediaDevices.getUserMedia({
        audio: {
          channelCount: 1, echoCancellation: false, noiseSuppression: false,
          autoGainControl: false,
        },
      });
    } catch (error) {
      setState("error", "No microphone: " + error.message);
      return;
    }
    let ready;
    try {
      ready = await open();
    } catch (error) {
      media.getTracks().forEach(function (track) { track.stop(); });
      setState("error", "Not streamed: " + error.message + ".");
      return;
    }
    let context;
    let source;
    try {
      context = new AudioContext({ sampleRate: ready.sample_rate });
      source = context.createMediaStreamSource(media);
    } catch (error) {
      if (context) context.close();
      context = new AudioContext();
      source = context.createMediaStreamSource(media);
    }
    const resample = resampler(context.sampleRate, ready.sample_rate);
    await context.audioWorklet.addModule("/v1/page-assets/live-capture.js");
    const capture = new AudioWorkletNode(context, "uvac-capture");
    const silent = context.createGain();
    silent.gain.value = 0;  // pulls the graph without playing the microphone back
    let pending = [];
    let pendingLength = 0;
    capture.port.onmessage = function (event) {
      const block = resample(event.data);
      pending.push(block);
      pendingLength += block.length;
      if (pendingLength < MIC_SEND_SECONDS * ready.sample_rate) return;
      const joined = new Float32Array(pendingLength);
      let offset = 0;
      pending.forEach(function (part) { joined.set(part, offset); offset += part.length; });
      pending = [];
      pendingLength = 0;
      send(joined);
    };
    source.connect(capture).connect(silent).connect(context.destination);
    setState("streaming", "Streaming the microphone (" + context.sampleRate + " Hz captured, " +
      ready.sample_rate + " Hz sent)…");
    live.stop = function (endStream) {
      live.stop = null;
      media.getTracks().forEach(function (track) { track.stop(); });
      capture.port.onmessage = null;
      context.close();
      if (endStream) sendEof();
    };
  }

  function stop() {
    if (live.stop) live.stop(true);
    else sendEof();
  }

  function start() {
    if (!section()) return;
    setState("idle", microphoneAvailable() ? "" : "The microphone needs a secure page " +
      "(HTTPS, or this computer's own address); a recording can be streamed from here.");
    byId("live-file-start").addEventListener("click", streamFile);
    byId("live-mic-start").addEventListener("click", streamMicrophone);
    byId("live-stop").addEventListener("click", stop);
    drawStrip();
  }

  window.uvacLive = { live: live, resampler: resampler };
  document.addEventListener("DOMContentLoaded", start);
})();
