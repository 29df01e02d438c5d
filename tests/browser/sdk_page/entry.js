// Test page for Reactor's UNMODIFIED browser SDK (@reactor-team/js-sdk 2.9.0) in local mode.
// build.mjs bundles this file; run_sdk_test.mjs opens sdk_page/index.html with
// ?api=<helios url>, drives `window.__sdk` and reads what the SDK reported from `window.__*`.

import { Reactor } from "@reactor-team/js-sdk";

const apiUrl = new URLSearchParams(location.search).get("api") ?? undefined;
const video = document.getElementById("video");
const statusEl = document.getElementById("status");
const eventsEl = document.getElementById("events");

// Everything the SDK tells us, for the test to read.
window.__status = "disconnected";
window.__statusHistory = ["disconnected"];
window.__events = []; // application-scope messages: {type, data}
window.__runtime = []; // runtime-scope messages
window.__errors = []; // SDK "error" events
window.__tracks = []; // {name, kind} per trackReceived
window.__capabilities = null;

const reactor = new Reactor({ modelName: "helios", local: true, apiUrl });

function show() {
  const counts = {};
  for (const e of window.__events) counts[e?.type] = (counts[e?.type] ?? 0) + 1;
  statusEl.textContent = `SDK status: ${window.__status} · session ${reactor.getSessionId() ?? "–"}`;
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
    await reactor.connect();
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
