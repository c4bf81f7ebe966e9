// The web page of `stepaudio serve` (GET /) in headless Chromium, as a user drives it: the key
// (kept, remembered, forgotten), the server's errors as it sent them (a wrong key's 401, a text
// file's 415, a 429 with Retry-After), an uploaded recording followed over SSE (progress and
// partial transcript shown in the order the server sent them) and its result (transcript with
// segment times, summary, emotion bars with widths proportional to the scores, the urgency bar)
// compared with the job fetched from the API directly, a recording from the (fake) microphone
// sent as WebM/Opus, and an event stream resumed with Last-Event-ID after a drop. The page must
// request nothing from any other origin and violate nothing of its Content-Security-Policy.
// Leaves a full-page screenshot at $STEPAUDIO_SCREENSHOT (and a phone-width one beside it).
// Run by tests/browser/run.sh, which starts the server and sets the environment.
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import puppeteer from "puppeteer-core";

const BASE = process.env.STEPAUDIO_URL;
const KEY = process.env.STEPAUDIO_KEY;
// Chromium cannot read an uploaded file by a path with ".." in it (the upload fails to send).
const WAV = path.resolve(process.env.STEPAUDIO_WAV);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOT = process.env.STEPAUDIO_SCREENSHOT;
// A sanitized server is several times slower: waits scale with it (bounded all the same).
const SLOW = process.env.STEPAUDIO_SANITIZED === "1" ? 4 : 1;
const JOB_TIMEOUT_MS = 45000 * SLOW;
const ORIGIN = new URL(BASE).origin;

let browser, page;
const foreign = [];     // requests to anything but the server (data: and blob: are local)
const pageErrors = [];  // uncaught exceptions in the page

before(async () => {
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // --no-sandbox: CI may run as root, where Chromium's sandbox refuses to start.
    // The fake microphone plays the recording (granted without a prompt).
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
           "--no-first-run", "--no-default-browser-check", "--use-fake-ui-for-media-stream",
           "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${WAV}`],
    timeout: 30000 * SLOW,
  });
  page = await browser.newPage();
  page.setDefaultTimeout(30000 * SLOW);
  await page.setViewport({ width: 1000, height: 900 });
  page.on("request", (req) => {
    const u = new URL(req.url());
    if (u.origin !== ORIGIN && u.protocol !== "data:" && u.protocol !== "blob:")
      foreign.push(req.url());
  });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  if (process.env.DEBUG) page.on("console", (m) => console.log("console:", m.type(), m.text()));
  // Before the page's own script: record CSP violations, and every change of the progress bar,
  // the partial transcript and the result's visibility in the order it happened (mutation records
  // keep every intermediate step, even when several events arrive in one network read).
  await page.evaluateOnNewDocument(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
    window.__log = [];
    new MutationObserver((records) => {
      for (const r of records) {
        const id = r.target.id;
        // An attribute record has the value before; the value after is the next record's
        // "before" (or the attribute's value now): see settled().
        if (r.type === "attributes" && id === "progress" && r.attributeName === "value")
          window.__log.push({ kind: "progress", old: r.oldValue });
        else if (r.type === "attributes" && id === "result" && r.attributeName === "hidden")
          window.__log.push({ kind: "result", old: r.oldValue });
        else if (r.type === "childList" && id === "partial")
          for (const n of r.addedNodes) window.__log.push({ kind: "partial", text: n.textContent });
      }
    }).observe(document, { subtree: true, childList: true, attributes: true,
                           attributeOldValue: true, attributeFilter: ["value", "hidden"] });
  });
  const response = await page.goto(BASE + "/", { waitUntil: "load" });
  assert.equal(response.status(), 200);
});

after(async () => {
  await browser?.close();
});

// ---- Helpers.

const text = (sel) => page.$eval(sel, (el) => el.textContent);
const hidden = (sel) => page.$eval(sel, (el) => el.hidden);

async function setKey(value) {
  await page.$eval("#key", (el) => { el.value = ""; });
  await page.type("#key", value);
}

async function choose(file) {
  await page.$eval("#file", (el) => { el.value = ""; });  // so the same file fires "change" again
  await (await page.$("#file")).uploadFile(file);
  await page.waitForFunction((name) => document.getElementById("chosen").textContent
    .startsWith(name), {}, path.basename(file));
}

// Waits until #id is shown and its text starts with `prefix`.
function waitText(id, prefix, timeout = 30000 * SLOW) {
  return page.waitForFunction((id, prefix) => {
    const el = document.getElementById(id);
    return !el.hidden && el.textContent.startsWith(prefix);
  }, { timeout }, id, prefix);
}

// Submits and waits for the result of the new job (the job id shown changes); returns the job
// as the API has it.
async function submitAndWait() {
  const before = await text("#meta");
  await page.click("#submit");
  await page.waitForFunction((old) => !document.getElementById("result").hidden &&
                               document.getElementById("meta").textContent !== old,
                             { timeout: JOB_TIMEOUT_MS }, before);
  assert.equal(await hidden("#error"), true, await text("#error"));
  const meta = await shownMeta();
  assert.match(meta.Job, /^job_[0-9a-f]{24}$/);
  const job = await (await api(`/v1/jobs/${meta.Job}`)).json();
  assert.equal(job.status, "succeeded");
  return job;
}

// The result's facts as the page lists them: {Language, Confidence, Duration, Task, Job}.
const shownMeta = () => page.$$eval("#meta dt", (dts) =>
  Object.fromEntries(dts.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])));

async function api(pathname) {
  const r = await fetch(BASE + pathname, { headers: { Authorization: "Bearer " + KEY } });
  assert.equal(r.status, 200, `${pathname}: ${r.status}`);
  return r;
}

// The job's stored events, read with a parser independent of the page's.
async function jobEvents(id) {
  const body = await (await api(`/v1/jobs/${id}/events`)).text();
  return body.split("\n\n").filter((b) => b.trim()).map((block) => {
    const e = { type: "message", data: "" };
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) e.type = line.slice(7);
      else if (line.startsWith("data: ")) e.data = JSON.parse(line.slice(6));
    }
    return e;
  });
}

// The log's attribute records of one kind, each with the value it set: [{at, value}].
function settled(log, kind, now) {
  const records = log.map((e, at) => ({ ...e, at })).filter((e) => e.kind === kind);
  return records.map((e, i) => ({ at: e.at, value: i + 1 < records.length ? records[i + 1].old
                                                                          : now }));
}

// Answers the page's requests for which `answer(req)` gives a response; the rest go through.
async function withAnswers(answer, fn) {
  const handler = (req) => {
    const response = answer(req);
    if (response) req.respond(response);
    else req.continue();
  };
  await page.setRequestInterception(true);
  page.on("request", handler);
  try {
    await fn();
  } finally {
    page.off("request", handler);
    await page.setRequestInterception(false);
  }
}

const mmss = (s) => {
  const t = Math.floor(s);
  return `${String(Math.floor(t / 60)).padStart(2, "0")}:${String(t % 60).padStart(2, "0")}`;
};

// ---- Tests (in order: they share one page).

test("the key stays in the tab, on the device only when remembered, and is forgotten", async () => {
  await setKey("sk-kept-for-this-tab");
  const stored = () => page.evaluate(() => [sessionStorage.getItem("stepaudio.apiKey"),
                                            localStorage.getItem("stepaudio.apiKey")]);
  assert.deepEqual(await stored(), ["sk-kept-for-this-tab", null]);
  await page.click("#remember");
  assert.deepEqual(await stored(), [null, "sk-kept-for-this-tab"]);
  await page.reload({ waitUntil: "load" });
  assert.equal(await page.$eval("#key", (el) => el.value), "sk-kept-for-this-tab");
  assert.equal(await page.$eval("#remember", (el) => el.checked), true);
  await page.click("#forget");
  assert.deepEqual(await stored(), [null, null]);
  assert.equal(await page.$eval("#key", (el) => el.value), "");
});

test("a wrong key shows the server's 401 message", async () => {
  await setKey("sk-wrong-key-000");
  await choose(WAV);
  await page.click("#submit");
  await waitText("error", "401");
  assert.equal(await text("#error"), "401 unauthorized: invalid API key or token\n" +
                                     "Check the API key.");
  assert.equal(await hidden("#result"), true);
  assert.equal(await page.$eval("#submit", (el) => el.disabled), false);
});

test("a file that is not audio shows the server's 415 message", async () => {
  await setKey(KEY);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "web-ui-"));
  try {
    const notes = path.join(dir, "notes.txt");
    fs.writeFileSync(notes, "not a recording\n");
    await choose(notes);
    await page.click("#submit");
    await waitText("error", "415");
    assert.match(await text("#error"), new RegExp(
      "^415 unsupported_media: audio upload: not a recognised audio file.*\\n" +
      "This file format is not supported"));
    assert.equal(await hidden("#progress-section"), true);  // no job was made
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test("a 429 answer shows when to try again (its Retry-After)", async () => {
  // The server's own rate limit is tested in tests/integration; here its answer is played back.
  const body = { error: { code: "rate_limited", message: "too many requests for this key" } };
  const isSubmit = (req) => req.method() === "POST" && new URL(req.url()).pathname === "/v1/jobs";
  await withAnswers((req) => isSubmit(req)
    ? { status: 429, headers: { "Retry-After": "7" }, contentType: "application/json",
        body: JSON.stringify(body) }
    : null, async () => {
    await choose(WAV);
    await page.click("#submit");
    await waitText("error", "429");
  });
  assert.equal(await text("#error"), "429 rate_limited: too many requests for this key\n" +
                                     "Too many requests: try again in 7 s.");
});

test("an uploaded recording: progress, partial transcript, then the result as the API has it",
     async () => {
  await choose(WAV);
  await page.select("#task", "transcribe_and_summarize");
  await page.evaluate(() => { window.__log = []; });
  const started = Date.now();
  const job = await submitAndWait();
  console.log(`# result shown ${Date.now() - started} ms after submit`);
  const r = job.result;

  // What the page showed while the job ran, against the events the server stored: every progress
  // percent in order, every partial piece in order, all before the result appeared.
  const events = await jobEvents(job.id);
  assert.equal(events.at(-1).type, "result");
  const log = await page.evaluate(() => window.__log);
  const progress = settled(log, "progress",
                           await page.$eval("#progress", (el) => el.getAttribute("value")));
  const percents = events.filter((e) => e.type === "progress").map((e) => e.data.percent);
  assert.ok(percents.some((p) => p > 0), "the job reported progress");
  assert.deepEqual(progress.map((e) => Number(e.value)), [0, ...percents, 100]);
  const partials = events.filter((e) => e.type === "partial").map((e) => e.data.text);
  const partialLog = log.map((e, at) => ({ ...e, at })).filter((e) => e.kind === "partial");
  assert.deepEqual(partialLog.map((e) => e.text), partials);
  console.log(`# ${percents.length} progress events, ${partials.length} partial pieces ` +
              `(${partials.join("").length} characters)`);
  const result = settled(log, "result",
                         await page.$eval("#result", (el) => el.getAttribute("hidden")));
  const shownAt = result.find((e) => e.value === null).at;
  assert.ok([...progress, ...partialLog].every((e) => e.at < shownAt),
            "progress and partial text were shown before the result");
  assert.equal(await text("#partial"), partials.join(""));
  assert.equal(await hidden("#partial-block"), true);  // the result's transcript replaced it
  assert.equal(await text("#stage"), "Done.");

  // The result, as the API has it.
  assert.equal(await text("#transcript"), r.transcription);
  const segments = await page.$$eval("#segments li", (lis) => lis.map((li) => ({
    time: li.querySelector(".time").textContent, text: li.querySelector(".text").textContent })));
  assert.ok(r.segments.length > 0);
  assert.deepEqual(segments, r.segments.map((s) => ({
    time: `${mmss(s.start)}–${mmss(s.end)}`, text: s.text })));
  assert.equal(await text("#summary"), r.summary);
  assert.equal(await hidden("#summary-block"), !r.summary);
  assert.equal(await text("#tone"), r.tone);
  const meta = await shownMeta();
  assert.equal(meta.Language, r.language);
  assert.equal(meta.Confidence, `${Math.round(r.confidence * 100)}%`);
  assert.equal(meta.Duration, mmss(r.duration_s));

  // Emotion: one bar per label, the most probable first, each fill's width the score's share of
  // its track (within a pixel).
  const bars = (sel) => page.$$eval(sel, (rows) => rows.map((row) => ({
    label: row.dataset.label,
    fill: row.querySelector(".bar-fill").getBoundingClientRect().width,
    track: row.querySelector(".bar-track").getBoundingClientRect().width,
    level: row.querySelector(".bar-fill").className,
    text: row.querySelector(".bar-value").textContent,
  })));
  const emotion = await bars("#emotion-bars .bar-row");
  const scores = Object.entries(r.emotion.scores).sort((a, b) => b[1] - a[1]);
  assert.equal(scores.length, 8);
  assert.deepEqual(emotion.map((b) => b.label), scores.map(([label]) => label));
  for (const [i, [label, score]] of scores.entries()) {
    assert.ok(emotion[i].track > 100, `the ${label} track is drawn`);
    assert.ok(Math.abs(emotion[i].fill - score * emotion[i].track) <= 1,
              `${label}: fill ${emotion[i].fill} of ${emotion[i].track} for ${score}`);
    assert.equal(emotion[i].text, `${Math.round(score * 100)}%`);
  }
  assert.equal(await text("#emotion-label"), r.emotion.label);

  // Urgency: one bar, its score's share, colored by the level; the reason beside it.
  const urgency = await bars("#urgency-bar .bar-row");
  assert.equal(urgency.length, 1);
  assert.equal(urgency[0].label, r.urgency.level);
  assert.ok(urgency[0].track > 100);
  assert.ok(Math.abs(urgency[0].fill - r.urgency.score * urgency[0].track) <= 1,
            `urgency: fill ${urgency[0].fill} of ${urgency[0].track} for ${r.urgency.score}`);
  assert.equal(urgency[0].level, `bar-fill ${r.urgency.level}`);
  assert.equal(await text("#urgency-reason"), r.urgency.reason);

  await page.screenshot({ path: SHOT, fullPage: true });
  console.log(`# screenshot: ${SHOT}`);

  // Phone width: nothing wider than the screen.
  await page.setViewport({ width: 375, height: 800 });
  const overflow = await page.evaluate(() =>
    document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
  await page.screenshot({ path: SHOT.replace(/\.png$/, "-phone.png"), fullPage: true });
  await page.setViewport({ width: 1000, height: 900 });
});

test("a recording from the microphone goes up as WebM/Opus and is transcribed", async () => {
  await page.select("#task", "transcribe");
  await page.click("#record");
  await waitText("record-status", "Recording");
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await page.click("#record");
  await waitText("chosen", "recording.");
  assert.match(await text("#chosen"), /^recording\.webm \(\d/);
  const job = await submitAndWait();
  assert.equal(job.options.task, "transcribe");
  const r = job.result;
  assert.ok(r.duration_s > 1 && r.duration_s < 10, `a ${r.duration_s} s recording`);
  assert.equal((await shownMeta()).Duration, mmss(r.duration_s));
  assert.equal(await text("#transcript"), r.transcription);
  // transcribe computes no summary, emotion, urgency or tone: their blocks are not shown.
  for (const block of ["#summary-block", "#emotion-block", "#urgency-block", "#tone-block"])
    assert.equal(await hidden(block), true, block);
});

test("an event stream that drops before the end is resumed with Last-Event-ID", async () => {
  // The first connection gets one event and ends (as a proxy cutting the stream would); the page
  // reconnects with Last-Event-ID: 1 and the server sends the rest. (Task analyze: no cache hit.)
  const lastEventIds = [];
  let job;
  await withAnswers((req) => {
    if (req.method() !== "GET" || !new URL(req.url()).pathname.endsWith("/events")) return null;
    lastEventIds.push(req.headers()["last-event-id"] ?? null);
    return lastEventIds.length > 1 ? null : {
      status: 200, contentType: "text/event-stream",
      body: 'id: 1\nevent: queued\ndata: {"status":"queued"}\n\n' };
  }, async () => {
    await choose(WAV);
    await page.select("#task", "analyze");
    job = await submitAndWait();
  });
  assert.deepEqual(lastEventIds, [null, "1"]);
  assert.equal(job.options.task, "analyze");
  assert.equal(await text("#emotion-label"), job.result.emotion.label);
  assert.equal(await page.$$eval("#emotion-bars .bar-row", (rows) => rows.length), 8);
});

test("only the server was asked, nothing broke the page's policy, no script error", async () => {
  assert.deepEqual(foreign, []);
  assert.deepEqual(await page.evaluate(() => window.__violations), []);
  assert.deepEqual(pageErrors, []);
  assert.ok(fs.statSync(SHOT).size > 10000, path.basename(SHOT) + " was written");
});
