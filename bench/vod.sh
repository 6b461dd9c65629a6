#!/usr/bin/env bash
# Issue 11's archive and live → VOD figures, on a release `floodlight up` with the default
# ladder (a 1280x720 publisher: source + 480p + 360p + 240p + audio):
#   archive lag  floodlight_archive_lag_seconds (a segment's completion at the origin to its
#                object and index record stored), p50/p99 of the exporter's rolling summary
#                (the last ~60 s) scraped every 60 s while publishing; and, over every
#                segment of the run, the segment object's mtime minus its media end
#                (PROGRAM-DATE-TIME + duration on the ingest clock): the live edge to the
#                archive, transcoding and part close included;
#   frame asset  a `frame` asset of 60 s of that real publish: POST → ready (wall clock,
#                and finished_at − created_at), and the server's CPU seconds over it
#                (/proc/PID/stat utime+stime before the POST and after ready);
#   ffmpeg       re-encoding the same 60 s with the ffmpeg CLI, every rendition at its
#                bit rate (video: libx264 veryfast, audio: AAC), from the matching
#                `segment` asset's VOD playlists; CPU = user+system of /usr/bin/time -v;
#   1 h segment  after the runs: the last run's event is lengthened to HOUR_SECS of
#                archive with copies of its own archived segments (archive/examples/
#                extend_archive.rs, through the archive's own ArchiveWriter), the server is
#                restarted on the same data dir, and three `segment` assets of 3600 s are
#                timed POST → ready.
# Each run publishes PUBLISH_SECS of a pre-encoded 720p30 file (made once in target/bench/:
# testsrc2 with temporal noise, H.264 High, 2 B-frames, 2 s GOP, 3 Mb/s, AAC 128 kb/s) in
# real time with ffmpeg -re -c copy over RTMP. Prints one line per run and the medians.
# Usage: [BENCH_BIN=path] [PUBLISH_SECS=120] [HOUR_SECS=3700] bench/vod.sh [runs=3]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
PUBLISH_SECS=${PUBLISH_SECS:-120}
HOUR_SECS=${HOUR_SECS:-3700}
# The frame asset's range: RANGE_SECS from FRAME_START_SECS (plus 17 ms, so the start is
# inside a frame) after the event's first archived segment.
RANGE_SECS=60
FRAME_START_SECS=30.017
# Renditions of the default ladder below a 720p source and the bit rates the ffmpeg CLI
# re-encodes them at: the publisher's 3 Mb/s for `source`, the ladder's for the rungs.
RENDITIONS=(
    "source video 3000000"
    "480p video 1400000"
    "360p video 800000"
    "240p video 400000"
    "audio audio 128000"
)

# BENCH_BIN: another build's floodlight to measure (an A/B run), instead of building this
# one (not FLOODLIGHT_…: the binary reads every FLOODLIGHT_* variable as configuration).
if [ -z "${BENCH_BIN:-}" ]; then
    cargo build --release --quiet -p floodlight --bin floodlight
fi
cargo build --release --quiet -p floodlight-archive --example extend_archive
TARGET=${CARGO_TARGET_DIR:-target}
BIN=${BENCH_BIN:-$TARGET/release/floodlight}
EXTEND=$TARGET/release/examples/extend_archive

mkdir -p target/bench
INPUT=target/bench/vod_720p30_${PUBLISH_SECS}s.flv
if [ ! -s "$INPUT" ]; then
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=1280x720:rate=30,noise=alls=12:allf=t+u" \
        -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$PUBLISH_SECS" \
        -c:v libx264 -preset veryfast -profile:v high -bf 2 -g 60 -keyint_min 60 \
        -sc_threshold 0 -b:v 3000k -maxrate 3000k -bufsize 3000k -pix_fmt yuv420p \
        -c:a aac -b:a 128k -f flv "$INPUT"
fi

ADMIN_KEY=fl_api_bench_$(python3 -c 'import secrets; print(secrets.token_hex(20))')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
proc_cpu() { # user+system CPU seconds of a process
    python3 -c '
import os, sys
f = open("/proc/%s/stat" % sys.argv[1]).read().rsplit(")", 1)[1].split()
print("%.3f" % ((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")))' "$1"
}
server=
trap '[ -n "$server" ] && kill $server 2>/dev/null || true' EXIT

start_server() { # data_dir: starts `floodlight up` on fresh ports; sets server, rtmp, http, api
    rtmp=$(free_port); http=$(free_port); api=$(free_port)
    FLOODLIGHT_LOG=info FLOODLIGHT_ADMIN_KEY=$ADMIN_KEY \
    FLOODLIGHT_TRANSCODER__RECONNECT_GRACE_SECS=2 FLOODLIGHT_CONTROL__RECONNECT_GRACE_SECS=2 \
    FLOODLIGHT_INGEST__RTMP__LISTEN=127.0.0.1:$rtmp \
    FLOODLIGHT_INGEST__SRT__LISTEN=127.0.0.1:$(free_port) \
    FLOODLIGHT_INGEST__WHIP__LISTEN=127.0.0.1:$(free_port) \
    FLOODLIGHT_TRANSCODER__LISTEN=127.0.0.1:$(free_port) \
    FLOODLIGHT_ORIGIN__LISTEN=127.0.0.1:$http \
    FLOODLIGHT_CONTROL__LISTEN=127.0.0.1:$api \
        $BIN up --data-dir "$1" >> "$1.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$api/healthz" >/dev/null && break; sleep 0.1; done
}
stop_server() {
    kill $server; wait $server 2>/dev/null || true
    server=
}

# make_asset PRECISION START_MS END_MS: POST /v1/assets, poll GET every 20 ms until
# ready; prints one JSON line (wall seconds, the job's own times, the playback URL).
make_asset() {
    python3 - "http://127.0.0.1:$api" "$ADMIN_KEY" "$event_id" "$@" <<'PY'
import datetime, json, sys, time, urllib.request
api, key, event, precision, start_ms, end_ms = sys.argv[1:7]
iso = lambda ms: datetime.datetime.fromtimestamp(int(ms) / 1000, datetime.timezone.utc) \
    .isoformat(timespec="milliseconds").replace("+00:00", "Z")
def call(method, path, body=None):
    request = urllib.request.Request(api + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": "Bearer " + key, "content-type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)
t0 = time.monotonic()
asset = call("POST", "/v1/assets", {"title": "bench " + precision, "precision": precision,
    "source": {"event_id": event, "start": iso(start_ms), "end": iso(end_ms)}})
while asset["state"] in ("queued", "processing"):
    time.sleep(0.02)
    asset = call("GET", "/v1/assets/" + asset["asset_id"])
wall = time.monotonic() - t0
if asset["state"] != "ready":
    sys.exit("asset %s: %s" % (asset["asset_id"], json.dumps(asset)))
ts = lambda k: datetime.datetime.fromisoformat(asset[k].replace("Z", "+00:00")).timestamp()
print(json.dumps({"wall_s": wall, "job_s": ts("finished_at") - ts("created_at"),
    "run_s": ts("finished_at") - ts("started_at"), "duration_s": asset.get("duration_s"),
    "hls": asset["playback"]["hls"], "asset_id": asset["asset_id"]}))
PY
}
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# The event's first archived PDT (ms), from the source rendition's index (docs/archive.md).
first_pdt() {
    python3 - "$1/archive/v1/events/$2/renditions/source/index" <<'PY'
import json, os, sys
chunk = min(int(n.split(".")[0]) for n in os.listdir(sys.argv[1]) if n.endswith(".jsonl"))
for line in list(open(os.path.join(sys.argv[1], "%d.jsonl" % chunk)))[1:]:
    r = json.loads(line)
    if not r["gap"]:
        print(r["program_date_time_ms"]); break
PY
}

results=()
for run in $(seq 1 "$RUNS"); do
    dir=$(mktemp -d)
    data=$dir/data
    start_server "$data"
    event=$(curl -sf -X POST "http://127.0.0.1:$api/v1/events" -H 'content-type: application/json' \
        -H "authorization: Bearer $ADMIN_KEY" -d '{"title":"vod bench"}')
    event_id=$(jget "$event" event_id)
    key=$(jget "$event" stream_key)

    # 1. Archive lag while publishing, scraped every 60 s (the summary's window).
    ffmpeg -nostdin -hide_banner -loglevel error -re -i "$INPUT" -c copy -f flv \
        "rtmp://127.0.0.1:$rtmp/live/$key" &
    publisher=$!
    : > "$dir/lag.txt"
    t=0
    while kill -0 $publisher 2>/dev/null; do
        sleep 1; t=$((t + 1))
        if [ $((t % 60)) = 0 ]; then
            curl -sf "http://127.0.0.1:$http/metrics" | grep '^floodlight_archive_lag_seconds' \
                | sed "s/^/t=$t /" >> "$dir/lag.txt" || true
        fi
    done
    wait $publisher
    curl -sf "http://127.0.0.1:$http/metrics" | grep '^floodlight_archive_lag_seconds' \
        | sed "s/^/t=end /" >> "$dir/lag.txt" || true
    for _ in $(seq 100); do
        state=$(curl -sf "http://127.0.0.1:$api/v1/events/$event_id" \
            -H "authorization: Bearer $ADMIN_KEY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
        [ "$state" = ended ] && break
        sleep 0.2
    done
    sleep 2
    lag=$(python3 - "$dir/lag.txt" "$data/archive/v1/events/$event_id/renditions" <<'PY'
import json, os, re, statistics, sys
windows = {}
for line in open(sys.argv[1]):
    m = re.match(r't=(\S+) floodlight_archive_lag_seconds\{quantile="([^"]+)"\} (\S+)', line)
    if m:
        windows.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3)) * 1000
    m = re.match(r't=(\S+) floodlight_archive_lag_seconds_(sum|count) (\S+)', line)
    if m:
        windows.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
full = [w for t, w in windows.items() if t != "end" and "0.5" in w]
last = windows.get("end", {})
mean = 1000 * last.get("sum", 0) / max(1, last.get("count", 0))
# Over every segment: object mtime - (PDT + duration), the live edge to the stored object.
edge = []
for rendition in os.listdir(sys.argv[2]):
    index = os.path.join(sys.argv[2], rendition, "index")
    for chunk in os.listdir(index):
        if not chunk.endswith(".jsonl"):
            continue
        for line in list(open(os.path.join(index, chunk)))[1:]:
            r = json.loads(line)
            if r["gap"]:
                continue
            seg = os.path.join(sys.argv[2], rendition, "segments", "%d.m4s" % r["msn"])
            end_ms = r["program_date_time_ms"] + r["duration_90k"] / 90
            edge.append(os.stat(seg).st_mtime_ns / 1e6 - end_ms)
edge.sort()
q = lambda p: edge[min(len(edge) - 1, int(p * len(edge)))]
print("%.2f %.2f %.2f %.0f %.1f %.1f %d" % (
    statistics.median(w["0.5"] for w in full) if full else float("nan"),
    max(w["0.99"] for w in full) if full else float("nan"),
    mean, last.get("count", 0), q(0.5), q(0.99), len(edge)))
PY
    )

    # 2. A frame asset of RANGE_SECS, and a segment asset of the same range to re-encode.
    first=$(first_pdt "$data" "$event_id")
    start_ms=$(python3 -c "print(int($first + $FRAME_START_SECS * 1000))")
    end_ms=$((start_ms + RANGE_SECS * 1000))
    before=$(proc_cpu $server)
    frame=$(make_asset frame "$start_ms" "$end_ms")
    after=$(proc_cpu $server)
    frame_cpu=$(python3 -c "print('%.2f' % ($after - $before))")
    segment=$(make_asset segment "$start_ms" "$end_ms")
    base=$(jget "$segment" hls); base=${base%master.m3u8}

    # 3. The ffmpeg CLI re-encoding the whole range, every rendition at its bit rate.
    ffmpeg_cpu=0
    for r in "${RENDITIONS[@]}"; do
        read -r name kind rate <<< "$r"
        playlist=$(curl -sf "${base}$name/index.m3u8")
        offset=$(echo "$playlist" | python3 -c '
import datetime, sys
for line in sys.stdin:
    if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
        at = datetime.datetime.fromisoformat(line.split(":", 1)[1].strip().replace("Z", "+00:00"))
        print("%.3f" % (int(sys.argv[1]) / 1000 - at.timestamp())); break' "$start_ms")
        if [ "$kind" = video ]; then
            codec=(-map 0:v:0 -c:v libx264 -preset veryfast -b:v "$rate" -maxrate "$rate" -bufsize "$rate" -an)
        else
            codec=(-map 0:a:0 -c:a aac -b:a "$rate" -vn)
        fi
        /usr/bin/time -v -o "$dir/time_$name.txt" ffmpeg -nostdin -hide_banner -loglevel error \
            -i "${base}$name/index.m3u8" -ss "$offset" -t "$RANGE_SECS" "${codec[@]}" -f null - \
            2> "$dir/ffmpeg_$name.err"
        cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$dir/time_$name.txt")
        # The null muxer's "non monotonically increasing dts" lines: the publisher's RTMP
        # timestamps are whole milliseconds (33/33/34 ms), which most likely collide when
        # the CLI rounds them to x264's 1/30 s time base; every frame is still encoded.
        # Counted, not printed.
        echo "  ffmpeg $name: $cpu CPU-s (from $offset s into the segment asset;" \
            "$(grep -c 'non monotonically' "$dir/ffmpeg_$name.err" || true) dts warnings," \
            "$(grep -vc 'non monotonically' "$dir/ffmpeg_$name.err" || true) other stderr lines)" >&2
        ffmpeg_cpu=$(python3 -c "print('%.2f' % ($ffmpeg_cpu + $cpu))")
    done
    stop_server

    read -r lag50 lag99 lagmean lagn edge50 edge99 edgen <<< "$lag"
    frame_wall=$(jget "$frame" wall_s); frame_job=$(jget "$frame" job_s)
    ratio=$(python3 -c "print('%.3f' % ($frame_cpu / $ffmpeg_cpu))")
    echo "run $run: archive lag p50 ${lag50} ms / p99 ${lag99} ms (metric, $lagn segments, mean $lagmean ms);" \
        "live edge → stored p50 $edge50 / p99 $edge99 ms ($edgen segments);" \
        "frame asset 60 s: ready in $(printf %.2f "$frame_wall") s wall, job $(printf %.2f "$frame_job") s, CPU $frame_cpu s;" \
        "ffmpeg re-encode CPU $ffmpeg_cpu s; ratio $ratio"
    results+=("$lag50 $lag99 $edge50 $edge99 $frame_wall $frame_job $frame_cpu $ffmpeg_cpu $ratio")
    last_dir=$dir
    last_event=$event_id
    [ "$run" = "$RUNS" ] || rm -rf "$dir"
done

printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
m = [statistics.median(c) for c in zip(*rows)]
print("median of %d runs: archive lag p50 %.2f ms / p99 %.2f ms; live edge → stored p50 %.1f / p99 %.1f ms; "
      "frame asset ready %.2f s wall (job %.2f s), CPU %.2f s; ffmpeg CPU %.2f s; ratio %.3f" % (len(rows), *m))'

# 4. A `segment` asset of an hour: the last run's event lengthened to HOUR_SECS of archive
# with copies of its own segments (floodlight stopped meanwhile), then the server again.
event_id=$last_event
data=$last_dir/data
"$EXTEND" "$data" "$event_id" "$HOUR_SECS" | tee "$last_dir/extend.json"
start_server "$data"
first=$(first_pdt "$data" "$event_id")
hour=()
for i in 1 2 3; do
    start_ms=$((first + i * 10000 + 17))
    asset=$(make_asset segment "$start_ms" $((start_ms + 3600 * 1000)))
    echo "segment asset of 3600 s #$i: ready in $(printf %.3f "$(jget "$asset" wall_s)") s wall," \
        "job (finished_at − created_at) $(printf %.3f "$(jget "$asset" job_s)") s," \
        "duration $(jget "$asset" duration_s) s"
    hour+=("$(jget "$asset" wall_s) $(jget "$asset" job_s)")
done
stop_server
printf '%s\n' "${hour[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
m = [statistics.median(c) for c in zip(*rows)]
print("median of %d: 1 h segment asset ready in %.3f s wall, job %.3f s" % (len(rows), *m))'
rm -rf "$last_dir"
