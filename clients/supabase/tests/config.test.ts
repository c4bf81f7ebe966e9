// The functions' settings from the environment (_shared/config.ts): names, defaults, refusals.
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../supabase/functions/_shared/config.ts";
import { test } from "./harness.ts";

const base: Record<string, string> = {
  SUPABASE_URL: "https://abc.supabase.co/",
  SUPABASE_ANON_KEY: "anon",
  SUPABASE_DB_URL: "postgres://postgres@db:5432/postgres",
  STEPAUDIO_URL: "https://stepaudio.example.com",
  STEPAUDIO_API_KEY: "sk-live-1",
};
const load = (over: Record<string, string | undefined> = {}) => {
  const env = { ...base, ...over };
  return loadConfig((n) => env[n]);
};

test("defaults: webhook URL from SUPABASE_URL, bucket recordings, bounded waits", () => {
  const c = load();
  assert.equal(c.supabaseUrl, "https://abc.supabase.co");
  assert.equal(c.webhookUrl, "https://abc.supabase.co/functions/v1/stepaudio-webhook");
  assert.equal(c.jwksUrl, "https://abc.supabase.co/auth/v1/.well-known/jwks.json");
  assert.equal(c.bucket, "recordings");
  assert.equal(c.webhookSecret, undefined);
  assert.equal(c.jwtSecret, undefined);
  assert.ok(c.waitS > 0 && c.waitS < 150, "below the Edge Functions' wall-clock limit");
  assert.equal(c.maxRetries, 2);
});

test("overrides: webhook off, publishable keys, SUPABASE_JWKS, numbers", () => {
  const jwks = { keys: [{ kty: "EC", crv: "P-256", x: "x", y: "y", kid: "k" }] };
  const c = load({
    STEPAUDIO_WEBHOOK_URL: "off",
    SUPABASE_ANON_KEY: undefined,
    SUPABASE_PUBLISHABLE_KEYS: JSON.stringify({ default: "sb_publishable_1" }),
    SUPABASE_JWKS: JSON.stringify(jwks),
    STEPAUDIO_WAIT_S: "20",
    STEPAUDIO_MAX_UPLOAD_MB: "2",
  });
  assert.equal(c.webhookUrl, undefined);
  assert.equal(c.supabaseApiKey, "sb_publishable_1");
  assert.deepEqual(c.jwks, jwks);
  assert.equal(c.waitS, 20);
  assert.equal(c.maxUploadBytes, 2 * 1024 * 1024);
});

test("missing or malformed settings are a ConfigError naming the variable, never its value", () => {
  const cases: [Record<string, string | undefined>, string][] = [
    [{ STEPAUDIO_API_KEY: undefined }, "STEPAUDIO_API_KEY"],
    [{ STEPAUDIO_URL: "ftp://x" }, "STEPAUDIO_URL"],
    [{ SUPABASE_DB_URL: " " }, "SUPABASE_DB_URL"],
    [{ SUPABASE_JWKS: "{not json" }, "SUPABASE_JWKS"],
    [{ STEPAUDIO_WAIT_S: "-1" }, "STEPAUDIO_WAIT_S"],
    [{ SUPABASE_ANON_KEY: undefined }, "SUPABASE_ANON_KEY"],
  ];
  for (const [over, name] of cases) {
    assert.throws(() => load(over), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, new RegExp(`^${name} `));
      assert.ok(!e.message.includes("sk-live-1"));
      return true;
    });
  }
});
