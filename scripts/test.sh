#!/usr/bin/env bash
# The whole test suite: unit, service and end-to-end tests (real ffmpeg publishers,
# the real floodlight binary, the LL-HLS player).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --all-targets "$@"
