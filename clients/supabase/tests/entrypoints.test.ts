// The deployed entry points (transcribe/index.ts, stepaudio-webhook/index.ts) as their own Deno
// processes, configured only through the environment as Supabase runs them; DENO_SERVE_ADDRESS
// puts their Deno.serve on 127.0.0.1, any free port.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { webhookSecretFromApiKey } from "../supabase/functions/_shared/stepaudio.ts";
import {
  ANON_KEY,
  assertErrorShape,
  createUser,
  env,
  JWT_SECRET,
  newSupabase,
  test,
  userToken,
  wavBlob,
} from "./harness.ts";

const functions = new URL("../supabase/functions/", import.meta.url);
const sb = newSupabase("http://127.0.0.1:1");
const user = await createUser(sb);
const token = await userToken(user);
const children: Deno.ChildProcess[] = [];

const configured = {
  SUPABASE_URL: "http://127.0.0.1:9", // Storage is not used by these requests
  SUPABASE_ANON_KEY: ANON_KEY,
  SUPABASE_DB_URL: env("SUPABASE_DB_URL"),
  STEPAUDIO_URL: env("STEPAUDIO_URL"),
  STEPAUDIO_API_KEY: env("STEPAUDIO_KEY"),
  STEPAUDIO_JWT_SECRET: JWT_SECRET,
  STEPAUDIO_WEBHOOK_URL: "off",
};

/** Runs <function>/index.ts (via serve_entrypoint.ts) with exactly this environment; resolves its URL. */
async function start(fn: string, vars: Record<string, string>): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--cached-only",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      "--allow-net=127.0.0.1",
      "--allow-env",
      "--allow-sys=hostname,osRelease,uid,gid,homedir,networkInterfaces,cpus",
      `--allow-read=${functions.pathname},${new URL("../../typescript/src/", import.meta.url).pathname}`,
      new URL("serve_entrypoint.ts", import.meta.url).pathname,
      new URL(`${fn}/index.ts`, functions).pathname,
    ],
    clearEnv: true,
    env: {
      ...vars,
      DENO_SERVE_ADDRESS: "tcp:127.0.0.1:0",
      DENO_DIR: env("DENO_DIR"),
      NO_COLOR: "1",
      PATH: env("PATH"),
    },
    stdin: "piped", // closed when this process ends: serve_entrypoint.ts then exits
    stdout: "null",
    stderr: "piped", // Deno.serve prints "Listening on <url>" there, and the functions log there
  }).spawn();
  children.push(child);
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const timer = setTimeout(() => reader.cancel(), 30_000); // a silent child must not hang the run
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
      const m = /Listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        // Keep draining its log, so the child never blocks on a full pipe.
        (async () => {
          while (!(await reader.read()).done);
        })().catch(() => {});
        return m[1]!;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`${fn} did not start: ${out}`);
}

test("transcribe/index.ts: configured from the environment, it answers the app", async () => {
  const url = await start("transcribe", configured);
  const form = new FormData();
  form.set("file", wavBlob(), "call.wav");
  form.set("task", "transcribe");
  const res = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${token}` }, body: form });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.match(body.id, /^job_[0-9a-f]{24}$/);
  const list = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  assert.deepEqual((await list.json()).data.map((r: { job_id: string }) => r.job_id), [body.id]);
});

test("transcribe/index.ts without SUPABASE_URL: 500 misconfigured, naming the variable only", async () => {
  const { SUPABASE_URL: _, ...missing } = configured;
  const url = await start("transcribe", missing);
  const res = await fetch(url, { method: "POST" });
  const body = await res.json();
  assert.equal(res.status, 500);
  assertErrorShape(body, "misconfigured");
  assert.match(body.error.message, /SUPABASE_URL is not set/);
  assert.ok(!JSON.stringify(body).includes(configured.STEPAUDIO_API_KEY));
});

test("stepaudio-webhook/index.ts: the secret derived from the API key; unsigned requests refused", async () => {
  const url = await start("stepaudio-webhook", configured);
  const id = "job_" + "ab".repeat(12);
  const body = JSON.stringify({
    type: "job.failed",
    job: {
      id,
      status: "failed",
      options: { task: "transcribe" },
      result: null,
      error: { code: "bad_audio", message: "no audio stream" },
      webhook: { url: `https://x.supabase.co/functions/v1/stepaudio-webhook?uid=${user}`, deliveries: [] },
    },
  });
  let res = await fetch(url, { method: "POST", body, headers: { "StepAudio-Delivery": "1" } });
  assertErrorShape(await res.json(), "invalid_signature");
  const secret = await webhookSecretFromApiKey(configured.STEPAUDIO_API_KEY);
  const t = Math.floor(Date.now() / 1000);
  const sig = `t=${t},v1=${createHmac("sha256", secret).update(`${t}.${body}`).digest("hex")}`;
  res = await fetch(url, { method: "POST", body, headers: { "StepAudio-Delivery": "1", "StepAudio-Signature": sig } });
  assert.deepEqual(await res.json(), { stored: true, duplicate: false });
  const [row] = await sb.sql`select status, error from public.transcriptions where job_id = ${id}`;
  assert.equal(row?.status, "failed");
  assert.equal(row?.error.code, "bad_audio");
});

test("teardown", async () => {
  for (const c of children) {
    c.kill("SIGTERM");
    await c.status;
  }
  await sb.sql`delete from auth.users where id = ${user}`;
  await sb.end();
});
