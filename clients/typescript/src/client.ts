// The client of the stepaudio.cpp HTTP API (docs/API.md). Web-standard APIs only (fetch,
// FormData, Blob, streams), so the same file runs in Node 20+, Deno, Supabase Edge Functions,
// Cloudflare Workers and browsers.
import { errorFromResponse, StepAudioError } from "./errors.ts";
import { parseSse } from "./sse.ts";
import type {
  AudioInput,
  Health,
  Job,
  JobCreated,
  JobEvent,
  JobList,
  JobOutcome,
  Models,
  OpenAITranscription,
  OpenAIVerboseTranscription,
  Ready,
  ResponseFormat,
  Result,
  SubmitOptions,
  TranscriptStreamEvent,
} from "./types.ts";

export interface ClientOptions {
  /** The server's origin, e.g. "https://stepaudio.example.com" (a path prefix is kept). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** A fetch to use instead of the global one (tests, proxies). */
  fetch?: typeof fetch;
  /** Retries of an answer 429 or 503 that carries Retry-After (default 2). */
  maxRetries?: number;
  /** A Retry-After longer than this many seconds is not waited for: the error is thrown (default 10). */
  maxRetryDelayS?: number;
  /** Limit for one request until its answer is read, in ms (default 60000). Streams: until headers. */
  timeoutMs?: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

/** POST /transcribe-and-summarize: the result (200), or the job still running (202). */
export type TranscribeAnswer = { status: 200; result: Result } | { status: 202; job: Job };

export interface WaitOptions extends RequestOptions {
  /** Give up after this many ms with StepAudioError code "timeout" (default: no limit). */
  timeoutMs?: number;
  /** Called with every event of the job (progress, partial text, ...). */
  onEvent?: (event: JobEvent) => void;
}

export interface TranscriptionOptions extends RequestOptions {
  filename?: string;
  /** Two lowercase letters; validated by the server, not used (the language is detected). */
  language?: string;
  model?: string;
}

const JOB_EVENTS = new Set(["queued", "running", "progress", "partial", "result", "error", "canceled"]);
const MAX_RESUMES = 5;

export class StepAudioClient {
  readonly baseUrl: string;
  readonly #apiKey?: string;
  readonly #fetch: typeof fetch;
  readonly #maxRetries: number;
  readonly #maxRetryDelayS: number;
  readonly #timeoutMs: number;

  constructor(options: ClientOptions) {
    const url = new URL(options.baseUrl); // throws on a malformed URL, early
    this.baseUrl = url.href.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#maxRetries = options.maxRetries ?? 2;
    this.#maxRetryDelayS = options.maxRetryDelayS ?? 10;
    this.#timeoutMs = options.timeoutMs ?? 60_000;
  }

  healthz(o: RequestOptions = {}): Promise<Health> {
    return this.#json("GET", "/healthz", o);
  }

  readyz(o: RequestOptions = {}): Promise<Ready> {
    return this.#json("GET", "/readyz", o);
  }

  models(o: RequestOptions = {}): Promise<Models> {
    return this.#json("GET", "/v1/models", o);
  }

  /** POST /transcribe-and-summarize: waits up to the server's --request-timeout. */
  async transcribe(
    audio: AudioInput,
    options: SubmitOptions = {},
    o: RequestOptions = {},
  ): Promise<TranscribeAnswer> {
    const { res, body } = await this.#exchange("POST", "/transcribe-and-summarize", {
      ...o,
      ...submission(audio, options),
    });
    if (res.status === 202) return { status: 202, job: body as Job };
    return { status: 200, result: body as Result };
  }

  /** POST /v1/jobs: the job is stored; follow it with events(), waitForJob() or a webhook. */
  createJob(audio: AudioInput, options: SubmitOptions = {}, o: RequestOptions = {}): Promise<JobCreated> {
    return this.#json("POST", "/v1/jobs", { ...o, ...submission(audio, options) });
  }

  getJob(id: string, o: RequestOptions = {}): Promise<Job> {
    return this.#json("GET", `/v1/jobs/${encodeURIComponent(id)}`, o);
  }

  listJobs(page: { limit?: number; before?: string } = {}, o: RequestOptions = {}): Promise<JobList> {
    const q = new URLSearchParams();
    if (page.limit !== undefined) q.set("limit", String(page.limit));
    if (page.before !== undefined) q.set("before", page.before);
    const qs = q.toString();
    return this.#json("GET", `/v1/jobs${qs ? "?" + qs : ""}`, o);
  }

  /** DELETE /v1/jobs/{id}: 409 already_finished when it had ended. */
  cancelJob(id: string, o: RequestOptions = {}): Promise<Job> {
    return this.#json("DELETE", `/v1/jobs/${encodeURIComponent(id)}`, o);
  }

  /** The job's events (stored ones replayed, then live) until its last one. */
  async *events(
    id: string,
    o: RequestOptions & { lastEventId?: number } = {},
  ): AsyncGenerator<JobEvent> {
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    if (o.lastEventId !== undefined) headers["Last-Event-ID"] = String(o.lastEventId);
    const res = await this.#send("GET", `/v1/jobs/${encodeURIComponent(id)}/events`, {
      signal: o.signal,
      headers,
      stream: true,
    });
    try {
      for await (const m of parseSse(res.body!)) {
        if (!JOB_EVENTS.has(m.event)) continue; // a newer server's event: ignored, as the API asks
        yield { id: Number(m.id), event: m.event, data: JSON.parse(m.data) } as JobEvent;
      }
    } catch (e) {
      throw streamError(e, o.signal);
    }
  }

  /**
   * Follows the job's events until it ends. A dropped stream is resumed after the last event
   * seen (Last-Event-ID); retries of 429/503 follow the client's options.
   */
  async waitForJob(id: string, o: WaitOptions = {}): Promise<JobOutcome> {
    const { signal, cleanup } = linkedSignal(o.signal, o.timeoutMs);
    try {
      let last: number | undefined;
      // Resumes in a row that brought no new event; a stream that makes progress may be cut any
      // number of times (a proxy's idle limit on a long job).
      for (let resumes = 0;; resumes++) {
        try {
          for await (const ev of this.events(id, { signal, lastEventId: last })) {
            if (last === undefined || ev.id > last) resumes = 0;
            last = ev.id;
            o.onEvent?.(ev);
            if (ev.event === "result") return { id, status: "succeeded", result: ev.data };
            if (ev.event === "error" || ev.event === "canceled") {
              return { id, status: ev.data.status, error: ev.data.error };
            }
          }
        } catch (e) {
          if (!(e instanceof StepAudioError) || e.code !== "connection_failed") throw e;
          if (resumes >= MAX_RESUMES) throw e;
        }
        // The stream ended before the job did (a proxy cut it, the server restarted): ask the
        // job itself, then resume the stream where it stopped.
        const job = await this.getJob(id, { signal });
        if (job.status === "succeeded" && job.result) {
          return { id, status: "succeeded", result: job.result };
        }
        if ((job.status === "failed" || job.status === "canceled") && job.error) {
          return { id, status: job.status, error: job.error };
        }
        if (resumes >= MAX_RESUMES) {
          throw new StepAudioError("bad_response", `the event stream of ${id} keeps ending early`, 0);
        }
      }
    } catch (e) {
      throw e instanceof StepAudioError ? e : streamError(e, signal);
    } finally {
      cleanup();
    }
  }

  /** POST /v1/audio/transcriptions (OpenAI-compatible). */
  transcription(
    file: Blob,
    o?: TranscriptionOptions & { responseFormat?: "json" },
  ): Promise<OpenAITranscription>;
  transcription(
    file: Blob,
    o: TranscriptionOptions & { responseFormat: "verbose_json" },
  ): Promise<OpenAIVerboseTranscription>;
  transcription(
    file: Blob,
    o: TranscriptionOptions & { responseFormat: "text" | "srt" | "vtt" },
  ): Promise<string>;
  async transcription(
    file: Blob,
    o: TranscriptionOptions & { responseFormat?: ResponseFormat } = {},
  ): Promise<OpenAITranscription | OpenAIVerboseTranscription | string> {
    const form = transcriptionForm(file, o);
    const format = o.responseFormat ?? "json";
    form.set("response_format", format);
    if (format === "json" || format === "verbose_json") {
      return await this.#json("POST", "/v1/audio/transcriptions", { signal: o.signal, body: form });
    }
    const res = await this.#send("POST", "/v1/audio/transcriptions", { signal: o.signal, body: form });
    return await res.text();
  }

  /** POST /v1/audio/transcriptions with stream=true: text deltas, then done (or error). */
  async *transcriptionStream(
    file: Blob,
    o: TranscriptionOptions = {},
  ): AsyncGenerator<TranscriptStreamEvent> {
    const form = transcriptionForm(file, o);
    form.set("stream", "true");
    const res = await this.#send("POST", "/v1/audio/transcriptions", {
      signal: o.signal,
      body: form,
      headers: { Accept: "text/event-stream" },
      stream: true,
    });
    try {
      for await (const m of parseSse(res.body!)) yield JSON.parse(m.data) as TranscriptStreamEvent;
    } catch (e) {
      throw streamError(e, o.signal);
    }
  }

  async #json<T>(method: string, path: string, init: SendInit): Promise<T> {
    return (await this.#exchange(method, path, init)).body as T;
  }

  async #exchange(method: string, path: string, init: SendInit): Promise<{ res: Response; body: unknown }> {
    const res = await this.#send(method, path, { ...init, readBody: true });
    const text = await res.text();
    try {
      return { res, body: JSON.parse(text) };
    } catch (e) {
      throw new StepAudioError("bad_response", `${method} ${path}: the answer is not JSON`, res.status, {
        requestId: res.headers.get("x-request-id") ?? undefined,
        cause: e,
      });
    }
  }

  /**
   * One request with the client's retries. A non-2xx answer becomes a StepAudioError; a 429 or 503
   * with a Retry-After of at most maxRetryDelayS is retried after that delay, maxRetries times.
   * With readBody the body is read into memory before the time limit ends (the Response is then
   * a buffered copy); otherwise the limit covers the headers only.
   */
  async #send(method: string, path: string, init: SendInit & { readBody?: boolean }): Promise<Response> {
    const url = this.baseUrl + path;
    const headers = new Headers(init.headers);
    if (this.#apiKey !== undefined) headers.set("Authorization", `Bearer ${this.#apiKey}`);
    let body: BodyInit | undefined;
    if (init.body instanceof FormData) {
      body = init.body;
    } else if (init.body !== undefined) {
      body = JSON.stringify(init.body);
      headers.set("Content-Type", "application/json");
    }
    for (let attempt = 0;; attempt++) {
      const { signal, cleanup, clearTimer, timedOut } = linkedSignal(init.signal, this.#timeoutMs);
      let res: Response;
      try {
        res = await this.#fetch(url, { method, headers, body, signal });
        if (res.ok && init.readBody) res = new Response(await res.arrayBuffer(), res);
      } catch (e) {
        cleanup();
        if (timedOut()) {
          throw new StepAudioError("timeout", `${method} ${path}: no answer within ${this.#timeoutMs} ms`, 0, {
            cause: e,
          });
        }
        if (init.signal?.aborted) throw abortError(init.signal, e);
        throw new StepAudioError("connection_failed", `${method} ${path}: ${describe(e)}`, 0, { cause: e });
      }
      // A stream stays linked to the caller's signal, so aborting it stops the download.
      if (res.ok && init.stream) clearTimer();
      else cleanup();
      if (res.ok) return res;
      const err = await errorFromResponse(res);
      const retryable = (res.status === 429 || res.status === 503) && err.retryAfter !== undefined;
      if (!retryable || attempt >= this.#maxRetries || err.retryAfter! > this.#maxRetryDelayS) throw err;
      await sleep(err.retryAfter! * 1000, init.signal);
    }
  }
}

interface SendInit extends RequestOptions {
  /** A FormData is sent as multipart; a plain object as JSON. */
  body?: FormData | Record<string, unknown>;
  headers?: Record<string, string>;
  stream?: boolean;
}

function submission(audio: AudioInput, options: SubmitOptions): { body: FormData | Record<string, unknown> } {
  if ("url" in audio) return { body: { audio_url: audio.url, ...options } };
  const form = new FormData();
  // The server takes the part as the recording only when it carries a filename.
  form.set("file", audio.file, audio.filename ?? "audio");
  for (const [k, v] of Object.entries(options)) if (v !== undefined) form.set(k, String(v));
  return { body: form };
}

function transcriptionForm(file: Blob, o: TranscriptionOptions): FormData {
  const form = new FormData();
  form.set("file", file, o.filename ?? "audio");
  if (o.model !== undefined) form.set("model", o.model);
  if (o.language !== undefined) form.set("language", o.language);
  return form;
}

/**
 * A signal that fires when `parent` does or after `timeoutMs`. clearTimer() stops the time limit
 * (a stream's body may take as long as the job); cleanup() also unlinks it from `parent`.
 */
function linkedSignal(parent: AbortSignal | undefined, timeoutMs: number | undefined) {
  const ac = new AbortController();
  let fired = false;
  const onAbort = () => ac.abort(parent?.reason);
  if (parent?.aborted) ac.abort(parent.reason);
  else parent?.addEventListener("abort", onAbort, { once: true });
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
    fired = true;
    ac.abort(new StepAudioError("timeout", `no answer within ${timeoutMs} ms`, 0));
  }, timeoutMs);
  const clearTimer = () => clearTimeout(timer);
  return {
    signal: ac.signal,
    timedOut: () => fired,
    clearTimer,
    cleanup: () => {
      clearTimer();
      parent?.removeEventListener("abort", onAbort);
    },
  };
}

function streamError(e: unknown, signal: AbortSignal | undefined): StepAudioError {
  if (e instanceof StepAudioError) return e;
  if (signal?.aborted) return abortError(signal, e);
  if (e instanceof SyntaxError) {
    return new StepAudioError("bad_response", `malformed event: ${e.message}`, 0, { cause: e });
  }
  return new StepAudioError("connection_failed", `the stream broke: ${describe(e)}`, 0, { cause: e });
}

/** The error of an aborted signal: its reason when that is ours (a deadline), else "aborted". */
function abortError(signal: AbortSignal, cause: unknown): StepAudioError {
  const reason = signal.reason;
  return reason instanceof StepAudioError ? reason : new StepAudioError("aborted", "aborted", 0, { cause });
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new StepAudioError("aborted", "aborted", 0));
    const done = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    };
    const timer = setTimeout(done, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new StepAudioError("aborted", "aborted", 0));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
