// Entry point of the transcribe function (supabase functions deploy transcribe). The logic is in
// handler.ts; this file wires it to the environment (_shared/config.ts lists the variables).
import { createJwtVerifier } from "../_shared/auth.ts";
import { ConfigError, loadConfig } from "../_shared/config.ts";
import { jsonError } from "../_shared/http.ts";
import { StepAudioClient } from "../_shared/stepaudio.ts";
import { Supabase } from "../_shared/supabase.ts";
import { createTranscribeHandler } from "./handler.ts";

function handlerFromEnv(): (req: Request) => Promise<Response> | Response {
  try {
    const c = loadConfig((name) => Deno.env.get(name));
    return createTranscribeHandler({
      verifyJwt: createJwtVerifier({ jwtSecret: c.jwtSecret, jwks: c.jwks, jwksUrl: c.jwksUrl }),
      supabase: new Supabase({ url: c.supabaseUrl, apiKey: c.supabaseApiKey, dbUrl: c.dbUrl }),
      client: new StepAudioClient({
        baseUrl: c.stepaudioUrl,
        apiKey: c.stepaudioApiKey,
        maxRetries: c.maxRetries,
        maxRetryDelayS: c.maxRetryDelayS,
      }),
      webhookUrl: c.webhookUrl,
      bucket: c.bucket,
      signedUrlTtlS: c.signedUrlTtlS,
      waitS: c.waitS,
      maxUploadBytes: c.maxUploadBytes,
    });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // Misconfigured: say so on every request (the message names the variable, never a value).
    console.error(`transcribe: ${e.message}`);
    return () => jsonError(500, "misconfigured", `the function is not configured: ${e.message}`);
  }
}

Deno.serve(handlerFromEnv());
