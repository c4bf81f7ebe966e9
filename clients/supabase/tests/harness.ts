// Shared pieces of the Deno tests (run by tests/run.sh, which starts PostgreSQL and two
// `stepaudio serve` and passes their addresses in the environment).
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "npm:jose@6.2.19";
import assert from "node:assert/strict";
import { createJwtVerifier, type JwtVerifier } from "../supabase/functions/_shared/auth.ts";
import { Supabase } from "../supabase/functions/_shared/supabase.ts";

export function env(name: string): string {
  const v = Deno.env.get(name);
  if (!v) throw new Error(`${name} is not set: run clients/supabase/tests/run.sh`);
  return v;
}

/** Tests talk to servers that outlive them: Deno's op/resource sanitizers would flag those. */
export function test(name: string, fn: () => Promise<void> | void): void {
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}

export const ANON_KEY = "test-anon-key";
export const JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789abcdef";

/** A Supabase session token as Auth issues it (HS256, the legacy project secret). */
export function userToken(
  sub: string,
  o: { expS?: number; aud?: string; role?: string; secret?: string; iat?: number } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ role: o.role ?? "authenticated", email: `${sub.slice(0, 8)}@example.com` })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(sub)
    .setAudience(o.aud ?? "authenticated")
    .setIssuedAt(o.iat ?? now)
    .setExpirationTime(now + (o.expS ?? 3600))
    .sign(new TextEncoder().encode(o.secret ?? JWT_SECRET));
}

/** An ES256 key pair as a project's JWT signing key, and tokens signed with it. */
export async function es256Key(kid: string) {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
  return {
    jwks: { keys: [jwk] },
    sign: (sub: string) =>
      new SignJWT({ role: "authenticated" })
        .setProtectedHeader({ alg: "ES256", kid })
        .setSubject(sub)
        .setAudience("authenticated")
        .setExpirationTime("1h")
        .sign(privateKey),
  };
}

export function verifier(): JwtVerifier {
  return createJwtVerifier({ jwtSecret: JWT_SECRET });
}

export function newSupabase(url: string): Supabase {
  return new Supabase({ url, apiKey: ANON_KEY, dbUrl: env("SUPABASE_DB_URL") });
}

export async function createUser(sb: Supabase): Promise<string> {
  const id = crypto.randomUUID();
  await sb.sql`insert into auth.users (id, email) values (${id}, ${id + "@example.com"})`;
  return id;
}

/** A handler on 127.0.0.1, any free port. */
export function serve(handler: (req: Request) => Response | Promise<Response>) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  return { url: `http://127.0.0.1:${server.addr.port}`, close: () => server.shutdown() };
}

/** An address where nothing listens (a port that was free a moment ago). */
export function closedPortUrl(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return `http://127.0.0.1:${port}`;
}

export function wavBlob(): Blob {
  return new Blob([Deno.readFileSync(env("STEPAUDIO_WAV"))], { type: "audio/wav" });
}

export function assertErrorShape(body: unknown, code: string): void {
  const e = (body as { error?: { code?: unknown; message?: unknown } }).error;
  assert.equal(typeof e?.message, "string", `error shape: ${JSON.stringify(body)}`);
  assert.ok((e!.message as string).length > 0);
  assert.equal(e?.code, code, `error code: ${JSON.stringify(body)}`);
}

/**
 * Checks a result against docs/result.schema.json's required fields and their types (the
 * schema itself is the authority; this keeps the check honest if fields are added there).
 */
export function assertResultShape(r: Record<string, unknown>): void {
  const schema = JSON.parse(
    Deno.readTextFileSync(new URL("../../../docs/result.schema.json", import.meta.url)),
  ) as { required: string[]; properties: Record<string, { type?: string | string[] }> };
  for (const key of schema.required) {
    assert.ok(key in r, `result lacks ${key}: ${Object.keys(r).join(",")}`);
    const want = schema.properties[key]?.type;
    if (typeof want === "string") assert.equal(jsonType(r[key]), want === "integer" ? "number" : want, key);
  }
  assert.match(r.id as string, /^job_[0-9a-f]{24}$/);
  assert.ok(Array.isArray(r.segments) && r.segments.length > 0, "segments");
}

function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** Sum of stepaudio_http_requests_total with this status (GET /metrics takes no rate token). */
export async function requestsWithStatus(serverUrl: string, status: number): Promise<number> {
  const res = await fetch(`${serverUrl}/metrics`, { headers: { Authorization: `Bearer ${env("STEPAUDIO_KEY")}` } });
  assert.equal(res.status, 200);
  let n = 0;
  for (const line of (await res.text()).split("\n")) {
    const m = /^stepaudio_http_requests_total\{[^}]*status="(\d+)"[^}]*\} (\d+(?:\.\d+)?)/.exec(line);
    if (m && Number(m[1]) === status) n += Number(m[2]);
  }
  return n;
}

/** Takes the one token of the rate-limited server's bucket (--rate-limit 1 --rate-burst 1). */
export async function drainRateLimit(serverUrl: string): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${serverUrl}/v1/models`, { headers: { Authorization: `Bearer ${env("STEPAUDIO_KEY")}` } });
    await res.body?.cancel();
    if (res.status === 429) return;
  }
  throw new Error("the rate-limited server never answered 429");
}

export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
