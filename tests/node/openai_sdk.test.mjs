// `stepaudio serve` through the official OpenAI Node SDK (pinned in package.json): what a client
// that only changes baseURL and apiKey sees (docs/API.md: POST /v1/audio/transcriptions,
// GET /v1/models, POST /v1/chat/completions). Run by tests/node/run.sh, which starts the server;
// by hand:
//   STEPAUDIO_URL=http://127.0.0.1:8080 STEPAUDIO_KEY=sk-... STEPAUDIO_WAV=call.wav \
//     node --test tests/node/openai_sdk.test.mjs
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import OpenAI, { AuthenticationError, BadRequestError, toFile } from "openai";

const here = path.dirname(fileURLToPath(import.meta.url));
const URL_ = process.env.STEPAUDIO_URL;
const KEY = process.env.STEPAUDIO_KEY;
const WAV =
  process.env.STEPAUDIO_WAV ||
  path.join(here, "..", "..", "..", "shared", "data", "audio", "stepaudio2_assets",
            "give_me_a_brief_introduction_to_the_great_wall.wav");
const skip = !URL_ || !KEY ? "STEPAUDIO_URL and STEPAUDIO_KEY are not set (run tests/node/run.sh)" : false;

// No retries: a 429/5xx must show up as a failure, not be papered over.
const client = () => new OpenAI({ baseURL: URL_ + "/v1", apiKey: KEY, maxRetries: 0, timeout: 120_000 });
const file = () => fs.createReadStream(WAV);

test("models.list contains the served model", { skip }, async () => {
  const ready = await (await fetch(URL_ + "/readyz", { headers: { Authorization: "Bearer " + KEY } })).json();
  const ids = [];
  for await (const m of client().models.list()) {
    ids.push(m.id);
    assert.equal(m.object, "model");
    assert.equal(m.owned_by, "stepaudio");
  }
  assert.ok(ids.includes(ready.model), `${ready.model} not in ${JSON.stringify(ids)}`);
});

test("transcriptions.create: json (default)", { skip }, async () => {
  const r = await client().audio.transcriptions.create({ file: file(), model: "step-audio-2-mini" });
  assert.equal(typeof r.text, "string");
  assert.ok(r.text.length > 0);
});

test("transcriptions.create: verbose_json has duration and timed segments", { skip }, async () => {
  const r = await client().audio.transcriptions.create({
    file: file(), model: "whisper-1", response_format: "verbose_json",
  });
  assert.equal(typeof r.text, "string");
  assert.equal(typeof r.language, "string");
  assert.ok(r.duration > 3 && r.duration < 5, `duration ${r.duration}`);  // the sample is 3.78 s
  assert.ok(Array.isArray(r.segments) && r.segments.length > 0);
  let prevEnd = 0;
  for (const s of r.segments) {
    assert.equal(typeof s.start, "number");
    assert.equal(typeof s.end, "number");
    assert.equal(typeof s.text, "string");
    assert.ok(s.start >= prevEnd - 1e-6 && s.end >= s.start && s.end <= r.duration + 1e-6);
    prevEnd = s.end;
  }
});

test("transcriptions.create: srt and vtt", { skip }, async () => {
  const srt = await client().audio.transcriptions.create({
    file: file(), model: "whisper-1", response_format: "srt",
  });
  assert.equal(typeof srt, "string");
  assert.ok(srt.startsWith("1\n00:00:"), JSON.stringify(srt.slice(0, 40)));
  assert.match(srt, /^1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n/);
  const vtt = await client().audio.transcriptions.create({
    file: file(), model: "whisper-1", response_format: "vtt",
  });
  assert.equal(typeof vtt, "string");
  assert.ok(vtt.startsWith("WEBVTT"), JSON.stringify(vtt.slice(0, 40)));
  assert.match(vtt, /\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}/);
});

test("transcriptions.create: text", { skip }, async () => {
  const json = await client().audio.transcriptions.create({ file: file(), model: "whisper-1" });
  const text = await client().audio.transcriptions.create({
    file: file(), model: "whisper-1", response_format: "text",
  });
  assert.equal(typeof text, "string");
  assert.equal(text, json.text);  // the same cached transcript, as plain text
});

test("transcriptions.create: stream yields deltas that add up to done.text", { skip }, async () => {
  // The sample with one sample's lowest bit flipped: another cache key, so on a fresh server the
  // first stream is generated live (one delta per piece); the second is a cache hit (one delta).
  // Both must satisfy the same contract. (The tiny seeded model is deterministic and its answer
  // for this input stops without the repetition guard, which may otherwise trim deltas.)
  const wav = Buffer.from(fs.readFileSync(WAV));
  wav[wav.indexOf("data") + 8 + 2000] ^= 1;
  for (let i = 0; i < 2; i++) {
    const stream = await client().audio.transcriptions.create({
      file: await toFile(wav, "variant.wav", { type: "audio/wav" }),
      model: "gpt-4o-transcribe", stream: true, language: "en",
    });
    let deltas = "", done = null, n = 0;
    for await (const ev of stream) {
      if (ev.type === "transcript.text.delta") {
        assert.equal(typeof ev.delta, "string");
        assert.equal(done, null, "a delta after done");
        deltas += ev.delta;
        n++;
      } else if (ev.type === "transcript.text.done") {
        done = ev.text;
      } else {
        assert.fail("unexpected event " + JSON.stringify(ev));
      }
    }
    assert.equal(typeof done, "string", "no transcript.text.done");
    assert.ok(done.length > 0);
    assert.equal(deltas, done);
    if (i === 0 && process.env.STEPAUDIO_FRESH === "1") assert.ok(n > 1, `live stream had ${n} delta(s)`);
    if (i === 1) assert.equal(n, 1, "a cache hit sends the whole text as one delta");
  }
});

test("a wrong API key is AuthenticationError (401) with the error body", { skip }, async () => {
  const bad = new OpenAI({ baseURL: URL_ + "/v1", apiKey: "sk-wrong", maxRetries: 0 });
  await assert.rejects(bad.audio.transcriptions.create({ file: file(), model: "whisper-1" }), (e) => {
    assert.ok(e instanceof AuthenticationError, e.constructor.name);
    assert.equal(e.status, 401);
    assert.equal(e.error.code, "unauthorized");  // {"error": {"code", "message"}}
    assert.equal(typeof e.error.message, "string");
    assert.equal(e.code, "unauthorized");
    assert.equal(e.headers.get("www-authenticate"), "Bearer");
    assert.ok(e.requestID || e.headers.get("x-request-id"));
    return true;
  });
  await assert.rejects(bad.models.list(), AuthenticationError);
});

test("a request without a file is BadRequestError (400)", { skip }, async () => {
  await assert.rejects(client().audio.transcriptions.create({ model: "whisper-1" }), (e) => {
    assert.ok(e instanceof BadRequestError, e.constructor.name);
    assert.equal(e.status, 400);
    assert.equal(e.error.code, "invalid_argument");
    assert.match(e.error.message, /file/);
    return true;
  });
  await assert.rejects(
    client().audio.transcriptions.create({ file: file(), model: "whisper-1", response_format: "xml" }),
    (e) => e instanceof BadRequestError && e.error.code === "invalid_argument");
});

test("chat.completions.create with an input_audio part: plain and streamed agree", { skip }, async () => {
  const ready = await (await fetch(URL_ + "/readyz", { headers: { Authorization: "Bearer " + KEY } })).json();
  const request = {
    model: ready.model,
    messages: [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: [
        { type: "input_audio", input_audio: { data: fs.readFileSync(WAV).toString("base64"), format: "wav" } },
        { type: "text", text: "What is said?" },
      ] },
    ],
    temperature: 0,
    max_tokens: 12,
    logprobs: true,
    top_logprobs: 2,
  };
  const r = await client().chat.completions.create(request);
  assert.equal(r.object, "chat.completion");
  const c = r.choices[0];
  assert.equal(c.message.role, "assistant");
  assert.equal(typeof c.message.content, "string");
  assert.ok(["stop", "length"].includes(c.finish_reason));
  assert.ok(c.logprobs.content.length > 0 && c.logprobs.content[0].top_logprobs.length === 2);
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);

  const stream = await client().chat.completions.create({ ...request, stream: true,
                                                          stream_options: { include_usage: true } });
  let text = "", finish = null, usage = null, first = true;
  for await (const chunk of stream) {
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    if (first) assert.equal(choice.delta.role, "assistant");
    first = false;
    text += choice.delta.content ?? "";
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  assert.equal(text, c.message.content);
  assert.equal(finish, c.finish_reason);
  assert.deepEqual(usage, r.usage);

  await assert.rejects(client().chat.completions.create({ ...request, n: 2 }), (e) => {
    assert.ok(e instanceof BadRequestError, e.constructor.name);
    assert.equal(e.error.code, "invalid_argument");
    return true;
  });
});
