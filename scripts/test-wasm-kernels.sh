#!/usr/bin/env bash
# Runs the whole saguaro-engine unit-test suite as WebAssembly with SIMD (wasm32-wasip1,
# -C target-feature=+simd128, so Kernels::portable() is the simd128 tier and its bit-exactness
# tests against the scalar kernels run too) in Node's WASI (scripts/wasm-runner.mjs).
# Installs what it needs first (idempotent): the rustup target; Node >= 20 must be on PATH.
# Usage: [SAGUARO_WASM_RELAXED=1] ./scripts/test-wasm-kernels.sh [extra cargo test args, e.g. -- simd128]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

command -v node >/dev/null || { echo "test-wasm-kernels: node (>= 20) is required" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "test-wasm-kernels: node >= 20 is required (found $(node -v))" >&2; exit 1; }

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1 >/dev/null
fi

# proptest's default features (fork, timeout) pull in wait-timeout, which does not build for
# WASI. The tests run in a shadow workspace (target/wasm-kernels/ws) whose manifest is the real
# one with only the engine as member and proptest without those features; the engine's
# sources are the real ones (symlink). The real Cargo.toml and Cargo.lock are not touched.
ws="$root/target/wasm-kernels/ws"
mkdir -p "$ws"
ln -sfn "$root/engine" "$ws/engine"
node -e '
  const fs = require("fs");
  let s = fs.readFileSync(process.argv[1], "utf8");
  s = s.replace(/^members\s*=\s*\[[^\]]*\]/m, "members = [\"engine\"]")
       .replace(/^default-members\s*=\s*\[[^\]]*\]/m, "default-members = [\"engine\"]")
       .replace(/^exclude\s*=\s*\[[^\]]*\]/m, "")
       .replace(/^proptest\s*=.*$/m,
                "proptest = { version = \"1\", default-features = false, features = [\"std\", \"bit-set\"] }");
  fs.writeFileSync(process.argv[2], s);
' Cargo.toml "$ws/Cargo.toml"
cp Cargo.lock "$ws/Cargo.lock"

export CARGO_TARGET_DIR="$root/target"
export SAGUARO_FIXTURES_DIR="$root/tests/fixtures"
# --no-turbo-fast-api-calls: Node's WASI imports, called through V8's fast API from optimized
# code, can start a GC inside the call and corrupt the heap (nodejs/node#46777, open in Node 20
# and 22); here it showed as a SIGSEGV in Node's exit after every test had passed, at random
# with the defaults and every time with --no-wasm-tier-up. Without fast calls: no crash in
# repeated runs. They only speed up the WASI calls, which these tests barely make.
# SAGUARO_WASM_RELAXED=1: with the engine's relaxed-simd feature (the simd128+relaxed tier, the
# npm package's second build); Node 20 validates it only behind --experimental-wasm-relaxed-simd
# (later Nodes ship it and may no longer know the flag).
node_flags=(--no-warnings --no-turbo-fast-api-calls)
features=()
if [ "${SAGUARO_WASM_RELAXED:-0}" = 1 ]; then
  features=(--features relaxed-simd)
  if node --experimental-wasm-relaxed-simd -e 0 2>/dev/null; then
    node_flags+=(--experimental-wasm-relaxed-simd)
  fi
fi
export CARGO_TARGET_WASM32_WASIP1_RUNNER="node ${node_flags[*]} $root/scripts/wasm-runner.mjs"
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128"
cd "$ws"
run() { cargo test -p saguaro-engine ${features[@]+"${features[@]}"} --target wasm32-wasip1 --lib --test determinism "$@"; }
if run "$@"; then
  exit 0
fi
# Under wasm32-wasip1 a panic aborts the whole harness and libtest's captured output (the
# assertion message) is lost: run again without capture so the message is printed.
echo "test-wasm-kernels: a test failed; running again with --nocapture to show its message" >&2
case " $* " in
  *" -- "*) run "$@" --nocapture || true ;;
  *) run "$@" -- --nocapture || true ;;
esac
exit 1
