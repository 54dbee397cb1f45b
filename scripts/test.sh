#!/usr/bin/env bash
# Runs every Saguaro test on a fresh machine. Installs what it needs first (idempotent): rustup
# targets, apt packages (aarch64 cross tools, qemu-user, chromium), wasm-bindgen-cli and
# cargo-fuzz, npm packages. scripts/check-fresh.sh proves that from nothing.
# Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's wall time, printed at the end (CI must stay well under 40 minutes).
timings=()
step_name="" step_start=$SECONDS
step() {
  [ -n "$step_name" ] && timings+=("$(printf '%5ds  %s' $((SECONDS - step_start)) "$step_name")")
  step_name="$*" step_start=$SECONDS
  printf '\n==> %s\n' "$*"
}

step "toolchain targets"
# saguaro-engine must build for every surface: native x86_64, aarch64, wasm32 (browser/Node)
# and wasm32-wasip2 (the component).
rustup target add wasm32-unknown-unknown wasm32-wasip2 aarch64-unknown-linux-gnu >/dev/null

# saguaro-engine builds for every surface: aarch64 (the qemu step), wasm32-unknown-unknown (the
# npm package) and wasm32-wasip2 (the component) are all built below.

log=$(mktemp)
trap 'rm -f "$log"' EXIT
target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}"

step "the WASI component (wasm32-wasip2, release): run by the host's --engine component tests"
component=$(./scripts/build-component.sh | tail -n 1)
export SAGUARO_COMPONENT="$component"

step "workspace tests (native; includes the wasmtime host running the component)"
cargo test --locked --workspace --lib --bins --tests 2>&1 | tee "$log"
# The reference CLI for the JavaScript surfaces: the build the tests above just used.
export SAGUARO_BIN="$target_dir/debug/saguaro"

step "saguaro serve with OpenAI's own Python and npm clients"
./scripts/test-server.sh 2>&1 | tee -a "$log"

step "aarch64 kernels and end-to-end bits under qemu-user (cortex-a53, neoverse-n1, neoverse-v1, max)"
./scripts/test-aarch64.sh 2>&1 | tee -a "$log"

step "engine in wasm32 with simd128 (Node WASI): unit tests and end-to-end bits"
./scripts/test-wasm-kernels.sh 2>&1 | tee -a "$log"

step "engine in wasm32 with simd128 + relaxed-simd (the npm package's second module): unit tests and end-to-end bits"
SAGUARO_WASM_RELAXED=1 ./scripts/test-wasm-kernels.sh 2>&1 | tee -a "$log"

step "fuzz targets: a ${SAGUARO_FUZZ_SECONDS:-20} s smoke run each from the committed seeds (cargo-fuzz)"
./scripts/test-fuzz.sh 2>&1 | tee -a "$log"

step "npm package: build (four wasm modules: simd128 and relaxed-simd, each single-thread and threads; wasm-bindgen, wasm-opt, TypeScript, npm pack)"
tarball=$(./scripts/build-npm.sh | tail -n 1)
export SAGUARO_NPM_TARBALL="$tarball"

step "npm package in Node (installed from the tarball), once per wasm module: against the native CLI"
./scripts/test-npm.sh --no-build 2>&1 | tee -a "$log"

step "npm package in Node: an LFM2-350M-shaped int8 model (~380 MB) in wasm32"
./scripts/test-npm.sh --no-build --big 2>&1 | tee -a "$log"

step "real text: SmolLM2-135M-Instruct (pip) in wasm (Node), native and the component"
./scripts/test-npm.sh --no-build --real 2>&1 | tee -a "$log"
# The int8 conversion it made (kept in the model's cache folder): the browser test runs it too.
SAGUARO_REAL_INT8=$(./scripts/get-model.sh smollm2 --cact int8 "$SAGUARO_BIN" | tail -n 1)
export SAGUARO_REAL_INT8

step "real text: Gemma 3 270M (pip, Q4_K_M) in wasm (Node) against native"
./scripts/test-npm.sh --no-build --gemma 2>&1 | tee -a "$log"

step "npm package in headless Chromium (worker, example app, threads on a cross-origin isolated page): against the native CLI"
./scripts/test-browser.sh 2>&1 | tee -a "$log"

step "the component transpiled by jco, in Node: against the native CLI"
./scripts/test-component-js.sh 2>&1 | tee -a "$log"

# One closing line for the whole run, summed over every test binary.
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
step "done"
echo
printf '%s\n' "${timings[@]}"
echo
echo "saguaro: ${passed} passed, ${failed} failed"
