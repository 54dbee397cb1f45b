#!/usr/bin/env bash
# The Saguaro WASI component in Node: builds the component (scripts/build-component.sh) and the
# native `saguaro` CLI, installs jco and the WASI preview2 shim (npm ci in component-js/),
# transpiles the component with `jco transpile`, and runs component-js/test with node --test:
# logits, tokens and chat responses bit-identical to the native CLI, the pull API, errors.
# Node >= 20 and npm must be on PATH. Ends with one line
#   test result: ok. N passed; M failed        (or test result: FAILED. ...)
# and a non-zero status on failure.
# Environment: SAGUARO_COMPONENT (a built component: skip the build), SAGUARO_BIN (a native
# saguaro binary: skip its build), CARGO_TARGET_DIR (honoured).
# Usage: ./scripts/test-component-js.sh [extra node --test arguments]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

command -v node >/dev/null || { echo "test-component-js: node (>= 20) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "test-component-js: npm is required" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "test-component-js: node >= 20 is required (found $(node -v))" >&2; exit 1; }

step() { printf '\n==> %s\n' "$*"; }

target_dir="${CARGO_TARGET_DIR:-}"
if [ -z "$target_dir" ]; then
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
[ -n "$target_dir" ] || { echo "test-component-js: cannot find cargo's target directory" >&2; exit 1; }

if [ -n "${SAGUARO_COMPONENT:-}" ]; then
  component="$SAGUARO_COMPONENT"
  [ -f "$component" ] || { echo "test-component-js: SAGUARO_COMPONENT=$component does not exist" >&2; exit 1; }
else
  step "component (wasm32-wasip2)"
  # cargo rebuilds only what changed, so a stale component is never tested.
  component=$(./scripts/build-component.sh | tail -n 1)
fi

if [ -n "${SAGUARO_BIN:-}" ]; then
  bin="$SAGUARO_BIN"
else
  step "native saguaro CLI (the reference)"
  cargo build --locked -p saguaro-host --bin saguaro >&2
  bin="$target_dir/debug/saguaro"
fi
[ -x "$bin" ] || { echo "test-component-js: no saguaro binary at $bin" >&2; exit 1; }

step "jco and the WASI preview2 shim (npm ci)"
cd "$root/component-js"
npm ci --no-audit --no-fund --loglevel=error

step "jco transpile $component"
rm -rf out
npx --no-install jco transpile "$component" -o out --name saguaro --quiet

step "node --test (component vs $bin)"
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
status=0
SAGUARO_BIN="$bin" SAGUARO_ROOT="$root" SAGUARO_JCO_OUT="$root/component-js/out" \
  node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" "$@" test/ || status=$?

passed=$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
failed=$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
passed=${passed:-0}
failed=${failed:-0}
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # the runner failed without counting a test (a crash, a syntax error)
fi
echo
if [ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
  echo "test result: ok. ${passed} passed; ${failed} failed"
else
  echo "test result: FAILED. ${passed} passed; ${failed} failed"
  exit 1
fi
