#!/usr/bin/env bash
# Builds llama.cpp's command-line tools (llama-bench, llama-tokenize, llama-cli) for side-by-side
# measurements and reference checks. The source is the llama.cpp that the llama-cpp-python sdist
# vendors, fetched with pip (`pip download --no-binary llama-cpp-python`: the sdist of that package only, so its build tools come as wheels); nothing of it is committed.
# Idempotent: an existing build is reused. Prints the folder holding the binaries on the last line.
#
# Usage: benches/llamacpp/build.sh [TARGET ...]     (default targets: llama-bench llama-tokenize)
# Environment: LLAMACPP_DIR (default /work/llamacpp: the sdist and its source), LLAMACPP_BUILD
# (default $LLAMACPP_DIR/build), PYTHON (default /work/pyenv/bin/python if present, else python3).
set -euo pipefail

LCPP_PY_VERSION=0.3.36   # vendors llama.cpp 0c1e57098 (with the lfm2 and lfm2moe architectures)
LLAMACPP_DIR=${LLAMACPP_DIR:-/work/llamacpp}
build=${LLAMACPP_BUILD:-$LLAMACPP_DIR/build}
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/pyenv/bin/python ]; then PYTHON=/work/pyenv/bin/python; else PYTHON=python3; fi
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(llama-bench llama-tokenize)
log() { echo "[llamacpp] $*" >&2; }

src=$LLAMACPP_DIR/llama_cpp_python-$LCPP_PY_VERSION/vendor/llama.cpp
if [ ! -f "$src/CMakeLists.txt" ]; then
  mkdir -p "$LLAMACPP_DIR"
  sdist=$LLAMACPP_DIR/llama_cpp_python-$LCPP_PY_VERSION.tar.gz
  if [ ! -f "$sdist" ]; then
    log "pip download llama-cpp-python==$LCPP_PY_VERSION (sdist)"
    "$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$LLAMACPP_DIR" \
      "llama-cpp-python==$LCPP_PY_VERSION" >&2
  fi
  [ -f "$sdist" ] || { echo "llamacpp: pip did not produce $sdist" >&2; exit 1; }
  tar -xzf "$sdist" -C "$LLAMACPP_DIR"
fi

missing=()
for t in "${targets[@]}"; do [ -x "$build/bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  cmake=$(command -v cmake || true)
  if [ -z "$cmake" ]; then
    # cmake from its wheel, in a venv of our own (PYTHON may be a bare name or a pyenv shim,
    # whose scripts folder is not next to it).
    tools=$LLAMACPP_DIR/tools-venv
    if [ ! -x "$tools/bin/cmake" ]; then
      "$PYTHON" -m venv "$tools" >&2
      "$tools/bin/python" -m pip install --quiet cmake >&2
    fi
    cmake=$tools/bin/cmake
  fi
  log "building ${missing[*]} in $build"
  "$cmake" -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
  "$cmake" --build "$build" --target "${missing[@]}" -j"$(nproc)" >&2
fi
echo "$build/bin"
