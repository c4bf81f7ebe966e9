// The built package (dist/, from `npm run build`) imported by Node, as an npm user would, against
// the real server started by clients/supabase/tests/run.sh.
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { StepAudioClient, StepAudioError, webhookSecretFromApiKey } from "../dist/index.js";

const { STEPAUDIO_URL, STEPAUDIO_KEY, STEPAUDIO_WAV } = process.env;
const client = new StepAudioClient({ baseUrl: STEPAUDIO_URL, apiKey: STEPAUDIO_KEY });

test("package.json exports point at the built files", () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  for (const rel of [pkg.exports["."].import, pkg.exports["."].types, pkg.main, pkg.types]) {
    assert.ok(readFileSync(new URL("../" + rel, import.meta.url)).length > 0, rel);
  }
});

test("Node: submit a recording, wait for the job, read the result", async () => {
  const file = new Blob([readFileSync(STEPAUDIO_WAV)], { type: "audio/wav" });
  const created = await client.createJob({ file, filename: "call.wav" }, { task: "transcribe" });
  assert.match(created.id, /^job_[0-9a-f]{24}$/);
  const outcome = await client.waitForJob(created.id, { timeoutMs: 60_000 });
  assert.equal(outcome.status, "succeeded");
  assert.equal(outcome.result.id, created.id);
  assert.ok(outcome.result.transcription.length > 0);
});

test("Node: errors are StepAudioError with code and status", async () => {
  await assert.rejects(client.getJob("job_ffffffffffffffffffffffff"), (e) => {
    assert.ok(e instanceof StepAudioError);
    assert.equal(e.code, "not_found");
    assert.equal(e.status, 404);
    return true;
  });
});

test("Node: webhookSecretFromApiKey matches node:crypto", async () => {
  const digest = createHash("sha256").update(STEPAUDIO_KEY).digest();
  const want = createHmac("sha256", digest).update("stepaudio-webhook-v1").digest("hex");
  assert.equal(await webhookSecretFromApiKey(STEPAUDIO_KEY), want);
});
