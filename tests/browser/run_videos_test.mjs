// End-to-end: the videos page that `helios serve` serves at `/videos`, driven through its form and
// buttons in headless Chromium against the real job API on the tiny model.
//
//   HELIOS_URL=http://127.0.0.1:8000 node run_videos_test.mjs
//   HELIOS_API_KEY=k HELIOS_URL=http://127.0.0.1:8000 node run_videos_test.mjs   # server: --api-key k --max-queue 1
//
// Without a key: playground → Videos link → a job with a reference image (I2V) and custom pyramid
// steps → its progress bar reaches 100 (the card keeps its size meanwhile) → thumbnail and
// spritesheet scrub → play (videoWidth is the job's width, currentTime advances) → download →
// remix → cancel a running job → "Load more" over the cursor → delete → screenshot.
// With HELIOS_API_KEY: 401 without a key and with a wrong one, the key kept in localStorage and
// sent as a bearer token, a job made and played through blob: URLs, 429 when the queue is full,
// 503 (answered by the browser: a healthy server has no reason to send it), Forget.
// Prints one JSON line; exits non-zero with the reason on failure.

import fs from "node:fs";
import path from "node:path";
import {
  artifactsDir, budgetMs, finish, heliosUrl, launch, makePng, recordConsole, waitInPage,
} from "./lib/harness.mjs";

const api = heliosUrl();
const KEY = process.env.HELIOS_API_KEY || "";
const shot = path.join(artifactsDir(), KEY ? "videos-api-key.png" : "videos.png");
const budget = budgetMs();
const summary = { test: KEY ? "videos-api-key" : "videos", ok: false, helios_url: api, steps: [] };
const browser = await launch();
// The issue asks for a page readable on a laptop: run the whole flow at 1280x800.
const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
const consoleLines = recordConsole(page);
const step = (name) => { summary.steps.push(name); };
page.on("dialog", (d) => d.accept()); // delete / cancel ask first

// The Authorization header of every API request the page makes.
const apiCalls = [];
page.on("request", (r) => {
  const url = new URL(r.url());
  if (url.pathname.startsWith("/v1/")) {
    apiCalls.push({ method: r.method(), path: url.pathname + url.search, auth: r.headers().authorization ?? null });
  }
});

const server = async (method, p) => {
  const resp = await fetch(api + p, { method, headers: KEY ? { Authorization: `Bearer ${KEY}` } : {} });
  return { status: resp.status, body: await resp.json().catch(() => null) };
};
const card = (id) => `li.job[data-id="${id}"]`;
const cardIds = () => page.$$eval("li.job", (lis) => lis.map((li) => li.dataset.id));
const noticeIs = (status, timeoutMs = 30_000) => waitInPage(page, `a ${status} message`,
  (s) => {
    const n = document.getElementById("notice");
    return !n.hidden && n.dataset.status === s && document.getElementById("notice-text").textContent;
  }, String(status), timeoutMs);

async function openPage(query = "") {
  const resp = await page.goto(`${api}/videos${query}`);
  if (!resp?.ok()) throw new Error(`GET /videos answered ${resp?.status()}`);
  await page.waitForFunction(() => window.videosPage !== undefined, null, { timeout: 10_000 });
}
const waitReady = () => waitInPage(page, "the page to load the model", () => window.videosPage.ready, null, 60_000);

/** Fills the form for a short video: one 33-frame chunk at the default size. */
async function fillShortJob(prompt, { seed } = {}) {
  await page.fill("#prompt", prompt);
  await page.selectOption("#length-unit", "frames");
  await page.fill("#length", "33");
  if (seed !== undefined) await page.fill("#seed", String(seed));
}

/** Clicks Generate; returns the id of the card it adds at the top. */
async function generate() {
  const before = new Set(await cardIds());
  await page.click("#generate");
  return waitInPage(page, "a new card at the top of the list", (known) => {
    const id = document.querySelector("li.job")?.dataset.id;
    return id && !known.includes(id) ? id : null;
  }, [...before], 30_000);
}

/** Waits for the card's progress bar to reach 100 and its status to be completed, sampling the
 * card's box every 50 ms all along: it must not change size while the job runs or when it ends. */
async function waitCompleted(id) {
  await page.evaluate((sel) => {
    const li = document.querySelector(sel);
    window.__samples = [];
    window.__sample = () => {
      const box = li.getBoundingClientRect();
      window.__samples.push({
        status: li.dataset.status,
        progress: Number(li.querySelector(".progress").getAttribute("aria-valuenow")),
        height: Math.round(box.height * 10) / 10,
        width: Math.round(box.width * 10) / 10,
      });
    };
    window.__sampler = setInterval(window.__sample, 50);
  }, card(id));
  const final = await waitInPage(page, `${id} to reach 100% and completed`, (sel) => {
    const li = document.querySelector(sel);
    const value = li?.querySelector(".progress").getAttribute("aria-valuenow");
    if (li?.dataset.status === "failed") return { ok: true, failed: li.querySelector(".job-detail").textContent };
    return li?.dataset.status === "completed" && value === "100" ? { ok: true, progress: 100 } : { ok: false, value };
  }, card(id), budget);
  // One last sample as the sampler stops: the wait above can see 100 between two ticks.
  const samples = await page.evaluate(() => {
    clearInterval(window.__sampler);
    window.__sample();
    return window.__samples;
  });
  if (final.failed) throw new Error(`${id} failed: ${final.failed}`);
  // Queued, running and finished, the card keeps one size: nothing around it moves.
  const running = samples.filter((s) => s.status === "queued" || s.status === "in_progress");
  const sizes = [...new Set(samples.map((s) => `${s.width}x${s.height}`))];
  if (sizes.length > 1) {
    const seen = new Set(samples.map((s) => `${s.status} ${s.width}x${s.height}`));
    throw new Error(`the card of ${id} changed size: ${[...seen].join(", ")}`);
  }
  const progress = samples.map((s) => s.progress);
  if (progress.some((p, i) => i > 0 && p < progress[i - 1])) throw new Error(`progress went back: ${progress}`);
  return { progress_seen: [...new Set(progress)], running_samples: running.length, card_size: sizes[0] ?? null };
}

/** The inline player really plays: decoded size, and currentTime moving forward (the player
 * loops, so forward steps are summed instead of comparing two readings). */
async function checkPlays(id, need = 0.5) {
  const sel = `${card(id)} .player`;
  await waitInPage(page, `${sel} to show frames`, (s) => document.querySelector(s)?.videoWidth > 0, sel, 60_000);
  await page.evaluate((s) => {
    const v = document.querySelector(s);
    window.__played = { forward: 0, last: v.currentTime };
    window.__playTimer = setInterval(() => {
      const t = v.currentTime;
      if (t > window.__played.last) window.__played.forward += t - window.__played.last;
      window.__played.last = t;
    }, 40);
  }, sel);
  const result = await waitInPage(page, `${sel} currentTime to advance ${need} s`, ([s, want]) => {
    const v = document.querySelector(s);
    const forward = window.__played.forward;
    return { ok: forward >= want, width: v.videoWidth, height: v.videoHeight, advanced: Number(forward.toFixed(2)), src: v.src.slice(0, 5) };
  }, [sel, need], 60_000);
  await page.evaluate(() => clearInterval(window.__playTimer));
  return result;
}

async function runWithoutKey() {
  step("playground links to the videos page");
  const resp = await page.goto(`${api}/`);
  if (!resp?.ok()) throw new Error(`GET / answered ${resp?.status()}`);
  await page.click('nav a[href="/videos"]');
  await page.waitForURL(`${api}/videos`);
  await page.waitForFunction(() => window.videosPage !== undefined, null, { timeout: 10_000 });
  await waitReady();
  if (!(await page.$('nav a[href="/"]'))) throw new Error("no link back to the playground");
  summary.model = await page.textContent("#model");
  summary.sizes = await page.$$eval("#size option", (os) => os.map((o) => o.textContent));
  if (!summary.sizes[0].startsWith("640x384")) throw new Error(`the trained size is not first: ${summary.sizes}`);

  step("the prompt boxes take what the API takes");
  const caps = await page.$$eval("#prompt, #negative-prompt", (boxes) => boxes.map((b) => b.maxLength));
  if (caps.join() !== "32000,32000") throw new Error(`prompt caps: ${caps}`);

  step("an invalid custom size, then a preset: Generate works again");
  await fillShortJob("A red fox trotting through fresh snow at sunrise", { seed: 7 });
  const preset = await page.$eval("#size", (select) => select.value);
  await page.selectOption("#size", "custom");
  await page.fill("#width", "651"); // odd: the browser refuses it before any request
  const posts = () => apiCalls.filter((c) => c.method === "POST").length;
  const postsBefore = posts();
  await page.click("#generate");
  const invalid = await page.$eval("#width", (w) => !w.checkValidity() && w.validationMessage);
  if (!invalid || posts() !== postsBefore) throw new Error(`651 was not refused by the form (${invalid})`);
  await page.fill("#width", "200"); // valid, made at 256 and cut (the hint says so)
  summary.size_hint = await page.textContent("#size-hint");
  if (!summary.size_hint.includes("cut to 200x")) throw new Error(`size hint: ${summary.size_hint}`);
  await page.fill("#width", "651");
  await page.selectOption("#size", preset); // back to the preset, the bad width left behind
  if (!(await page.isHidden("#custom-size"))) throw new Error("the custom size stays shown");

  step("create with a reference image and custom pyramid steps");
  await page.setInputFiles("#reference", { name: "reference.png", mimeType: "image/png", buffer: await makePng(page) });
  const refText = await page.textContent("#reference-text");
  if (!refText.includes("I2V")) throw new Error(`reference not shown as I2V: ${refText}`);
  await page.click("#advanced summary");
  // Distilled's knobs only: steps per pyramid stage and the amplified first chunk, no Base steps.
  const knobs = await Promise.all(["#pyramid-2", "#amplify", "#steps"].map((s) => page.isVisible(s)));
  if (knobs.join() !== "true,true,false") throw new Error(`Distilled knobs shown: ${knobs}`);
  for (const i of [0, 1, 2]) await page.fill(`#pyramid-${i}`, "1");
  const first = await generate();
  summary.first = first;
  const created = apiCalls.find((c) => c.method === "POST" && c.path === "/v1/videos");
  if (!created) throw new Error("no POST /v1/videos seen");

  step("progress reaches 100");
  summary.first_progress = await waitCompleted(first);
  const job = (await server("GET", `/v1/videos/${first}`)).body;
  if (job.width !== 192 || job.seed !== 7 || job.num_frames !== 33) throw new Error(`unexpected job ${JSON.stringify(job)}`);

  step("thumbnail and spritesheet scrub");
  await waitInPage(page, "the thumbnail", (sel) => document.querySelector(`${sel} .thumb`)?.naturalWidth > 0, card(first), 30_000);
  const media = await page.$(`${card(first)} .media`);
  const box = await media.boundingBox();
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height / 2);
  await page.mouse.move(box.x + box.width * 0.8, box.y + box.height / 2, { steps: 4 });
  summary.scrub_frame = await waitInPage(page, "the spritesheet frame under the pointer",
    (sel) => { const c = document.querySelector(`${sel} .scrub`); return !c.hidden && c.dataset.frame; }, card(first), 30_000);
  if (summary.scrub_frame !== "12") throw new Error(`pointer at 80% should show frame 12 of 16, got ${summary.scrub_frame}`);
  await page.mouse.move(0, 0);

  step("play with the keyboard");
  // Tab order reaches the play button; arrows scrub the spritesheet, Enter plays.
  await page.focus(`${card(first)} .play-overlay`);
  await page.keyboard.press("ArrowRight");
  await waitInPage(page, "arrow-key scrub", (sel) => document.querySelector(`${sel} .scrub`).dataset.frame === "0", card(first), 10_000);
  await page.keyboard.press("Enter");
  summary.video = await checkPlays(first);
  if (summary.video.width !== job.width || summary.video.height !== job.height) {
    throw new Error(`videoWidth/Height ${summary.video.width}x${summary.video.height}, job ${job.width}x${job.height}`);
  }

  step("download");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click(`${card(first)} .act-download`)]);
  const file = await download.path();
  const bytes = fs.readFileSync(file);
  if (download.suggestedFilename() !== `${first}.mp4` || bytes.subarray(4, 8).toString() !== "ftyp") {
    throw new Error(`download: ${download.suggestedFilename()}, ${bytes.length} bytes`);
  }
  summary.download_bytes = bytes.length;
  await page.click(`${card(first)} .act-play`); // Stop

  step("remix");
  await page.click(`${card(first)} .act-remix`);
  await page.fill(`${card(first)} .job-form-prompt`, "The same fox, now at dusk under falling snow");
  const remix = await (async () => {
    const before = new Set(await cardIds());
    await page.click(`${card(first)} .job-form-submit`);
    return waitInPage(page, "the remix's card", (known) => {
      const id = document.querySelector("li.job")?.dataset.id;
      return id && !known.includes(id) ? id : null;
    }, [...before], 30_000);
  })();
  summary.remix = remix;
  summary.remix_progress = await waitCompleted(remix);
  const remixJob = (await server("GET", `/v1/videos/${remix}`)).body;
  if (remixJob.remixed_from_video_id !== first) throw new Error(`remix not linked: ${JSON.stringify(remixJob)}`);
  const detail = await page.getAttribute(`${card(remix)} .job-detail`, "title");
  if (!detail.includes("remix of") || !detail.includes(`(from ${first})`)) throw new Error(`remix detail: ${detail}`);

  step("cancel a job while it is queued or running");
  await page.fill("#prompt", "A long video to cancel");
  await page.selectOption("#length-unit", "frames");
  await page.fill("#length", "99");
  // Drag and drop works as well as the picker (a drop event carrying a PNG, as a drag would).
  await page.evaluate(async (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
    const zone = document.getElementById("dropzone");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  }, (await makePng(page, 128, 128)).toString("base64"));
  const dropped = await page.textContent("#reference-text");
  if (!dropped.startsWith("dropped.png") || !dropped.includes("I2V")) throw new Error(`drop: ${dropped}`);
  await page.click("#reference-clear"); // this job runs without it
  await page.focus("#prompt");
  await page.keyboard.press("Control+Enter"); // the keyboard shortcut submits too
  const doomed = await waitInPage(page, "the job to cancel", (known) => {
    const id = document.querySelector("li.job")?.dataset.id;
    return id && !known.includes(id) ? id : null;
  }, [first, remix], 30_000);
  const label = await page.textContent(`${card(doomed)} .act-delete`);
  if (label !== "Cancel") throw new Error(`a running job's button says ${label}`);
  await page.click(`${card(doomed)} .act-delete`);
  await page.waitForSelector(card(doomed), { state: "detached", timeout: 30_000 });
  if ((await server("GET", `/v1/videos/${doomed}`)).status !== 404) throw new Error(`${doomed} still exists`);

  step("load more over the cursor");
  await openPage("?page_size=1");
  await waitReady();
  await waitInPage(page, "both videos after Load more", () => document.querySelectorAll("li.job").length === 2
    && document.getElementById("load-more").hidden, null, 30_000);
  const ids = await cardIds();
  if (ids[0] !== remix || ids[1] !== first) throw new Error(`order after load more: ${ids}`);
  const cursorCall = apiCalls.find((c) => c.path === `/v1/videos?limit=1&after=${remix}`);
  if (!cursorCall) throw new Error("no GET /v1/videos?limit=1&after=<last id>");

  step("delete");
  await page.click(`${card(first)} .act-delete`);
  await page.waitForSelector(card(first), { state: "detached", timeout: 30_000 });
  if ((await server("GET", `/v1/videos/${first}`)).status !== 404) throw new Error(`${first} still exists`);

  step("screenshot");
  await openPage();
  await waitReady();
  await waitInPage(page, "the finished remix's thumbnail",
    (sel) => document.querySelector(`${sel} .thumb`)?.naturalWidth > 0, card(remix), 30_000);
  await page.screenshot({ path: shot });
}

async function runWithKey() {
  step("401 without a key");
  await openPage();
  const missing = await noticeIs(401);
  if (!missing.includes("needs an API key")) throw new Error(`401 message: ${missing}`);
  if (await page.evaluate(() => document.activeElement?.id) !== "api-key") throw new Error("the key field is not focused");

  step("401 with a wrong key");
  await page.fill("#api-key", "wrong-key");
  await page.click('#key-form button[type="submit"]');
  const refused = await noticeIs(401);
  if (!refused.includes("refused")) throw new Error(`wrong-key message: ${refused}`);

  step("the right key, kept in localStorage");
  await page.fill("#api-key", KEY);
  await page.click('#key-form button[type="submit"]');
  await waitReady();
  await openPage(); // a reload: the key comes back from localStorage
  await waitReady();
  const stored = await page.evaluate(() => [localStorage.getItem("helios-serve.api-key"), document.getElementById("api-key").value]);
  if (stored[0] !== KEY || stored[1] !== KEY) throw new Error(`key not kept: ${stored}`);

  step("a job with the key");
  const since = apiCalls.length;
  await fillShortJob("Lanterns drifting over a dark lake");
  const id = await generate();
  summary.job = await waitCompleted(id);
  await waitInPage(page, "the thumbnail (blob: URL)", (sel) => {
    const img = document.querySelector(`${sel} .thumb`);
    return img?.naturalWidth > 0 && img.src.startsWith("blob:");
  }, card(id), 30_000);
  await page.click(`${card(id)} .act-play`);
  summary.video = await checkPlays(id);
  if (summary.video.width !== 192 || summary.video.src !== "blob:") throw new Error(`video ${JSON.stringify(summary.video)}`);
  await page.click(`${card(id)} .act-play`);
  const calls = apiCalls.slice(since);
  const bad = calls.filter((c) => c.auth !== `Bearer ${KEY}`);
  if (!calls.length || bad.length) throw new Error(`calls without the bearer key: ${JSON.stringify(bad.slice(0, 5))}`);
  summary.bearer_calls = calls.length;
  summary.bearer_paths = [...new Set(calls.map((c) => `${c.method} ${c.path.replace(/video_[0-9a-f]+/, "{id}")}`))];

  step("429 when the queue is full");
  // The server runs with --max-queue 1: one job runs, one waits, the next is refused.
  // Three chunks each, submitted back to back, so the queue cannot drain in between.
  await page.fill("#length", "99");
  const is429 = () => page.evaluate(() => document.getElementById("notice").dataset.status === "429");
  for (let i = 0; i < 6 && !(await is429()); i++) {
    await page.waitForFunction(() => !document.getElementById("generate").disabled, null, { timeout: 30_000 });
    await page.click("#generate");
  }
  const full = await noticeIs(429, 10_000).catch(() => null);
  if (!full || !/queue is full/.test(full) || !/Try again in 10 s/.test(full)) throw new Error(`429 message: ${full}`);
  summary.message_429 = full;

  step("503 (answered by the browser)");
  await page.route("**/v1/videos", (route) => (route.request().method() !== "POST" ? route.continue() : route.fulfill({
    status: 503,
    contentType: "application/json",
    body: JSON.stringify({ error: { message: "The model is not available right now; try again later.", type: "service_unavailable_error", param: null, code: "server_is_overloaded" } }),
  })));
  await page.waitForFunction(() => !document.getElementById("generate").disabled, null, { timeout: 30_000 });
  await page.click("#generate");
  const down = await noticeIs(503);
  if (!down.includes("not available right now (503)") || !down.includes("The server said")) throw new Error(`503 message: ${down}`);
  summary.message_503 = down;
  await page.unroute("**/v1/videos");
  await page.screenshot({ path: shot });

  step("forget the key");
  await page.click("#key-forget");
  await noticeIs(401);
  if (await page.evaluate(() => localStorage.getItem("helios-serve.api-key")) !== null) throw new Error("key still stored");
}

try {
  if (KEY) await runWithKey();
  else await runWithoutKey();
  const pageErrors = consoleLines.filter((l) => l.startsWith("[pageerror]"));
  if (pageErrors.length) throw new Error(`errors in the page: ${pageErrors.join("; ")}`);
  summary.requests = await page.evaluate(() => window.videosPage.requests.length);
  summary.screenshot = shot;
  summary.ok = true;
} catch (err) {
  summary.error = String(err.message).slice(0, 1500);
  summary.notice = await page.evaluate(() => document.getElementById("notice")?.textContent).catch(() => null);
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  console.error(`FAIL (${summary.test}) at step "${summary.steps.at(-1)}": ${err.message}`);
  console.error("--- page console (last 60 lines) ---");
  console.error(consoleLines.slice(-60).join("\n"));
} finally {
  await browser.close();
}
finish(summary);
