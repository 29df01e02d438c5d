// Helios playground: a dependency-free client of Reactor's real-time protocol (local mode).
//
// It speaks the same wire protocol as @reactor-team/js-sdk 2.9.0, on purpose without the SDK,
// so the page needs no build step and doubles as a readable reference client:
//   POST /start_session → RTCPeerConnection (recvonly video + client-created "data" channel)
//   → POST .../transport/webrtc/sdp_params (202) → poll GET until 200 {sdp_answer}
//   → JSON commands/events on the data channel → POST /stop_session.
// See docs in tests/browser/SDK_NOTES.md and shared/specs/reactor-protocol.md.

// The server to talk to: this page's own origin, or ?api=http://host:port (handy when the page
// is served from somewhere else during development; the server allows any origin).
const API = (new URLSearchParams(location.search).get("api") || location.origin).replace(/\/+$/, "");

// The SDK sends these on every coordinator call (start/stop/uploads) …
const API_HEADERS = { "Reactor-API-Version": "1", "Reactor-API-Accept-Version": "1" };
// … and these on every transport call; "local" is the bearer token of local mode.
const TRANSPORT_HEADERS = { Authorization: "Bearer local", "Reactor-WebRTC-Version": "1.0" };

const SDP_POLL_INTERVAL_MS = 300;
const SDP_POLL_TIMEOUT_MS = 30_000; // more patient than the SDK's ~6 s: a cold server may be slow
const ICE_GATHERING_TIMEOUT_MS = 5_000; // same as the SDK: send what we have after 5 s
const PING_INTERVAL_MS = 5_000; // runtime-scope liveness ping, as the SDK does
const LOG_LIMIT = 300; // the event log keeps the newest entries only

const $ = (id) => document.getElementById(id);
const el = {
  status: $("status"), sessionInfo: $("session-info"),
  connect: $("connect"), disconnect: $("disconnect"),
  video: $("video"), placeholder: $("video-placeholder"), hud: $("hud"),
  start: $("start"), pause: $("pause"), resume: $("resume"), reset: $("reset"),
  statChunk: $("stat-chunk"), statFrame: $("stat-frame"), statChunksDone: $("stat-chunks-done"),
  notice: $("notice"),
  prompt: $("prompt"), setPrompt: $("set-prompt"),
  scheduleChunk: $("schedule-chunk"), schedulePrompt: $("schedule-prompt"),
  image: $("image"), imagePreview: $("image-preview"), imageLabel: $("image-label"),
  imageStrength: $("image-strength"), imageStrengthValue: $("image-strength-value"),
  clearImage: $("clear-image"),
  seed: $("seed"), setSeed: $("set-seed"), sr: $("sr"),
  state: $("state"),
  log: $("log"), logSent: $("log-sent"), logState: $("log-state"), logClear: $("log-clear"),
};

// Everything that exists only while connected. `generation` guards against late callbacks of a
// previous connection (a click on Disconnect while a poll is in flight, for instance).
let conn = null;
let generation = 0;

// Exposed for tests and for poking at the page from the devtools console.
const playground = {
  api: API,
  status: "disconnected",
  sessionId: null,
  lastState: null,
  eventCounts: {}, // received message types → count, for this connection
  chunksDone: 0, // chunk_shown since the last start/reset: chunks that reached the video
  // (a chunk remade after a prompt change completes twice but shows once)
  sent: [], // commands sent, oldest first (bounded)
};
window.playground = playground;

// ───────────────────────────── connection ─────────────────────────────

function setStatus(status, detail = "") {
  playground.status = status;
  el.status.dataset.state = status;
  el.status.textContent = detail ? `${status} · ${detail}` : status;
  const connected = status === "ready";
  const busy = status === "connecting";
  el.connect.disabled = connected || busy;
  el.disconnect.disabled = !(connected || busy);
  for (const b of [el.start, el.pause, el.resume, el.reset, el.setPrompt, el.schedulePrompt,
    el.setSeed, el.sr, el.image, el.imageStrength, el.clearImage]) {
    b.disabled = !connected;
  }
}

async function postJson(url, body, headers) {
  return fetch(url, {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

// "503 all 1 session slots are in use…": the status plus the server's own message, taken from
// the project's error envelope {error:{message}} when there is one.
async function failText(resp) {
  const text = await resp.text().catch(() => "");
  let message = text;
  try {
    message = JSON.parse(text)?.error?.message ?? text;
  } catch { /* not JSON: keep the text */ }
  return `${resp.status} ${String(message).slice(0, 300)}`.trim();
}

function waitIceGathering(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connect() {
  const gen = ++generation;
  const stale = () => gen !== generation;
  setStatus("connecting", "starting session");
  resetView();
  try {
    const startResp = await postJson(`${API}/start_session`, {}, API_HEADERS);
    if (!startResp.ok) {
      const why = await failText(startResp);
      throw new Error(startResp.status === 409 || startResp.status === 503
        ? `server busy (another session is active): ${why}` : `start_session failed: ${why}`);
    }
    const session = await startResp.json();
    if (stale()) {
      // Disconnect was clicked while the session was being created: don't leave it running.
      await stopRemoteSession();
      return;
    }
    const sid = session.session_id;
    const base = `${API}/sessions/${encodeURIComponent(sid)}`;
    const tracks = session.capabilities?.tracks ?? [];
    const video = tracks.find((t) => t.kind === "video") ?? { name: "main_video" };
    playground.sessionId = sid;
    el.sessionInfo.textContent = `session ${sid.slice(0, 8)} · ${session.server_info?.server_version ?? ""}`;
    el.sessionInfo.title = JSON.stringify(session, null, 2);

    // Set up the peer before any further await so that a Disconnect click can always close it.
    conn = { sid, base, pc: null, dc: null, ping: null, gen };
    const iceServers = await fetchIceServers(base);
    if (stale()) return;
    const pc = new RTCPeerConnection({ iceServers });
    conn.pc = pc;
    // The client creates the one "data" channel; the server must not open its own.
    const dc = pc.createDataChannel("data");
    conn.dc = dc;
    const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
    wirePeer(pc, dc, gen);

    setStatus("connecting", "negotiating");
    await pc.setLocalDescription(await pc.createOffer());
    // No trickle ICE in this protocol: the offer must carry every candidate.
    await waitIceGathering(pc);
    if (stale()) return;
    const offerResp = await postJson(`${base}/transport/webrtc/sdp_params`, {
      sdp_offer: pc.localDescription.sdp,
      client_info: {},
      // The mid is only known after setLocalDescription; it tells the server which
      // m-section carries main_video.
      track_mapping: [{ mid: transceiver.mid, name: video.name, kind: "video", direction: "recvonly" }],
    }, TRANSPORT_HEADERS);
    if (offerResp.status !== 202) throw new Error(`sdp_params POST: expected 202, got ${await failText(offerResp)}`);

    const answer = await pollSdpAnswer(base, stale);
    if (stale()) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    setStatus("connecting", "connecting media");
  } catch (err) {
    if (stale()) return;
    showNotice(err.message || String(err), "error");
    await teardown({ stopSession: true });
    setStatus("disconnected", "failed");
  }
}

async function fetchIceServers(base) {
  // Optional on a LAN: a missing route or an empty list means host candidates only.
  try {
    const resp = await fetch(`${base}/transport/webrtc/ice_servers`, { headers: TRANSPORT_HEADERS });
    if (!resp.ok) return [];
    const body = await resp.json();
    return (body.ice_servers ?? []).map((s) => ({
      urls: s.uris,
      ...(s.credentials ? { username: s.credentials.username, credential: s.credentials.password } : {}),
    }));
  } catch {
    return [];
  }
}

async function pollSdpAnswer(base, stale) {
  const deadline = performance.now() + SDP_POLL_TIMEOUT_MS;
  while (performance.now() < deadline) {
    if (stale()) throw new Error("cancelled");
    const resp = await fetch(`${base}/transport/webrtc/sdp_params`, { headers: TRANSPORT_HEADERS });
    if (resp.status === 200) {
      const body = await resp.json();
      if (!body.sdp_answer) throw new Error("sdp_params answered 200 without sdp_answer");
      return body.sdp_answer;
    }
    if (resp.status !== 202) throw new Error(`sdp_params poll: ${await failText(resp)}`);
    await sleep(SDP_POLL_INTERVAL_MS);
  }
  throw new Error(`no SDP answer after ${SDP_POLL_TIMEOUT_MS / 1000} s`);
}

function wirePeer(pc, dc, gen) {
  const live = () => conn && conn.gen === gen;
  let peerUp = false;
  let channelUp = false;
  // "ready" needs both the media path and the data channel, exactly like the SDK.
  const maybeReady = () => {
    if (live() && peerUp && channelUp) setStatus("ready");
  };

  pc.ontrack = (ev) => {
    if (!live()) return;
    el.video.srcObject = ev.streams[0] ?? new MediaStream([ev.track]);
    el.video.play().catch(() => { /* autoplay of a muted video is allowed; ignore races */ });
  };
  pc.onconnectionstatechange = () => {
    if (!live()) return;
    const s = pc.connectionState;
    if (s === "connected") {
      peerUp = true;
      maybeReady();
    } else if (s === "failed" || s === "closed") {
      showNotice(`peer connection ${s}`, "error");
      teardown({ stopSession: s === "failed" }).then(() => setStatus("disconnected", s));
    } else if (s === "disconnected") {
      peerUp = false;
      setStatus("connecting", "media interrupted"); // ICE may still recover by itself
    }
  };
  dc.onopen = () => {
    if (!live()) return;
    channelUp = true;
    conn.ping = setInterval(() => send("ping", {}, { scope: "runtime", quiet: true }), PING_INTERVAL_MS);
    maybeReady();
  };
  dc.onclose = () => {
    if (!live()) return;
    channelUp = false;
    clearInterval(conn.ping);
  };
  dc.onmessage = (ev) => {
    if (live()) onMessage(ev.data);
  };
}

async function teardown({ stopSession }) {
  const c = conn;
  conn = null;
  generation++;
  if (!c) return;
  clearInterval(c.ping);
  try { c.dc?.close(); } catch { /* already closed */ }
  try { c.pc?.close(); } catch { /* already closed */ }
  el.video.srcObject = null;
  el.placeholder.hidden = false;
  el.hud.hidden = true;
  if (stopSession) await stopRemoteSession();
}

// Local mode has exactly one session, so stop_session carries no id (as in the SDK).
function stopRemoteSession() {
  return fetch(`${API}/stop_session`, { method: "POST", headers: API_HEADERS }).catch(() => {});
}

async function disconnect() {
  await teardown({ stopSession: true });
  playground.sessionId = null;
  el.sessionInfo.textContent = "";
  setStatus("disconnected");
}

// ───────────────────────────── messages ─────────────────────────────

// Every command travels as {scope, data: {type, data, uploads?}} on the "data" channel.
function send(type, data = {}, { scope = "application", uploads, quiet = false } = {}) {
  const dc = conn?.dc;
  if (!dc || dc.readyState !== "open") {
    showNotice(`not connected: "${type}" not sent`, "error");
    return false;
  }
  const inner = { type, data };
  if (uploads) inner.uploads = uploads;
  dc.send(JSON.stringify({ scope, data: inner }));
  if (!quiet) {
    playground.sent.push(inner);
    if (playground.sent.length > LOG_LIMIT) playground.sent.shift();
    addLogEntry("out", scope, type, data, uploads);
  }
  return true;
}

function onMessage(raw) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    addLogEntry("in", "?", "unparsed", String(raw));
    return;
  }
  // Events are nested: {scope, data: {type, data}}. Tolerate a bare {type, data} as the SDK does.
  const enveloped = msg && (msg.scope === "application" || msg.scope === "runtime") && msg.data !== undefined;
  const scope = enveloped ? msg.scope : "application";
  const inner = enveloped ? msg.data : msg;
  const type = inner?.type ?? "(untyped)";
  const data = inner?.data ?? {};
  playground.eventCounts[type] = (playground.eventCounts[type] ?? 0) + 1;
  addLogEntry("in", scope, type, data);
  if (scope !== "application") return;

  switch (type) {
    case "state":
      renderState(data);
      break;
    case "chunk_shown":
      playground.chunksDone += 1;
      el.statChunksDone.textContent = String(playground.chunksDone);
      break;
    case "image_accepted":
      el.imageLabel.textContent = `accepted · ${data.width}×${data.height}`;
      break;
    case "command_error":
      showNotice(`${data.command ?? "command"} rejected: ${data.reason ?? "unknown reason"}`, "error");
      break;
    case "generation_reset":
      playground.chunksDone = 0;
      el.statChunksDone.textContent = "0";
      break;
    default:
      break;
  }
}

const STATE_ORDER = ["started", "running", "paused", "current_chunk", "current_frame",
  "current_prompt", "image_set", "image_strength", "scheduled_prompts"];

function renderState(state) {
  playground.lastState = state;
  el.statChunk.textContent = state.current_chunk ?? "–";
  el.statFrame.textContent = state.current_frame ?? "–";
  const keys = [...STATE_ORDER.filter((k) => k in state), ...Object.keys(state).filter((k) => !STATE_ORDER.includes(k))];
  el.state.replaceChildren(...keys.flatMap((k) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.dataset.key = k;
    const v = state[k];
    if (k === "scheduled_prompts" && Array.isArray(v)) {
      dd.textContent = v.length ? v.map((p) => `@${p.chunk}: ${p.prompt}`).join("\n") : "none";
    } else if (typeof v === "boolean") {
      dd.textContent = v ? "yes" : "no";
      dd.className = v ? "yes" : "no";
    } else {
      dd.textContent = v === null || v === undefined ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v);
    }
    if (k === "current_prompt") dd.title = dd.textContent;
    return [dt, dd];
  }));
  // Suggest the reference app's default: follow-up prompts two chunks ahead.
  if (!el.scheduleChunk.dataset.touched && typeof state.current_chunk === "number") {
    el.scheduleChunk.value = String(state.started ? state.current_chunk + 2 : 0);
  }
}

function addLogEntry(dir, scope, type, data, uploads) {
  const li = document.createElement("li");
  li.className = `entry ${dir}`;
  li.dataset.dir = dir;
  li.dataset.type = type;
  li.dataset.scope = scope;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString([], { hour12: false }) +
    `.${String(Date.now() % 1000).padStart(3, "0")}`;
  const arrow = document.createElement("span");
  arrow.className = "dir";
  arrow.textContent = dir === "in" ? "↓" : "↑";
  const name = document.createElement("span");
  name.className = `type t-${type}`;
  name.textContent = scope === "application" ? type : `${scope}:${type}`;
  const body = document.createElement("code");
  const payload = uploads ? { ...data, uploads } : data;
  body.textContent = typeof payload === "string" ? payload : JSON.stringify(payload);
  li.append(time, arrow, name, body);
  applyLogFilter(li);
  el.log.prepend(li); // newest first
  while (el.log.childElementCount > LOG_LIMIT) el.log.lastElementChild.remove();
}

function applyLogFilter(li) {
  li.hidden = (li.dataset.dir === "out" && !el.logSent.checked) ||
    (li.dataset.type === "state" && !el.logState.checked);
}

// ───────────────────────────── uploads ─────────────────────────────

async function uploadImage(file) {
  if (!conn) return;
  const { base } = conn;
  const mime = file.type || "application/octet-stream";
  el.imageLabel.textContent = `uploading ${file.name}…`;
  el.imagePreview.src = URL.createObjectURL(file);
  el.imagePreview.hidden = false;
  try {
    const slotResp = await postJson(`${base}/uploads`, { name: file.name, size: file.size, mime_type: mime }, API_HEADERS);
    if (!slotResp.ok) throw new Error(`upload slot: ${await failText(slotResp)}`);
    const slot = await slotResp.json();
    // presigned_url is absolute and used verbatim, as the SDK does.
    const put = await fetch(slot.presigned_url, { method: "PUT", body: file, headers: { "Content-Type": mime } });
    if (!put.ok) throw new Error(`upload PUT: ${await failText(put)}`);
    const ref = { upload_id: slot.presigned_id, name: file.name, mime_type: mime, size: file.size };
    send("fileUploaded", ref, { scope: "runtime", quiet: true }); // the SDK's notification
    // A file argument travels in `uploads`, never in `data`.
    send("set_image", {}, { uploads: { image: ref } });
    el.imageLabel.textContent = `${file.name} · sent`;
  } catch (err) {
    el.imageLabel.textContent = "upload failed";
    showNotice(err.message || String(err), "error");
  }
}

// ───────────────────────────── view helpers ─────────────────────────────

let noticeTimer = null;
function showNotice(text, kind = "info") {
  el.notice.textContent = text;
  el.notice.className = `notice ${kind}`;
  el.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.notice.hidden = true; }, 8000);
}

function resetView() {
  el.notice.hidden = true;
  el.statChunk.textContent = "–";
  el.statFrame.textContent = "–";
  el.statChunksDone.textContent = "0";
  playground.eventCounts = {};
  playground.chunksDone = 0;
  playground.lastState = null;
}

// A small overlay with the decoded size and frame rate, measured per presented frame.
function startHud() {
  const v = el.video;
  if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
  const stamps = [];
  const onFrame = (now) => {
    stamps.push(now);
    while (stamps.length && now - stamps[0] > 1000) stamps.shift();
    if (v.videoWidth) {
      el.placeholder.hidden = true;
      el.hud.hidden = false;
      el.hud.textContent = `${v.videoWidth}×${v.videoHeight} · ${stamps.length} fps`;
    }
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
}

function promptText() {
  const p = el.prompt.value.trim();
  if (!p) showNotice("write a prompt first", "error");
  return p;
}

// ───────────────────────────── wiring ─────────────────────────────

el.connect.addEventListener("click", connect);
el.disconnect.addEventListener("click", disconnect);
el.start.addEventListener("click", () => send("start"));
el.pause.addEventListener("click", () => send("pause"));
el.resume.addEventListener("click", () => send("resume"));
el.reset.addEventListener("click", () => send("reset"));
el.setPrompt.addEventListener("click", () => {
  const prompt = promptText();
  if (prompt) send("set_prompt", { prompt });
});
el.prompt.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && !el.setPrompt.disabled) el.setPrompt.click();
});
el.scheduleChunk.addEventListener("input", () => { el.scheduleChunk.dataset.touched = "1"; });
el.schedulePrompt.addEventListener("click", () => {
  const prompt = promptText();
  const chunk = Number.parseInt(el.scheduleChunk.value, 10);
  if (!prompt) return;
  if (!Number.isInteger(chunk) || chunk < 0) {
    showNotice("chunk must be an integer ≥ 0", "error");
    return;
  }
  send("schedule_prompt", { prompt, chunk });
  delete el.scheduleChunk.dataset.touched; // go back to suggesting current + 2
});
el.image.addEventListener("change", () => {
  const file = el.image.files?.[0];
  if (file) uploadImage(file);
  el.image.value = ""; // choosing the same file again re-uploads it
});
el.imageStrength.addEventListener("input", () => {
  el.imageStrengthValue.textContent = Number(el.imageStrength.value).toFixed(2);
});
el.imageStrength.addEventListener("change", () => {
  send("set_image_strength", { image_strength: Number(el.imageStrength.value) });
});
el.clearImage.addEventListener("click", () => {
  if (send("clear_image")) {
    el.imagePreview.hidden = true;
    el.imageLabel.textContent = "Choose an image…";
  }
});
el.setSeed.addEventListener("click", () => {
  const seed = Number.parseInt(el.seed.value, 10);
  if (!Number.isInteger(seed)) {
    showNotice("seed must be an integer (-1 = random)", "error");
    return;
  }
  send("set_seed", { seed });
});
el.seed.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !el.setSeed.disabled) el.setSeed.click();
});
el.sr.addEventListener("change", () => send("set_sr_scale", { sr_scale: el.sr.value }));
el.logSent.addEventListener("change", () => el.log.querySelectorAll("li").forEach(applyLogFilter));
el.logState.addEventListener("change", () => el.log.querySelectorAll("li").forEach(applyLogFilter));
el.logClear.addEventListener("click", () => el.log.replaceChildren());
// Leaving the page ends the session, so the single local slot is free for the next visitor.
// keepalive lets the request outlive the page, and unlike sendBeacon it can carry our headers.
window.addEventListener("pagehide", () => {
  if (conn) fetch(`${API}/stop_session`, { method: "POST", headers: API_HEADERS, keepalive: true }).catch(() => {});
});

setStatus("disconnected");
startHud();
