// Verifies the caller's Supabase session JWT with jose: HS256 with the project's legacy JWT secret,
// or ES256/RS256 with the project's signing keys (SUPABASE_JWKS, else the Auth server's JWKS).
// A user token must be unexpired, for audience "authenticated", with role "authenticated" (the
// anon key is a JWT too, with role "anon": it must not pass) and a UUID subject (auth.uid()).
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  jwtVerify,
} from "npm:jose@6.2.19";

export interface UserClaims extends JWTPayload {
  sub: string;
  role: "authenticated";
}

export class AuthError extends Error {
  override readonly name = "AuthError";
}

export interface JwtVerifierOptions {
  jwtSecret?: string;
  jwks?: JSONWebKeySet;
  jwksUrl?: string;
  /** Required `iss` when set (Supabase: <SUPABASE_URL>/auth/v1). */
  issuer?: string;
  /** Allowed clock difference for exp/nbf/iat in seconds (default 30, as our server). */
  clockToleranceS?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_TOKEN_BYTES = 16 * 1024;

export type JwtVerifier = (token: string) => Promise<UserClaims>;

export function createJwtVerifier(o: JwtVerifierOptions): JwtVerifier {
  const secret = o.jwtSecret ? new TextEncoder().encode(o.jwtSecret) : undefined;
  const keySet = o.jwks
    ? createLocalJWKSet(o.jwks)
    : o.jwksUrl
    ? createRemoteJWKSet(new URL(o.jwksUrl), { cooldownDuration: 30_000, cacheMaxAge: 600_000 })
    : undefined;
  const common = {
    audience: "authenticated",
    requiredClaims: ["exp", "sub"],
    clockTolerance: o.clockToleranceS ?? 30,
    ...(o.issuer ? { issuer: o.issuer } : {}),
  };

  return async (token: string): Promise<UserClaims> => {
    if (token.length > MAX_TOKEN_BYTES) throw new AuthError("token too long");
    let alg: string | undefined;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      throw new AuthError("malformed token");
    }
    let payload: JWTPayload;
    try {
      if (alg === "HS256" && secret) {
        payload = (await jwtVerify(token, secret, { ...common, algorithms: ["HS256"] })).payload;
      } else if ((alg === "ES256" || alg === "RS256") && keySet) {
        payload = (await jwtVerify(token, keySet, { ...common, algorithms: ["ES256", "RS256"] })).payload;
      } else {
        throw new AuthError(`tokens signed with ${alg ?? "no algorithm"} are not accepted`);
      }
    } catch (e) {
      throw new AuthError(describe(e));
    }
    if (payload.role !== "authenticated") throw new AuthError("not a signed-in user's token");
    if (typeof payload.sub !== "string" || !UUID.test(payload.sub)) throw new AuthError("sub is not a user id");
    return payload as UserClaims;
  };
}

/** The bearer token of an Authorization header, or undefined. */
export function bearerToken(req: Request): string | undefined {
  const h = req.headers.get("authorization") ?? "";
  const m = /^bearer\s+(\S+)$/i.exec(h.trim());
  return m?.[1];
}

function describe(e: unknown): string {
  if (e instanceof AuthError) return e.message;
  if (e instanceof errors.JWTExpired) return "token expired";
  if (e instanceof errors.JWTClaimValidationFailed) return `claim ${e.claim} rejected: ${e.reason}`;
  if (e instanceof errors.JWSSignatureVerificationFailed) return "bad signature";
  if (e instanceof errors.JWKSNoMatchingKey) return "no matching signing key";
  if (e instanceof errors.JOSEError) return e.code;
  return "token rejected";
}
