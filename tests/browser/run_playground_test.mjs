// End-to-end: the playground page that `helios serve` serves at `/`, driven through its buttons
// in headless Chromium, the way a person would use it.
//
//   HELIOS_URL=http://127.0.0.1:8000 node run_playground_test.mjs
//
// Connect → choose an image → type a prompt → Set prompt → seed, SR → Start → the <video> plays
// and ≥ 2 chunk_complete appear in the event log → Schedule prompt → Pause → Resume → Reset →
// Disconnect. Prints one JSON line; exits non-zero with the reason on failure.

import path from "node:path";
import {
  artifactsDir, budgetMs, finish, heliosUrl, launch, makePng, recordConsole, waitInPage,
  waitVideoPlays,
} from "./lib/harness.mjs";

const PROMPT =
  "A red fox trotting through fresh snow in a quiet birch forest at sunrise, soft pink light " +
  "between the trees. Medium tracking shot at the fox's height.";

const api = heliosUrl();
const shot = path.join(artifactsDir(), "playground.png");
const budget = budgetMs();
const summary = { test: "playground", ok: false, helios_url: api, steps: [] };
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
const consoleLines = recordConsole(page);
const step = (name) => { summary.steps.push(name); };

// Counts of received events, as the page's own log shows them.
const logCount = (type) => page.evaluate(
  (t) => document.querySelectorAll(`#log li[data-dir="in"][data-type="${t}"]`).length, type);
const waitLog = (type, n, timeoutMs) => waitInPage(page, `${n} × "${type}" in the event log`,
  ([t, want]) => document.querySelectorAll(`#log li[data-dir="in"][data-type="${t}"]`).length >= want,
  [type, n], timeoutMs);
const statusIs = (want, timeoutMs) => waitInPage(page, `#status data-state="${want}"`,
  (w) => document.getElementById("status").dataset.state === w, want, timeoutMs);

try {
  step("load");
  const resp = await page.goto(`${api}/`);
  if (!resp?.ok()) throw new Error(`GET / answered ${resp?.status()}`);
  await page.waitForFunction(() => window.playground !== undefined, null, { timeout: 10_000 });

  step("connect");
  await page.click("#connect");
  await statusIs("ready", 30_000);
  await waitLog("state", 1, 10_000);

  step("image");
  await page.setInputFiles("#image", { name: "reference.png", mimeType: "image/png", buffer: await makePng(page) });
  await waitLog("image_accepted", 1, 30_000);

  step("prompt, seed, sr");
  await page.fill("#prompt", PROMPT);
  await page.click("#set-prompt");
  await waitLog("prompt_accepted", 1, 10_000);
  await page.fill("#seed", "11");
  await page.click("#set-seed");
  await page.selectOption("#sr", "2x");
  await page.selectOption("#sr", "off");

  step("start");
  await page.click("#start");
  await waitLog("generation_started", 1, 30_000);
  summary.video = await waitVideoPlays(page, "#video", 1.0, budget);
  await waitLog("chunk_complete", 2, budget);

  step("schedule");
  // The page suggests current_chunk + 2, as Reactor's reference app does.
  const chunk = Number(await page.inputValue("#schedule-chunk"));
  await page.fill("#prompt", PROMPT.replace("trotting", "leaping"));
  await page.click("#schedule-prompt");
  await waitInPage(page, `state.scheduled_prompts to list chunk ${chunk}`,
    (c) => (window.playground.lastState?.scheduled_prompts ?? []).some((p) => p.chunk === c)
      || (window.playground.lastState?.current_chunk ?? -1) >= c, chunk, 30_000);
  summary.scheduled_at = chunk;
  await page.screenshot({ path: shot, fullPage: true });

  step("pause");
  await page.click("#pause");
  await waitLog("generation_paused", 1, 60_000);
  step("resume");
  await page.click("#resume");
  await waitLog("generation_resumed", 1, 30_000);
  const before = await logCount("chunk_complete");
  await waitLog("chunk_complete", before + 1, budget);
  step("reset");
  await page.click("#reset");
  await waitLog("generation_reset", 1, 60_000);
  await waitInPage(page, "state after reset (not started, chunk 0)",
    () => window.playground.lastState?.started === false && window.playground.lastState?.current_chunk === 0,
    null, 30_000);

  const rejected = await page.evaluate(() => [...document.querySelectorAll('#log li[data-type="command_error"]')]
    .map((li) => li.querySelector("code").textContent));
  if (rejected.length) throw new Error(`server rejected commands: ${rejected.join("; ")}`);

  step("disconnect");
  await page.click("#disconnect");
  await statusIs("disconnected", 10_000);
  summary.event_counts = await page.evaluate(() => window.playground.eventCounts);
  summary.screenshot = shot;
  summary.ok = true;
} catch (err) {
  summary.error = String(err.message).slice(0, 1500);
  summary.event_counts = await page.evaluate(() => window.playground?.eventCounts).catch(() => null);
  summary.notice = await page.evaluate(() => document.getElementById("notice")?.textContent).catch(() => null);
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  console.error(`FAIL (playground) at step "${summary.steps.at(-1)}": ${err.message}`);
  console.error("--- page console (last 60 lines) ---");
  console.error(consoleLines.slice(-60).join("\n"));
} finally {
  await browser.close();
}
finish(summary);
