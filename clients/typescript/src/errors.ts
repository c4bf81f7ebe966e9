// The one error type of the client. The server answers every error as
// {"error": {"code", "message"}} (docs/API.md, Errors); the client keeps code and message as they
// came, adds the HTTP status and Retry-After, and uses its own codes (status 0) for failures that
// never reached an answer.

/** Codes the client itself uses, with status 0 (no HTTP answer). */
export type ClientErrorCode = "connection_failed" | "timeout" | "aborted" | "bad_response";

export class StepAudioError extends Error {
  override readonly name = "StepAudioError";
  /** The server's stable code (e.g. "rate_limited", "not_found") or a ClientErrorCode. */
  readonly code: string;
  /** The HTTP status; 0 when no answer came (connection refused, timeout, aborted). */
  readonly status: number;
  /** Seconds from the Retry-After header, when the answer had one. */
  readonly retryAfter?: number;
  /** The answer's X-Request-Id, for the server's logs. */
  readonly requestId?: string;

  constructor(
    code: string,
    message: string,
    status: number,
    extra: { retryAfter?: number; requestId?: string; cause?: unknown } = {},
  ) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.code = code;
    this.status = status;
    if (extra.retryAfter !== undefined) this.retryAfter = extra.retryAfter;
    if (extra.requestId !== undefined) this.requestId = extra.requestId;
  }
}

/** Retry-After as seconds: delta-seconds or an HTTP date; undefined when absent or unparsable. */
export function parseRetryAfter(value: string | null, nowMs = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/** The StepAudioError of a non-2xx answer (reads its body). */
export async function errorFromResponse(res: Response): Promise<StepAudioError> {
  const extra = {
    retryAfter: parseRetryAfter(res.headers.get("retry-after")),
    requestId: res.headers.get("x-request-id") ?? undefined,
  };
  const text = await res.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const code = body.error?.code, message = body.error?.message;
    if (typeof code === "string" && typeof message === "string") {
      return new StepAudioError(code, message, res.status, extra);
    }
  } catch {
    // not JSON: a proxy in front of the server answered; fall through
  }
  return new StepAudioError(
    `http_${res.status}`,
    `HTTP ${res.status}${text ? ": " + text.slice(0, 200) : ""}`,
    res.status,
    extra,
  );
}
