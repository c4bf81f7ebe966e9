// TEST ONLY: a stand-in for the two Supabase HTTP endpoints the functions call, since no Supabase
// runs here. It follows the real Storage API's contract (storage-api, as supabase-js calls it):
//   POST /storage/v1/object/sign/{bucket}/{path}  {"expiresIn"} -> {"signedURL": "/object/sign/...?token=..."}
//        400 {"statusCode": "404", "error": "not_found"} when the object is missing or hidden by RLS
//   GET  /storage/v1/object/sign/{bucket}/{path}?token=...  -> the object's bytes
//   GET  /auth/v1/.well-known/jwks.json                      -> the project's signing keys
// Access is decided like Storage does: a query on storage.objects as the caller (role
// authenticated, request.jwt.claims), so the migration's real storage policies apply.
import type { JSONWebKeySet } from "npm:jose@6.2.19";
import type { JwtVerifier } from "../supabase/functions/_shared/auth.ts";
import type { Supabase } from "../supabase/functions/_shared/supabase.ts";
import { ANON_KEY, serve } from "./harness.ts";

interface Grant {
  bucket: string;
  path: string;
  expiresAtMs: number;
}

export class StorageStandIn {
  readonly url: string;
  /** Downloads of signed URLs served (our server fetching the recording). */
  downloads = 0;
  jwks: JSONWebKeySet = { keys: [] };
  readonly #close: () => Promise<void>;
  readonly #files = new Map<string, Uint8Array>();
  readonly #grants = new Map<string, Grant>();

  constructor(private readonly sb: Supabase, private readonly verify: JwtVerifier) {
    const s = serve((req) => this.#handle(req));
    this.url = s.url;
    this.#close = s.close;
  }

  /** The app's upload: the object row as the user (the insert policy applies), then the bytes. */
  async upload(userClaims: Record<string, unknown>, bucket: string, path: string, bytes: Uint8Array): Promise<void> {
    await this.sb.asUser(userClaims, (tx) =>
      tx`
      insert into storage.objects (bucket_id, name, owner, owner_id)
      values (${bucket}, ${path}, ${userClaims.sub as string}, ${userClaims.sub as string})`);
    this.#files.set(`${bucket}/${path}`, bytes);
  }

  close(): Promise<void> {
    return this.#close();
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname === "/auth/v1/.well-known/jwks.json") return Response.json(this.jwks);
    const m = /^\/storage\/v1\/object\/sign\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return storageError(400, "404", "not_found", "no such route");
    const bucket = decodeURIComponent(m[1]!);
    const path = m[2]!.split("/").map(decodeURIComponent).join("/");

    if (req.method === "GET") {
      const grant = this.#grants.get(url.searchParams.get("token") ?? "");
      if (!grant || grant.bucket !== bucket || grant.path !== path || Date.now() > grant.expiresAtMs) {
        return storageError(400, "400", "InvalidJWT", "invalid or expired token");
      }
      const bytes = this.#files.get(`${bucket}/${path}`);
      if (!bytes) return storageError(400, "404", "not_found", "Object not found");
      this.downloads++;
      return new Response(bytes.slice(), { headers: { "Content-Type": "audio/wav" } });
    }
    if (req.method !== "POST") return storageError(405, "405", "method_not_allowed", "");
    if (req.headers.get("apikey") !== ANON_KEY) return storageError(401, "401", "Unauthorized", "bad apikey");
    let claims: Record<string, unknown>;
    try {
      claims = await this.verify((req.headers.get("authorization") ?? "").replace(/^Bearer /i, ""));
    } catch {
      return storageError(400, "403", "Unauthorized", "invalid JWT");
    }
    const { expiresIn } = await req.json() as { expiresIn?: unknown };
    if (typeof expiresIn !== "number" || expiresIn < 1) return storageError(400, "400", "invalid", "expiresIn");
    const visible = await this.sb.asUser(claims, (tx) =>
      tx`
      select 1 from storage.objects where bucket_id = ${bucket} and name = ${path}`);
    if (visible.count === 0) return storageError(400, "404", "not_found", "Object not found");
    const token = crypto.randomUUID();
    this.#grants.set(token, { bucket, path, expiresAtMs: Date.now() + expiresIn * 1000 });
    return Response.json({ signedURL: `/object/sign/${bucket}/${path}?token=${token}` });
  }
}

function storageError(status: number, statusCode: string, error: string, message: string): Response {
  return Response.json({ statusCode, error, message }, { status });
}
