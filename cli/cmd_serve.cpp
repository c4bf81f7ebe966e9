// `stepaudio serve`: the HTTP service (server/server.h, contract in docs/API.md). Every option can
// also come from the environment variable shown by --help (STEPAUDIO_*), so a container or a
// systemd unit configures it without a command line.
#include <memory>
#include <string>

#include "commands.h"
#include "options.h"
#include "server/server.h"
#include "stepaudio/error.h"

namespace stepaudio::cli {

namespace {
struct ServeCli {
  server::ServeOptions s;
  double cache_ttl_hours = 168, retention_hours = -1, fetch_timeout_s = 60;
  double webhook_max_delay_s = 300;
};
}  // namespace

void add_serve_command(CLI::App& root, std::vector<Command>& commands) {
  auto* app = root.add_subcommand("serve", "Run the HTTP service (docs/API.md)");
  auto o = std::make_shared<ServeCli>();
  auto& s = o->s;
  app->add_option("--model", s.model, "checkpoint folder or .gguf file")
      ->envname("STEPAUDIO_MODEL");
  app->add_option("--backend", s.backend,
                  "gateway node: run the model on this OpenAI-compatible server, "
                  "openai://HOST:PORT[/v1] (another stepaudio node or StepFun's vLLM; "
                  "docs/REMOTE.md) instead of --model")
      ->envname("STEPAUDIO_BACKEND");
  app->add_option("--backend-key", s.backend_key,
                  "API key for --backend, sent as 'Authorization: Bearer KEY'")
      ->envname("STEPAUDIO_BACKEND_KEY");
  app->add_option("--backend-retries", s.backend_retries,
                  "retries of a failed --backend request (5xx, connection errors; default 3)")
      ->check(in_range(0, 20))
      ->envname("STEPAUDIO_BACKEND_RETRIES");
  app->add_option("--backend-timeout", s.backend_timeout_s,
                  "a --backend answer silent this long fails, in s (default 300)")
      ->check(in_range(1.0, 86400.0))
      ->envname("STEPAUDIO_BACKEND_TIMEOUT");
  app->add_option("--backend-cooldown", s.backend_cooldown_s,
                  "after repeated --backend failures, calls fail fast (503) this long before a "
                  "probe, in s (default 10)")
      ->check(in_range(0.1, 3600.0))
      ->envname("STEPAUDIO_BACKEND_COOLDOWN");
  app->add_option("--quant", s.quant,
                  "weights in memory: f32 | bf16 | q8 | q4 (default bf16; a .gguf file is used as "
                  "stored)")
      ->check(CLI::IsMember({"f32", "bf16", "q8", "q4"}))
      ->envname("STEPAUDIO_QUANT");
  app->add_option("--threads", s.threads, "engine threads (default 0: all cores)")
      ->check(thread_count())
      ->envname("STEPAUDIO_THREADS");
  app->add_option("--parallel", s.parallel,
                  "requests in flight at once; their answers decode in one batch (default 4; "
                  "1: one at a time)")
      ->check(in_range(1, 64))
      ->envname("STEPAUDIO_PARALLEL");
  app->add_option("--host", s.host, "address to listen on (default 127.0.0.1)")
      ->envname("STEPAUDIO_HOST");
  app->add_option("--port", s.port, "TCP port (default 8080; 0 = any free port)")
      ->check(in_range(0, 65535))
      ->envname("STEPAUDIO_PORT");
  app->add_option("--db", s.db, "SQLite file for jobs and the cache (default stepaudio.db)")
      ->envname("STEPAUDIO_DB");
  app->add_option("--redis", s.redis,
                  "share jobs, queue, cache and rate limits with other nodes through this Redis: "
                  "redis://[:password@]host:port[/db] (docs/REDIS.md; default: none, --db alone)")
      ->envname("STEPAUDIO_REDIS");
  app->add_option("--visibility-timeout", s.visibility_timeout_s,
                  "with --redis: a job whose node stopped heartbeating for this long runs on "
                  "another node (seconds, default 60)")
      ->check(in_range(1.0, 86400.0))
      ->envname("STEPAUDIO_VISIBILITY_TIMEOUT");
  app->add_option("--api-keys", s.api_keys,
                  "file of API keys: one per line, the key or sha256:<hex>; '#' comments; "
                  "reloaded when it changes")
      ->envname("STEPAUDIO_API_KEYS");
  app->add_flag("--allow-no-auth", s.allow_no_auth,
                "allow listening on a non-loopback address without API keys")
      ->envname("STEPAUDIO_ALLOW_NO_AUTH");
  app->add_option("--jwt-secret", s.jwt_secret,
                  "accept Supabase JWTs signed HS256 with this secret")
      ->envname("STEPAUDIO_JWT_SECRET");
  app->add_option("--jwks", s.jwks_file,
                  "accept JWTs signed RS256/ES256 by a key of this JWKS file")
      ->envname("STEPAUDIO_JWKS");
  app->add_option("--jwt-audience", s.jwt_audience, "required JWT aud (e.g. authenticated)")
      ->envname("STEPAUDIO_JWT_AUDIENCE");
  app->add_option("--jwt-issuer", s.jwt_issuer, "required JWT iss")
      ->envname("STEPAUDIO_JWT_ISSUER");
  app->add_option("--webhook-secret", s.webhook_secret,
                  "signs webhooks when no API keys are configured")
      ->envname("STEPAUDIO_WEBHOOK_SECRET");
  app->add_option("--rate-limit", s.rate_limit, "requests per second per key (0 = off, default)")
      ->check(in_range(0.0, 1e6))
      ->envname("STEPAUDIO_RATE_LIMIT");
  app->add_option("--rate-burst", s.rate_burst, "burst size of the per-key limit (default 20)")
      ->check(in_range(1.0, 1e6))
      ->envname("STEPAUDIO_RATE_BURST");
  app->add_option("--max-queue", s.service.max_queue,
                  "jobs admitted and unfinished before 429 (default 64)")
      ->check(in_range(1, 100000))
      ->envname("STEPAUDIO_MAX_QUEUE");
  app->add_option("--max-audio-seconds", s.service.max_audio_seconds,
                  "longest recording accepted (default 14400 = 4 h)")
      ->check(in_range(1.0, 86400.0))
      ->envname("STEPAUDIO_MAX_AUDIO_SECONDS");
  app->add_option("--max-upload-mb", s.max_upload_mb,
                  "largest upload or audio_url download in MB (default 100)")
      ->check(in_range(1, 4096))
      ->envname("STEPAUDIO_MAX_UPLOAD_MB");
  app->add_option("--request-timeout", s.request_timeout_s,
                  "POST /transcribe-and-summarize waits this long, then answers 202 (default 30)")
      ->check(in_range(0.0, 3600.0))
      ->envname("STEPAUDIO_REQUEST_TIMEOUT");
  app->add_option("--openai-timeout", s.openai_timeout_s,
                  "POST /v1/audio/transcriptions waits this long, then 504 (default 600)")
      ->check(in_range(1.0, 86400.0))
      ->envname("STEPAUDIO_OPENAI_TIMEOUT");
  app->add_option("--read-timeout", s.http.read_timeout_s,
                  "a request's headers and body must arrive within this (default 30)")
      ->check(in_range(0.1, 3600.0))
      ->envname("STEPAUDIO_READ_TIMEOUT");
  app->add_option("--max-connections", s.http.max_connections,
                  "open connections at most (default 2048)")
      ->check(in_range(1, 1000000))
      ->envname("STEPAUDIO_MAX_CONNECTIONS");
  app->add_option("--allow-private-urls", s.allow_private_urls,
                  "CIDR list that audio_url/webhook_url may reach although private "
                  "(e.g. 127.0.0.1/32,10.0.0.0/8)")
      ->envname("STEPAUDIO_ALLOW_PRIVATE_URLS");
  app->add_option("--fetch-timeout", o->fetch_timeout_s,
                  "audio_url download limit in s (default 60)")
      ->check(in_range(1.0, 3600.0))
      ->envname("STEPAUDIO_FETCH_TIMEOUT");
  app->add_option("--cache-ttl-hours", o->cache_ttl_hours, "result cache lifetime (default 168)")
      ->check(in_range(0.0, 1e5))
      ->envname("STEPAUDIO_CACHE_TTL_HOURS");
  app->add_option("--cache-max-entries", s.service.cache_max_entries,
                  "result cache size (default 10000)")
      ->check(in_range(0, 100000000))
      ->envname("STEPAUDIO_CACHE_MAX_ENTRIES");
  app->add_option("--retention-hours", o->retention_hours,
                  "finished jobs are deleted after this (default 168; 1 with --privacy; 0 = keep)")
      ->check(in_range(0.0, 1e6))
      ->envname("STEPAUDIO_RETENTION_HOURS");
  app->add_flag("--privacy", s.service.privacy,
                "keep no audio or text beyond the retention time (cache too)")
      ->envname("STEPAUDIO_PRIVACY");
  app->add_option("--max-attempts", s.service.max_attempts,
                  "starts of one job across crashes before it fails (default 3)")
      ->check(in_range(1, 100))
      ->envname("STEPAUDIO_MAX_ATTEMPTS");
  app->add_option("--webhook-max-attempts", s.service.webhook_max_attempts,
                  "delivery attempts per webhook (default 8)")
      ->check(in_range(1, 100))
      ->envname("STEPAUDIO_WEBHOOK_MAX_ATTEMPTS");
  app->add_option("--webhook-max-delay", o->webhook_max_delay_s,
                  "longest wait between webhook attempts in s (default 300)")
      ->check(in_range(0.01, 86400.0))
      ->envname("STEPAUDIO_WEBHOOK_MAX_DELAY");
  app->add_option("--http-threads", s.http_threads, "I/O threads (default 2)")
      ->check(in_range(1, 64))
      ->envname("STEPAUDIO_HTTP_THREADS");
  app->add_option("--io-threads", s.io_pool_threads,
                  "threads that fetch and decode uploads (default 2)")
      ->check(in_range(1, 64))
      ->envname("STEPAUDIO_IO_THREADS");
  app->add_flag("--log-debug", s.log_debug,
                "debug logs (may contain transcripts; never on in production)")
      ->envname("STEPAUDIO_LOG_DEBUG");
  commands.push_back({app, [o, app] {
                        auto& s = o->s;
                        refuse_contradicting_quant(*app, s.model, s.quant);
                        const double hour_ms = 3600.0 * 1000.0;
                        s.service.cache_ttl_ms = int64_t(o->cache_ttl_hours * hour_ms);
                        const double retention = o->retention_hours >= 0
                                                     ? o->retention_hours
                                                     : (s.service.privacy ? 1.0 : 168.0);
                        s.service.retention_ms = int64_t(retention * hour_ms);
                        if (s.service.privacy && s.service.retention_ms <= 0)
                          throw Error(Errc::invalid_argument,
                                      "--privacy needs a retention: --retention-hours > 0");
                        s.service.fetch.timeout_s = o->fetch_timeout_s;
                        s.service.webhook_max_delay_s = o->webhook_max_delay_s;
                        s.service.webhook_base_delay_s =
                            std::min(s.service.webhook_base_delay_s, o->webhook_max_delay_s);
                        return server::run_server(s);
                      }});
}

}  // namespace stepaudio::cli
