// Webhook signatures of stepaudio.cpp (docs/API.md, Webhooks), with Web Crypto only.
//   StepAudio-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
// The HMAC key is the secret's 64-character hex text (its ASCII bytes). Several v1 entries may be
// sent (a secret rotation); unknown keys are skipped (a future v2). The comparison is
// crypto.subtle.verify, which compares in constant time.

const encoder = new TextEncoder();

/** The webhook secret of an API-key caller: hex(HMAC-SHA256(SHA-256(apiKey), "stepaudio-webhook-v1")). */
export async function webhookSecretFromApiKey(apiKey: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(apiKey));
  const key = await crypto.subtle.importKey("raw", digest, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode("stepaudio-webhook-v1")));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

export type WebhookVerification =
  /** `signature` is the v1 value that matched (lowercase hex): a key to refuse replays with. */
  | { ok: true; timestamp: number; signature: string }
  | { ok: false; reason: "missing" | "malformed" | "expired" | "mismatch" };

/**
 * Checks a StepAudio-Signature header against the raw request body (the bytes as received, before
 * any JSON parsing). A timestamp more than `toleranceS` seconds from now (either way) is "expired".
 */
export async function verifyWebhook(
  secret: string,
  header: string | null,
  rawBody: Uint8Array | string,
  options: { toleranceS?: number; nowS?: number } = {},
): Promise<WebhookVerification> {
  if (header === null || header.trim() === "") return { ok: false, reason: "missing" };
  let t: string | undefined;
  const v1: string[] = [];
  for (const entry of header.split(",")) {
    const i = entry.indexOf("=");
    if (i < 0) continue;
    const k = entry.slice(0, i).trim(), v = entry.slice(i + 1).trim();
    if (k === "t") {
      if (t !== undefined) return { ok: false, reason: "malformed" }; // which t was signed?
      t = v;
    } else if (k === "v1") {
      v1.push(v.toLowerCase());
    }
  }
  if (t === undefined || !/^\d{1,12}$/.test(t) || v1.length === 0) return { ok: false, reason: "malformed" };
  const timestamp = Number(t);
  const now = options.nowS ?? Date.now() / 1000;
  if (Math.abs(now - timestamp) > (options.toleranceS ?? 300)) return { ok: false, reason: "expired" };

  const body = typeof rawBody === "string" ? encoder.encode(rawBody) : rawBody;
  const prefix = encoder.encode(`${t}.`);
  const signed = new Uint8Array(prefix.length + body.length);
  signed.set(prefix, 0);
  signed.set(body, prefix.length);
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "verify",
  ]);
  for (const candidate of v1) {
    const mac = hexBytes(candidate);
    if (mac === undefined) continue;
    if (await crypto.subtle.verify("HMAC", key, mac, signed)) return { ok: true, timestamp, signature: candidate };
  }
  return { ok: false, reason: "mismatch" };
}

/** 64 hex digits as 32 bytes; undefined for anything else. */
function hexBytes(hex: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[0-9a-f]{64}$/.test(hex)) return undefined;
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
