#!/usr/bin/env bash
# The OpenAI Node SDK compatibility test (tests/node/openai_sdk.test.mjs) against a real
# `stepaudio serve` on 127.0.0.1 with a tiny random model and an API key.
#   bash tests/node/run.sh            # from the repository root (ctest: node_openai_sdk)
# Skips (exit 0, with a message) without node or without ../shared/data. Installs the pinned SDK
# with `npm ci` (from package-lock.json) only when tests/node/node_modules is missing.
# Env: STEPAUDIO_BIN (default build/bin/stepaudio), STEPAUDIO_SHARED_DATA (default ../shared/data),
#      PYTHON (default /usr/bin/python3, needs torch for make_tiny_model.py).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${STEPAUDIO_BIN:-$ROOT/build/bin/stepaudio}"
SHARED="${STEPAUDIO_SHARED_DATA:-$ROOT/../shared/data}"
PYTHON="${PYTHON:-/usr/bin/python3}"
WAV="$SHARED/audio/stepaudio2_assets/give_me_a_brief_introduction_to_the_great_wall.wav"

if ! command -v node >/dev/null 2>&1; then
  echo "node_openai_sdk: SKIP (node is not installed)"
  exit 0
fi
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -lt 20 ]; then
  echo "node_openai_sdk: SKIP (node $(node --version); the openai SDK needs Node.js 20 or later)"
  exit 0
fi
if [ ! -d "$SHARED/tokenizer/qwen2_base" ] || [ ! -f "$WAV" ]; then
  echo "node_openai_sdk: SKIP ($SHARED is missing: no tokenizer or sample recording)"
  exit 0
fi
[ -x "$BIN" ] || { echo "node_openai_sdk: $BIN is not built" >&2; exit 1; }

TMP="$(mktemp -d)"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -d "$ROOT/tests/node/node_modules/openai" ]; then
  npm ci --prefix "$ROOT/tests/node" --no-audit --no-fund
fi

"$PYTHON" "$ROOT/tests/reference/make_tiny_model.py" "$TMP/model" --shared "$SHARED" >/dev/null
KEY="sk-node-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$KEY" >"$TMP/keys"
chmod 600 "$TMP/keys"

"$BIN" serve --model "$TMP/model" --host 127.0.0.1 --port 0 --db "$TMP/stepaudio.db" \
  --api-keys "$TMP/keys" >"$TMP/out" 2>"$TMP/serve.log" &
PID=$!
# The first stdout line is "stepaudio serve: listening on http://127.0.0.1:PORT".
URL=""
for _ in $(seq 600); do
  URL="$(sed -n 's/.*listening on //p' "$TMP/out")"
  [ -n "$URL" ] && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$URL" ]; then
  echo "node_openai_sdk: serve did not start" >&2
  tail -c 2000 "$TMP/serve.log" >&2
  exit 1
fi

# Ready when /readyz answers 200 (the model loaded); node's fetch, so curl is not needed.
if ! node -e '
  const [url, key] = process.argv.slice(1), end = Date.now() + 60000;
  (async () => {
    for (;;) {
      try {
        const r = await fetch(url + "/readyz", { headers: { Authorization: "Bearer " + key } });
        if (r.status === 200) process.exit(0);
      } catch {}
      if (Date.now() > end) process.exit(1);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();' "$URL" "$KEY"; then
  echo "node_openai_sdk: serve never became ready" >&2
  tail -c 2000 "$TMP/serve.log" >&2
  exit 1
fi

set +e
STEPAUDIO_URL="$URL" STEPAUDIO_KEY="$KEY" STEPAUDIO_WAV="$WAV" STEPAUDIO_FRESH=1 \
  node --test "$ROOT/tests/node/openai_sdk.test.mjs"
status=$?
set -e
if [ $status -ne 0 ]; then
  echo "--- serve.log (tail)" >&2
  tail -c 3000 "$TMP/serve.log" >&2
fi
exit $status
