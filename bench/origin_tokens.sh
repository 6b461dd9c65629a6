#!/usr/bin/env bash
# What the playback token check costs the origin: requests/s of a release `floodlight
# origin` serving the same resources of two streams, one public (no check) and one whose
# descriptor says `access: token` (every request carries a token that is verified, checked
# for its event, expiry and revocation; playlists get the token written into every URI).
#
# The origin is pinned to CPU 0 and wrk to CPU 1, so they do not fight over a core. Each
# round runs wrk against the public URL, then the token URL, alternating, for each
# resource (a 40 KB part, the live-edge media playlist, the master playlist). Two figures
# per run: requests/s, and the origin's CPU time per request (its utime + stime over the
# run / requests served), which other processes on a shared machine disturb far less.
# The medians over rounds and the token/public ratios are printed. With Redis answering at 127.0.0.1:6379 the
# origin uses it as its viewer-session store, as a distributed origin would (revocation
# list copied locally, heartbeats batched).
#
# Usage: bench/origin_tokens.sh [rounds=5] [seconds=10] [connections=32]
# Needs: wrk (Debian package), python3, curl, taskset.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-10}
CONNS=${3:-32}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet -p floodlight --bin floodlight
BIN=target/release/floodlight

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
PUSH_TOKEN=bench-push-token-0123456789
SECRET=bench-secret-0123456789abcdef0123456789
dir=$(mktemp -d)

sessions=none
if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    sessions=redis
    export FLOODLIGHT_SESSIONS__REDIS_URL=redis://127.0.0.1:6379/0
    export FLOODLIGHT_SESSIONS__KEY_PREFIX="floodlight-bench-$$:"
fi
FLOODLIGHT_LOG=warn \
FLOODLIGHT_ORIGIN__LISTEN=127.0.0.1:$PORT \
FLOODLIGHT_ORIGIN__PUSH_TOKEN=$PUSH_TOKEN \
FLOODLIGHT_ORIGIN__PLAYBACK_KEYS="[\"bench:$SECRET\"]" \
FLOODLIGHT_ORIGIN__IDLE_END_SECS=3600 \
    taskset -c 0 $BIN origin > "$dir/origin.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$BASE/healthz" >/dev/null || { cat "$dir/origin.log"; exit 1; }

push() { # method path [curl args...]
    local method=$1 path=$2; shift 2
    curl -sf -o /dev/null -X "$method" -H "authorization: Bearer $PUSH_TOKEN" "$@" "$BASE/push/v1/$path"
}
head -c 40000 /dev/urandom > "$dir/part.bin"
head -c 800 /dev/urandom > "$dir/init.bin"
# Two streams with the same content: 4 segments of 10 parts (200 ms), a part of the next.
for event in pub tok; do
    access=public; [ $event = tok ] && access=token
    push PUT "$event/video" -H 'content-type: application/json' -d "{\"name\":\"video\",\"kind\":\"video\",\"codecs\":\"avc1.64001f\",\"width\":1280,\"height\":720,\"frame_rate\":30.0,\"channels\":null,\"part_target_ms\":200,\"segment_target_ms\":2000,\"access\":\"$access\"}"
    push PUT "$event/video/init/0" --data-binary "@$dir/init.bin"
    for msn in 0 1 2 3 4; do
        for part in 0 1 2 3 4 5 6 7 8 9; do
            [ $msn = 4 ] && [ $part != 0 ] && break
            end=false; [ $part = 9 ] && end=true
            query="msn=$msn&part=$part&duration=0.2&independent=$([ $part = 0 ] && echo true || echo false)&init_version=0&discontinuity=false&ends_segment=$end&last_frame_arrival_ms=0"
            [ $part = 0 ] && query="$query&program_date_time_ms=$((1700000000000 + msn * 2000))"
            push PUT "$event/video/part/$msn/$part?$query" --data-binary "@$dir/part.bin"
        done
    done
done

# An HS256 playback token for `tok`, valid for an hour (what the control plane issues).
TOKEN=$(python3 - "$SECRET" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
now = int(time.time())
header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "bench"}).encode())
claims = b64(json.dumps({"evt": "tok", "sub": "bench", "sid": "bench-session", "iat": now, "exp": now + 3600}).encode())
signature = hmac.new(sys.argv[1].encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
EOF
)
# Sanity: the token stream refuses without the token and serves with it.
[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/live/tok/video/1.2.m4s")" = 401 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/live/tok/video/1.2.m4s?token=$TOKEN")" = 200 ]
playlist=$(curl -sf "$BASE/live/tok/video/index.m3u8?token=$TOKEN")
grep -q "1.2.m4s?token=" <<<"$playlist" || { echo "the token playlist does not carry the token" >&2; exit 1; }

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
measure() { # url → "requests/s origin-CPU-µs/request"
    local before after out
    before=$(cpu_ticks)
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" "$1")
    after=$(cpu_ticks)
    if grep -q Non-2xx <<<"$out"; then echo "non-2xx answers from $1" >&2; exit 1; fi
    awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
        / requests in / { requests = $1 }
        /^Requests\/sec/ { rps = $2 }
        END { printf "%s %.2f\n", rps, ticks / hz * 1e6 / requests }' <<<"$out"
}
declare -A results
resources=(part playlist master)
declare -A paths=([part]="video/1.2.m4s" [playlist]="video/index.m3u8" [master]="master.m3u8")
for round in $(seq 1 "$ROUNDS"); do
    line="round $round:"
    for resource in "${resources[@]}"; do
        path=${paths[$resource]}
        # The public stream ignores a token: B is A's request bytes without the check.
        a="$BASE/live/pub/$path" b="$BASE/live/pub/$path?token=$TOKEN" c="$BASE/live/tok/$path?token=$TOKEN"
        # Odd rounds run A B C, even ones C B A, so a drift of the machine's load cancels.
        if ((round % 2)); then
            read -r public_rps public_cpu < <(measure "$a")
            read -r carried_rps carried_cpu < <(measure "$b")
            read -r token_rps token_cpu < <(measure "$c")
        else
            read -r token_rps token_cpu < <(measure "$c")
            read -r carried_rps carried_cpu < <(measure "$b")
            read -r public_rps public_cpu < <(measure "$a")
        fi
        results[$resource]+="$public_rps $carried_rps $token_rps $public_cpu $carried_cpu $token_cpu;"
        line="$line $resource $public_rps/$carried_rps/$token_rps req/s, $public_cpu/$carried_cpu/$token_cpu µs |"
    done
    echo "$line (public / public+token query / token stream)"
done
verified=$(curl -sf "$BASE/metrics" | awk '/^floodlight_origin_playback_tokens_verified_total/ { print $2 }')

echo "origin: release, pinned to CPU 0; wrk -t1 -c$CONNS -d${SECS}s on CPU 1; session store: $sessions"
echo "token signatures computed over the whole run: ${verified:-0} (the rest came from the cache)"
echo "medians of $ROUNDS rounds; A = public stream, B = public stream with the token in the query"
echo "(ignored: same request bytes), C = token stream with the token (checked)"
for resource in "${resources[@]}"; do
    python3 - "$resource" "${results[$resource]}" <<'EOF'
import statistics, sys
rows = [tuple(map(float, p.split())) for p in sys.argv[2].split(";") if p.strip()]
a_rps, b_rps, c_rps, a_cpu, b_cpu, c_cpu = (statistics.median(c) for c in zip(*rows))
print(f"{sys.argv[1]:>8}: req/s A {a_rps:,.0f}  B {b_rps:,.0f}  C {c_rps:,.0f}  (C/A {c_rps / a_rps:.3f}, C/B {c_rps / b_rps:.3f}) | "
      f"CPU µs/request A {a_cpu:.1f}  B {b_cpu:.1f}  C {c_cpu:.1f}  "
      f"(C vs A {(c_cpu / a_cpu - 1) * 100:+.1f}%, C vs B {(c_cpu / b_cpu - 1) * 100:+.1f}%)")
EOF
done
