// The client against a real `stepaudio serve` (tiny model) on 127.0.0.1, started by
// clients/supabase/tests/run.sh: STEPAUDIO_URL (plain), STEPAUDIO_URL_LIMITED (--rate-limit 1
// --rate-burst 1), STEPAUDIO_KEY, STEPAUDIO_WAV. One group uses a local stub server instead,
// because it needs an exact sequence of answers (429 twice, then 200) no real server gives on cue.
import assert from "node:assert/strict";
import { type JobEvent, parseSse, StepAudioClient, StepAudioError } from "../src/index.ts";

function env(name: string): string {
  const v = Deno.env.get(name);
  if (!v) throw new Error(`${name} is not set: run clients/supabase/tests/run.sh`);
  return v;
}
function test(name: string, fn: () => Promise<void> | void): void {
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}

const URL_ = env("STEPAUDIO_URL");
const LIMITED = env("STEPAUDIO_URL_LIMITED");
const KEY = env("STEPAUDIO_KEY");
const wav = () => new Blob([Deno.readFileSync(env("STEPAUDIO_WAV"))], { type: "audio/wav" });
const client = new StepAudioClient({ baseUrl: URL_, apiKey: KEY });

async function rejectsWith(p: Promise<unknown>, code: string, status: number): Promise<StepAudioError> {
  let caught: unknown;
  await assert.rejects(p, (e) => {
    caught = e;
    return true;
  });
  assert.ok(caught instanceof StepAudioError, String(caught));
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.status, status);
  assert.ok(caught.message.length > 0);
  return caught;
}

let jobId = "";
let transcript = "";

test("healthz, readyz, models", async () => {
  assert.deepEqual(await client.healthz(), { status: "ok" });
  const ready = await client.readyz();
  assert.equal(ready.status, "ready");
  assert.equal(typeof ready.queue, "number");
  const models = await client.models();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0]!.id, ready.model);
});

test("createJob + events: queued, running, progress, partial text, result, in order", async () => {
  const created = await client.createJob({ file: wav(), filename: "call.wav" }, { task: "transcribe", cache: false });
  assert.equal(created.status, "queued");
  assert.match(created.id, /^job_[0-9a-f]{24}$/);
  assert.equal(created.urls.self, `/v1/jobs/${created.id}`);
  const events: JobEvent[] = [];
  for await (const ev of client.events(created.id)) events.push(ev);
  assert.deepEqual(events.map((e) => e.id), events.map((_, i) => i + 1), "ids 1, 2, 3, ...");
  const kinds = events.map((e) => e.event);
  assert.equal(kinds[0], "queued");
  assert.equal(kinds.at(-1), "result");
  for (const k of ["running", "progress", "partial"] as const) assert.ok(kinds.includes(k), `no ${k} event: ${kinds}`);
  const last = events.at(-1)!;
  assert.ok(last.event === "result");
  assert.equal(last.data.id, created.id);
  const partial = events.flatMap((e) => (e.event === "partial" ? [e.data.text] : [])).join("");
  assert.ok(partial.length > 0);
  const job = await client.getJob(created.id);
  assert.equal(job.status, "succeeded");
  assert.equal(job.result?.transcription, last.data.transcription);
  jobId = created.id;
  transcript = last.data.transcription;

  // Resuming after event n-1 gives the last event only.
  const resumed: JobEvent[] = [];
  for await (const ev of client.events(created.id, { lastEventId: last.id - 1 })) resumed.push(ev);
  assert.deepEqual(resumed.map((e) => e.id), [last.id]);
});

test("waitForJob on a cache hit; transcribe (POST /transcribe-and-summarize) gives the result", async () => {
  const created = await client.createJob({ file: wav() }, { task: "transcribe" });
  assert.equal(created.status, "succeeded", "identical audio and options: a cache hit");
  const seen: string[] = [];
  const outcome = await client.waitForJob(created.id, { timeoutMs: 10_000, onEvent: (e) => seen.push(e.event) });
  assert.equal(outcome.status, "succeeded");
  assert.ok(outcome.status === "succeeded" && outcome.result.transcription === transcript);
  assert.deepEqual(seen, ["result"]);
  const answer = await client.transcribe({ file: wav() }, { task: "transcribe" });
  assert.equal(answer.status, 200);
  assert.ok(answer.status === 200 && answer.result.cached && answer.result.transcription === transcript);
});

test("listJobs pages, cancelJob of a finished job is 409 already_finished", async () => {
  const page = await client.listJobs({ limit: 1 });
  assert.equal(page.object, "list");
  assert.equal(page.data.length, 1);
  assert.equal(page.has_more, true);
  const next = await client.listJobs({ limit: 100, before: page.next_before! });
  assert.ok(next.data.some((j) => j.id === jobId) || page.data[0]!.id === jobId);
  await rejectsWith(client.cancelJob(jobId), "already_finished", 409);
});

test("errors: typed, with the server's code, status and request id", async () => {
  const e = await rejectsWith(client.getJob("job_000000000000000000000000"), "not_found", 404);
  assert.match(e.requestId ?? "", /^req_[0-9a-f]{16}$/);
  await rejectsWith(new StepAudioClient({ baseUrl: URL_, apiKey: "sk-wrong" }).models(), "unauthorized", 401);
  await rejectsWith(client.listJobs({ limit: 0 }), "invalid_argument", 400);
  // An audio_url the server cannot fetch (loopback is allowed to it in tests; nothing listens).
  await rejectsWith(client.createJob({ url: "http://127.0.0.1:9/x.wav" }), "fetch_failed", 502);
  await rejectsWith(client.createJob({ file: new Blob(["not audio at all"]) }), "unsupported_media", 415);
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  await rejectsWith(new StepAudioClient({ baseUrl: `http://127.0.0.1:${port}` }).healthz(), "connection_failed", 0);
});

test("OpenAI-compatible transcriptions: json, text, verbose_json, srt and the stream agree", async () => {
  const json = await client.transcription(wav(), { filename: "call.wav" });
  assert.equal(json.text, transcript);
  assert.equal(await client.transcription(wav(), { responseFormat: "text" }), transcript);
  const verbose = await client.transcription(wav(), { responseFormat: "verbose_json" });
  assert.equal(verbose.task, "transcribe");
  assert.ok(verbose.segments.length > 0);
  const srt = await client.transcription(wav(), { responseFormat: "srt" });
  assert.match(srt, /^1\r?\n\d\d:\d\d:\d\d,\d{3} --> /);
  let deltas = "", done = "";
  for await (const ev of client.transcriptionStream(wav())) {
    if (ev.type === "transcript.text.delta") deltas += ev.delta;
    else if (ev.type === "transcript.text.done") done = ev.text;
    else assert.fail(`error event: ${JSON.stringify(ev)}`);
  }
  assert.equal(done, transcript);
  assert.equal(deltas, transcript, "a cache hit sends the whole text as one delta");
});

test("429 from the real server: retried after Retry-After; with no retries left, thrown with retryAfter", async () => {
  const drain = async () => {
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${LIMITED}/v1/models`, { headers: { Authorization: `Bearer ${KEY}` } });
      await r.body?.cancel();
      if (r.status === 429) return;
    }
    throw new Error("no 429 from the rate-limited server");
  };
  await drain();
  const e = await rejectsWith(
    new StepAudioClient({ baseUrl: LIMITED, apiKey: KEY, maxRetries: 0 }).models(),
    "rate_limited",
    429,
  );
  assert.ok(e.retryAfter !== undefined && e.retryAfter >= 1);
  await drain();
  // A Retry-After longer than maxRetryDelayS is not waited for.
  await rejectsWith(
    new StepAudioClient({ baseUrl: LIMITED, apiKey: KEY, maxRetryDelayS: 0.5 }).models(),
    "rate_limited",
    429,
  );
  await drain();
  const t0 = Date.now();
  const models = await new StepAudioClient({ baseUrl: LIMITED, apiKey: KEY }).models();
  assert.equal(models.object, "list");
  assert.ok(Date.now() - t0 >= 900, "waited for Retry-After");
});

// ---- a stub server (see the top of the file for why) ----

function stub(answers: (() => Response)[]) {
  let calls = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    const answer = answers[Math.min(calls, answers.length - 1)]!;
    calls++;
    return answer();
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, calls: () => calls, close: () => server.shutdown() };
}
const busy = (retryAfter?: string, status = 429) => () =>
  Response.json({ error: { code: status === 429 ? "queue_full" : "not_ready", message: "busy" } }, {
    status,
    headers: retryAfter === undefined ? {} : { "Retry-After": retryAfter },
  });
const ok = () => Response.json({ status: "ok" });

test("stub: exactly maxRetries retries of 429/503 with Retry-After, none without it or for 500", async () => {
  const cases: { answers: (() => Response)[]; maxRetries: number; calls: number; code?: string }[] = [
    { answers: [busy("0"), busy("0"), ok], maxRetries: 2, calls: 3 },
    { answers: [busy("0"), busy("0"), ok], maxRetries: 1, calls: 2, code: "queue_full" },
    { answers: [busy("0", 503), ok], maxRetries: 2, calls: 2 },
    { answers: [busy(undefined), ok], maxRetries: 2, calls: 1, code: "queue_full" },
    { answers: [busy("60"), ok], maxRetries: 2, calls: 1, code: "queue_full" },
    {
      answers: [() => Response.json({ error: { code: "internal", message: "x" } }, { status: 500 }), ok],
      maxRetries: 2,
      calls: 1,
      code: "internal",
    },
    {
      answers: [() => new Response("<html>bad gateway</html>", { status: 502 })],
      maxRetries: 2,
      calls: 1,
      code: "http_502",
    },
  ];
  for (const c of cases) {
    const s = stub(c.answers);
    try {
      const p = new StepAudioClient({ baseUrl: s.url, maxRetries: c.maxRetries }).healthz();
      if (c.code) await rejectsWith(p, c.code, c.answers[0]!().status);
      else assert.deepEqual(await p, { status: "ok" });
      assert.equal(s.calls(), c.calls, JSON.stringify(c));
    } finally {
      await s.close();
    }
  }
});

test("stub: no answer (or a body that stops) within timeoutMs is StepAudioError timeout", async () => {
  // Raw TCP: one server never answers, the other sends headers and then nothing.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stalled = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const c of silent) conns.push(c);
  })().catch(() => {});
  (async () => {
    for await (const c of stalled) {
      conns.push(c);
      await c.write(
        new TextEncoder().encode("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"),
      );
    }
  })().catch(() => {});
  try {
    for (const l of [silent, stalled]) {
      const port = (l.addr as Deno.NetAddr).port;
      await rejectsWith(
        new StepAudioClient({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 300 }).healthz(),
        "timeout",
        0,
      );
    }
  } finally {
    silent.close();
    stalled.close();
    for (const c of conns) c.close();
  }
});

test("stub: waitForJob resumes a cut event stream after the last event it saw", async () => {
  const id = "job_0123456789abcdef01234567";
  const seen: string[] = [];
  const sse = (text: string) => new Response(text, { headers: { "Content-Type": "text/event-stream" } });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    const from = req.headers.get("last-event-id");
    seen.push(`${path} ${from ?? "-"}`);
    if (path === `/v1/jobs/${id}`) return Response.json({ id, status: "running", result: null, error: null });
    if (from === null) return sse(`id: 1\nevent: queued\ndata: {"status":"queued"}\n\n`); // then cut
    return sse(`id: 2\nevent: result\ndata: {"id":"${id}","transcription":"resumed"}\n\n`);
  });
  try {
    const events: string[] = [];
    const outcome = await new StepAudioClient({ baseUrl: `http://127.0.0.1:${server.addr.port}` })
      .waitForJob(id, { onEvent: (e) => events.push(e.event) });
    assert.ok(outcome.status === "succeeded" && outcome.result.transcription === "resumed");
    assert.deepEqual(events, ["queued", "result"]);
    assert.deepEqual(seen, [`/v1/jobs/${id}/events -`, `/v1/jobs/${id} -`, `/v1/jobs/${id}/events 1`]);
  } finally {
    await server.shutdown();
  }
});

test("parseSse: CRLF, multi-line data, comments, no data, UTF-8 split across chunks", async () => {
  const bytes = new TextEncoder().encode(
    ': hello\r\nid: 1\r\nevent: partial\r\ndata: {"text":\r\ndata: "日本"}\r\n\r\nevent: x\n\nid: 2\ndata: tail\n\n',
  );
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += 5) chunks.push(bytes.slice(i, i + 5)); // splits the 3-byte characters
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of chunks) c.enqueue(ch);
      c.close();
    },
  });
  const got = [];
  for await (const m of parseSse(body)) got.push(m);
  assert.deepEqual(got, [
    { id: "1", event: "partial", data: '{"text":\n"日本"}' },
    { id: "2", event: "message", data: "tail" },
  ]);
});
