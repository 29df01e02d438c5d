// Shared pieces of the two browser tests: launching Debian's Chromium through playwright-core,
// a loopback static file server, polling helpers and the one-line JSON verdict.

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const HERE = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// The flags this sandbox needs: no setuid sandbox as root, no GPU, and no background traffic
// (the network is closed, so Chromium's own connections would only fail noisily). Playwright
// adds --headless and a fresh temporary --user-data-dir itself and removes it afterwards.
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
];

export function heliosUrl() {
  const url = process.env.HELIOS_URL;
  if (!url) fail("HELIOS_URL is not set (e.g. HELIOS_URL=http://127.0.0.1:8000)");
  return url.replace(/\/+$/, "");
}

export function artifactsDir() {
  const dir = process.env.ARTIFACTS_DIR || path.join(HERE, "artifacts");
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Seconds the whole flow may take; the tiny model on a CPU is slow to warm up. */
export function budgetMs() {
  return Number(process.env.BROWSER_TEST_TIMEOUT_S || 180) * 1000;
}

export async function launch() {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!fs.existsSync(executablePath)) fail(`Chromium not found at ${executablePath} (set CHROMIUM)`);
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
}

/**
 * Records what the page says, so a failure can show it. Returns the bounded list of lines.
 */
export function recordConsole(page, limit = 400) {
  const lines = [];
  const push = (line) => {
    lines.push(line);
    if (lines.length > limit) lines.shift();
  };
  page.on("console", (m) => push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => push(`[pageerror] ${e.message}`));
  page.on("requestfailed", (r) => push(`[requestfailed] ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  return lines;
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
};

/** Serves `root` on an ephemeral loopback port: a second origin, as a real app would be. */
export async function serveStatic(root) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, "http://x").pathname).replace(/^\/+/, "") || "index.html";
    const file = path.resolve(root, rel);
    if (!file.startsWith(path.resolve(root) + path.sep) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/**
 * Polls `fn` in the page until it returns a truthy value; throws `what` on timeout with the
 * last value seen, which is what makes failures readable.
 */
export async function waitInPage(page, what, fn, arg, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await page.evaluate(fn, arg);
    if (last && (typeof last !== "object" || last.ok !== false)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}; last: ${JSON.stringify(last)}`);
}

/**
 * Page-side check that the <video> really plays: decoded size known, and currentTime advances
 * by at least `seconds` while we watch. Returns {ok, width, height, advanced, frames}.
 */
export async function waitVideoPlays(page, selector, seconds, timeoutMs) {
  await waitInPage(page, `${selector} to show frames (videoWidth > 0)`,
    (sel) => document.querySelector(sel)?.videoWidth > 0, selector, timeoutMs);
  const start = await page.evaluate((sel) => document.querySelector(sel).currentTime, selector);
  return waitInPage(page, `${selector} currentTime to advance ${seconds} s`, ([sel, t0, need]) => {
    const v = document.querySelector(sel);
    const q = v.getVideoPlaybackQuality?.();
    const advanced = v.currentTime - t0;
    return {
      ok: advanced >= need,
      width: v.videoWidth,
      height: v.videoHeight,
      advanced: Number(advanced.toFixed(2)),
      frames: q?.totalVideoFrames ?? null,
      paused: v.paused,
    };
  }, [selector, start, seconds], timeoutMs);
}

/** A small PNG made in the page (no fixture file needed): a gradient with a sun. */
export async function makePng(page, width = 320, height = 192) {
  const b64 = await page.evaluate(async ([w, h]) => {
    const c = new OffscreenCanvas(w, h);
    const g = c.getContext("2d");
    const grad = g.createLinearGradient(0, 0, 0, h);
    grad.addColorStop(0, "#1e3a8a");
    grad.addColorStop(1, "#f59e0b");
    g.fillStyle = grad;
    g.fillRect(0, 0, w, h);
    g.fillStyle = "#fde68a";
    g.beginPath();
    g.arc(w * 0.7, h * 0.35, h * 0.18, 0, Math.PI * 2);
    g.fill();
    const blob = await c.convertToBlob({ type: "image/png" });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let s = "";
    for (const x of bytes) s += String.fromCharCode(x);
    return btoa(s);
  }, [width, height]);
  return Buffer.from(b64, "base64");
}

/** Prints the one-line JSON verdict that test_browser.py parses, then exits. */
export function finish(summary) {
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

export function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}
