#!/usr/bin/env bash
# A bounded smoke run of every cargo-fuzz target (fuzz/), so that a reader regression that
# crashes shows up in the test command, not only when somebody fuzzes by hand. Each target runs
# for SAGUARO_FUZZ_SECONDS (default 20) from its seeds: the committed corpus in fuzz/corpus/<target>
# plus committed fixtures (GGUF and safetensors files from tests/fixtures). New inputs libFuzzer
# finds go to a temporary folder; the committed corpora are never modified. A crash leaves its
# input in fuzz/artifacts/<target>/ (keep it as a regression test, see fuzz/README.md).
# Installs what it needs first (idempotent): cargo-fuzz (cargo install). The sanitizer build uses
# RUSTC_BOOTSTRAP=1 on the stable toolchain.
# Ends with `test result: ok. N passed; M failed` (one per target) and a non-zero status on failure.
# Usage: ./scripts/test-fuzz.sh [TARGET ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

seconds=${SAGUARO_FUZZ_SECONDS:-20}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cact_reader gguf_reader safetensors_reader chat_parsers)
step() { printf '\n==> %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
step "build the fuzz targets (address sanitizer)"
for t in "${targets[@]}"; do cargo fuzz build --release "$t"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/saguaro-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
for t in "${targets[@]}"; do
  seeds=("$work/$t-new")
  mkdir -p "$work/$t-new" "$work/$t-fixtures"
  [ -d "corpus/$t" ] && seeds+=("corpus/$t")
  case "$t" in
    gguf_reader) cp "$root"/tests/fixtures/gguf/*.gguf "$work/$t-fixtures/" ;;
    safetensors_reader) for m in mqa-headdim hybrid-gqa; do cp "$root/tests/fixtures/$m/model.safetensors" "$work/$t-fixtures/$m.safetensors"; done ;;
    cact_reader) ;;  # fuzz/corpus/cact_reader holds converted fixtures and what earlier runs found
    chat_parsers) cp "$root"/tests/fixtures/chat/templates/*.jinja "$work/$t-fixtures/" ;;
  esac
  seeds+=("$work/$t-fixtures")
  step "$t: ${seconds}s from $(find "${seeds[@]}" -type f | wc -l) seed files"
  # -rss_limit_mb: the readers must stay bounded; -max_len: the largest seed decides by default.
  out="$work/$t.log"
  if cargo fuzz run --release "$t" "${seeds[@]}" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
      -print_final_stats=1 >"$out" 2>&1; then
    passed=$((passed + 1))
    grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$out" || true
  else
    failed=$((failed + 1))
    tail -n 80 "$out"
    echo "fuzz: $t FAILED (input saved under fuzz/artifacts/$t/)"
  fi
done

echo
if [ "$failed" -eq 0 ]; then
  echo "test result: ok. ${passed} passed; ${failed} failed"
else
  echo "test result: FAILED. ${passed} passed; ${failed} failed"
  exit 1
fi
