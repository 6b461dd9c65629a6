#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for building, running and testing Floodlight.
# Idempotent: installs only what is missing.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo (Rust >= 1.88) is required; install it with rustup (https://rustup.rs)" >&2
    exit 1
fi

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)          # publisher + decoder in tests
command -v curl >/dev/null 2>&1 || missing+=(curl)              # quick start's API call
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
