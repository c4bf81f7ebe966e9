# Sourced by the JavaScript suites' run.sh (tests/node, tests/browser, clients/supabase/tests):
# the tiny random model, an API key, `stepaudio serve` on 127.0.0.1 and the wait for /readyz.
# The caller sets ROOT, BIN, SHARED, PYTHON, TMP (a temp dir it removes) and a cleanup trap that
# calls serve_tiny_stop_all.
#   serve_tiny_model PREFIX        makes $TMP/model and $TMP/keys; sets KEY ("sk-PREFIX-<random>")
#   serve_tiny_start NAME ARGS...  starts serve (db $TMP/NAME.db, logs $TMP/NAME.{out,log});
#                                  sets SERVER_URL, appends the pid to SERVE_PIDS; returns 1 when
#                                  it did not start (after printing its log)
#   serve_tiny_wait_ready URL...   waits (60 s at most) until every URL's /readyz answers 200
#   serve_tiny_stop_all            SIGTERM, then SIGKILL after 10 s, for every started server
#   serve_tiny_logs NAME...        prints the tail of each server's log (after a failure)
# Functions, not subshells: SERVE_PIDS must see every server for the cleanup.

SERVE_PIDS=()
SERVER_URL=""

serve_tiny_model() {
  "$PYTHON" "$ROOT/tests/reference/make_tiny_model.py" "$TMP/model" --shared "$SHARED" >/dev/null
  KEY="sk-$1-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s\n' "$KEY" >"$TMP/keys"
  chmod 600 "$TMP/keys"
}

serve_tiny_start() {
  local name="$1"
  shift
  "$BIN" serve --model "$TMP/model" --host 127.0.0.1 --port 0 --db "$TMP/$name.db" \
    --api-keys "$TMP/keys" "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" &
  SERVE_PIDS+=($!)
  # The first stdout line is "stepaudio serve: listening on http://127.0.0.1:PORT".
  SERVER_URL=""
  for _ in $(seq 600); do
    SERVER_URL="$(sed -n 's/.*listening on //p' "$TMP/$name.out")"
    [ -n "$SERVER_URL" ] && return 0
    kill -0 "${SERVE_PIDS[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "serve ($name) did not start" >&2
  tail -c 2000 "$TMP/$name.log" >&2
  return 1
}

# Node's fetch, so curl is not needed.
serve_tiny_wait_ready() {
  node -e '
    const [key, ...urls] = process.argv.slice(1), end = Date.now() + 60000;
    (async () => {
      for (const url of urls) {
        for (;;) {
          try {
            const r = await fetch(url + "/readyz", { headers: { Authorization: "Bearer " + key } });
            if (r.status === 200) break;
          } catch {}
          if (Date.now() > end) { console.error(url + " never became ready"); process.exit(1); }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    })();' "$KEY" "$@"
}

serve_tiny_stop_all() {
  local pid
  for pid in "${SERVE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SERVE_PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

serve_tiny_logs() {
  local name
  for name in "$@"; do
    echo "--- serve $name log (tail)" >&2
    tail -c 3000 "$TMP/$name.log" >&2
  done
}
