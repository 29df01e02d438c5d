// End-to-end: Reactor's unmodified js-sdk 2.9.0, in headless Chromium, against `helios serve`.
//
//   HELIOS_URL=http://127.0.0.1:8000 node run_sdk_test.mjs      (after `node build.mjs`)
//   SDK_MODE=coordinator HELIOS_URL=... node run_sdk_test.mjs
//
// The page (dist/) is served from its own loopback port, so every call is cross-origin and the
// server's CORS answers are exercised as they would be for a real app.
// SDK_MODE=local (default): connect in local mode (POST /start_session) → upload a reference
// image with uploadFile() + set_image → set_prompt → start → the <video> plays and ≥ 2
// chunk_complete arrive → pause → disconnect (POST /stop_session).
// SDK_MODE=coordinator: `new Reactor({modelName, apiUrl})` without `local`, connect(jwt) →
// POST /sessions → GET /sessions/{id} until ACTIVE → WebRTC → set_prompt → start → plays, ≥ 2
// chunk_complete → pause → disconnect (DELETE /sessions/{id}); the HTTP calls the page made
// (and their Authorization) are checked against that sequence.
// Prints one JSON line; exits non-zero with the reason on failure.

import fs from "node:fs";
import path from "node:path";
import {
  HERE, artifactsDir, budgetMs, finish, heliosUrl, launch, makePng, recordConsole, serveStatic,
  waitInPage, waitVideoPlays,
} from "./lib/harness.mjs";

const LATER = "the same lighthouse, lightning strikes the sea behind it";
const PROMPT =
  "A lighthouse on a rocky coast at dusk, waves rolling in under a violet sky. " +
  "Wide shot from the beach, the camera slowly pushing in.";

const dist = path.join(HERE, "dist");
if (!fs.existsSync(path.join(dist, "sdk_page.js"))) {
  console.error("FAIL: dist/sdk_page.js is missing; run `node build.mjs` first");
  process.exit(1);
}

const MODE = process.env.SDK_MODE || "local";
if (MODE !== "local" && MODE !== "coordinator") {
  console.error(`FAIL: SDK_MODE must be "local" or "coordinator", not ${JSON.stringify(MODE)}`);
  process.exit(1);
}
const JWT = "helios-browser-test-jwt"; // self-hosted helios accepts any bearer
const api = heliosUrl();
const shot = path.join(artifactsDir(), MODE === "local" ? "sdk.png" : `sdk-${MODE}.png`);
const budget = budgetMs();
const summary = { test: `sdk-${MODE}`, ok: false, mode: MODE, helios_url: api, steps: [] };
const site = await serveStatic(dist);
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1100, height: 520 } });
const consoleLines = recordConsole(page);
// Every call the page makes to helios (preflights are not reported), with its status.
const calls = [];
page.on("response", (r) => {
  const req = r.request();
  if (!req.url().startsWith(api)) return;
  const auth = req.headers().authorization ?? null;
  calls.push({ call: `${req.method()} ${req.url().slice(api.length)}`, status: r.status(), auth });
});
const step = (name) => { summary.steps.push(name); };

try {
  const query = new URLSearchParams({ api, mode: MODE, jwt: JWT });
  await page.goto(`${site.url}/index.html?${query}`);
  await page.waitForFunction(() => window.__sdk !== undefined, null, { timeout: 10_000 });

  step("connect");
  summary.session_id = await page.evaluate(() => window.__sdk.connect());
  // connect() resolves at setRemoteDescription; commands are dropped until status is "ready".
  await waitInPage(page, 'SDK status "ready"', () => window.__status === "ready", null, 30_000);
  summary.tracks = await page.evaluate(() => window.__tracks);
  if (!summary.tracks.some((t) => t.name === "main_video" && t.kind === "video")) {
    throw new Error(`no main_video track received: ${JSON.stringify(summary.tracks)}`);
  }
  await waitInPage(page, "a first `state` event", () => window.__sdk.count("state") > 0, null, 10_000);

  if (MODE === "local") {
    step("set_image");
    const png = await makePng(page);
    summary.upload = await page.evaluate(([b64]) => window.__sdk.setImage(b64), [png.toString("base64")]);
    await waitInPage(page, "image_accepted after set_image",
      () => window.__sdk.count("image_accepted") > 0 || window.__sdk.count("command_error") > 0, null, 30_000);
  }

  step("set_prompt+start");
  await page.evaluate((p) => window.__sdk.send("set_prompt", { prompt: p }), PROMPT);
  await page.evaluate(() => window.__sdk.send("set_seed", { seed: 7 }));
  await page.evaluate(() => window.__sdk.send("start", {}));
  await waitInPage(page, "generation_started", () => window.__sdk.count("generation_started") > 0, null, 30_000);

  step("video plays");
  summary.video = await waitVideoPlays(page, "#video", 1.0, budget);
  step("chunk_complete x2");
  await waitInPage(page, "2 chunk_complete events", () => window.__sdk.count("chunk_complete") >= 2, null, budget);
  await page.screenshot({ path: shot });

  // Super-resolution: from the next chunk on, frames go at twice the model's size (the egress
  // upscales them), so the <video> itself becomes twice as wide and high.
  step("set_sr_scale 2x -> video twice the size");
  await page.evaluate(() => window.__sdk.send("set_sr_scale", { sr_scale: "2x" }));
  summary.sr_video = await waitInPage(page, "the <video> at twice the model size", ([sel, w, h]) => {
    const v = document.querySelector(sel);
    return { ok: v.videoWidth === 2 * w && v.videoHeight === 2 * h, width: v.videoWidth, height: v.videoHeight };
  }, ["#video", summary.video.width, summary.video.height], budget);
  summary.egress = await page.evaluate(
    () => window.__events.filter((e) => e?.type === "state").at(-1)?.data?.egress ?? null,
  );

  // chunk_shown (a chunk's first frame went out) is an event 2.9.0 does not know: it must come
  // through as a plain message. A prompt sent mid-stream reaches a shown chunk.
  step("set_prompt mid-stream -> chunk_shown");
  await page.evaluate((p) => window.__sdk.send("set_prompt", { prompt: p }), LATER);
  await waitInPage(
    page,
    "a chunk_shown with the new prompt",
    (p) => window.__events.some((e) => e?.type === "chunk_shown" && e.data?.active_prompt === p),
    LATER,
    budget,
  );

  step("pause");
  await page.evaluate(() => window.__sdk.send("pause", {}));
  await waitInPage(page, "generation_paused", () => window.__sdk.count("generation_paused") > 0, null, 60_000);

  const errors = await page.evaluate(() => window.__events.filter((e) => e?.type === "command_error"));
  if (errors.length) throw new Error(`server rejected commands: ${JSON.stringify(errors)}`);
  const sdkErrors = await page.evaluate(() => window.__errors);
  if (sdkErrors.length) throw new Error(`SDK reported errors: ${JSON.stringify(sdkErrors)}`);

  step("disconnect");
  summary.final_status = await page.evaluate(() => window.__sdk.disconnect());
  if (summary.final_status !== "disconnected") throw new Error(`status after disconnect: ${summary.final_status}`);
  summary.calls = calls.map((c) => `${c.call} ${c.status}`);
  if (MODE === "coordinator") checkCoordinatorCalls(calls, summary.session_id);
  summary.event_counts = await page.evaluate(() => {
    const c = {};
    for (const e of window.__events) c[e?.type] = (c[e?.type] ?? 0) + 1;
    return c;
  });
  summary.status_history = await page.evaluate(() => window.__statusHistory);
  summary.screenshot = shot;
  summary.ok = true;
} catch (err) {
  summary.error = String(err.message).slice(0, 1500);
  summary.event_counts = await page.evaluate(() => {
    const c = {};
    for (const e of window.__events ?? []) c[e?.type] = (c[e?.type] ?? 0) + 1;
    return c;
  }).catch(() => null);
  summary.calls = calls.map((c) => `${c.call} ${c.status}`);
  // SDK errors can embed whole zod reports; keep the verdict line readable.
  summary.sdk_errors = await page.evaluate(
    () => window.__errors.map((e) => ({ code: e.code, message: String(e.message).slice(0, 600) })),
  ).catch(() => null);
  await page.screenshot({ path: shot }).catch(() => {});
  console.error(`FAIL (sdk, ${MODE} mode) at step "${summary.steps.at(-1)}": ${err.message}`);
  console.error("--- page console (last 60 lines) ---");
  console.error(consoleLines.slice(-60).join("\n"));
} finally {
  await browser.close();
  site.close();
}
finish(summary);

/** Coordinator mode: the SDK's own HTTP sequence, each call with `Bearer <jwt>`. */
function checkCoordinatorCalls(seen, sessionId) {
  const at = (i) => seen[i]?.call;
  const where = (pred) => seen.findIndex(pred);
  const create = where((c) => c.call === "POST /sessions");
  const poll = where((c) => c.call === `GET /sessions/${sessionId}`);
  const offer = where((c) => c.call === `POST /sessions/${sessionId}/transport/webrtc/sdp_params`);
  const del = where((c) => c.call === `DELETE /sessions/${sessionId}`);
  const order = [create, poll, offer, del];
  if (order.some((i) => i < 0) || order.some((i, k) => k > 0 && i <= order[k - 1])) {
    throw new Error(`coordinator calls out of order or missing: ${JSON.stringify(seen.map((c) => c.call))}`);
  }
  if (seen[create].status !== 201 && seen[create].status !== 200) throw new Error(`POST /sessions → ${seen[create].status}`);
  if (seen[del].status !== 200) throw new Error(`${at(del)} → ${seen[del].status}`);
  if (seen.some((c) => c.call.startsWith("POST /start_session") || c.call.startsWith("POST /stop_session"))) {
    throw new Error("coordinator mode used the local-mode routes");
  }
  const badAuth = seen.filter((c) => c.auth !== `Bearer ${JWT}`);
  if (badAuth.length) throw new Error(`calls without Bearer <jwt>: ${JSON.stringify(badAuth)}`);
}
