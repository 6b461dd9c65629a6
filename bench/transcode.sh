#!/usr/bin/env bash
# CPU cost of the live ABR ladder: the same ladder from the same input through Floodlight
# and through the plain ffmpeg CLI (one decode, split, scale, libx264 with the same
# settings), side by side in each run.
#   CPU-s per media-s = (user + system CPU time) / input duration, for
#     ffmpeg:     the ffmpeg process (its children's rusage), paced with -re, output -f null;
#     Floodlight: a release `floodlight up` (ingest, transcoder, packager, origin in one
#                 process), its /proc/PID/stat utime+stime from just before the publisher
#                 starts to just after the last part is out. The publisher (ffmpeg -re
#                 -c copy over RTMP) is a process of its own and is not counted;
#   ratio      = Floodlight / ffmpeg (the goal is <= 1.05);
#   latency    = per rung, frame received at ingest -> part out of the packager
#                (floodlight_transcoder_rung_latency_seconds{rung}), p50 and p99 over the
#                last minute of the run.
# Input, made once in target/bench/: 1280x720 30 fps testsrc2 with temporal noise (so x264
# has camera-like work), H.264 High, 2 s GOP, 2 B-frames, + AAC. The ladder: source
# passthrough + 480p/360p/240p (the default profile's rungs below a 720p source); audio
# is passed through on both sides. Prints one line per run and the medians.
# Usage: bench/transcode.sh [runs=3] [seconds=60]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
MEDIA_SECONDS=${2:-60}
cargo build --release --quiet -p floodlight --bins
BIN=target/release

# The ladder both sides run: name height bitrate profile. Widths keep the source aspect
# ratio, even (scale=-2:H).
RUNGS=(
    "480p 480 1400000 main"
    "360p 360 800000 main"
    "240p 240 400000 baseline"
)
PRESET=veryfast
THREADS_PER_RUNG=2
VBV_BUFFER_MS=1000
SEGMENT_SECONDS=2
FPS=30
# Floodlight's keyint safety net (EncoderSettings::keyint_max_frames): four segments.
KEYINT=$((4 * SEGMENT_SECONDS * FPS))
X264_PARAMS="scenecut=0:rc-lookahead=0:sync-lookahead=0:bframes=0:keyint=$KEYINT"

mkdir -p target/bench
INPUT=target/bench/transcode_720p30_${MEDIA_SECONDS}s.flv
if [ ! -s "$INPUT" ]; then
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=1280x720:rate=$FPS,noise=alls=12:allf=t+u" \
        -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$MEDIA_SECONDS" \
        -c:v libx264 -preset veryfast -profile:v high -bf 2 -g $((SEGMENT_SECONDS * FPS)) \
        -keyint_min $((SEGMENT_SECONDS * FPS)) -sc_threshold 0 -b:v 3000k -pix_fmt yuv420p \
        -c:a aac -b:a 128k -f flv "$INPUT"
fi

# The control API's bootstrap admin key of the bench's own throwaway server.
ADMIN_KEY=fl_api_bench_$(python3 -c 'import secrets; print(secrets.token_hex(20))')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
proc_cpu() { # user+system CPU seconds of a process
    python3 -c '
import os, sys
f = open("/proc/%s/stat" % sys.argv[1]).read().rsplit(")", 1)[1].split()
print("%.3f" % ((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")))' "$1"
}

# The ffmpeg CLI side: one decode (slice threads, as Floodlight's decoder), split, scale
# (bicubic, swscale's and Floodlight's filter), one libx264 per rung with Floodlight's
# live settings and IDRs forced every segment.
filter="[0:v]split=${#RUNGS[@]}"
for i in "${!RUNGS[@]}"; do filter+="[s$i]"; done
filter+=";"
encode=()
maps=()
for i in "${!RUNGS[@]}"; do
    read -r _ height bitrate profile <<< "${RUNGS[$i]}"
    filter+="[s$i]scale=-2:$height:flags=bicubic,format=yuv420p[o$i];"
    maps+=(-map "[o$i]")
    encode+=(-profile:v:$i "$profile" -b:v:$i "$bitrate" -maxrate:v:$i "$bitrate"
             -bufsize:v:$i $((bitrate * VBV_BUFFER_MS / 1000)))
done
ffmpeg_ladder=(ffmpeg -nostdin -hide_banner -loglevel error -re
    -thread_type slice -threads 2 -i "$INPUT" -filter_complex_threads 1
    -filter_complex "${filter%;}" "${maps[@]}" -map 0:a -c:a copy
    -c:v libx264 -preset "$PRESET" -tune zerolatency -threads:v "$THREADS_PER_RUNG"
    -forced-idr 1 -force_key_frames "expr:gte(t,n_forced*$SEGMENT_SECONDS)"
    -x264-params "$X264_PARAMS" "${encode[@]}" -f null -)

# The Floodlight side: the same ladder as a profile.
config_rungs=""
for r in "${RUNGS[@]}"; do
    read -r name height bitrate profile <<< "$r"
    config_rungs+="  { name = \"$name\", height = $height, bitrate_bps = $bitrate },"$'\n'
done

results=()
for run in $(seq 1 "$RUNS"); do
    dir=$(mktemp -d)

    ffmpeg_cpu=$(python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f" % (r.ru_utime + r.ru_stime))' "${ffmpeg_ladder[@]}")

    rtmp=$(free_port); http=$(free_port); api=$(free_port)
    cat > "$dir/floodlight.toml" <<EOF
[transcoder]
ladder = "bench"
x264_preset = "$PRESET"
threads_per_rung = $THREADS_PER_RUNG
vbv_buffer_ms = $VBV_BUFFER_MS
segment_target_ms = $((SEGMENT_SECONDS * 1000))

[transcoder.ladders.bench]
source = true
rungs = [
$config_rungs]
EOF
    FLOODLIGHT_LOG=warn FLOODLIGHT_ADMIN_KEY=$ADMIN_KEY \
    FLOODLIGHT_INGEST__RTMP__LISTEN=127.0.0.1:$rtmp \
    FLOODLIGHT_ORIGIN__LISTEN=127.0.0.1:$http \
    FLOODLIGHT_CONTROL__LISTEN=127.0.0.1:$api \
        $BIN/floodlight up --config "$dir/floodlight.toml" --data-dir "$dir" > "$dir/up.log" 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null || true' EXIT
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/healthz" >/dev/null && break; sleep 0.1; done
    event=$(curl -sf -X POST "http://127.0.0.1:$api/v1/events" -H 'content-type: application/json' \
        -H "authorization: Bearer $ADMIN_KEY" -d '{"title":"bench"}')
    id=$(echo "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["event_id"])')
    key=$(echo "$event" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stream_key"])')

    before=$(proc_cpu $server)
    ffmpeg -nostdin -hide_banner -loglevel error -re -i "$INPUT" -c copy -f flv \
        "rtmp://127.0.0.1:$rtmp/live/$key"
    # The transcoder finishes the frames it has queued and the packager closes the last
    # parts within a frame interval or two; the metrics are read before the stream ends.
    sleep 1
    curl -sf "http://127.0.0.1:$http/metrics" > "$dir/metrics.txt"
    curl -sf "http://127.0.0.1:$http/live/$id/master.m3u8" > "$dir/master.m3u8" || true
    after=$(proc_cpu $server)
    kill $server; wait $server 2>/dev/null || true
    trap - EXIT

    line=$(python3 - "$dir/metrics.txt" "$dir/master.m3u8" "$ffmpeg_cpu" "$before" "$after" \
        "$MEDIA_SECONDS" "${RUNGS[@]}" 2> "$dir/summary.txt" <<'PY'
import re, sys
metrics, master, ffmpeg_cpu, before, after, media = sys.argv[1:7]
rungs = [r.split()[0] for r in sys.argv[7:]]
ffmpeg_cpu, fl_cpu, media = float(ffmpeg_cpu), float(after) - float(before), float(media)
quantiles, shed = {}, 0.0
for line in open(metrics):
    m = re.match(r'(\w+)\{([^}]*)\} (\S+)', line)
    if not m:
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
    if m.group(1) == "floodlight_transcoder_rung_latency_seconds" and "quantile" in labels:
        quantiles[(labels.get("rung"), labels["quantile"])] = float(m.group(3)) * 1000
for line in open(metrics):
    if line.startswith("floodlight_transcoder_rungs_shed_total"):
        shed += float(line.split()[-1])
listed = re.findall(r'#EXT-X-STREAM-INF:.*RESOLUTION=(\d+x\d+)', open(master).read())
lat = " ".join("%s=%.0f/%.0f" % (r, quantiles.get((r, "0.5"), float("nan")),
                                 quantiles.get((r, "0.99"), float("nan"))) for r in rungs)
fields = [ffmpeg_cpu / media, fl_cpu / media, fl_cpu / ffmpeg_cpu]
fields += [quantiles.get((r, q), float("nan")) for r in rungs for q in ("0.5", "0.99")]
print(" ".join("%.4f" % f for f in fields))
print("ffmpeg %.3f CPU-s/media-s | floodlight %.3f | ratio %.3f | rung latency p50/p99 ms: %s "
      "| renditions %s | rungs shed %d" % (*fields[:3], lat, ",".join(listed), shed),
      file=sys.stderr)
PY
    )
    echo "run $run: $(cat "$dir/summary.txt")"
    results+=("$line")
    rm -rf "$dir"
done

printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
rungs = sys.argv[1:]
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
lat = " ".join("%s=%.0f/%.0f" % (r, med[3 + 2 * i], med[4 + 2 * i]) for i, r in enumerate(rungs))
print("median of %d runs: ffmpeg %.3f CPU-s/media-s, floodlight %.3f, ratio %.3f | rung latency p50/p99 ms: %s"
      % (len(rows), med[0], med[1], med[2], lat))
' $(for r in "${RUNGS[@]}"; do echo "${r%% *}"; done)
