// Helios videos: a dependency-free client of the /v1/videos job API (OpenAI's Videos API shape).
//
//   GET  /v1/models                      → the served variant's preset and sizes (video_defaults)
//   POST /v1/videos (multipart)          → a queued job, then polled at the interval of the
//                                          server's openai-poll-after-ms header: the head of the
//                                          list in one request, GET /v1/videos/{id} for running
//                                          jobs further down, until completed or failed
//   GET  /v1/videos?after=&limit=        → the list, newest first ("Load more" = the next page)
//   GET  /v1/videos/{id}/content?variant=video|thumbnail|spritesheet
//   POST /v1/videos/{id}/remix {prompt}  · POST /v1/videos/extensions {video:{id}, prompt, seconds}
//   DELETE /v1/videos/{id}               → cancel (a running job stops at its next step) + delete
//
// With --api-key the key typed into the header is kept in localStorage and sent as a bearer token.
// <img>/<video> cannot send headers, so media is then fetched and shown through blob: URLs.

// The server to talk to: this page's own origin, or ?api=http://host:port (as in the playground).
const params = new URLSearchParams(location.search);
const API = (params.get("api") || location.origin).replace(/\/+$/, "");
const KEY_STORAGE = "helios-serve.api-key";
// Jobs per list page; ?page_size=N changes it (the browser test uses it to reach "Load more").
const PAGE_SIZE = Math.min(100, Math.max(1, Number(params.get("page_size")) || 12));
const DEFAULT_POLL_MS = 1000; // until the server has said otherwise (openai-poll-after-ms)
const IDLE_POLL_MS = 5000; // nothing running (or the tab hidden): look for new jobs now and then
const ACTIVE = new Set(["queued", "in_progress"]);

const $ = (id) => document.getElementById(id);
const el = {
  model: $("model"),
  keyForm: $("key-form"), key: $("api-key"), keyForget: $("key-forget"), keyState: $("key-state"),
  notice: $("notice"), noticeText: $("notice-text"), noticeClose: $("notice-close"),
  announcer: $("announcer"),
  form: $("create-form"), prompt: $("prompt"), negative: $("negative-prompt"),
  size: $("size"), customSize: $("custom-size"), width: $("width"), height: $("height"),
  sizeHint: $("size-hint"),
  seed: $("seed"), length: $("length"), lengthUnit: $("length-unit"), lengthHint: $("length-hint"),
  dropzone: $("dropzone"), reference: $("reference"), referenceImage: $("reference-image"),
  referenceVideo: $("reference-video"), referenceText: $("reference-text"),
  referenceClear: $("reference-clear"),
  advanced: $("advanced"), presetSummary: $("preset-summary"),
  stepsSingle: $("steps-single"), steps: $("steps"), stepsPyramid: $("steps-pyramid"),
  pyramid: $("pyramid"), guidance: $("guidance"), fps: $("fps"), cfgZero: $("cfg-zero"),
  amplifyRow: $("amplify-row"), amplify: $("amplify"), presetReset: $("preset-reset"),
  generate: $("generate"), createState: $("create-state"),
  jobs: $("jobs"), jobsEmpty: $("jobs-empty"), jobsCount: $("jobs-count"), loadMore: $("load-more"),
  template: $("job-template"),
};

// Exposed for the browser test and for poking at the page from the devtools console.
const page = {
  api: API,
  ready: false, // the model (and so the form's defaults) is known
  model: null, // the served model's /v1/models entry
  defaults: null, // its video_defaults
  cards: new Map(), // video id → {job, li, parts, media: {variant: url}}
  hasMore: false,
  pollAfterMs: DEFAULT_POLL_MS,
  extensions: null, // null: unknown, false: the server answered 404/405 to an extension
  requests: [], // "METHOD path status" of the API calls (the last 500), for debugging
};
window.videosPage = page;

// Everything fetched for one key belongs to one generation: saving another key starts a new
// one, and answers of the old one are dropped.
let generation = 0;

// ───────────────────────────── the API ─────────────────────────────

class ApiError extends Error {
  constructor(status, body, headers) {
    const err = body?.error ?? {};
    super(err.message || (status ? `HTTP ${status}` : "network error"));
    this.status = status;
    this.code = err.code ?? null;
    this.param = err.param ?? null;
    this.retryAfter = headers?.get("retry-after") ?? null;
  }
}

const apiKey = () => localStorage.getItem(KEY_STORAGE) || "";

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** One API call: JSON in (`json`) or a FormData (`form`); the parsed JSON (or the Response, with
 * `raw`) out; anything but 2xx throws an ApiError carrying the server's envelope. */
async function api(path, { method = "GET", json, form, raw = false } = {}) {
  const headers = authHeaders();
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form; // the browser writes the multipart boundary itself
  }
  let resp;
  try {
    resp = await fetch(API + path, { method, headers, body });
  } catch (err) {
    record(method, path, 0);
    throw new ApiError(0, { error: { message: `cannot reach ${API} (${err.message})` } });
  }
  record(method, path, resp.status);
  const pollAfter = Number(resp.headers.get("openai-poll-after-ms"));
  if (pollAfter > 0) page.pollAfterMs = Math.max(250, pollAfter);
  if (!resp.ok) {
    const text = await resp.text().catch(() => "");
    let envelope = null;
    try {
      envelope = JSON.parse(text);
    } catch { /* not JSON (a proxy's page): keep the status */ }
    throw new ApiError(resp.status, envelope ?? { error: { message: text.slice(0, 200) } }, resp.headers);
  }
  return raw ? resp : resp.json();
}

function record(method, path, status) {
  page.requests.push(`${method} ${path} ${status}`);
  if (page.requests.length > 500) page.requests.shift();
}

/** A URL the page can put into <img>/<video>/<a>: the content URL itself without a key, else a
 * blob: URL of the bytes fetched with the bearer header (cached per card, revoked with it). */
async function mediaUrl(card, variant) {
  const path = `/v1/videos/${encodeURIComponent(card.job.id)}/content?variant=${variant}`;
  if (!apiKey()) return API + path;
  if (!card.media[variant]) {
    card.media[variant] = api(path, { raw: true })
      .then((resp) => resp.blob())
      .then((blob) => URL.createObjectURL(blob));
    card.media[variant].catch(() => { delete card.media[variant]; }); // let a retry fetch again
  }
  return card.media[variant];
}

function forgetMedia(card) {
  for (const url of Object.values(card.media)) {
    Promise.resolve(url).then((u) => { if (u.startsWith("blob:")) URL.revokeObjectURL(u); }).catch(() => {});
  }
  card.media = {};
}

// ───────────────────────────── messages ─────────────────────────────

/** The server's own words as a sentence of their own (its messages may lack the full stop). */
function serverSaid(err) {
  const text = String(err.message || "").trim();
  if (!text) return "";
  return ` The server said: ${/[.!?]$/.test(text) ? text : `${text}.`}`;
}

/** What an error means for the person in front of the page: what happened and what to do. */
function explain(err, action) {
  switch (err.status) {
    case 0:
      return `Cannot reach the server at ${API}. Is helios serve running?`;
    case 401:
      return apiKey()
        ? "The server refused this API key (401 invalid_api_key). Check it, then save it again."
        : "This server needs an API key (401). Type it into the API key field at the top and " +
          "press Save: it is kept in this browser's local storage and sent as a bearer token.";
    case 429: {
      const wait = err.retryAfter ? `Try again in ${err.retryAfter} s.` : "Try again shortly.";
      return `The job queue is full (429). ${wait}${serverSaid(err)}`;
    }
    case 503:
      return "The model is not available right now (503): the server is up but cannot generate " +
        `at the moment. Try again in a little while.${serverSaid(err)}`;
    default:
      return `${action} failed (${err.status}${err.code ? ` ${err.code}` : ""}).${serverSaid(err)}`;
  }
}

let noticeTimer = null;
/** The one message area: errors stay until dismissed or replaced, information fades. */
function notify(text, { kind = "info", status = null } = {}) {
  el.noticeText.textContent = text;
  el.notice.dataset.kind = kind;
  el.notice.dataset.status = status === null ? "" : String(status);
  el.notice.hidden = false;
  clearTimeout(noticeTimer);
  if (kind !== "error") noticeTimer = setTimeout(hideNotice, 6000);
}

function hideNotice() {
  el.notice.hidden = true;
  el.notice.dataset.status = "";
}

function notifyError(err, action) {
  notify(explain(err, action), { kind: "error", status: err.status });
  if (err.status === 401) el.key.focus();
}

/** Status changes read out to screen readers (the progress itself stays quiet). */
function announce(text) {
  el.announcer.textContent = text;
}

// ───────────────────────────── API key ─────────────────────────────

function showKeyState() {
  const saved = apiKey();
  el.keyForget.hidden = !saved;
  el.keyState.textContent = saved ? "saved" : "";
}

el.keyForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = el.key.value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  showKeyState();
  hideNotice();
  start();
});
el.keyForget.addEventListener("click", () => {
  localStorage.removeItem(KEY_STORAGE);
  el.key.value = "";
  showKeyState();
  start();
});

// ───────────────────────────── the create form ─────────────────────────────

function fillForm(model) {
  const d = model.video_defaults;
  page.model = model;
  page.defaults = d;
  el.model.textContent = `${model.id} · ${d.variant}${model.tiny ? " · random weights" : ""}`;
  el.model.dataset.state = "ready";
  el.model.title = model.tiny ? "A tiny random checkpoint: its output is noise." : "";

  // Sizes: the trained one first, the model's default preselected, then "custom".
  el.size.replaceChildren(...d.sizes.map((s) => {
    const tags = [s === d.trained_size && "trained", s === d.size && "default"].filter(Boolean);
    const option = new Option(tags.length ? `${s} (${tags.join(", ")})` : s, s);
    option.selected = s === d.size;
    return option;
  }), new Option("custom…", "custom"));
  // Any even size in range: one the model cannot make is made a little larger and cut to it.
  for (const input of [el.width, el.height]) {
    input.step = "2";
    input.min = String(d.min_side ?? d.size_multiple);
    input.max = String(d.max_side);
  }
  [el.width.value, el.height.value] = d.size.split("x");
  showCustomSize(false);
  // The prompt boxes hold what the API takes (OpenAI's 32,000 characters).
  for (const box of [el.prompt, el.negative, el.template.content.querySelector(".job-form-prompt")]) {
    if (d.max_prompt_chars) box.maxLength = d.max_prompt_chars;
  }
  el.fps.max = String(d.max_fps);
  el.length.max = String(d.max_num_frames);

  // The variant's knobs: a single step count on Base, steps per pyramid stage on Mid/Distilled.
  const p = d.preset;
  el.stepsSingle.hidden = p.num_inference_steps === undefined;
  el.stepsPyramid.hidden = p.pyramid_steps === undefined;
  el.amplifyRow.hidden = p.amplify_first_chunk === undefined;
  el.pyramid.replaceChildren(...(p.pyramid_steps ?? []).map((_, i) => {
    const input = document.createElement("input");
    input.type = "number";
    input.min = "1";
    input.max = "100";
    input.step = "1";
    input.required = true;
    input.className = "narrow";
    input.id = `pyramid-${i}`;
    input.setAttribute("aria-label", `stage ${i + 1} steps`);
    return input;
  }));
  resetKnobs();
  updateLengthHint();
}

/** The advanced knobs back to the served variant's preset. */
function resetKnobs() {
  const d = page.defaults;
  const p = d.preset;
  if (p.num_inference_steps !== undefined) el.steps.value = String(p.num_inference_steps);
  (p.pyramid_steps ?? []).forEach((s, i) => { $(`pyramid-${i}`).value = String(s); });
  el.guidance.value = String(p.guidance_scale);
  el.cfgZero.checked = p.use_cfg_zero_star;
  el.amplify.checked = Boolean(p.amplify_first_chunk);
  el.fps.value = String(d.fps);
  updatePresetSummary();
}

/** The knobs as they stand, in the preset's own shape. */
function currentKnobs() {
  const p = page.defaults.preset;
  const knobs = { guidance_scale: Number(el.guidance.value), use_cfg_zero_star: el.cfgZero.checked };
  if (p.pyramid_steps) knobs.pyramid_steps = p.pyramid_steps.map((_, i) => Number($(`pyramid-${i}`).value));
  if (p.num_inference_steps !== undefined) knobs.num_inference_steps = Number(el.steps.value);
  if (p.amplify_first_chunk !== undefined) knobs.amplify_first_chunk = el.amplify.checked;
  return knobs;
}

/** The line on the closed "Advanced" section: the preset, or what was changed from it. */
function updatePresetSummary() {
  const p = page.defaults.preset;
  const k = currentKnobs();
  const changed = Object.keys(k).some((key) => JSON.stringify(k[key]) !== JSON.stringify(p[key]));
  const parts = [changed ? "changed" : `${page.defaults.variant} preset`];
  if (k.pyramid_steps) parts.push(`pyramid ${k.pyramid_steps.join("·")}`);
  if (k.num_inference_steps !== undefined) parts.push(`${k.num_inference_steps} steps`);
  parts.push(`guidance ${k.guidance_scale}`);
  if (k.use_cfg_zero_star) parts.push("CFG-Zero*");
  if (k.amplify_first_chunk) parts.push("amplified first chunk");
  el.presetSummary.textContent = parts.join(", ");
  el.presetSummary.classList.toggle("changed", changed);
}

/** Frames the request asks for, and the chunks that makes: whole 33-frame chunks, the last one
 * cut, so the video has exactly the frames asked (the server's own rule). */
function lengthPlan() {
  const d = page.defaults;
  const fps = Number(el.fps.value) || d.fps;
  const n = Math.max(1, Math.round(Number(el.length.value) || 0));
  const asked = el.lengthUnit.value === "seconds" ? n * fps : n;
  const chunks = Math.max(1, Math.ceil(asked / d.frames_per_chunk));
  return { fps, asked, chunks, delivered: asked };
}

/** Shows (or hides) the custom width and height. Hidden, they are disabled too: a browser will
 * not submit a form with an invalid field, and one it cannot show is a Generate that does
 * nothing (a custom size typed wrong, then a preset chosen). */
function showCustomSize(shown) {
  el.customSize.hidden = !shown;
  for (const input of [el.width, el.height]) {
    input.disabled = !shown;
    input.required = shown;
    if (!shown) input.removeAttribute("aria-invalid");
  }
  updateSizeHint();
}

/** Under a custom size: the size it is made at when the model cannot make it directly. */
function updateSizeHint() {
  const d = page.defaults;
  if (!d || el.customSize.hidden) return;
  const m = d.size_multiple;
  const [w, h] = [Number(el.width.value), Number(el.height.value)];
  const made = [Math.ceil(w / m) * m, Math.ceil(h / m) * m];
  el.sizeHint.textContent = !(w > 0 && h > 0) || (made[0] === w && made[1] === h)
    ? `even sides from ${d.min_side ?? m} to ${d.max_side}`
    : `made at ${made[0]}x${made[1]} and cut to ${w}x${h}`;
}

function updateLengthHint() {
  if (!page.defaults) return;
  const { fps, chunks, delivered } = lengthPlan();
  el.lengthHint.textContent =
    `${chunks} chunk${chunks === 1 ? "" : "s"} → ${delivered} frames, ${(delivered / fps).toFixed(2)} s at ${fps} fps`;
}

/** The create request as multipart (the only body that can carry a file). Only what differs
 * from the preset is sent, so the server's preset stays the single source of defaults. */
function createRequest() {
  const d = page.defaults;
  const p = d.preset;
  const form = new FormData();
  form.append("prompt", el.prompt.value.trim());
  const negative = el.negative.value.trim();
  if (negative) form.append("negative_prompt", negative);
  const size = el.size.value === "custom" ? `${el.width.value}x${el.height.value}` : el.size.value;
  form.append("size", size);
  const n = String(Math.round(Number(el.length.value)));
  form.append(el.lengthUnit.value === "seconds" ? "seconds" : "num_frames", n);
  if (Number(el.fps.value) !== d.fps) form.append("fps", el.fps.value);
  if (el.seed.value !== "") form.append("seed", el.seed.value);
  if (Number(el.guidance.value) !== p.guidance_scale) form.append("guidance_scale", el.guidance.value);
  if (p.num_inference_steps !== undefined && Number(el.steps.value) !== p.num_inference_steps) {
    form.append("num_inference_steps", el.steps.value);
  }
  const extra = {};
  const steps = currentKnobs().pyramid_steps;
  if (steps && steps.some((s, i) => s !== p.pyramid_steps[i])) extra.pyramid_num_inference_steps_list = steps;
  if (el.cfgZero.checked !== p.use_cfg_zero_star) extra.use_cfg_zero_star = el.cfgZero.checked;
  if (p.amplify_first_chunk !== undefined && el.amplify.checked !== p.amplify_first_chunk) {
    extra.is_amplify_first_chunk = el.amplify.checked;
  }
  if (Object.keys(extra).length) form.append("extra_params", JSON.stringify(extra));
  if (referenceFile) form.append("input_reference", referenceFile, referenceFile.name);
  return form;
}

// A 400 names the field in `param`: point at it.
const PARAM_FIELDS = {
  prompt: "prompt", negative_prompt: "negative-prompt", size: "size", width: "width",
  height: "height", seconds: "length", num_frames: "length", fps: "fps", seed: "seed",
  guidance_scale: "guidance", num_inference_steps: "steps", input_reference: "reference",
  "extra_params.pyramid_num_inference_steps_list": "pyramid-0",
  "extra_params.use_cfg_zero_star": "cfg-zero", "extra_params.is_amplify_first_chunk": "amplify",
};

function markInvalid(param) {
  const id = PARAM_FIELDS[param];
  const input = id && $(id);
  if (!input) return;
  if (input.closest("details")) el.advanced.open = true;
  if (input === el.width || input === el.height) {
    el.size.value = "custom";
    showCustomSize(true);
  }
  input.setAttribute("aria-invalid", "true");
  input.focus();
}

el.form.addEventListener("input", (ev) => ev.target.removeAttribute?.("aria-invalid"));

el.form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!page.ready) return;
  el.generate.disabled = true;
  el.createState.textContent = "submitting…";
  const gen = generation;
  try {
    const video = await api("/v1/videos", { method: "POST", form: createRequest() });
    if (gen !== generation) return;
    addCard(video, { top: true });
    el.createState.textContent = `queued ${video.id}`;
    announce(`Video ${video.id} queued`);
    hideNotice();
    schedulePoll(0);
  } catch (err) {
    el.createState.textContent = "";
    notifyError(err, "Creating the video");
    if (err.status === 400) markInvalid(err.param);
  } finally {
    el.generate.disabled = !page.ready;
  }
});

el.prompt.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    el.form.requestSubmit(el.generate);
  }
});
el.size.addEventListener("change", () => showCustomSize(el.size.value === "custom"));
for (const input of [el.width, el.height]) input.addEventListener("input", updateSizeHint);
for (const input of [el.length, el.lengthUnit, el.fps]) input.addEventListener("input", updateLengthHint);
el.lengthUnit.addEventListener("change", () => {
  // Keep the same duration when switching units: 4 seconds ⇄ 96 frames.
  const fps = Number(el.fps.value) || page.defaults?.fps || 24;
  const n = Number(el.length.value) || 1;
  el.length.value = String(el.lengthUnit.value === "frames" ? n * fps : Math.max(1, Math.round(n / fps)));
  updateLengthHint();
});
el.presetReset.addEventListener("click", resetKnobs);
el.advanced.addEventListener("input", () => { if (page.defaults) updatePresetSummary(); });

// ───────────────────────────── the reference file ─────────────────────────────

let referenceFile = null;
let referencePreview = null;

function setReference(file) {
  if (referencePreview) URL.revokeObjectURL(referencePreview);
  referencePreview = null;
  referenceFile = null;
  el.referenceImage.hidden = true;
  el.referenceVideo.hidden = true;
  el.referenceClear.hidden = true;
  el.reference.removeAttribute("aria-invalid");
  el.referenceText.textContent = "Drop an image (I2V) or a video (V2V) here, or choose a file…";
  if (!file) return;
  const kind = file.type.startsWith("video/") ? "video" : file.type.startsWith("image/") ? "image" : null;
  const max = page.defaults?.max_reference_bytes ?? Infinity;
  if (!kind || file.size > max) {
    const why = kind ? `is over the ${(max / 2 ** 20).toFixed(0)} MiB limit` : "is not an image or a video";
    notify(`${file.name} ${why}.`, { kind: "error" });
    return;
  }
  referenceFile = file;
  referencePreview = URL.createObjectURL(file);
  const preview = kind === "video" ? el.referenceVideo : el.referenceImage;
  preview.src = referencePreview;
  preview.hidden = false;
  el.referenceClear.hidden = false;
  el.referenceText.textContent =
    `${file.name} · ${(file.size / 1024).toFixed(0)} KiB · ${kind === "video" ? "V2V (continues the video)" : "I2V (starts from the image)"}`;
}

el.reference.addEventListener("change", () => setReference(el.reference.files?.[0] ?? null));
el.referenceClear.addEventListener("click", () => {
  el.reference.value = "";
  setReference(null);
  el.reference.focus();
});
el.dropzone.addEventListener("dragover", (ev) => {
  ev.preventDefault();
  el.dropzone.classList.add("over");
});
el.dropzone.addEventListener("dragleave", () => el.dropzone.classList.remove("over"));
el.dropzone.addEventListener("drop", (ev) => {
  ev.preventDefault();
  ev.stopPropagation();
  el.dropzone.classList.remove("over");
  const file = ev.dataTransfer?.files?.[0];
  if (file) setReference(file);
});
// A file dropped just beside the drop zone would make the browser open it, leaving the page.
window.addEventListener("dragover", (ev) => ev.preventDefault());
window.addEventListener("drop", (ev) => ev.preventDefault());

// ───────────────────────────── job cards ─────────────────────────────

/** A card for `job`: at the top (just created), after `afterLi`, or at the end (older pages). */
function addCard(job, { top = false, afterLi = null } = {}) {
  const existing = page.cards.get(job.id);
  if (existing) {
    renderCard(existing, job);
    return existing;
  }
  const li = el.template.content.firstElementChild.cloneNode(true);
  const q = (sel) => li.querySelector(sel);
  const parts = {
    media: q(".media"), thumb: q(".thumb"), scrub: q(".scrub"), player: q(".player"),
    mediaState: q(".media-state"), mediaPercent: q(".media-percent"), mediaCaption: q(".media-caption"),
    playOverlay: q(".play-overlay"),
    status: q(".status"), id: q(".job-id"), created: q(".created"), prompt: q(".job-prompt"),
    progress: q(".progress"), bar: q(".bar"), progressText: q(".progress-text"), detail: q(".job-detail"),
    play: q(".act-play"), download: q(".act-download"), remix: q(".act-remix"),
    extend: q(".act-extend"), del: q(".act-delete"),
    form: q(".job-form"), formLabel: q(".job-form-label"), formPrompt: q(".job-form-prompt"),
    formSecondsRow: q(".job-form-seconds"), formSeconds: q(".job-form-seconds input"),
    formSecondsLabel: q(".job-form-seconds label"), formMessage: q(".job-form-message"),
    formSubmit: q(".job-form-submit"), formCancel: q(".job-form-cancel"),
  };
  // `job` starts empty so that the first render sees every field as new.
  const card = { job: {}, li, parts, media: {}, mode: null, sprite: null, thumbRequested: false };
  li.dataset.id = job.id;
  const safeId = job.id.replace(/[^A-Za-z0-9_-]/g, "_");
  parts.prompt.id = `prompt-${safeId}`;
  li.querySelector("article").setAttribute("aria-labelledby", parts.prompt.id);
  parts.formPrompt.id = `form-prompt-${safeId}`;
  parts.formLabel.htmlFor = parts.formPrompt.id;
  parts.formSeconds.id = `form-seconds-${safeId}`;
  parts.formSecondsLabel.htmlFor = parts.formSeconds.id;
  parts.progress.setAttribute("aria-label", `progress of ${job.id}`);
  wireCard(card);
  page.cards.set(job.id, card);
  if (top) el.jobs.prepend(li);
  else if (afterLi) afterLi.after(li);
  else el.jobs.append(li);
  renderCard(card, job);
  updateCounts();
  return card;
}

function removeCard(id) {
  const card = page.cards.get(id);
  if (!card) return;
  forgetMedia(card);
  card.li.remove();
  page.cards.delete(id);
  updateCounts();
}

const EMPTY_TEXT = "No videos yet. Write a prompt and press Generate.";

function updateCounts() {
  const n = page.cards.size;
  el.jobsEmpty.hidden = n > 0 || !page.ready;
  el.jobsEmpty.textContent = EMPTY_TEXT;
  el.jobsCount.textContent = n ? `${n} shown${page.hasMore ? ", more below" : ""}` : "";
  el.loadMore.hidden = !page.hasMore;
}

const STATUS_TEXT = { queued: "queued", in_progress: "in progress", completed: "completed", failed: "failed" };

/** Updates a card in place. Every piece keeps its size, so nothing moves while progress ticks. */
function renderCard(card, job) {
  const before = card.job.status;
  card.job = job;
  const p = card.parts;
  const status = job.status;
  const done = status === "completed";
  const active = ACTIVE.has(status);
  card.li.dataset.status = status;
  p.status.dataset.state = status;
  p.status.textContent = STATUS_TEXT[status] ?? status;
  p.id.textContent = job.id;
  p.created.dateTime = new Date(job.created_at * 1000).toISOString();
  p.created.textContent = new Date(job.created_at * 1000).toLocaleTimeString([], { hour12: false });
  p.prompt.textContent = job.prompt;
  p.prompt.title = job.prompt;

  const progress = Math.max(0, Math.min(100, Number(job.progress) || 0));
  p.progress.setAttribute("aria-valuenow", String(progress));
  p.progress.setAttribute("aria-valuetext", `${progress}% ${STATUS_TEXT[status] ?? status}`);
  p.bar.style.transform = `scaleX(${progress / 100})`;
  p.progressText.textContent = `${progress}%`;
  p.detail.textContent = detailText(job);
  const source = job.remixed_from_video_id ?? job.extended_from_video_id;
  p.detail.title = source ? `${p.detail.textContent} (from ${source})` : p.detail.textContent;
  p.mediaPercent.textContent = status === "failed" ? "!" : `${progress}%`;
  p.mediaCaption.textContent = status === "failed"
    ? `${job.error?.code ?? "failed"}: ${job.error?.message ?? ""}`
    : active ? chunkText(job) : "";
  p.mediaState.hidden = done;

  // Actions: what this status allows. Delete cancels a job that is still queued or running.
  p.play.hidden = !done;
  p.download.hidden = !done;
  p.extend.hidden = !done;
  p.remix.hidden = active;
  p.del.textContent = active ? "Cancel" : "Delete";
  p.del.setAttribute("aria-label", `${active ? "Cancel" : "Delete"} ${job.id}`);
  p.playOverlay.hidden = !done || card.mode === "playing";
  p.playOverlay.setAttribute("aria-label", `Play ${job.id}`);
  p.download.setAttribute("aria-label", `Download ${job.id} (MP4)`);
  p.download.download = `${job.id}.mp4`; // the name the server gives it too (file_name)
  if (!done) p.download.removeAttribute("href");
  else if (!apiKey()) p.download.href = `${API}/v1/videos/${encodeURIComponent(job.id)}/content?variant=video`;
  else p.download.href = "#"; // the click fetches it with the key (see wireCard)

  if (done && !card.thumbRequested) {
    card.thumbRequested = true;
    showThumbnail(card);
  }
  if (before !== undefined && before !== status && !active) {
    announce(`Video ${job.id} ${STATUS_TEXT[status]}`);
  }
}

function chunkText(job) {
  if (job.status === "queued") return "waiting for the engine";
  const per = page.defaults?.frames_per_chunk ?? 33;
  const chunks = Math.max(1, Math.ceil(job.num_frames / per));
  const chunk = Math.min(chunks, Math.floor((job.frames_done ?? 0) / per) + 1);
  return `chunk ${chunk} of ${chunks}`;
}

function detailText(job) {
  if (job.status === "failed") return `${job.error?.code ?? "failed"}: ${job.error?.message ?? ""}`;
  const frames = ACTIVE.has(job.status)
    ? `${Math.min(job.frames_done ?? 0, job.num_frames)}/${job.num_frames} frames`
    : `${job.num_frames} frames · ${job.seconds} s`;
  const bits = [job.size, frames];
  // Where it came from, before the seed: ids are long, so the source's is shortened here (the
  // line's tooltip has it in full).
  if (job.remixed_from_video_id) bits.push(`remix of ${job.remixed_from_video_id.slice(0, 14)}…`);
  if (job.extended_from_video_id) bits.push(`extends ${job.extended_from_video_id.slice(0, 14)}…`);
  bits.push(`seed ${job.seed}`);
  if (job.status === "completed" && job.inference_time_s != null) {
    bits.push(`made in ${Number(job.inference_time_s).toFixed(1)} s`);
  }
  return bits.join(" · ");
}

async function showThumbnail(card) {
  const p = card.parts;
  try {
    const url = await mediaUrl(card, "thumbnail");
    if (!page.cards.has(card.job.id)) return;
    p.thumb.src = url;
    p.thumb.alt = `First frame of ${card.job.id}`;
    p.thumb.hidden = card.mode === "playing";
  } catch (err) {
    p.mediaState.hidden = false;
    p.mediaPercent.textContent = "";
    p.mediaCaption.textContent = `thumbnail: ${explain(err, "Loading")}`;
  }
}

// The spritesheet is a grid of 16 evenly spaced frames (4 per row): hovering across the media
// (or the arrow keys on its play button) shows the frame under the pointer, drawn to a canvas.
async function loadSprite(card) {
  if (!card.sprite) {
    card.sprite = mediaUrl(card, "spritesheet").then((url) => new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("spritesheet did not load"));
      img.src = url;
    }));
    card.sprite.catch(() => { card.sprite = null; });
  }
  return card.sprite;
}

async function showSpriteFrame(card, fraction) {
  if (card.mode === "playing" || card.job.status !== "completed") return;
  const img = await loadSprite(card).catch(() => null);
  if (!img || card.mode === "playing") return;
  const count = Math.min(16, card.job.num_frames);
  const cols = Math.min(4, count);
  const rows = Math.ceil(count / cols);
  const tw = img.naturalWidth / cols;
  const th = img.naturalHeight / rows;
  const index = Math.min(count - 1, Math.max(0, Math.floor(fraction * count)));
  const canvas = card.parts.scrub;
  canvas.width = Math.round(tw);
  canvas.height = Math.round(th);
  canvas.getContext("2d").drawImage(img, (index % cols) * tw, Math.floor(index / cols) * th, tw, th, 0, 0, canvas.width, canvas.height);
  canvas.dataset.frame = String(index);
  canvas.hidden = false;
}

function hideSprite(card) {
  card.parts.scrub.hidden = true;
  card.scrubIndex = undefined;
}

async function play(card) {
  const p = card.parts;
  card.mode = "playing";
  hideSprite(card);
  p.playOverlay.hidden = true;
  p.play.textContent = "Stop";
  try {
    const url = await mediaUrl(card, "video");
    if (card.mode !== "playing") return;
    p.player.src = url;
    p.player.hidden = false;
    p.thumb.hidden = true;
    p.player.muted = true; // Helios videos are silent; muted playback is never blocked
    await p.player.play();
    p.player.focus();
  } catch (err) {
    if (card.mode === "playing") notifyError(err, `Playing ${card.job.id}`);
    stop(card);
  }
}

function stop(card) {
  const p = card.parts;
  card.mode = null;
  p.player.pause();
  p.player.hidden = true;
  p.thumb.hidden = !p.thumb.src;
  p.playOverlay.hidden = card.job.status !== "completed";
  p.play.textContent = "Play";
}

function wireCard(card) {
  const p = card.parts;
  const id = () => card.job.id;
  p.play.addEventListener("click", () => (card.mode === "playing" ? stop(card) : play(card)));
  p.playOverlay.addEventListener("click", () => play(card));
  p.media.addEventListener("pointermove", (ev) => {
    const box = p.media.getBoundingClientRect();
    showSpriteFrame(card, (ev.clientX - box.left) / box.width);
  });
  p.media.addEventListener("pointerleave", () => hideSprite(card));
  p.playOverlay.addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
    ev.preventDefault();
    const count = Math.min(16, card.job.num_frames);
    const current = card.scrubIndex ?? -1;
    card.scrubIndex = Math.max(0, Math.min(count - 1, current + (ev.key === "ArrowRight" ? 1 : -1)));
    showSpriteFrame(card, (card.scrubIndex + 0.5) / count);
  });
  p.playOverlay.addEventListener("blur", () => hideSprite(card));
  p.player.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      stop(card);
      p.play.focus();
    }
  });
  p.download.addEventListener("click", async (ev) => {
    if (!apiKey()) return; // a plain link does it
    ev.preventDefault();
    try {
      const a = document.createElement("a");
      a.href = await mediaUrl(card, "video");
      a.download = `${id()}.mp4`;
      a.click();
    } catch (err) {
      notifyError(err, `Downloading ${id()}`);
    }
  });
  p.remix.addEventListener("click", () => toggleForm(card, "remix"));
  p.extend.addEventListener("click", () => toggleForm(card, "extend"));
  p.formCancel.addEventListener("click", () => closeForm(card, true));
  p.form.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") closeForm(card, true);
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      p.form.requestSubmit(p.formSubmit);
    }
  });
  p.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (card.formKind === "extend") submitExtend(card);
    else submitRemix(card);
  });
  p.del.addEventListener("click", () => deleteJob(card));
}

// ───────────────────────────── remix, extend, delete ─────────────────────────────

function toggleForm(card, kind) {
  if (card.formKind === kind) {
    closeForm(card, true);
    return;
  }
  const p = card.parts;
  card.formKind = kind;
  const extend = kind === "extend";
  p.formLabel.textContent = extend ? "Prompt for what happens next" : "New prompt (same settings and seed)";
  p.formPrompt.value = card.job.prompt;
  p.formSubmit.textContent = extend ? "Extend" : "Remix";
  p.formSecondsRow.hidden = !extend;
  p.formSeconds.required = extend;
  if (extend) {
    // OpenAI's `seconds`: the length of the new part (4 is its shortest); the result is the
    // original followed by it.
    p.formSeconds.min = "1";
    p.formSeconds.value = "4";
  }
  showFormMessage(card, extend && page.extensions === false ? unsupportedText() : "");
  p.remix.setAttribute("aria-expanded", String(!extend));
  p.extend.setAttribute("aria-expanded", String(extend));
  p.form.hidden = false;
  card.li.classList.add("with-form");
  p.formPrompt.focus();
  p.formPrompt.select();
}

function closeForm(card, refocus = false) {
  const p = card.parts;
  const was = card.formKind;
  card.formKind = null;
  p.form.hidden = true;
  card.li.classList.remove("with-form");
  p.remix.setAttribute("aria-expanded", "false");
  p.extend.setAttribute("aria-expanded", "false");
  if (refocus && was) (was === "extend" ? p.extend : p.remix).focus();
}

function showFormMessage(card, text) {
  card.parts.formMessage.textContent = text;
  card.parts.formMessage.hidden = !text;
}

async function submitRemix(card) {
  const p = card.parts;
  const source = card.job.id;
  p.formSubmit.disabled = true;
  try {
    const video = await api(`/v1/videos/${encodeURIComponent(source)}/remix`, {
      method: "POST", json: { prompt: p.formPrompt.value.trim() },
    });
    closeForm(card);
    addCard(video, { top: true });
    notify(`Remix of ${source} queued as ${video.id}.`);
    announce(`Remix queued as ${video.id}`);
    schedulePoll(0);
  } catch (err) {
    showFormMessage(card, explain(err, "Remix"));
    if (err.status === 401) notifyError(err, "Remix");
  } finally {
    p.formSubmit.disabled = false;
  }
}

const unsupportedText = (status) =>
  `This server does not support extensions (POST /v1/videos/extensions answered ${status ?? "404/405"}). ` +
  "Remix makes a new video with the same settings instead.";

async function submitExtend(card) {
  const p = card.parts;
  const source = card.job.id;
  p.formSubmit.disabled = true;
  try {
    const video = await api("/v1/videos/extensions", {
      method: "POST",
      json: { video: { id: source }, prompt: p.formPrompt.value.trim(), seconds: String(p.formSeconds.value) },
    });
    page.extensions = true;
    closeForm(card);
    addCard(video, { top: true });
    notify(`Extension of ${source} queued as ${video.id}.`);
    announce(`Extension queued as ${video.id}`);
    schedulePoll(0);
  } catch (err) {
    // A server without the route answers 405 (GET /v1/videos/{id} owns the path) or a 404 that
    // names the route; a 404 about the video itself means the video is gone.
    const missingRoute = err.status === 405 ||
      (err.status === 404 && /extensions/.test(err.message) && !/video_/.test(err.message));
    if (missingRoute) page.extensions = false;
    showFormMessage(card, missingRoute ? unsupportedText(err.status) : explain(err, "Extend"));
    if (err.status === 401) notifyError(err, "Extend");
  } finally {
    p.formSubmit.disabled = false;
  }
}

async function deleteJob(card) {
  const job = card.job;
  const active = ACTIVE.has(job.status);
  const question = active
    ? `Cancel ${job.id}? It stops at its next step and is deleted.`
    : `Delete ${job.id} and its files?`;
  if (!window.confirm(question)) return;
  // Keep the keyboard somewhere sensible: the next card's first button, else the list heading.
  const next = card.li.nextElementSibling ?? card.li.previousElementSibling;
  try {
    await api(`/v1/videos/${encodeURIComponent(job.id)}`, { method: "DELETE" });
  } catch (err) {
    if (err.status !== 404) {
      notifyError(err, active ? "Cancelling" : "Deleting");
      return;
    }
  }
  removeCard(job.id);
  notify(`${active ? "Cancelled" : "Deleted"} ${job.id}.`);
  announce(`${job.id} ${active ? "cancelled" : "deleted"}`);
  const target = next?.querySelector(".actions button:not([hidden])");
  (target ?? $("jobs-heading")).focus();
}

// ───────────────────────────── the list and polling ─────────────────────────────

async function loadPage() {
  const gen = generation;
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  // The cursor is the oldest card shown: new cards only ever go on top, and a deleted one
  // (which the server could no longer find) is never the cursor.
  const oldest = el.jobs.lastElementChild?.dataset.id;
  if (oldest) query.set("after", oldest);
  el.loadMore.disabled = true;
  try {
    const list = await api(`/v1/videos?${query}`);
    if (gen !== generation) return;
    for (const job of list.data) addCard(job);
    page.hasMore = list.has_more;
    updateCounts();
  } finally {
    el.loadMore.disabled = false;
  }
}

/** The head of the list in one request (new jobs from anywhere, the newest ones' progress),
 * then every other job still running, one by one. */
async function refresh() {
  const gen = generation;
  const head = await api(`/v1/videos?limit=${PAGE_SIZE}`);
  if (gen !== generation) return;
  let previous = null;
  for (const job of head.data) {
    // Jobs made elsewhere (curl, an SDK, another tab) appear in the server's order.
    const card = page.cards.get(job.id) ?? addCard(job, previous ? { afterLi: previous } : { top: true });
    renderCard(card, job);
    previous = card.li;
  }
  const seen = new Set(head.data.map((j) => j.id));
  // Only the head is shown (the list was empty, say): whether more exist is the head's to say.
  if ([...page.cards.keys()].every((id) => seen.has(id))) {
    page.hasMore = head.has_more;
    updateCounts();
  }
  for (const card of [...page.cards.values()]) {
    if (seen.has(card.job.id) || !ACTIVE.has(card.job.status)) continue;
    try {
      const job = await api(`/v1/videos/${encodeURIComponent(card.job.id)}`);
      if (gen === generation) renderCard(card, job);
    } catch (err) {
      if (err.status === 404) removeCard(card.job.id); // deleted elsewhere
      else throw err;
    }
  }
}

let pollTimer = null;
let polling = false;

function schedulePoll(delayMs) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(pollOnce, delayMs);
}

async function pollOnce() {
  if (polling) return;
  polling = true;
  let failed = false;
  try {
    if (page.ready) await refresh();
  } catch (err) {
    failed = true;
    // The same error every second is noise: say it once, until something works again.
    if (el.notice.hidden || el.notice.dataset.status !== String(err.status)) notifyError(err, "Refreshing");
  } finally {
    polling = false;
  }
  if (!failed && el.notice.dataset.kind === "error" && el.notice.dataset.status === "0") hideNotice();
  const active = [...page.cards.values()].some((c) => ACTIVE.has(c.job.status));
  const delay = active && !document.hidden ? page.pollAfterMs : IDLE_POLL_MS;
  schedulePoll(failed ? Math.max(delay, IDLE_POLL_MS) : delay);
}

document.addEventListener("visibilitychange", () => { if (!document.hidden) schedulePoll(0); });
el.loadMore.addEventListener("click", () => loadPage().catch((err) => notifyError(err, "Loading more")));
// Infinite scroll: "Load more" clicks itself when it scrolls into view (it stays a button for
// keyboards and for browsers that never scroll).
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting) && page.hasMore && !el.loadMore.disabled) el.loadMore.click();
}).observe(el.loadMore);

// ───────────────────────────── start ─────────────────────────────

/** (Re)starts the page for the current key: the model, then the first page of jobs. */
async function start() {
  const gen = ++generation;
  clearTimeout(pollTimer);
  page.ready = false;
  el.generate.disabled = true;
  for (const id of [...page.cards.keys()]) removeCard(id);
  page.hasMore = false;
  el.model.dataset.state = "connecting";
  el.model.textContent = "connecting…";
  try {
    const models = await api("/v1/models");
    if (gen !== generation) return;
    const model = models.data.find((m) => m.video_defaults) ?? models.data[0];
    if (!model?.video_defaults) throw new ApiError(0, { error: { message: "no video_defaults in /v1/models" } });
    fillForm(model);
    page.ready = true;
    el.generate.disabled = false;
    await loadPage();
    if (gen !== generation) return;
    updateCounts();
    schedulePoll(page.pollAfterMs);
  } catch (err) {
    if (gen !== generation) return;
    el.model.dataset.state = "disconnected";
    el.model.textContent = err.status === 401 ? "API key needed" : "not connected";
    // The list says why it is empty, after the message above is dismissed too.
    el.jobsEmpty.textContent = err.status === 401
      ? "The videos appear once the server has accepted an API key." : "Waiting for the server…";
    el.jobsEmpty.hidden = false;
    notifyError(err, "Loading");
    // Keep trying (the server may still be starting), unless only a new key can help.
    if (err.status !== 401) setTimeout(() => { if (gen === generation) start(); }, IDLE_POLL_MS);
  }
}

el.noticeClose.addEventListener("click", hideNotice);
el.key.value = apiKey();
showKeyState();
start();
