// The functions' settings, from environment variables. Supabase provides SUPABASE_URL,
// SUPABASE_DB_URL, SUPABASE_ANON_KEY / SUPABASE_PUBLISHABLE_KEYS and SUPABASE_JWKS to every
// function; the STEPAUDIO_* ones are set with `supabase secrets set` (custom names may not start
// with SUPABASE_, which is why the legacy JWT secret is STEPAUDIO_JWT_SECRET).
import type { JSONWebKeySet } from "npm:jose@6.2.19";

export interface FunctionConfig {
  /** Our server's origin, e.g. https://stepaudio.example.com. */
  stepaudioUrl: string;
  stepaudioApiKey: string;
  /** The webhook secret given by the operator; unset: derived from the API key (docs/API.md). */
  webhookSecret?: string;
  supabaseUrl: string;
  /** Sent as `apikey` to the Storage API (the anon or publishable key). */
  supabaseApiKey: string;
  dbUrl: string;
  /** HS256 secret of projects on the legacy JWT secret. */
  jwtSecret?: string;
  /** The project's public keys (SUPABASE_JWKS); else fetched from the Auth server. */
  jwks?: JSONWebKeySet;
  jwksUrl: string;
  /** Where our server posts the finished job; undefined: no webhook (wait mode only). */
  webhookUrl?: string;
  bucket: string;
  signedUrlTtlS: number;
  /** How long a wait-mode request follows the job before answering 202. */
  waitS: number;
  maxRetries: number;
  maxRetryDelayS: number;
  maxUploadBytes: number;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export type Env = (name: string) => string | undefined;

export function loadConfig(env: Env): FunctionConfig {
  const required = (name: string): string => {
    const v = env(name)?.trim();
    if (!v) throw new ConfigError(`${name} is not set`);
    return v;
  };
  const optional = (name: string): string | undefined => env(name)?.trim() || undefined;
  const number = (name: string, fallback: number, min: number, max: number): number => {
    const text = optional(name);
    if (text === undefined) return fallback;
    const v = Number(text);
    if (!Number.isFinite(v) || v < min || v > max) {
      throw new ConfigError(`${name} must be a number in [${min}, ${max}]`);
    }
    return v;
  };
  const url = (name: string, value: string): string => {
    try {
      const u = new URL(value);
      if (u.protocol !== "https:" && u.protocol !== "http:") throw new Error();
      return u.href.replace(/\/+$/, "");
    } catch {
      throw new ConfigError(`${name} is not an http(s) URL`);
    }
  };

  const supabaseUrl = url("SUPABASE_URL", required("SUPABASE_URL"));
  let jwks: JSONWebKeySet | undefined;
  const jwksText = optional("SUPABASE_JWKS");
  if (jwksText !== undefined) {
    try {
      jwks = JSON.parse(jwksText) as JSONWebKeySet;
      if (!Array.isArray(jwks.keys)) throw new Error();
    } catch {
      throw new ConfigError("SUPABASE_JWKS is not a JSON Web Key Set");
    }
  }
  const hook = optional("STEPAUDIO_WEBHOOK_URL");
  return {
    stepaudioUrl: url("STEPAUDIO_URL", required("STEPAUDIO_URL")),
    stepaudioApiKey: required("STEPAUDIO_API_KEY"),
    webhookSecret: optional("STEPAUDIO_WEBHOOK_SECRET"),
    supabaseUrl,
    supabaseApiKey: optional("SUPABASE_ANON_KEY") ?? firstKey(optional("SUPABASE_PUBLISHABLE_KEYS")) ??
      required("SUPABASE_ANON_KEY"),
    dbUrl: required("SUPABASE_DB_URL"),
    jwtSecret: optional("STEPAUDIO_JWT_SECRET"),
    jwks,
    jwksUrl: `${supabaseUrl}/auth/v1/.well-known/jwks.json`,
    webhookUrl: hook === "off"
      ? undefined
      : url("STEPAUDIO_WEBHOOK_URL", hook ?? `${supabaseUrl}/functions/v1/stepaudio-webhook`),
    bucket: optional("STEPAUDIO_BUCKET") ?? "recordings",
    signedUrlTtlS: number("STEPAUDIO_SIGNED_URL_TTL_S", 600, 10, 86400),
    waitS: number("STEPAUDIO_WAIT_S", 110, 0, 3600),
    maxRetries: number("STEPAUDIO_MAX_RETRIES", 2, 0, 10),
    maxRetryDelayS: number("STEPAUDIO_MAX_RETRY_DELAY_S", 10, 0, 300),
    maxUploadBytes: number("STEPAUDIO_MAX_UPLOAD_MB", 50, 1, 4096) * 1024 * 1024,
  };
}

/** The first key of SUPABASE_PUBLISHABLE_KEYS ({"default": "sb_publishable_..."}). */
function firstKey(json: string | undefined): string | undefined {
  if (json === undefined) return undefined;
  try {
    const keys = JSON.parse(json) as Record<string, unknown>;
    const v = keys["default"] ?? Object.values(keys)[0];
    return typeof v === "string" && v !== "" ? v : undefined;
  } catch {
    return undefined;
  }
}
