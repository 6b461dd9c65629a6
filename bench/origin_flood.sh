#!/usr/bin/env bash
# Origin memory under bursts of viewers: `floodlight up` (release build) with one 640x360
# RTMP publisher and the default ladder; after a warm-up that fills the live window, six
# floods of FLOOD blocked playlist reloads (_HLS_msn of the next segment) hit the source
# rendition. Prints the process RSS after the warm-up, after each flood, and 60 s after
# the last: it must come back near the warm-up figure (issue 10: ±10%); 180 s after too.
# Usage: [BENCH_BIN=path] bench/origin_flood.sh [flood=2000] [warmup_seconds=70]
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD=${1:-2000}
WARMUP=${2:-70}
# BENCH_BIN: another build to measure (an A/B run), instead of building this one (not
# FLOODLIGHT_…: the binary reads every FLOODLIGHT_* variable as configuration).
if [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release --quiet -p floodlight --bin floodlight
fi
BIN=${BENCH_BIN:-target/release/floodlight}
ulimit -n "$((FLOOD + 1024))" 2>/dev/null || echo "note: ulimit -n is $(ulimit -n)" >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ADMIN_KEY=fl_api_bench_$(python3 -c 'import secrets; print(secrets.token_hex(20))')
dir=$(mktemp -d)
rtmp=$(free_port); http=$(free_port); api=$(free_port)
FLOODLIGHT_LOG=warn FLOODLIGHT_ADMIN_KEY=$ADMIN_KEY \
FLOODLIGHT_INGEST__RTMP__LISTEN=127.0.0.1:$rtmp \
FLOODLIGHT_ORIGIN__LISTEN=127.0.0.1:$http \
FLOODLIGHT_CONTROL__LISTEN=127.0.0.1:$api \
    $BIN up --data-dir "$dir" > "$dir/up.log" 2>&1 &
server=$!
publisher=
trap 'kill $server $publisher 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/healthz" >/dev/null && break; sleep 0.1; done
event=$(curl -sf -X POST "http://127.0.0.1:$api/v1/events" -H 'content-type: application/json' \
    -H "authorization: Bearer $ADMIN_KEY" -d '{"title":"flood bench"}')
id=$(echo "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["event_id"])')
key=$(echo "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stream_key"])')
ffmpeg -nostdin -loglevel error -re -f lavfi -i testsrc2=size=640x360:rate=30 \
    -f lavfi -i sine=frequency=440 -c:v libx264 -preset ultrafast -g 60 -c:a aac \
    -f flv "rtmp://127.0.0.1:$rtmp/live/$key" &
publisher=$!
sleep "$WARMUP"
rss() { awk '/VmRSS/ { print int($2 / 1024) " MB" }' "/proc/$server/status"; }
echo "warm-up ${WARMUP} s: $(rss)"
for flood in 1 2 3 4 5 6; do
    answers=$(python3 bench/blocked_reload_flood.py "http://127.0.0.1:$http/live/$id/source/index.m3u8" "$FLOOD")
    sleep 2
    echo "flood $flood ($FLOOD reloads, answers $answers): $(rss)"
done
for after in 60 180; do
    sleep $((after == 60 ? 60 : 120))
    echo "${after} s after the last flood: $(rss)"
done
