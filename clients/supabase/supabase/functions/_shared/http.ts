// Answers of the functions: JSON, the one error shape {"error": {"code", "message"}} of our API,
// and the CORS headers a browser app needs (Supabase's own examples send the same).
import { StepAudioError } from "./stepaudio.ts";

export const corsHeaders: Record<string, string> = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Headers": "authorization, x-client-info, apikey, content-type",
  "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
  "Access-Control-Expose-Headers": "retry-after",
};

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...corsHeaders, "Content-Type": "application/json", ...headers },
  });
}

export function jsonError(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return json(status, { error: { code, message } }, headers);
}

/** The status our API gives each error code (docs/API.md, Errors), for a job that ended in one. */
export function statusOfCode(code: string): number {
  switch (code) {
    case "invalid_argument":
    case "invalid_json":
    case "bad_multipart":
    case "invalid_url":
    case "forbidden_url":
    case "dns_failed":
    case "too_many_redirects":
      return 400;
    case "canceled":
    case "already_finished":
      return 409;
    case "too_large":
    case "too_long":
      return 413;
    case "unsupported_media":
      return 415;
    case "bad_audio":
      return 422;
    case "fetch_failed":
      return 502;
    case "timeout":
      return 504;
    default:
      return 500;
  }
}

/**
 * The answer to the app when our server could not do what was asked. Input errors keep their
 * code and status; our server's unavailability is 502/503/504 with a plain message; its refusal of
 * our API key is 502 (a misconfiguration here, not the user's fault, so not their 401).
 */
export function upstreamError(e: unknown): Response {
  if (!(e instanceof StepAudioError)) {
    console.error("transcribe: unexpected error", e);
    return jsonError(500, "internal", "internal error");
  }
  const retry: Record<string, string> = e.retryAfter !== undefined ? { "Retry-After": String(e.retryAfter) } : {};
  if (e.status === 0) {
    if (e.code === "timeout") {
      return jsonError(504, "upstream_timeout", "the transcription service did not answer in time");
    }
    return jsonError(502, "upstream_unavailable", "the transcription service is unreachable");
  }
  if (e.status === 429) return jsonError(429, e.code, "the transcription service is busy; retry later", retry);
  if (e.status === 401 || e.status === 403) {
    console.error(`transcribe: our server refused the API key (${e.code})`);
    return jsonError(502, "upstream_auth", "the transcription service refused this project's API key");
  }
  if (e.status === 503) return jsonError(503, e.code, "the transcription service is not ready; retry later", retry);
  if (e.status >= 500) return jsonError(502, e.code, `the transcription service failed: ${e.message}`);
  return jsonError(e.status, e.code, e.message, retry);
}
