#!/usr/bin/env bash
# The official OpenAI SDK against `mforge serve` (tests/openai_client.mjs), on the e2e
# fixture's tiny model exported for serving. Skipped (exit 77) without node or the SDK
# (scripts/setup.sh --tests fetches it into .cache/npm/openai).
source "$(dirname "$0")/e2e/lib.sh"
SDK="${MFORGE_CACHE:-$ROOT/.cache}/npm/openai/package"
if ! command -v node >/dev/null || [ ! -f "$SDK/package.json" ]; then
  echo "skipped: needs node and the openai npm package ($SDK; scripts/setup.sh --tests)"
  exit 77
fi
mkdir -p "$TMP/models"
"$MF" export "$DATA/tiny_run/last.h5" -o "$TMP/models/tiny.h5" >/dev/null || { echo "export failed"; exit 1; }
"$MF" serve "$TMP/models" --port 0 --api-key sdk-key 2>"$TMP/serve.log" &
pid=$!
port=""
for _ in $(seq 200); do
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/serve.log")
  [ -n "$port" ] && break
  sleep 0.05
done
for _ in $(seq 200); do
  node -e "fetch('http://127.0.0.1:$port/health',{headers:{Authorization:'Bearer sdk-key'}}).then(r=>process.exit(r.status==200?0:1)).catch(()=>process.exit(1))" && break
  sleep 0.1
done
node "$ROOT/tests/openai_client.mjs" "$SDK" "http://127.0.0.1:$port/v1" sdk-key tiny
rc=$?
kill -TERM $pid
wait $pid
src=$?
[ $src -eq 0 ] || { echo "FAIL: the server exited $src after SIGTERM"; cat "$TMP/serve.log"; rc=1; }
[ $rc -eq 0 ] || cat "$TMP/serve.log" >&2
exit $rc
