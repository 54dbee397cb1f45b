#!/usr/bin/env bash
# The main job, offline: a chat completion with the bundled chat fixture model (a tiny random
# LFM2 with a real LFM2 chat template and a small BPE tokenizer; its answers are noise, the
# pipeline is real: template, tokenizer, prefill, sampling, streaming, tool-call parsing).
# Usage: ./scripts/run.sh [saguaro run flags, e.g. --prompt "Hi" --json, or --model m.cact]
set -euo pipefail
cd "$(dirname "$0")/.."
# The main job runs natively: skip the wasmtime host (the `component` feature) and its long build.
cargo build --quiet --release --locked -p saguaro-host --no-default-features
exec target/release/saguaro run "$@"
