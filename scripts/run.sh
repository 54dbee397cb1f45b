#!/usr/bin/env bash
# The main job, offline: greedy generation with the bundled fixture model.
# Usage: ./scripts/run.sh [extra saguaro generate flags]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --locked -p saguaro-host
exec target/release/saguaro generate --model tests/fixtures/hybrid-gqa \
  --tokens 135,390,176,216,23,374,131,41,143,103,346,222 --max-tokens 16 --temperature 0 --json "$@"
