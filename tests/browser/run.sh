#!/usr/bin/env bash
# The web page of `stepaudio serve` (GET /, server/web/index.html) driven in headless Chromium by
# tests/browser/web_ui.test.mjs (puppeteer-core), against a real server on 127.0.0.1 with a tiny
# random model and an API key.
#   bash tests/browser/run.sh         # from the repository root (ctest: browser_web_ui)
# Skips (exit 0, with a message) without node >= 18, without Chromium or without ../shared/data.
# Installs the pinned puppeteer-core with `npm ci` (from package-lock.json) only when
# tests/browser/node_modules is missing. Leaves a full-page screenshot (the test's artifact) in
# $STEPAUDIO_ARTIFACTS/web-ui.png (default build/artifacts/) and prints its path.
# Env: STEPAUDIO_BIN (default build/bin/stepaudio), STEPAUDIO_SHARED_DATA (default ../shared/data),
#      CHROMIUM (default /usr/bin/chromium), STEPAUDIO_ARTIFACTS (default build/artifacts),
#      PYTHON (default /usr/bin/python3, needs torch for make_tiny_model.py).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${STEPAUDIO_BIN:-$ROOT/build/bin/stepaudio}"
SHARED="${STEPAUDIO_SHARED_DATA:-$ROOT/../shared/data}"
PYTHON="${PYTHON:-/usr/bin/python3}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
ARTIFACTS="${STEPAUDIO_ARTIFACTS:-$ROOT/build/artifacts}"
WAV="$SHARED/audio/stepaudio2_assets/give_me_a_brief_introduction_to_the_great_wall.wav"

if ! command -v node >/dev/null 2>&1; then
  echo "browser_web_ui: SKIP (node is not installed)"
  exit 0
fi
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -lt 18 ]; then
  echo "browser_web_ui: SKIP (node $(node --version); puppeteer-core needs Node.js 18 or later)"
  exit 0
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "browser_web_ui: SKIP ($CHROMIUM is missing: apt install chromium)"
  exit 0
fi
if [ ! -d "$SHARED/tokenizer/qwen2_base" ] || [ ! -f "$WAV" ]; then
  echo "browser_web_ui: SKIP ($SHARED is missing: no tokenizer or sample recording)"
  exit 0
fi
[ -x "$BIN" ] || { echo "browser_web_ui: $BIN is not built" >&2; exit 1; }

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

if [ ! -d "$ROOT/tests/browser/node_modules/puppeteer-core" ]; then
  npm ci --prefix "$ROOT/tests/browser" --no-audit --no-fund
fi

"$PYTHON" "$ROOT/tests/reference/make_tiny_model.py" "$TMP/model" --shared "$SHARED" >/dev/null
KEY="sk-browser-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
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
  echo "browser_web_ui: serve did not start" >&2
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
  echo "browser_web_ui: serve never became ready" >&2
  tail -c 2000 "$TMP/serve.log" >&2
  exit 1
fi

mkdir -p "$ARTIFACTS"
set +e
STEPAUDIO_URL="$URL" STEPAUDIO_KEY="$KEY" STEPAUDIO_WAV="$WAV" CHROMIUM="$CHROMIUM" \
  STEPAUDIO_SCREENSHOT="$ARTIFACTS/web-ui.png" node --test "$ROOT/tests/browser/web_ui.test.mjs"
status=$?
set -e
if [ $status -ne 0 ]; then
  echo "--- serve.log (tail)" >&2
  tail -c 3000 "$TMP/serve.log" >&2
fi
exit $status
