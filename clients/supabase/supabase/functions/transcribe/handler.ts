// The transcribe function: the app's one door to our server.
//
//   POST  (the user's session JWT as Bearer)
//     JSON      {"path": "<user id>/<file>.m4a", "task"?, "target_length"?, "language"?, "mode"?}
//               path: an object of the recordings bucket (STEPAUDIO_BUCKET) in the user's folder
//     multipart file=<recording> plus the same fields (or path instead of file)
//   -> mode "wait" (default): 200 with the result (the seed's shape, docs/result.schema.json), or
//      202 {"id", "status"} when the job outlasts STEPAUDIO_WAIT_S (the webhook stores it later);
//   -> mode "webhook": 202 {"id", "status"} at once; the stepaudio-webhook function stores the result
//      in public.transcriptions, where the app reads (or subscribes to) its row.
//   GET ?id=job_...   the user's row of public.transcriptions (row-level security as the user);
//   GET               the user's latest 20 rows.
// Errors are {"error": {"code", "message"}} like our API's.
import { AuthError, bearerToken, type JwtVerifier, type UserClaims } from "../_shared/auth.ts";
import { corsHeaders, json, jsonError, statusOfCode, upstreamError } from "../_shared/http.ts";
import {
  type AudioInput,
  type StepAudioClient,
  StepAudioError,
  type SubmitOptions,
  type Task,
} from "../_shared/stepaudio.ts";
import { StorageError, type Supabase } from "../_shared/supabase.ts";

export interface TranscribeDeps {
  verifyJwt: JwtVerifier;
  supabase: Supabase;
  client: StepAudioClient;
  /** The stepaudio-webhook function's URL; undefined: no webhooks (then only wait mode works). */
  webhookUrl?: string;
  bucket: string;
  signedUrlTtlS: number;
  waitS: number;
  maxUploadBytes: number;
}

const TASKS = new Set(["transcribe", "summarize", "analyze", "transcribe_and_summarize"]);
const JOB_ID = /^job_[0-9a-f]{24}$/;
// A path inside the bucket: "<user id>/<name>[/<name>...]", names of safe characters, no "." or "..".
const SEGMENT = /^(?!\.{1,2}$)[A-Za-z0-9._ ()+=@-]{1,200}$/;

interface Submission {
  /** An upload, or the path of a Storage object in the user's folder. */
  source: { audio: AudioInput } | { storagePath: string };
  options: SubmitOptions & { task: Task };
  mode: "wait" | "webhook";
}

class InputError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export function createTranscribeHandler(deps: TranscribeDeps): (req: Request) => Promise<Response> {
  return async (req) => {
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: corsHeaders });
    const token = bearerToken(req);
    if (!token) return unauthorized("missing Authorization: Bearer <session JWT>");
    let user: UserClaims;
    try {
      user = await deps.verifyJwt(token);
    } catch (e) {
      if (e instanceof AuthError) return unauthorized(`invalid session token: ${e.message}`);
      throw e;
    }
    try {
      if (req.method === "GET") return await read(deps, user, new URL(req.url).searchParams.get("id"));
      if (req.method !== "POST") return jsonError(405, "method_not_allowed", "use POST (or GET ?id=)");
      return await submit(deps, user, token, await parseSubmission(req, user, deps));
    } catch (e) {
      if (e instanceof InputError) return jsonError(e.status, e.code, e.message);
      if (e instanceof StorageError) {
        return jsonError(e.status, e.status === 404 ? "not_found" : "storage_failed", e.message);
      }
      return upstreamError(e);
    }
  };
}

function unauthorized(message: string): Response {
  return jsonError(401, "unauthorized", message, { "WWW-Authenticate": "Bearer" });
}

async function read(deps: TranscribeDeps, user: UserClaims, id: string | null): Promise<Response> {
  if (id === null) return json(200, { data: await deps.supabase.listTranscriptions(user) });
  if (!JOB_ID.test(id)) return jsonError(400, "invalid_argument", "id must be a job id (job_ + 24 hex digits)");
  const row = await deps.supabase.getTranscription(user, id);
  return row ? json(200, row) : jsonError(404, "not_found", "no such transcription");
}

async function submit(deps: TranscribeDeps, user: UserClaims, token: string, s: Submission): Promise<Response> {
  if (s.mode === "webhook" && !deps.webhookUrl) {
    throw new InputError(400, "invalid_argument", "webhook mode is off here (STEPAUDIO_WEBHOOK_URL=off)");
  }
  const storagePath = "storagePath" in s.source ? s.source.storagePath : undefined;
  const audio = "audio" in s.source
    ? s.source.audio
    : { url: await deps.supabase.signedUrl(deps.bucket, s.source.storagePath, deps.signedUrlTtlS, token) };
  // The webhook carries the owner in its (signed) job.webhook.url, so the result can be stored
  // even when it arrives before the row below is written (a cache hit is delivered at once).
  const options: SubmitOptions = { ...s.options };
  if (deps.webhookUrl) {
    const hook = new URL(deps.webhookUrl);
    hook.searchParams.set("uid", user.sub);
    options.webhook_url = hook.href;
  }
  const created = await deps.client.createJob(audio, options);
  const row = {
    job_id: created.id,
    user_id: user.sub,
    task: s.options.task,
    storage_path: storagePath === undefined ? null : `${deps.bucket}/${storagePath}`,
  };
  await deps.supabase.recordJob({ ...row, status: "queued" }).catch(logDbError);
  if (s.mode === "webhook") return json(202, { id: created.id, status: created.status });

  let outcome;
  try {
    outcome = await deps.client.waitForJob(created.id, { timeoutMs: deps.waitS * 1000 });
  } catch (e) {
    // Past the wait, or following the job failed (stream broke, our server busy or restarting):
    // the job itself goes on and the webhook stores its result, so the app gets its id.
    if (deps.webhookUrl && e instanceof StepAudioError && (e.status === 0 || e.status === 429 || e.status >= 500)) {
      console.warn(`transcribe: stopped following ${created.id} (${e.code}, ${e.status}: ${e.message}); its webhook stores it`);
      return json(202, { id: created.id, status: "running" });
    }
    throw e;
  }
  if (outcome.status === "succeeded") {
    await deps.supabase.recordJob({ ...row, status: "succeeded", result: outcome.result }).catch(logDbError);
    return json(200, outcome.result);
  }
  await deps.supabase.recordJob({ ...row, status: outcome.status, error: outcome.error }).catch(logDbError);
  return jsonError(statusOfCode(outcome.error.code), outcome.error.code, outcome.error.message);
}

// The answer still reaches the app; the row is also written by the webhook.
function logDbError(e: unknown): void {
  console.error("transcribe: could not write public.transcriptions:", e instanceof Error ? e.message : e);
}

async function parseSubmission(req: Request, user: UserClaims, deps: TranscribeDeps): Promise<Submission> {
  const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > deps.maxUploadBytes) throw new InputError(413, "too_large", "the upload is too large");
  let fields: Record<string, unknown>;
  let file: File | undefined;
  if (type === "application/json") {
    try {
      fields = await req.json();
    } catch {
      throw new InputError(400, "invalid_json", "the body is not JSON");
    }
    if (typeof fields !== "object" || fields === null || Array.isArray(fields)) {
      throw new InputError(400, "invalid_json", "the body must be a JSON object");
    }
  } else if (type === "multipart/form-data") {
    let form: FormData;
    try {
      form = await req.formData();
    } catch {
      throw new InputError(400, "bad_multipart", "malformed multipart body");
    }
    fields = {};
    for (const [k, v] of form) {
      if (typeof v === "string") fields[k] = v;
      else if (k === "file") file = v;
    }
    if (file && file.size > deps.maxUploadBytes) throw new InputError(413, "too_large", "the upload is too large");
    if (typeof fields.target_length === "string") fields.target_length = Number(fields.target_length);
  } else {
    throw new InputError(415, "unsupported_media", 'send JSON {"path": ...} or multipart with a file');
  }

  const task = fields.task ?? "transcribe_and_summarize";
  if (typeof task !== "string" || !TASKS.has(task)) throw new InputError(400, "invalid_argument", "unknown task");
  const mode = fields.mode ?? "wait";
  if (mode !== "wait" && mode !== "webhook") {
    throw new InputError(400, "invalid_argument", "mode must be wait or webhook");
  }
  const options: Submission["options"] = { task: task as Task };
  if (fields.target_length !== undefined) {
    const n = fields.target_length;
    if (typeof n !== "number" || !Number.isInteger(n)) {
      throw new InputError(400, "invalid_argument", "target_length must be an integer");
    }
    options.target_length = n;
  }
  if (fields.language !== undefined) {
    if (typeof fields.language !== "string") throw new InputError(400, "invalid_argument", "language must be a string");
    options.language = fields.language;
  }

  if (file) return { source: { audio: { file, filename: file.name || "audio" } }, options, mode };
  const path = fields.path;
  if (typeof path !== "string") throw new InputError(400, "invalid_argument", "give path (a Storage object) or a file");
  const segments = path.split("/");
  if (segments.length < 2 || !segments.every((s) => SEGMENT.test(s))) {
    throw new InputError(400, "invalid_argument", "path must be <your user id>/<file name>");
  }
  if (segments[0] !== user.sub) {
    throw new InputError(403, "forbidden", "path must be inside your own folder (<your user id>/...)");
  }
  return { source: { storagePath: path }, options, mode };
}
