#!/usr/bin/env bash
# Runs every Saguaro test on a fresh machine. Installs what it needs first (idempotent).
# Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain targets"
# saguaro-engine must build for every surface: native x86_64, aarch64, wasm32 (browser/Node)
# and wasm32-wasip2 (the component).
rustup target add wasm32-unknown-unknown wasm32-wasip2 aarch64-unknown-linux-gnu >/dev/null

step "cross-target builds of saguaro-engine"
for target in aarch64-unknown-linux-gnu wasm32-unknown-unknown wasm32-wasip2; do
  echo "  $target"
  cargo build --quiet --locked -p saguaro-engine --target "$target"
done
cargo build --quiet --locked -p saguaro-wasm --target wasm32-unknown-unknown

log=$(mktemp)
trap 'rm -f "$log"' EXIT

step "workspace tests (native)"
cargo test --locked --workspace --lib --bins --tests 2>&1 | tee "$log"

step "aarch64 kernels and end-to-end bits under qemu-user (cortex-a53, neoverse-n1, neoverse-v1, max)"
./scripts/test-aarch64.sh 2>&1 | tee -a "$log"

step "engine in wasm32 with simd128 (Node WASI): unit tests and end-to-end bits"
./scripts/test-wasm-kernels.sh 2>&1 | tee -a "$log"

# One closing line for the whole run, summed over every test binary.
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "saguaro: ${passed} passed, ${failed} failed"
