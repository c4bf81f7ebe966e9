// The stepaudio-webhook function against forged, stale and replayed deliveries, called in-process
// with requests signed exactly as our server signs them (server/crypto.cpp, docs/API.md Webhooks),
// and PostgreSQL with the migration behind it. (The real server's own deliveries are verified in
// transcribe.test.ts, webhook mode.)
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { verifyWebhook, webhookSecretFromApiKey } from "../supabase/functions/_shared/stepaudio.ts";
import { createWebhookHandler } from "../supabase/functions/stepaudio-webhook/handler.ts";
import { assertErrorShape, createUser, newSupabase, test } from "./harness.ts";

const API_KEY = "sk-webhook-test-0123456789";
const secret = await webhookSecretFromApiKey(API_KEY);
const sb = newSupabase("http://127.0.0.1:1");
const handler = createWebhookHandler({ supabase: sb, secret });
const owner = await createUser(sb);

function jobId(): string {
  return "job_" +
    Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A job.succeeded body as our server sends it (the Job view, with its webhook URL). */
function eventBody(id: string, uid = owner): string {
  return JSON.stringify({
    type: "job.succeeded",
    job: {
      id,
      status: "succeeded",
      attempts: 1,
      created_at: 1,
      started_at: 1,
      finished_at: 2,
      expires_at: null,
      options: { task: "transcribe", target_length: 10, language: "auto", cache: true },
      urls: { self: `/v1/jobs/${id}`, events: `/v1/jobs/${id}/events` },
      result: { id, transcription: "hello", summary: "", segments: [] },
      error: null,
      webhook: { url: `https://example.supabase.co/functions/v1/stepaudio-webhook?uid=${uid}`, deliveries: [] },
    },
  });
}

/** Signed like server/crypto.cpp webhook_signature_header: HMAC(secret text, "<t>.<body>"). */
function sign(body: string, t = Math.floor(Date.now() / 1000), key = secret): string {
  return `t=${t},v1=${createHmac("sha256", key).update(`${t}.${body}`).digest("hex")}`;
}

function deliver(body: string, signature: string | null, deliveryId = "7"): Promise<Response> {
  const headers: Record<string, string> = { "Content-Type": "application/json", "StepAudio-Delivery": deliveryId };
  if (signature !== null) headers["StepAudio-Signature"] = signature;
  return handler(new Request("http://127.0.0.1/stepaudio-webhook", { method: "POST", headers, body }));
}

async function counts(id: string) {
  const [r] = await sb.sql`
    select (select count(*) from public.transcriptions where job_id = ${id})::int as rows,
           (select count(*) from public.stepaudio_webhook_deliveries where job_id = ${id})::int as deliveries`;
  return r;
}

test("the secret derivation and signature format match docs/API.md", async () => {
  const digest = createHash("sha256").update(API_KEY).digest();
  assert.equal(secret, createHmac("sha256", digest).update("stepaudio-webhook-v1").digest("hex"));
  const body = eventBody(jobId());
  const now = 1_750_000_000;
  const sig = sign(body, now);
  assert.deepEqual(await verifyWebhook(secret, sig, body, { nowS: now + 299 }), {
    ok: true,
    timestamp: now,
    signature: sig.split("v1=")[1],
  });
  // Rotation: any v1 may match; a future v2 entry is skipped; spaces and case are tolerated.
  const two = `t=${now}, v1=${"0".repeat(64)}, v2=abc, v1=${sig.split("v1=")[1]!.toUpperCase()}`;
  assert.equal((await verifyWebhook(secret, two, body, { nowS: now })).ok, true);
  const reasons = async (h: string | null, b = body) => {
    const r = await verifyWebhook(secret, h, b, { nowS: now });
    return r.ok ? "ok" : r.reason;
  };
  assert.equal(await reasons(null), "missing");
  assert.equal(await reasons(`t=${now},t=${now},v1=${sig.split("v1=")[1]}`), "malformed");
  assert.equal(await reasons(`v1=${sig.split("v1=")[1]}`), "malformed");
  assert.equal(await reasons(`t=12x,v1=${sig.split("v1=")[1]}`), "malformed");
  assert.equal(await reasons(sign(body, now - 301)), "expired");
  assert.equal(await reasons(sign(body, now + 301)), "expired");
  assert.equal(await reasons(sig, body + " "), "mismatch");
  assert.equal(await reasons(`t=${now},v1=zz`), "mismatch");
});

test("a signed delivery is stored for the owner named in the signed job", async () => {
  const id = jobId();
  const res = await deliver(eventBody(id), sign(eventBody(id)));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { stored: true, duplicate: false });
  const [r] = await sb.sql`select * from public.transcriptions where job_id = ${id}`;
  assert.equal(r?.user_id, owner);
  assert.equal(r?.status, "succeeded");
  assert.equal(r?.result.transcription, "hello");
});

test("forged signatures are 401 and store nothing", async () => {
  const id = jobId();
  const body = eventBody(id);
  const forged = [
    sign(body, undefined, "f".repeat(64)), // another secret
    sign(eventBody(jobId()), undefined), // a valid signature of another body
    `t=${Math.floor(Date.now() / 1000)},v1=${"a".repeat(64)}`,
    "garbage",
    null,
  ];
  for (const sig of forged) {
    const res = await deliver(body, sig);
    assert.equal(res.status, 401, String(sig));
    assertErrorShape(await res.json(), "invalid_signature");
  }
  assert.deepEqual(await counts(id), { rows: 0, deliveries: 0 });
});

test("replays: an old timestamp is 401; the same request again 409; a retry re-signed 200 without a write", async () => {
  const id = jobId();
  const body = eventBody(id);
  let res = await deliver(body, sign(body, Math.floor(Date.now() / 1000) - 301));
  assert.equal(res.status, 401);
  assertErrorShape(await res.json(), "invalid_signature");
  assert.deepEqual(await counts(id), { rows: 0, deliveries: 0 });

  const sig = sign(body);
  assert.equal((await deliver(body, sig)).status, 200);
  await sb.sql`update public.transcriptions set result = '{"tampered": true}' where job_id = ${id}`;
  res = await deliver(body, sig); // the captured request, again
  assert.equal(res.status, 409);
  assertErrorShape(await res.json(), "replayed");
  res = await deliver(body, sig, "8"); // ... with another delivery id: still the same signature
  assert.equal(res.status, 409);
  res = await deliver(body, sign(body, Math.floor(Date.now() / 1000) - 5)); // our server's retry
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { stored: false, duplicate: true });
  assert.deepEqual(await counts(id), { rows: 1, deliveries: 1 });
  const [r] = await sb.sql`select result from public.transcriptions where job_id = ${id}`;
  assert.deepEqual(r?.result, { tampered: true }, "no second write");
});

test("authentic but unusable events are 400: no owner, bad job id, bad delivery id", async () => {
  const id = jobId();
  const noOwner = eventBody(id).replace(`?uid=${owner}`, "");
  let res = await deliver(noOwner, sign(noOwner));
  assert.equal(res.status, 400);
  assertErrorShape(await res.json(), "bad_payload");
  const badId = eventBody("job_nothex");
  res = await deliver(badId, sign(badId));
  assert.equal(res.status, 400);
  await res.body?.cancel();
  res = await deliver(eventBody(id), sign(eventBody(id)), "seven");
  assert.equal(res.status, 400);
  await res.body?.cancel();
  assert.deepEqual(await counts(id), { rows: 0, deliveries: 0 });
  res = await handler(new Request("http://127.0.0.1/", { method: "GET" }));
  assert.equal(res.status, 405);
  await res.body?.cancel();
});

test("teardown", async () => {
  await sb.sql`delete from auth.users where id = ${owner}`;
  await sb.end();
});
