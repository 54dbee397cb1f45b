#!/usr/bin/env bash
# Quantization quality on real models (issue 13): a real GGUF (scripts/get-model.sh, pip)
# converted to f32 (the dequantized GGUF weights: the reference), f16, int8 and int4;
# last-position logits of 20 prompts compared with the f32 ones (quant-quality.mjs). Prints the
# Markdown table recorded in docs/quantization.md.
#   smollm2  SmolLM2-135M-Instruct, Q4_1 GGUF: prompts in its ChatML chat template
#   gemma3   Gemma 3 270M (base), Q4_K_M GGUF (Q4_K and Q6_K blocks): plain-text prompts after BOS
#   smollm2-q4_0  SmolLM2's GGUF requantized to Q4_0 (requant_gguf.py, in a venv with the PyPI
#            packages gguf and numpy): int4 should hold its weights exactly (issue 15, item 6)
# Usage: benches/quality/run.sh [smollm2|gemma3|smollm2-q4_0]   (default smollm2; needs node; builds the
#        release CLI and the npm package when they are missing; SAGUARO_BIN / SAGUARO_NPM_TARBALL
#        to use given ones)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

name=${1:-smollm2}
case "$name" in
  smollm2|smollm2-q4_0) format=chatml ;;
  gemma3) format=plain ;;
  *) echo "usage: benches/quality/run.sh [smollm2|gemma3|smollm2-q4_0]" >&2; exit 2 ;;
esac
gguf=$(./scripts/get-model.sh "${name%-q4_0}" | tail -n 1)
if [ "$name" = smollm2-q4_0 ]; then
  venv=${SAGUARO_CACHE:-$HOME/.cache/saguaro}/venv-gguf
  if ! "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet gguf numpy
  fi
  q4_0=${gguf%.Q4_1.gguf}.Q4_0.gguf
  [ -f "$q4_0" ] || "$venv/bin/python" benches/quality/requant_gguf.py "$gguf" "$q4_0"
  gguf=$q4_0
fi
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
# The ids the GGUF puts before a prompt (BOS where its add_bos_token says so).
prefix=$("$bin" tokenize --model "$gguf" --prompt "")
echo "$(basename "$gguf"), $(date -u +%Y-%m-%d), saguaro $(git rev-parse --short HEAD)"
(cd "$work" && node quant-quality.mjs --format "$format" --prefix "$prefix" f32.cact f16=f16.cact int8=int8.cact int4=int4.cact)
