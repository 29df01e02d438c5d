// Test page for Reactor's UNMODIFIED browser SDK (@reactor-team/js-sdk 2.9.0).
// build.mjs bundles this file; run_sdk_test.mjs opens sdk_page/index.html with
// ?api=<helios url>[&mode=coordinator&jwt=<token>], drives `window.__sdk` and reads what the SDK
// reported from `window.__*`. mode=local (default): `local: true`, POST /start_session.
// mode=coordinator: no `local`, connect(jwt) → POST /sessions, GET /sessions/{id} polling,
// Bearer <jwt> on every call, DELETE /sessions/{id} on disconnect.

import { Reactor } from "@reactor-team/js-sdk";

const params = new URLSearchParams(location.search);
const apiUrl = params.get("api") ?? undefined;
const mode = params.get("mode") ?? "local";
if (mode !== "local" && mode !== "coordinator") throw new Error(`unknown mode ${mode}`);
const jwt = params.get("jwt") ?? "helios-browser-test-jwt";
const video = document.getElementById("video");
const statusEl = document.getElementById("status");
const eventsEl = document.getElementById("events");
document.querySelector("h1").textContent = `@reactor-team/js-sdk (unmodified) in ${mode} mode`;

// Everything the SDK tells us, for the test to read.
window.__status = "disconnected";
window.__statusHistory = ["disconnected"];
window.__events = []; // application-scope messages: {type, data}
window.__runtime = []; // runtime-scope messages
window.__errors = []; // SDK "error" events
window.__tracks = []; // {name, kind} per trackReceived
window.__capabilities = null;

const reactor =
  mode === "local"
    ? new Reactor({ modelName: "helios", local: true, apiUrl })
    : new Reactor({ modelName: "helios", apiUrl });

function show() {
  const counts = {};
  for (const e of window.__events) counts[e?.type] = (counts[e?.type] ?? 0) + 1;
  statusEl.textContent = `SDK (${mode}) status: ${window.__status} · session ${reactor.getSessionId() ?? "–"}`;
  eventsEl.textContent = Object.entries(counts).map(([k, v]) => `${k} × ${v}`).join("\n");
}

reactor.on("statusChanged", (s) => {
  window.__status = s;
  window.__statusHistory.push(s);
  show();
});
reactor.on("capabilitiesReceived", (c) => { window.__capabilities = c; });
reactor.on("trackReceived", (name, track) => {
  window.__tracks.push({ name, kind: track.kind });
  // The SDK leaves attaching to the app (ReactorView does the same with a fresh MediaStream).
  if (track.kind === "video") {
    video.srcObject = new MediaStream([track]);
    video.play().catch(() => {});
  }
});
reactor.on("message", (m) => {
  window.__events.push(m);
  show();
});
reactor.on("runtimeMessage", (m) => { window.__runtime.push(m); });
reactor.on("error", (e) => {
  window.__errors.push(e);
  console.error(`[sdk error] ${e.code}: ${e.message}`);
});

// What the test drives. Each returns a plain value so page.evaluate can carry it back.
window.__sdk = {
  async connect() {
    // Local mode needs no token; coordinator mode throws without one.
    await (mode === "local" ? reactor.connect() : reactor.connect(jwt));
    return reactor.getSessionId();
  },
  async send(command, data = {}) {
    await reactor.sendCommand(command, data);
  },
  /** Upload bytes with the SDK's own uploadFile(), then set_image with the FileRef. */
  async setImage(base64, mimeType = "image/png", name = "reference.png") {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const ref = await reactor.uploadFile(new File([bytes], name, { type: mimeType }));
    await reactor.sendCommand("set_image", { image: ref });
    return { uploadId: ref.uploadId, size: ref.size };
  },
  async disconnect() {
    await reactor.disconnect();
    return reactor.getStatus();
  },
  count(type) {
    return window.__events.filter((e) => e?.type === type).length;
  },
};
show();
