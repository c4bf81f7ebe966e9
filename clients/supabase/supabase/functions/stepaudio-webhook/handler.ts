// The stepaudio-webhook function: our server POSTs each finished job here (the transcribe function
// registers this URL with ?uid=<owner>). It must be deployed with verify_jwt = false (our server
// has no Supabase JWT); what authenticates the request is the StepAudio-Signature header:
//   1. the HMAC over "<t>.<raw body>" must match (crypto.subtle.verify: constant time), with t
//      within 300 s of now, else 401 and nothing is stored;
//   2. the same signed request twice is refused (409 replayed), and a delivery already stored
//      (our server retrying after a lost answer) is acknowledged without a second write;
//   3. then the job's row of public.transcriptions gets its status and result.
import { json, jsonError } from "../_shared/http.ts";
import { type JobStatus, verifyWebhook, type WebhookEvent } from "../_shared/stepaudio.ts";
import type { Supabase } from "../_shared/supabase.ts";

export interface WebhookDeps {
  supabase: Supabase;
  /** The secret our server signs with (STEPAUDIO_WEBHOOK_SECRET or derived from the API key). */
  secret: string;
  toleranceS?: number;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024; // a 4-hour recording's result is well under this
const JOB_ID = /^job_[0-9a-f]{24}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TASKS = new Set(["transcribe", "summarize", "analyze", "transcribe_and_summarize"]);
const FINISHED: Record<string, JobStatus> = {
  "job.succeeded": "succeeded",
  "job.failed": "failed",
  "job.canceled": "canceled",
};

export function createWebhookHandler(deps: WebhookDeps): (req: Request) => Promise<Response> {
  return async (req) => {
    if (req.method !== "POST") return jsonError(405, "method_not_allowed", "POST only");
    if (Number(req.headers.get("content-length") ?? "0") > MAX_BODY_BYTES) {
      return jsonError(413, "too_large", "body too large");
    }
    const raw = new Uint8Array(await req.arrayBuffer());
    if (raw.length > MAX_BODY_BYTES) return jsonError(413, "too_large", "body too large");

    const check = await verifyWebhook(deps.secret, req.headers.get("stepaudio-signature"), raw, {
      toleranceS: deps.toleranceS ?? 300,
    });
    if (!check.ok) {
      const why = {
        missing: "no StepAudio-Signature header",
        malformed: "malformed StepAudio-Signature header",
        expired: "signature timestamp outside the allowed window",
        mismatch: "signature does not match",
      };
      return jsonError(401, "invalid_signature", why[check.reason]);
    }

    // Authentic from here on: what remains are checks of our own server's output.
    let event: WebhookEvent;
    try {
      event = JSON.parse(new TextDecoder().decode(raw));
    } catch {
      return jsonError(400, "invalid_json", "the body is not JSON");
    }
    const status = FINISHED[event?.type];
    const job = event?.job;
    const deliveryId = req.headers.get("stepaudio-delivery") ?? "";
    const owner = ownerOf(job?.webhook?.url);
    if (
      !status || !job || !JOB_ID.test(job.id) || !TASKS.has(job.options?.task) || !/^\d{1,20}$/.test(deliveryId) ||
      !owner
    ) {
      return jsonError(400, "bad_payload", "not a job event of the transcribe function");
    }

    try {
      const outcome = await deps.supabase.storeDelivery(
        { job_id: job.id, delivery_id: deliveryId, signature: check.signature },
        {
          job_id: job.id,
          user_id: owner,
          status,
          task: job.options.task,
          result: status === "succeeded" ? job.result : null,
          error: status === "succeeded" ? null : job.error,
        },
      );
      if (outcome === "replayed") return jsonError(409, "replayed", "this signed request was already received");
      return json(200, { stored: outcome === "stored", duplicate: outcome === "duplicate" });
    } catch (e) {
      // Not stored: a non-2xx makes our server retry later (with backoff).
      console.error("stepaudio-webhook: could not store:", e instanceof Error ? e.message : e);
      return jsonError(503, "store_unavailable", "could not store the result; retry later", { "Retry-After": "5" });
    }
  };
}

/** The owner's user id from the job's webhook URL (...?uid=<uuid>), which the signature covers. */
function ownerOf(url: unknown): string | undefined {
  if (typeof url !== "string") return undefined;
  try {
    const uid = new URL(url).searchParams.get("uid");
    return uid !== null && UUID.test(uid) ? uid.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}
