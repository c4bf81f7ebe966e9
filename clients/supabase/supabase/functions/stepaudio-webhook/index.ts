// Entry point of the stepaudio-webhook function (supabase functions deploy stepaudio-webhook
// --no-verify-jwt; config.toml sets verify_jwt = false for it). The logic is in handler.ts.
import { ConfigError, loadConfig } from "../_shared/config.ts";
import { jsonError } from "../_shared/http.ts";
import { webhookSecretFromApiKey } from "../_shared/stepaudio.ts";
import { Supabase } from "../_shared/supabase.ts";
import { createWebhookHandler } from "./handler.ts";

async function handlerFromEnv(): Promise<(req: Request) => Promise<Response> | Response> {
  try {
    const c = loadConfig((name) => Deno.env.get(name));
    return createWebhookHandler({
      supabase: new Supabase({ url: c.supabaseUrl, apiKey: c.supabaseApiKey, dbUrl: c.dbUrl }),
      secret: c.webhookSecret ?? await webhookSecretFromApiKey(c.stepaudioApiKey),
    });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(`stepaudio-webhook: ${e.message}`);
    // 503: our server keeps retrying until the function is configured.
    return () => jsonError(503, "misconfigured", `the function is not configured: ${e.message}`);
  }
}

Deno.serve(await handlerFromEnv());
