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

. "$ROOT/tests/lib/serve_tiny.sh"
TMP="$(mktemp -d)"
cleanup() {
  serve_tiny_stop_all
  rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -d "$ROOT/tests/node/node_modules/openai" ]; then
  npm ci --prefix "$ROOT/tests/node" --no-audit --no-fund
fi

serve_tiny_model node
serve_tiny_start serve || { echo "node_openai_sdk: serve did not start" >&2; exit 1; }
URL="$SERVER_URL"
serve_tiny_wait_ready "$URL" || { echo "node_openai_sdk: serve never became ready" >&2; serve_tiny_logs serve; exit 1; }

set +e
STEPAUDIO_URL="$URL" STEPAUDIO_KEY="$KEY" STEPAUDIO_WAV="$WAV" STEPAUDIO_FRESH=1 \
  node --test "$ROOT/tests/node/openai_sdk.test.mjs"
status=$?
set -e
[ $status -eq 0 ] || serve_tiny_logs serve
exit $status
