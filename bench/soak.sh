#!/usr/bin/env bash
# Soak: `floodlight up` (release build) with 4 RTMP publishers (480x270 30 fps, a source +
# one encoded 180p rung each) and a swarm of viewers (floodlight-player --viewers) over the
# 4 events for MINUTES; publisher 0 stops and reconnects every RECONNECT_SECS. Samples the
# server's RSS and CPU time every 10 s into rss.csv and prints the RSS range between
# WARMUP_MIN minutes and the end of the first viewer's follow, against its median (issue
# 10: flat within ±10%), and the swarm's report (issue 10: 0 player errors).
# Usage: [BENCH_BIN=path] [WARMUP_MIN=5] [RECONNECT_SECS=120] bench/soak.sh [minutes=30] [viewers=200]
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
VIEWERS=${2:-200}
WARMUP_MIN=${WARMUP_MIN:-5}
RECONNECT_SECS=${RECONNECT_SECS:-120}
# BENCH_BIN: another build's floodlight to measure (an A/B run), instead of building this
# one (not FLOODLIGHT_…: the binary reads every FLOODLIGHT_* variable as configuration).
cargo build --release --quiet -p floodlight-player --bin floodlight-player
if [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release --quiet -p floodlight --bin floodlight
fi
TARGET=${CARGO_TARGET_DIR:-target}
BIN=${BENCH_BIN:-$TARGET/release/floodlight}
PLAYER=$TARGET/release/floodlight-player
ulimit -n 16384 2>/dev/null || echo "note: ulimit -n is $(ulimit -n)" >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ADMIN_KEY=fl_api_bench_$(python3 -c 'import secrets; print(secrets.token_hex(20))')
dir=$(mktemp -d)
cat > "$dir/soak.toml" <<'EOF'
[transcoder]
ladder = "soak"
x264_preset = "ultrafast"
threads_per_rung = 1

[transcoder.ladders.soak]
source = true
rungs = [{ name = "180p", height = 180, bitrate_bps = 300000 }]
EOF
rtmp=$(free_port); srt=$(free_port); whip=$(free_port); transcoder=$(free_port); http=$(free_port); api=$(free_port)
FLOODLIGHT_LOG=warn FLOODLIGHT_ADMIN_KEY=$ADMIN_KEY \
FLOODLIGHT_INGEST__RTMP__LISTEN=127.0.0.1:$rtmp \
FLOODLIGHT_INGEST__SRT__LISTEN=127.0.0.1:$srt \
FLOODLIGHT_INGEST__WHIP__LISTEN=127.0.0.1:$whip \
FLOODLIGHT_TRANSCODER__LISTEN=127.0.0.1:$transcoder \
FLOODLIGHT_ORIGIN__LISTEN=127.0.0.1:$http \
FLOODLIGHT_CONTROL__LISTEN=127.0.0.1:$api \
    $BIN up --config "$dir/soak.toml" --data-dir "$dir/data" > "$dir/up.log" 2>&1 &
server=$!
children=()
trap 'kill $server "${children[@]}" 2>/dev/null || true; pkill -f "rtmp://127.0.0.1:$rtmp/" || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/healthz" >/dev/null && break; sleep 0.1; done

publish() { # key seconds: one publisher, for `seconds` or until killed
    ffmpeg -nostdin -loglevel error -re -f lavfi -i testsrc2=size=480x270:rate=30 \
        -f lavfi -i sine=frequency=440 ${2:+-t "$2"} -c:v libx264 -preset ultrafast -g 60 \
        -c:a aac -f flv "rtmp://127.0.0.1:$rtmp/live/$1" 2>> "$dir/publishers.log"
}
urls=()
for n in 0 1 2 3; do
    event=$(curl -sf -X POST "http://127.0.0.1:$api/v1/events" -H 'content-type: application/json' \
        -H "authorization: Bearer $ADMIN_KEY" -d "{\"title\":\"soak $n\"}")
    id=$(echo "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["event_id"])')
    key=$(echo "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stream_key"])')
    urls+=("http://127.0.0.1:$http/live/$id/master.m3u8")
    if [ "$n" = 0 ]; then
        # The reconnecting publisher: ends its stream every RECONNECT_SECS and comes back.
        (while true; do publish "$key" "$RECONNECT_SECS" || sleep 1; done) &
    else
        publish "$key" &
    fi
    children+=($!)
done
# Wait until every stream serves its master playlist (the ladder is planned on the first
# keyframe), then let the viewers in.
for url in "${urls[@]}"; do
    for _ in $(seq 300); do curl -sf "$url" >/dev/null && break; sleep 0.1; done
done
sleep 5

$PLAYER "${urls[@]}" --viewers "$VIEWERS" --ramp 30s --duration "${MINUTES}m" --json \
    > "$dir/swarm.json" 2> "$dir/swarm.err" &
swarm=$!
children+=($swarm)
start=$(date +%s)
ticks=$(getconf CLK_TCK)
echo "seconds,rss_mb,cpu_seconds" > "$dir/rss.csv"
while kill -0 $swarm 2>/dev/null; do
    rss=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$server/status")
    cpu=$(awk -v t="$ticks" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$server/stat")
    echo "$(($(date +%s) - start)),$rss,$cpu" >> "$dir/rss.csv"
    sleep 10
done
wait $swarm || true

kill "${children[@]}" 2>/dev/null || true
pkill -f "rtmp://127.0.0.1:$rtmp/" || true
echo "server: $BIN; $VIEWERS viewers over 4 streams for $MINUTES min; samples in $dir/rss.csv"
python3 - "$dir/rss.csv" "$((WARMUP_MIN * 60))" "$((MINUTES * 60))" <<'EOF'
import csv, statistics, sys
rows = [(int(r["seconds"]), int(r["rss_mb"]), float(r["cpu_seconds"])) for r in csv.DictReader(open(sys.argv[1]))]
# After the warm-up and before the first viewer's follow ends (the swarm then thins out).
warm = [r for r in rows if int(sys.argv[2]) <= r[0] < int(sys.argv[3])]
if len(warm) < 2:
    sys.exit("no samples between the warm-up and the end of the swarm")
median = statistics.median(r[1] for r in warm)
low, high = min(r[1] for r in warm), max(r[1] for r in warm)
pct = lambda v: 100.0 * (v - median) / median
first = statistics.median(r[1] for r in warm if r[0] < warm[0][0] + 300)
last = statistics.median(r[1] for r in warm if r[0] >= warm[-1][0] - 300)
cpu = (warm[-1][2] - warm[0][2]) / max(1, warm[-1][0] - warm[0][0])
print(f"RSS from {warm[0][0]} s to {warm[-1][0]} s: median {median:.0f} MB, min {low} MB "
      f"({pct(low):+.1f}%), max {high} MB ({pct(high):+.1f}%); median of its first 5 min "
      f"{first:.0f} MB, of its last 5 min {last:.0f} MB")
print(f"server CPU after warm-up: {100 * cpu:.0f}% of one core")
for s, rss, _ in rows[:: max(1, len(rows) // 12)]:
    print(f"  {s:>5} s  {rss} MB")
flat = abs(pct(low)) <= 10 and abs(pct(high)) <= 10
print("RSS flat within ±10% of its median" if flat else "RSS NOT flat within ±10% of its median")
EOF
python3 - "$dir/swarm.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = lambda k: "n/a" if r[k] is None else f"p50 {r[k]['p50']:.0f} / p95 {r[k]['p95']:.0f} / max {r[k]['max']:.0f} ms"
print(f"swarm: {r['viewers']} viewers, {r['clean_viewers']} clean, {r['failed_viewers']} could not follow, "
      f"{r['errors_total']} errors, {r['stalls']} stalls ({r['stall_ms']} ms), "
      f"{r['discontinuities']} discontinuities, {r['parts_fetched']} parts")
print(f"  startup {d('startup_ms')}; latency p50 per viewer {d('latency_p50_ms')}; "
      f"p95 per viewer {d('latency_p95_ms')}")
for e in r["errors"][:10]:
    print("  " + e)
EOF
