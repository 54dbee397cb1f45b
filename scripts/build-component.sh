#!/usr/bin/env bash
# Builds the Saguaro WASI component (wasm32-wasip2, wit-bindgen guest of wit/saguaro.wit, simd128
# kernels: see .cargo/config.toml) and prints where it is and its size.
# Installs what it needs first (idempotent): the rustup target.
# Output: <target dir>/wasm32-wasip2/wasm-release/saguaro_wasm.wasm, where <target dir> is
# $CARGO_TARGET_DIR or cargo's (target/ of the workspace). The last line of stdout is the path.
# Usage: ./scripts/build-component.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2 >&2
fi

# The target directory cargo uses here (CARGO_TARGET_DIR, a config's build.target-dir, or target/).
target_dir="${CARGO_TARGET_DIR:-}"
if [ -z "$target_dir" ]; then
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
fi
[ -n "$target_dir" ] || { echo "build-component: cannot find cargo's target directory" >&2; exit 1; }

# A RUSTFLAGS variable would replace .cargo/config.toml's flags (and with them simd128).
if [ -n "${RUSTFLAGS:-}" ]; then
  case " $RUSTFLAGS " in
    *simd128*) ;;
    *) export RUSTFLAGS="$RUSTFLAGS -C target-feature=+simd128" ;;
  esac
fi

# Profile wasm-release (Cargo.toml): release code without debug info.
cargo build --profile wasm-release --locked -p saguaro-wasm --target wasm32-wasip2 >&2

wasm="$target_dir/wasm32-wasip2/wasm-release/saguaro_wasm.wasm"
[ -f "$wasm" ] || { echo "build-component: $wasm was not produced" >&2; exit 1; }
# A component starts with \0asm and layer 1 (bytes 0d 00 01 00); a core module has version 1.
if [ "$(head -c 8 "$wasm" | od -An -tx1 | tr -d ' \n')" != "0061736d0d000100" ]; then
  echo "build-component: $wasm is not a WebAssembly component" >&2
  exit 1
fi
bytes=$(wc -c <"$wasm")
echo "component: $wasm ($bytes bytes, $(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }'))" >&2
echo "$wasm"
