// `stepaudio serve`: the options and the entry point (cli/cmd_serve.cpp calls it). docs/API.md is
// the contract; every option here is listed by `stepaudio serve --help` with its environment
// variable.
#pragma once

#include <string>

#include "http_server.h"
#include "job_manager.h"

namespace stepaudio::server {

struct ServeOptions {
  std::string model;  // checkpoint folder or .gguf
  std::string quant = "bf16";
  int threads = 0;      // engine threads
  size_t parallel = 4;  // requests in flight at once, batched together (backend.h)
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string db = "stepaudio.db";
  std::string redis;  // redis://... : the job store in Redis (docs/REDIS.md); "" = SQLite
  double visibility_timeout_s = 60;  // --redis: a job's node silent this long is taken as dead
  std::string api_keys;              // file; "" = no keys
  bool allow_no_auth = false;        // permit a non-loopback bind without keys
  std::string jwt_secret, jwks_file, jwt_audience, jwt_issuer;
  std::string webhook_secret;  // signs webhooks of callers without an API key (auth off)
  double rate_limit = 0, rate_burst = 20;  // requests per second per caller; 0 = off
  size_t max_upload_mb = 100;
  double request_timeout_s = 30;   // POST /transcribe-and-summarize waits this long, then 202
  double openai_timeout_s = 600;   // /v1/audio/transcriptions waits this long, then 504
  std::string allow_private_urls;  // CIDR list
  int http_threads = 2, io_pool_threads = 2;
  bool log_debug = false;  // audio/transcript/key material may appear in logs only when on
  // A gateway node (docs/REMOTE.md): the model runs on this OpenAI-compatible server
  // (openai://HOST:PORT[/v1]) instead of --model; the key is sent as a Bearer token.
  std::string backend, backend_key;
  int backend_retries = 3;
  double backend_timeout_s = 300, backend_cooldown_s = 10;
  ServiceConfig service;
  HttpLimits http;
};

// Runs until SIGINT/SIGTERM. Returns the process exit code; throws stepaudio::Error /
// std::runtime_error for a bad configuration (bad flags, unusable database, port in use).
int run_server(ServeOptions options);

}  // namespace stepaudio::server
