// Everything the functions need from Supabase itself, in one place:
//   * Storage: a short-lived signed URL of the user's recording, asked for with the user's own
//     JWT, so Storage's row-level security on storage.objects decides (as for the app itself);
//   * the database (SUPABASE_DB_URL, through the `postgres` driver): results written by the
//     functions, and results read on behalf of a user as role `authenticated` with the request's
//     claims set, exactly as Supabase's Data API (PostgREST) runs a user's query, so the same
//     row-level security policies apply.
import postgres from "npm:postgres@3.4.10";
import type { JobError, JobStatus, Result, Task } from "./stepaudio.ts";

export interface SupabaseOptions {
  url: string;
  /** The anon/publishable key, sent as `apikey` (the gateway wants one on every request). */
  apiKey: string;
  dbUrl: string;
  fetch?: typeof fetch;
}

export interface TranscriptionRow {
  job_id: string;
  user_id: string;
  status: JobStatus;
  task: Task;
  storage_path: string | null;
  result: Result | null;
  error: JobError | null;
  created_at: Date;
  updated_at: Date;
}

export type JobRecord = Pick<TranscriptionRow, "job_id" | "user_id" | "status" | "task"> & {
  storage_path?: string | null;
  result?: Result | null;
  error?: JobError | null;
};

export type DeliveryOutcome = "stored" | "duplicate" | "replayed";

export class StorageError extends Error {
  override readonly name = "StorageError";
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export class Supabase {
  readonly #url: string;
  readonly #apiKey: string;
  readonly #fetch: typeof fetch;
  readonly sql: postgres.Sql;

  constructor(o: SupabaseOptions) {
    this.#url = o.url.replace(/\/+$/, "");
    this.#apiKey = o.apiKey;
    this.#fetch = o.fetch ?? ((input, init) => fetch(input, init));
    // prepare: false keeps it working behind Supavisor's transaction pooler as well.
    this.sql = postgres(o.dbUrl, { max: 3, prepare: false, idle_timeout: 20, connect_timeout: 10 });
  }

  /**
   * POST /storage/v1/object/sign/{bucket}/{path} as the user. Storage answers 400/404 for a
   * missing object and for one the user may not read (RLS hides it): both are "not found" here.
   */
  async signedUrl(bucket: string, path: string, expiresInS: number, userJwt: string): Promise<string> {
    const object = [bucket, ...path.split("/")].map(encodeURIComponent).join("/");
    let res: Response;
    try {
      res = await this.#fetch(`${this.#url}/storage/v1/object/sign/${object}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${userJwt}`, apikey: this.#apiKey, "Content-Type": "application/json" },
        body: JSON.stringify({ expiresIn: expiresInS }),
      });
    } catch (e) {
      throw new StorageError(502, `Storage is unreachable: ${e instanceof Error ? e.message : e}`);
    }
    const body = await res.json().catch(() => ({})) as { signedURL?: unknown; statusCode?: unknown };
    if (res.ok && typeof body.signedURL === "string") {
      // signedURL is relative to the Storage API ("/object/sign/...?token=..."), as supabase-js uses it.
      return encodeURI(`${this.#url}/storage/v1${body.signedURL}`);
    }
    if (res.status === 400 || res.status === 404 || body.statusCode === "404") {
      throw new StorageError(404, "no such recording");
    }
    if (res.status === 401 || res.status === 403) throw new StorageError(403, "Storage refused the request");
    throw new StorageError(502, `Storage answered HTTP ${res.status}`);
  }

  /**
   * Inserts or updates the job's row. A finished status is never replaced by an unfinished one
   * (the webhook may land before the function's own "queued" insert), and a row never changes owner.
   */
  async recordJob(r: JobRecord, tx: postgres.Sql = this.sql): Promise<void> {
    await tx`
      insert into public.transcriptions as t
        (job_id, user_id, status, task, storage_path, result, error)
      values (${r.job_id}, ${r.user_id}, ${r.status}, ${r.task}, ${r.storage_path ?? null},
              ${r.result ? tx.json(r.result as unknown as postgres.JSONValue) : null},
              ${r.error ? tx.json(r.error as unknown as postgres.JSONValue) : null})
      on conflict (job_id) do update set
        status = excluded.status,
        result = coalesce(excluded.result, t.result),
        error = excluded.error,
        storage_path = coalesce(t.storage_path, excluded.storage_path),
        updated_at = now()
      where t.user_id = excluded.user_id
        and (t.status in ('queued', 'running') or excluded.status not in ('queued', 'running'))`;
  }

  /**
   * Stores a verified webhook delivery once. "replayed": this exact signed request was seen
   * before (a capture sent again); "duplicate": our server retried a delivery already stored
   * (its earlier answer was lost), signed anew. Either way nothing is written twice.
   */
  storeDelivery(
    d: { job_id: string; delivery_id: string; signature: string },
    row: JobRecord,
  ): Promise<DeliveryOutcome> {
    return this.sql.begin(async (tx) => {
      const seen = await tx`select 1 from public.stepaudio_webhook_deliveries where signature = ${d.signature}`;
      if (seen.count > 0) return "replayed" as const;
      const inserted = await tx`
        insert into public.stepaudio_webhook_deliveries (job_id, delivery_id, signature)
        values (${d.job_id}, ${d.delivery_id}, ${d.signature})
        on conflict (job_id, delivery_id) do nothing
        returning 1`;
      if (inserted.count === 0) return "duplicate" as const;
      await this.recordJob(row, tx as unknown as postgres.Sql);
      return "stored" as const;
    }).catch((e: unknown) => {
      // Two copies of one request at the same moment: the second trips the unique signature.
      if (e instanceof postgres.PostgresError && e.code === "23505") return "replayed" as const;
      throw e;
    }) as Promise<DeliveryOutcome>;
  }

  /** The user's rows, newest first, read under row-level security as that user. */
  listTranscriptions(claims: Record<string, unknown>, limit = 20): Promise<TranscriptionRow[]> {
    return this.asUser(claims, (tx) =>
      tx<TranscriptionRow[]>`
      select * from public.transcriptions order by created_at desc limit ${limit}`);
  }

  /** One row, if the user may see it (else undefined, as for a missing one). */
  async getTranscription(claims: Record<string, unknown>, jobId: string): Promise<TranscriptionRow | undefined> {
    const rows = await this.asUser(claims, (tx) =>
      tx<TranscriptionRow[]>`
      select * from public.transcriptions where job_id = ${jobId}`);
    return rows[0];
  }

  /**
   * Runs `fn` in a transaction as the claims' role with request.jwt.claims set (both local to the
   * transaction), as PostgREST does for every request: auth.uid() and RLS then see this user.
   */
  asUser<T>(claims: Record<string, unknown>, fn: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
    const role = claims.role === "authenticated" ? "authenticated" : "anon";
    return this.sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true)`;
      await tx.unsafe(`set local role ${role}`); // one of two fixed names, never user text
      return await fn(tx);
    }) as Promise<T>;
  }

  end(): Promise<void> {
    return this.sql.end({ timeout: 5 });
  }
}
