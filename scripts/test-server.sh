#!/usr/bin/env bash
# `saguaro serve` tested with OpenAI's own clients, which nobody here wrote: the `openai` Python
# package (installed with pip into a venv under cargo's target folder, not committed) and the
# `openai` npm package (npm ci in tests/server/js, from its committed package-lock.json). Each
# suite starts its own server on 127.0.0.1 (an OS-picked port) with the chat fixture model and
# compares greedy answers with `saguaro complete`. Installs what it needs (idempotent).
# Ends with one line
#   test result: ok. N passed; M failed        (or test result: FAILED. ...)
# and a non-zero status on failure.
# Environment: SAGUARO_BIN (a native saguaro binary: skip its build), CARGO_TARGET_DIR (honoured).
# Usage: ./scripts/test-server.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# The versions the suites were written against (the npm one is pinned by its lockfile too).
OPENAI_PY_VERSION=3.60.0

step() { printf '\n==> %s\n' "$*"; }

command -v python3 >/dev/null || { echo "test-server: python3 is required" >&2; exit 1; }
command -v node >/dev/null || { echo "test-server: node (>= 20) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "test-server: npm is required" >&2; exit 1; }

target_dir="${CARGO_TARGET_DIR:-}"
if [ -z "$target_dir" ]; then
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
[ -n "$target_dir" ] || { echo "test-server: cannot find cargo's target directory" >&2; exit 1; }

if [ -n "${SAGUARO_BIN:-}" ]; then
  bin="$SAGUARO_BIN"
else
  step "native saguaro CLI (the server and the reference)"
  # The server is part of every build; the wasmtime host is not needed here.
  cargo build --locked -p saguaro-host --no-default-features --bin saguaro >&2
  bin="$target_dir/debug/saguaro"
fi
[ -x "$bin" ] || { echo "test-server: no saguaro binary at $bin" >&2; exit 1; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

step "the openai Python package $OPENAI_PY_VERSION (venv in $target_dir/server-venv)"
venv="$target_dir/server-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_PY_VERSION')" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "openai==$OPENAI_PY_VERSION"
fi

step "the openai npm package (npm ci in tests/server/js)"
(cd tests/server/js && npm ci --no-audit --no-fund --loglevel=error)

passed=0
failed=0

step "Python: unittest with the openai client"
py_log=$(mktemp)
tap=$(mktemp)
trap 'rm -f "$py_log" "$tap"' EXIT
py_status=0
SAGUARO_BIN="$bin" SAGUARO_ROOT="$root" "$venv/bin/python" -m unittest -v tests/server/python/test_openai_client.py 2>&1 |
  tee "$py_log" || py_status=$?
py_run=$(sed -n 's/^Ran \([0-9][0-9]*\) tests\{0,1\} in .*/\1/p' "$py_log" | tail -n 1)
# unittest's "FAILED (failures=1, errors=2)": the sum (grep finds nothing when all passed).
py_bad=$( (sed -n 's/^FAILED (\(.*\))$/\1/p' "$py_log" | grep -Eo '[0-9]+' || true) | awk '{s+=$1} END {print s+0}')
py_run=${py_run:-0}
if [ "$py_status" -ne 0 ] && [ "$py_bad" -eq 0 ]; then py_bad=1; fi
passed=$((passed + py_run - (py_bad > py_run ? py_run : py_bad)))
failed=$((failed + py_bad))

step "Node: node --test with the openai client"
js_status=0
(cd tests/server/js && SAGUARO_BIN="$bin" SAGUARO_ROOT="$root" \
  node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" test/) || js_status=$?
js_pass=$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
js_fail=$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$tap" | tail -n 1)
js_pass=${js_pass:-0}
js_fail=${js_fail:-0}
if [ "$js_status" -ne 0 ] && [ "$js_fail" -eq 0 ]; then js_fail=1; fi
passed=$((passed + js_pass))
failed=$((failed + js_fail))

echo
if [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]; then
  echo "test result: ok. ${passed} passed; ${failed} failed"
else
  echo "test result: FAILED. ${passed} passed; ${failed} failed"
  exit 1
fi
