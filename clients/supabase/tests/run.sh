#!/usr/bin/env bash
# The Supabase Edge Functions (clients/supabase) and the TypeScript client (clients/typescript),
# tested against real processes on 127.0.0.1:
#   * PostgreSQL (Debian's, in a temp dir) with tests/bootstrap.sql (the Supabase roles and schemas
#     the migration needs) and the migration itself;
#   * two `stepaudio serve` with a tiny random model: a plain one (webhooks to 127.0.0.1 allowed)
#     and one with --rate-limit 1 --rate-burst 1 (real 429s with Retry-After);
#   * the functions served by Deno on 127.0.0.1:0 inside the tests, with a Storage stand-in.
# Steps: openapi.ts regenerated and diffed; the client built with tsc and imported by Node;
# `deno check` of the function entry points, `deno lint`; `deno test` of the client and the functions.
#   bash clients/supabase/tests/run.sh       # from the repository root (ctest: deno_supabase)
# Skips (exit 0, with a message) without node/npm, without ../shared/data or without PostgreSQL.
# `npm ci` (from the committed package-lock.json files) runs only when node_modules is missing;
# it is the only download: Deno resolves npm: imports from node_modules and runs --cached-only.
# Env: STEPAUDIO_BIN (default build/bin/stepaudio), STEPAUDIO_SHARED_DATA (default ../shared/data),
#      PYTHON (default /usr/bin/python3, needs torch for make_tiny_model.py).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
BIN="${STEPAUDIO_BIN:-$ROOT/build/bin/stepaudio}"
SHARED="${STEPAUDIO_SHARED_DATA:-$ROOT/../shared/data}"
PYTHON="${PYTHON:-/usr/bin/python3}"
WAV="$SHARED/audio/stepaudio2_assets/give_me_a_brief_introduction_to_the_great_wall.wav"
SB="$ROOT/clients/supabase"
TS="$ROOT/clients/typescript"
T0=$SECONDS

skip() { echo "deno_supabase: SKIP ($1)"; exit 0; }
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || skip "node/npm are not installed"
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] || skip "node $(node --version); Node.js 20 or later is needed"
[ -d "$SHARED/tokenizer/qwen2_base" ] && [ -f "$WAV" ] || skip "$SHARED is missing: no tokenizer or sample recording"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || skip "PostgreSQL is not installed (/usr/lib/postgresql/*/bin)"
[ -x "$BIN" ] || { echo "deno_supabase: $BIN is not built" >&2; exit 1; }

if [ ! -x "$SB/node_modules/.bin/deno" ] || [ ! -d "$SB/node_modules/postgres" ]; then
  npm ci --prefix "$SB" --no-audit --no-fund
fi
if [ ! -d "$TS/node_modules/typescript" ] || [ ! -d "$TS/node_modules/openapi-typescript" ]; then
  npm ci --prefix "$TS" --no-audit --no-fund
fi
DENO="$SB/node_modules/.bin/deno"
export DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1 NO_COLOR=1
# Deno's caches (type checks, compiled code) beside the packages, not in $HOME.
export DENO_DIR="${DENO_DIR:-$SB/node_modules/.deno}"

. "$ROOT/tests/lib/serve_tiny.sh"
TMP="$(mktemp -d)"
chmod 711 "$TMP" # PostgreSQL's user must reach its folder inside
PIDS=() # PostgreSQL (the servers are in SERVE_PIDS)
PGDATA="$TMP/pg/data"
cleanup() {
  if [ -f "$PGDATA/postmaster.pid" ]; then
    kill -INT "$(head -n 1 "$PGDATA/postmaster.pid")" 2>/dev/null || true # fast shutdown
  fi
  serve_tiny_stop_all
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for _ in $(seq 100); do [ -f "$PGDATA/postmaster.pid" ] || break; sleep 0.1; done
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  node -e 'const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# --- PostgreSQL: it refuses to run as root, so as nobody then (in a folder nobody owns).
RUNAS=()
mkdir "$TMP/pg"
if [ "$(id -u)" = 0 ]; then
  RUNAS=(runuser -u nobody --)
  chown nobody "$TMP/pg"
fi
"${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C -N \
  >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; exit 1; }
PGPORT=""
for _ in 1 2 3; do # a port found free may be taken before postgres binds it: try another
  PGPORT="$(free_port)"
  "${RUNAS[@]}" "$PGBIN/postgres" -D "$PGDATA" -k "$TMP/pg" -p "$PGPORT" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c wal_level=logical \
    >>"$TMP/pg.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 150); do
    "$PGBIN/pg_isready" -q -U postgres -h 127.0.0.1 -p "$PGPORT" && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  "$PGBIN/pg_isready" -q -U postgres -h 127.0.0.1 -p "$PGPORT" && break
  PGPORT=""
done
[ -n "$PGPORT" ] || { echo "deno_supabase: PostgreSQL did not start" >&2; tail -n 20 "$TMP/pg.log" >&2; exit 1; }
export SUPABASE_DB_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$SUPABASE_DB_URL" -f "$SB/tests/bootstrap.sql" \
  -f "$(ls "$SB"/supabase/migrations/*.sql | sort | tail -n 1)" >"$TMP/psql.log" 2>&1 ||
  { cat "$TMP/psql.log" >&2; exit 1; }
T_PG=$((SECONDS - T0))

# --- two servers on a tiny model
serve_tiny_model supabase
export STEPAUDIO_KEY="$KEY"
start_server() { # NAME ARGS...: sets SERVER_URL
  serve_tiny_start "$@" --allow-private-urls 127.0.0.1/32 || { echo "deno_supabase: serve ($1) did not start" >&2; exit 1; }
}
start_server plain --webhook-max-delay 1
STEPAUDIO_URL="$SERVER_URL"
start_server limited --rate-limit 1 --rate-burst 1
STEPAUDIO_URL_LIMITED="$SERVER_URL"
export STEPAUDIO_URL STEPAUDIO_URL_LIMITED STEPAUDIO_WAV="$WAV"
serve_tiny_wait_ready "$STEPAUDIO_URL" "$STEPAUDIO_URL_LIMITED" || { echo "deno_supabase: serve never became ready" >&2; exit 1; }
T_UP=$((SECONDS - T0))

FAILED=()
step() { # NAME COMMAND...: runs it, remembers a failure, goes on
  local name="$1"; shift
  local t=$SECONDS
  echo "--- $name"
  if "$@"; then echo "--- $name: ok ($((SECONDS - t)) s)"; else echo "--- $name: FAILED" >&2; FAILED+=("$name"); fi
}

regenerate_types() {
  node "$TS/node_modules/openapi-typescript/bin/cli.js" "$ROOT/docs/openapi.json" --output "$TMP/openapi.ts" \
    >/dev/null 2>&1 || { echo "openapi-typescript failed" >&2; return 1; }
  diff -u "$TS/src/openapi.ts" "$TMP/openapi.ts" ||
    { echo "docs/openapi.json changed: run 'npm run generate' in clients/typescript and commit" >&2; return 1; }
}
step "types generated from docs/openapi.json are current" regenerate_types
step "tsc build of @stepaudio/client" node "$TS/node_modules/typescript/bin/tsc" -p "$TS/tsconfig.json"
step "node --test (the built package)" timeout -k 5 120 node --test "$TS/test/node.test.mjs"
DENO_FLAGS=(--config "$SB/deno.json" --cached-only --quiet)
step "deno check (function entry points)" "$DENO" check "${DENO_FLAGS[@]}" \
  "$SB/supabase/functions/transcribe/index.ts" "$SB/supabase/functions/stepaudio-webhook/index.ts"
step "deno lint" "$DENO" lint --config "$SB/deno.json" --quiet "$SB/supabase" "$SB/tests" "$TS/src" "$TS/test"
DENO_EXE="$("$DENO" eval 'console.log(Deno.execPath())')" # entrypoints.test.ts runs the functions' index.ts
step "deno test" timeout -k 5 200 "$DENO" test "${DENO_FLAGS[@]}" --allow-net=127.0.0.1 --allow-env --allow-read --allow-run="$DENO_EXE" \
  --allow-sys=hostname,osRelease,uid,gid,homedir,networkInterfaces,cpus \
  "$TS/test/client.test.ts" "$SB/tests/"

if [ ${#FAILED[@]} -ne 0 ]; then
  serve_tiny_logs plain limited
  echo "--- postgres log (tail)" >&2; tail -n 30 "$TMP/pg.log" >&2
  echo "deno_supabase: FAILED: ${FAILED[*]}" >&2
  exit 1
fi
echo "deno_supabase: all passed in $((SECONDS - T0)) s (postgres up at ${T_PG} s, servers ready at ${T_UP} s)"
