#!/usr/bin/env bash
# Quantization quality on a real model (issue 13): SmolLM2-135M-Instruct's Q4_1 GGUF
# (scripts/get-smollm2.sh, pip) converted to f32 (the dequantized GGUF weights: the reference),
# f16, int8 and int4; last-position logits of 20 chat prompts compared with the f32 ones
# (quant-quality.mjs). Prints the Markdown table recorded in docs/quantization.md.
# Usage: benches/quality/run.sh    (needs node; builds the release CLI and the npm package when
#        they are missing; SAGUARO_BIN / SAGUARO_NPM_TARBALL to use given ones)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

gguf=$(./scripts/get-smollm2.sh | tail -n 1)
bin=${SAGUARO_BIN:-}
if [ -z "$bin" ]; then
  cargo build --quiet --release --locked -p saguaro-host --no-default-features
  bin=target/release/saguaro
fi
tarball=${SAGUARO_NPM_TARBALL:-$(ls -t npm/pack/*.tgz 2>/dev/null | head -n 1 || true)}
[ -n "$tarball" ] || tarball=$(./scripts/build-npm.sh | tail -n 1)
tarball=$(realpath "$tarball")

work=$(mktemp -d "${TMPDIR:-/tmp}/saguaro-quality.XXXXXX")
trap 'rm -rf "$work"' EXIT
for q in f32 f16 int8 int4; do
  "$bin" convert "$gguf" -o "$work/$q.cact" --quant "$q" --quiet
done
cp benches/quality/quant-quality.mjs "$work/"
(cd "$work" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error "$tarball" >/dev/null)
echo "SmolLM2-135M-Instruct.Q4_1.gguf, $(date -u +%Y-%m-%d), saguaro $(git rev-parse --short HEAD)"
(cd "$work" && node quant-quality.mjs f32.cact f16=f16.cact int8=int8.cact int4=int4.cact)
