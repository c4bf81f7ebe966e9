// The migration on PostgreSQL (with tests/bootstrap.sql standing in for Supabase's roles and
// schemas): row-level security with two users and anon, exactly as Supabase runs a user's query
// (SET ROLE authenticated + request.jwt.claims), through the functions' own database module.
import assert from "node:assert/strict";
import postgres from "npm:postgres@3.4.10";
import { createUser, newSupabase, test } from "./harness.ts";

const sb = newSupabase("http://127.0.0.1:1");
const alice = await createUser(sb);
const bob = await createUser(sb);
const asAlice = { sub: alice, role: "authenticated", aud: "authenticated" };
const asBob = { sub: bob, role: "authenticated", aud: "authenticated" };
const anon = { role: "anon" };

function jobId(n: number): string {
  return `job_${n.toString(16).padStart(24, "0")}`;
}
const result = (text: string) => ({ id: "x", transcription: text }) as never;

async function refused(what: string, p: Promise<unknown>, code = "42501"): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof postgres.PostgresError, `${what}: ${e}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return true;
  });
}

await sb.recordJob({
  job_id: jobId(1),
  user_id: alice,
  status: "succeeded",
  task: "transcribe",
  result: result("alice's"),
});
await sb.recordJob({
  job_id: jobId(2),
  user_id: bob,
  status: "succeeded",
  task: "transcribe",
  result: result("bob's"),
});

test("users read their own results and nobody else's", async () => {
  const a = await sb.listTranscriptions(asAlice);
  assert.deepEqual(a.map((r) => r.job_id), [jobId(1)]);
  assert.equal(a[0]!.result!.transcription, "alice's");
  assert.deepEqual((await sb.listTranscriptions(asBob)).map((r) => r.job_id), [jobId(2)]);
  assert.equal(await sb.getTranscription(asAlice, jobId(2)), undefined);
  assert.equal(await sb.getTranscription(asBob, jobId(1)), undefined);
  assert.equal((await sb.getTranscription(asBob, jobId(2)))?.user_id, bob);
  // Even asking for the other's rows by user id finds nothing.
  const rows = await sb.asUser(asAlice, (tx) => tx`select * from public.transcriptions where user_id = ${bob}`);
  assert.equal(rows.length, 0);
});

test("anon reads nothing; users cannot write results; the deliveries table is closed to both", async () => {
  await refused("anon select", sb.asUser(anon, (tx) => tx`select * from public.transcriptions`));
  await refused("anon deliveries", sb.asUser(anon, (tx) => tx`select * from public.stepaudio_webhook_deliveries`));
  await refused("user deliveries", sb.asUser(asAlice, (tx) => tx`select * from public.stepaudio_webhook_deliveries`));
  await refused(
    "user insert",
    sb.asUser(asAlice, (tx) =>
      tx`
    insert into public.transcriptions (job_id, user_id, status, task) values (${
        jobId(3)
      }, ${alice}, 'queued', 'transcribe')`),
  );
  await refused("user update", sb.asUser(asAlice, (tx) => tx`update public.transcriptions set status = 'failed'`));
  await refused("user delete", sb.asUser(asAlice, (tx) => tx`delete from public.transcriptions`));
  const [n] = await sb.sql`select count(*)::int as n from public.transcriptions where job_id in (${jobId(1)}, ${
    jobId(2)
  }) and status = 'succeeded'`;
  assert.equal(n!.n, 2);
});

test("recordJob: a finished row is never set back to queued, and never changes owner", async () => {
  await sb.recordJob({ job_id: jobId(1), user_id: alice, status: "queued", task: "transcribe" });
  await sb.recordJob({
    job_id: jobId(1),
    user_id: bob,
    status: "failed",
    task: "transcribe",
    error: { code: "x", message: "y" },
  });
  const [r] = await sb.sql`select user_id, status, result from public.transcriptions where job_id = ${jobId(1)}`;
  assert.equal(r!.user_id, alice);
  assert.equal(r!.status, "succeeded");
  assert.equal(r!.result.transcription, "alice's");
  // queued -> succeeded does go through (the webhook after the function's insert).
  await sb.recordJob({ job_id: jobId(4), user_id: alice, status: "queued", task: "analyze" });
  await sb.recordJob({
    job_id: jobId(4),
    user_id: alice,
    status: "succeeded",
    task: "analyze",
    result: result("done"),
  });
  assert.equal((await sb.getTranscription(asAlice, jobId(4)))?.status, "succeeded");
});

test("the column checks refuse what our server never sends", async () => {
  await refused(
    "bad job id",
    sb.recordJob({ job_id: "job_x", user_id: alice, status: "queued", task: "transcribe" }),
    "23514",
  );
  await refused(
    "bad status",
    sb.recordJob({ job_id: jobId(5), user_id: alice, status: "lost" as never, task: "transcribe" }),
    "23514",
  );
  await refused(
    "unknown user",
    sb.recordJob({ job_id: jobId(6), user_id: crypto.randomUUID(), status: "queued", task: "transcribe" }),
    "23503",
  );
});

test("storage: users upload into and read from their own folder of the private recordings bucket", async () => {
  const [bucket] = await sb.sql`select public, allowed_mime_types from storage.buckets where id = 'recordings'`;
  assert.equal(bucket!.public, false);
  const insert = (claims: Record<string, unknown>, bucketId: string, name: string) =>
    sb.asUser(
      claims,
      (tx) =>
        tx`insert into storage.objects (bucket_id, name, owner) values (${bucketId}, ${name}, ${claims.sub as string})`,
    );
  await insert(asAlice, "recordings", `${alice}/one.m4a`);
  await refused("into bob's folder", insert(asAlice, "recordings", `${bob}/two.m4a`));
  await refused("at the bucket root", insert(asAlice, "recordings", "three.m4a"));
  await refused(
    "anon upload",
    sb.asUser(
      anon,
      (tx) => tx`insert into storage.objects (bucket_id, name) values ('recordings', ${alice + "/x.m4a"})`,
    ),
  );
  const seen = (claims: Record<string, unknown>) =>
    sb.asUser(claims, (tx) => tx`select name from storage.objects where bucket_id = 'recordings'`);
  assert.deepEqual((await seen(asAlice)).map((r) => r.name), [`${alice}/one.m4a`]);
  assert.equal((await seen(asBob)).length, 0);
  assert.equal((await seen(anon)).length, 0);
  const deleted = await sb.asUser(asBob, (tx) => tx`delete from storage.objects where name = ${alice + "/one.m4a"}`);
  assert.equal(deleted.count, 0);
});

test("deleting a user deletes their results", async () => {
  await sb.sql`delete from auth.users where id = ${bob}`;
  const [n] = await sb.sql`select count(*)::int as n from public.transcriptions where user_id = ${bob}`;
  assert.equal(n!.n, 0);
});

test("teardown", async () => {
  await sb.sql`delete from storage.objects where owner = ${alice}`;
  await sb.sql`delete from auth.users where id = ${alice}`;
  await sb.end();
});
