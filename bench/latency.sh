#!/usr/bin/env bash
# Ingest-to-playable latency of `floodlight up` (release build):
#   part-ready  = time from the last frame of a part reaching ingest to the part being
#                 servable by the origin (origin histogram
#                 floodlight_origin_part_ready_latency_seconds), p50 and p99 per run;
#   live edge   = floodlight-player's latency behind PROGRAM-DATE-TIME, p50 and p95;
#   reload      = blocking playlist reload duration seen by the player, p50.
# Each run publishes a 720p29.97 H.264 (B-frames, 2 s GOP) + AAC stream from ffmpeg in
# real time and follows it with floodlight-player. Prints one line per run and the median
# over runs. Usage: bench/latency.sh [runs=3] [seconds=60]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SECONDS_PER_RUN=${2:-60}
cargo build --release --quiet -p floodlight -p floodlight-player --bins
BIN=target/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
quantile() { # metric name, quantile, metrics text file
    awk -v m="$1" -v q="$2" '$1 == m"{quantile=\""q"\"}" { printf "%.1f", $2 * 1000 }' "$3"
}

# The control API needs a key; a fresh server takes this one as its first admin key.
ADMIN_KEY=fl_api_bench_$(python3 -c 'import secrets; print(secrets.token_hex(20))')
results=()
for run in $(seq 1 "$RUNS"); do
    dir=$(mktemp -d)
    rtmp=$(free_port); http=$(free_port); api=$(free_port)
    FLOODLIGHT_LOG=warn FLOODLIGHT_ADMIN_KEY=$ADMIN_KEY \
    FLOODLIGHT_INGEST__RTMP__LISTEN=127.0.0.1:$rtmp \
    FLOODLIGHT_ORIGIN__LISTEN=127.0.0.1:$http \
    FLOODLIGHT_CONTROL__LISTEN=127.0.0.1:$api \
        $BIN/floodlight up --data-dir "$dir" > "$dir/up.log" 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null || true' EXIT
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/healthz" >/dev/null && break; sleep 0.1; done
    event=$(curl -sf -X POST "http://127.0.0.1:$api/v1/events" -H 'content-type: application/json' \
        -H "authorization: Bearer $ADMIN_KEY" -d '{"title":"bench"}')
    id=$(echo "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["event_id"])')
    key=$(echo "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stream_key"])')
    ffmpeg -hide_banner -loglevel error -re \
        -f lavfi -i testsrc2=size=1280x720:rate=30000/1001 -f lavfi -i sine=frequency=440:sample_rate=48000 \
        -t $((SECONDS_PER_RUN + 8)) -c:v libx264 -preset veryfast -profile:v high -bf 2 -g 60 -keyint_min 60 \
        -sc_threshold 0 -b:v 2500k -pix_fmt yuv420p -c:a aac -b:a 128k \
        -f flv "rtmp://127.0.0.1:$rtmp/live/$key" &
    publisher=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$http/live/$id/source/index.m3u8" >/dev/null && break; sleep 0.1; done
    # Exit 1 means the player found errors; they are counted below, not fatal here.
    $BIN/floodlight-player "http://127.0.0.1:$http/live/$id/master.m3u8" --duration "${SECONDS_PER_RUN}s" --json > "$dir/player.json" || [ $? -eq 1 ]
    curl -sf "http://127.0.0.1:$http/metrics" > "$dir/metrics.txt"
    kill $publisher 2>/dev/null || true
    wait $publisher 2>/dev/null || true
    kill $server; wait $server 2>/dev/null || true
    trap - EXIT

    ready_p50=$(quantile floodlight_origin_part_ready_latency_seconds 0.5 "$dir/metrics.txt")
    ready_p99=$(quantile floodlight_origin_part_ready_latency_seconds 0.99 "$dir/metrics.txt")
    read -r edge_p50 edge_p95 reload_p50 errors < <(python3 -c '
import json,sys
r = json.load(open(sys.argv[1]))
l = r.get("latency_ms") or {}; b = r.get("blocking_reload_ms") or {}
print("%.1f %.1f %.1f %d" % (l.get("p50", float("nan")), l.get("p95", float("nan")), b.get("p50", float("nan")), len(r.get("errors", []))))
' "$dir/player.json")
    echo "run $run: part-ready p50 ${ready_p50} ms p99 ${ready_p99} ms | live edge p50 ${edge_p50} ms p95 ${edge_p95} ms | reload p50 ${reload_p50} ms | player errors ${errors}"
    results+=("$ready_p50 $ready_p99 $edge_p50 $edge_p95 $reload_p50")
    rm -rf "$dir"
done

printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
print("median of %d runs: part-ready p50 %.1f ms, p99 %.1f ms | live edge p50 %.1f ms, p95 %.1f ms | reload p50 %.1f ms" % (len(rows), *med))
'
