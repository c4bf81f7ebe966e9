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

. "$ROOT/tests/lib/serve_tiny.sh"
TMP="$(mktemp -d)"
cleanup() {
  serve_tiny_stop_all
  rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -d "$ROOT/tests/browser/node_modules/puppeteer-core" ]; then
  npm ci --prefix "$ROOT/tests/browser" --no-audit --no-fund
fi

serve_tiny_model browser
serve_tiny_start serve || { echo "browser_web_ui: serve did not start" >&2; exit 1; }
URL="$SERVER_URL"
serve_tiny_wait_ready "$URL" || { echo "browser_web_ui: serve never became ready" >&2; serve_tiny_logs serve; exit 1; }

mkdir -p "$ARTIFACTS"
set +e
STEPAUDIO_URL="$URL" STEPAUDIO_KEY="$KEY" STEPAUDIO_WAV="$WAV" CHROMIUM="$CHROMIUM" \
  STEPAUDIO_SCREENSHOT="$ARTIFACTS/web-ui.png" node --test "$ROOT/tests/browser/web_ui.test.mjs"
status=$?
set -e
[ $status -eq 0 ] || serve_tiny_logs serve
exit $status
