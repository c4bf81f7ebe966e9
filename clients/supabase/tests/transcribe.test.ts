// The transcribe and stepaudio-webhook functions end to end: the functions served on 127.0.0.1,
// our real server (tiny model) behind them, PostgreSQL with the migration, and a Storage stand-in.
import assert from "node:assert/strict";
import { createJwtVerifier } from "../supabase/functions/_shared/auth.ts";
import { StepAudioClient, webhookSecretFromApiKey } from "../supabase/functions/_shared/stepaudio.ts";
import { createWebhookHandler } from "../supabase/functions/stepaudio-webhook/handler.ts";
import { createTranscribeHandler, type TranscribeDeps } from "../supabase/functions/transcribe/handler.ts";
import {
  assertErrorShape,
  assertResultShape,
  closedPortUrl,
  createUser,
  drainRateLimit,
  env,
  es256Key,
  eventually,
  JWT_SECRET,
  newSupabase,
  requestsWithStatus,
  serve,
  test,
  userToken,
  verifier,
  wavBlob,
} from "./harness.ts";
import { StorageStandIn } from "./storage_standin.ts";

const SERVER = env("STEPAUDIO_URL");
const LIMITED = env("STEPAUDIO_URL_LIMITED");
const KEY = env("STEPAUDIO_KEY");

const supabase = newSupabase("http://127.0.0.1:1"); // the Storage URL is set per function below
const storage = new StorageStandIn(supabase, verifier());
const sb = newSupabase(storage.url);
const webhook = serve(createWebhookHandler({ supabase: sb, secret: await webhookSecretFromApiKey(KEY) }));
const userA = await createUser(sb);
const userB = await createUser(sb);
const tokenA = await userToken(userA);
const tokenB = await userToken(userB);

function deps(over: Partial<TranscribeDeps> & { serverUrl?: string; maxRetries?: number } = {}): TranscribeDeps {
  return {
    verifyJwt: verifier(),
    supabase: sb,
    client: new StepAudioClient({ baseUrl: over.serverUrl ?? SERVER, apiKey: KEY, maxRetries: over.maxRetries ?? 2 }),
    webhookUrl: webhook.url + "/",
    bucket: "recordings",
    signedUrlTtlS: 60,
    waitS: 60,
    maxUploadBytes: 10 * 1024 * 1024,
    ...over,
  };
}
const fn = serve(createTranscribeHandler(deps()));

function upload(url: string, token: string, fields: Record<string, string> = {}): Promise<Response> {
  const form = new FormData();
  form.set("file", wavBlob(), "call.wav");
  form.set("task", "transcribe");
  for (const [k, v] of Object.entries(fields)) form.set(k, v);
  return fetch(url, { method: "POST", headers: { Authorization: `Bearer ${token}` }, body: form });
}

function postJson(url: string, token: string | undefined, body: unknown): Promise<Response> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token !== undefined) headers.Authorization = `Bearer ${token}`;
  return fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
}

async function row(jobId: string) {
  const rows = await sb.sql`select * from public.transcriptions where job_id = ${jobId}`;
  return rows[0];
}

let uploaded: Record<string, unknown>;

test("upload: a multipart file gives the seed's result, and the row is stored for its owner", async () => {
  const res = await upload(fn.url, tokenA);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assertResultShape(body);
  assert.equal(body.task, "transcribe");
  assert.ok(body.transcription.length > 0);
  uploaded = body;
  const r = await row(body.id);
  assert.equal(r?.user_id, userA);
  assert.equal(r?.status, "succeeded");
  assert.equal(r?.result.transcription, body.transcription);
});

test("storage path: a signed URL is made as the user and our server downloads the recording", async () => {
  const claims = { sub: userA, role: "authenticated" };
  await storage.upload(claims, "recordings", `${userA}/2024 call.wav`, Deno.readFileSync(env("STEPAUDIO_WAV")));
  const before = storage.downloads;
  const res = await postJson(fn.url, tokenA, { path: `${userA}/2024 call.wav`, task: "transcribe" });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assertResultShape(body);
  assert.equal(storage.downloads, before + 1, "our server fetched the signed URL once");
  assert.equal(body.transcription, uploaded.transcription, "same recording, same transcript");
  assert.equal((await row(body.id))?.storage_path, `recordings/${userA}/2024 call.wav`);
});

test("storage path: another user's folder is 403, a missing object 404, a bad path 400", async () => {
  let res = await postJson(fn.url, tokenB, { path: `${userA}/2024 call.wav` });
  assertErrorShape(await res.json(), "forbidden");
  assert.equal(res.status, 403);
  res = await postJson(fn.url, tokenA, { path: `${userA}/nothing-here.m4a` });
  assertErrorShape(await res.json(), "not_found");
  assert.equal(res.status, 404);
  for (const path of [`${userA}/../${userB}/x.m4a`, `${userA}`, `/${userA}/x.m4a`, `${userA}/a\nb`]) {
    res = await postJson(fn.url, tokenA, { path });
    assertErrorShape(await res.json(), "invalid_argument");
    assert.equal(res.status, 400, path);
  }
});

test("webhook mode: 202 at once; our server's signed webhook stores the result for its owner only", async () => {
  const res = await upload(fn.url, tokenA, { mode: "webhook" });
  const created = await res.json();
  assert.equal(res.status, 202, JSON.stringify(created));
  assert.match(created.id, /^job_[0-9a-f]{24}$/);
  // Only the webhook writes a finished row in this mode (the function wrote "queued").
  const stored = await eventually("the webhook's row", async () => {
    const r = await row(created.id);
    return r?.status === "succeeded" ? r : undefined;
  });
  assert.equal(stored.user_id, userA);
  assert.equal(stored.result.id, created.id);
  const deliveries = await sb.sql`select * from public.stepaudio_webhook_deliveries where job_id = ${created.id}`;
  assert.equal(deliveries.length, 1);
  assert.match(deliveries[0]!.signature, /^[0-9a-f]{64}$/);
  // The owner reads it through the function (RLS as the user); the other user sees nothing.
  let got = await fetch(`${fn.url}?id=${created.id}`, { headers: { Authorization: `Bearer ${tokenA}` } });
  const mine = await got.json();
  assert.equal(got.status, 200);
  assert.equal(mine.result.transcription, stored.result.transcription);
  got = await fetch(`${fn.url}?id=${created.id}`, { headers: { Authorization: `Bearer ${tokenB}` } });
  assertErrorShape(await got.json(), "not_found");
  assert.equal(got.status, 404);
  got = await fetch(fn.url, { headers: { Authorization: `Bearer ${tokenB}` } });
  assert.deepEqual((await got.json()).data, []);
  got = await fetch(fn.url, { headers: { Authorization: `Bearer ${tokenA}` } });
  assert.ok((await got.json()).data.some((r: { job_id: string }) => r.job_id === created.id));
});

test("wait mode past STEPAUDIO_WAIT_S: 202 with the job, and the webhook stores the result", async () => {
  const quick = serve(createTranscribeHandler(deps({ waitS: 0.05 })));
  try {
    // A task not run yet on this recording, so the job takes longer than the wait.
    const res = await upload(quick.url, tokenA, { task: "summarize" });
    const body = await res.json();
    assert.equal(res.status, 202, JSON.stringify(body));
    assert.deepEqual(Object.keys(body).sort(), ["id", "status"]);
    const stored = await eventually("the webhook's row", async () => {
      const r = await row(body.id);
      return r?.status === "succeeded" ? r : undefined;
    }, 60_000);
    assert.equal(stored.task, "summarize");
    assert.equal(stored.result.task, "summarize");
  } finally {
    await quick.close();
  }
});

test("wait mode, the job canceled on our server meanwhile: 409 canceled, and the row says so", async () => {
  const api = new StepAudioClient({ baseUrl: SERVER, apiKey: KEY });
  const before = (await api.listJobs({ limit: 1 })).data[0]?.id;
  const pending = upload(fn.url, tokenA, { task: "analyze" }); // not run yet: takes a while
  const id = await eventually("the submitted job", async () => {
    const top = (await api.listJobs({ limit: 1 })).data[0];
    return top && top.id !== before && (top.status === "queued" || top.status === "running") ? top.id : undefined;
  });
  await api.cancelJob(id);
  const res = await pending;
  assertErrorShape(await res.json(), "canceled");
  assert.equal(res.status, 409);
  const r = await row(id);
  assert.equal(r?.status, "canceled");
  assert.equal(r?.error.code, "canceled");
});

test("JWT: missing, malformed, expired, wrong audience, anon role, wrong secret, alg none -> 401", async () => {
  const now = Math.floor(Date.now() / 1000);
  const none = `${btoa('{"alg":"none"}').replace(/=+$/, "")}.${
    btoa(JSON.stringify({ sub: userA, role: "authenticated", aud: "authenticated", exp: now + 600 })).replace(/=+$/, "")
  }.`;
  const cases: [string, string | undefined][] = [
    ["missing", undefined],
    ["malformed", "not-a-jwt"],
    ["expired", await userToken(userA, { expS: -120, iat: now - 3600 })],
    ["wrong audience", await userToken(userA, { aud: "someone-else" })],
    ["anon key", await userToken(userA, { role: "anon", aud: "authenticated" })],
    ["wrong secret", await userToken(userA, { secret: JWT_SECRET + "x" })],
    ["alg none", none],
  ];
  for (const [what, token] of cases) {
    const res = await postJson(fn.url, token, { path: `${userA}/2024 call.wav` });
    const body = await res.json();
    assert.equal(res.status, 401, `${what}: ${JSON.stringify(body)}`);
    assertErrorShape(body, "unauthorized");
    assert.equal(res.headers.get("www-authenticate"), "Bearer");
  }
});

test("JWT: the project's signing keys (SUPABASE_JWKS, or fetched from Auth) verify ES256 tokens", async () => {
  const key = await es256Key("key-1");
  const other = await es256Key("key-1");
  const local = serve(createTranscribeHandler(deps({ verifyJwt: createJwtVerifier({ jwks: key.jwks }) })));
  storage.jwks = key.jwks;
  const remote = serve(createTranscribeHandler(deps({
    verifyJwt: createJwtVerifier({ jwksUrl: `${storage.url}/auth/v1/.well-known/jwks.json` }),
  })));
  try {
    for (const url of [local.url, remote.url]) {
      let res = await fetch(url, { headers: { Authorization: `Bearer ${await key.sign(userA)}` } });
      assert.equal(res.status, 200, await res.text());
      res = await fetch(url, { headers: { Authorization: `Bearer ${await other.sign(userA)}` } });
      assertErrorShape(await res.json(), "unauthorized");
      // An HS256 token is refused where no secret is configured (no algorithm confusion).
      res = await fetch(url, { headers: { Authorization: `Bearer ${tokenA}` } });
      assert.equal(res.status, 401);
      await res.body?.cancel();
    }
  } finally {
    await local.close();
    await remote.close();
  }
});

test("our server down: 502 upstream_unavailable in the error shape, quickly", async () => {
  const down = serve(createTranscribeHandler(deps({ serverUrl: closedPortUrl() })));
  try {
    const t0 = Date.now();
    const res = await upload(down.url, tokenA);
    assertErrorShape(await res.json(), "upstream_unavailable");
    assert.equal(res.status, 502);
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    await down.close();
  }
});

test("429 from our server (rate limit): retried after Retry-After, then the result", async () => {
  const limited = serve(createTranscribeHandler(deps({ serverUrl: LIMITED, maxRetries: 3 })));
  try {
    const before = await requestsWithStatus(LIMITED, 429);
    await drainRateLimit(LIMITED);
    const t0 = Date.now();
    const res = await upload(limited.url, tokenA);
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assertResultShape(body);
    // The drain's own 429 plus at least one the function met and waited out (Retry-After: 1).
    assert.ok((await requestsWithStatus(LIMITED, 429)) >= before + 2);
    assert.ok(Date.now() - t0 >= 900, "the retry waited for Retry-After");
  } finally {
    await limited.close();
  }
});

test("429 from our server, retries exhausted: the app gets 429 with Retry-After", async () => {
  const limited = serve(createTranscribeHandler(deps({ serverUrl: LIMITED, maxRetries: 0 })));
  try {
    await drainRateLimit(LIMITED);
    const res = await upload(limited.url, tokenA);
    assertErrorShape(await res.json(), "rate_limited");
    assert.equal(res.status, 429);
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
  } finally {
    await limited.close();
  }
});

test("bad requests: unknown task 400, bad mode 400, text body 415, PUT 405", async () => {
  let res = await postJson(fn.url, tokenA, { path: `${userA}/x.wav`, task: "sing" });
  assertErrorShape(await res.json(), "invalid_argument");
  res = await postJson(fn.url, tokenA, { path: `${userA}/x.wav`, mode: "later" });
  assertErrorShape(await res.json(), "invalid_argument");
  res = await fetch(fn.url, {
    method: "POST",
    headers: { Authorization: `Bearer ${tokenA}`, "Content-Type": "text/plain" },
    body: "hi",
  });
  assert.equal(res.status, 415);
  assertErrorShape(await res.json(), "unsupported_media");
  res = await fetch(fn.url, { method: "PUT", headers: { Authorization: `Bearer ${tokenA}` } });
  assert.equal(res.status, 405);
  await res.body?.cancel();
});

test("teardown", async () => {
  await fn.close();
  await webhook.close();
  await storage.close();
  await sb.sql`delete from auth.users where id in (${userA}, ${userB})`;
  await sb.end();
  await supabase.end();
});
