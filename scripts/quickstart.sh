#!/usr/bin/env bash
# Quick start: install what is missing, build, and run everything in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --runtime
cargo build --release --bin floodlight
exec "${CARGO_TARGET_DIR:-target}/release/floodlight" up "$@"
