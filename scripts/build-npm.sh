#!/usr/bin/env bash
# Builds the npm package (npm/): the engine for wasm32-unknown-unknown with simd128, the
# wasm-bindgen glue (the CLI at the Cargo.lock version), wasm-opt -O3 (binaryen from npm), the
# TypeScript, and `npm pack` into npm/pack/ (or $SAGUARO_NPM_PACK_DIR).
# Installs what it needs first (idempotent): the rustup target, wasm-bindgen-cli, npm devDependencies.
# Prints the tarball's path on the last line.
# Usage: ./scripts/build-npm.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }
command -v node >/dev/null || { echo "build-npm: node (>= 20) is required" >&2; exit 1; }
command -v npm >/dev/null || { echo "build-npm: npm is required" >&2; exit 1; }

target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')}"
pack_dir="${SAGUARO_NPM_PACK_DIR:-$root/npm/pack}"

step "wasm32-unknown-unknown build of saguaro-wasm (simd128 from .cargo/config.toml)"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown >&2
fi
# Profile wasm-release (Cargo.toml): no debug info (wasm-bindgen would strip it anyway), the
# tokenizer/template/JSON crates at opt-level z, the engine at 3. RUSTFLAGS is not set: it would
# replace the simd128 and getrandom flags of .cargo/config.toml.
cargo build --profile wasm-release --locked -p saguaro-wasm --target wasm32-unknown-unknown >&2
wasm_in="$target_dir/wasm32-unknown-unknown/wasm-release/saguaro_wasm.wasm"

step "wasm-bindgen (the CLI at the Cargo.lock version)"
lock_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$lock_version" ] || { echo "build-npm: wasm-bindgen not found in Cargo.lock" >&2; exit 1; }
have_version=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have_version" != "$lock_version" ]; then
  echo "installing wasm-bindgen-cli $lock_version (found: ${have_version:-none})" >&2
  # --force: cargo's record of installed tools can outlive the binary itself.
  cargo install --force wasm-bindgen-cli --version "$lock_version" >&2
fi
glue="$target_dir/npm-glue"
rm -rf "$glue"
mkdir -p "$glue"
wasm-bindgen --target web --out-dir "$glue" --out-name saguaro_wasm "$wasm_in" >&2

step "npm ci (typescript, binaryen)"
cd "$root/npm"
npm ci --no-audit --no-fund --loglevel=error >&2

step "wasm-opt -O3 (binaryen $(./node_modules/.bin/wasm-opt --version | awk '{print $3}'))"
mkdir -p wasm
cp "$glue/saguaro_wasm.js" "$glue/saguaro_wasm.d.ts" wasm/
# The features rustc 1.95 enables for wasm32 by default, plus simd128.
features=(--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-reference-types --enable-multivalue --enable-mutable-globals)
# wasm-opt takes about a minute: reuse its output when its input has not changed.
cache="$target_dir/npm-wasm-opt"
mkdir -p "$cache"
key=$( (sha256sum "$glue/saguaro_wasm_bg.wasm"; ./node_modules/.bin/wasm-opt --version; echo "${features[*]}") | sha256sum | cut -c1-32)
if [ -f "$cache/$key.wasm" ]; then
  echo "unchanged since the last build: reusing $cache/$key.wasm" >&2
else
  rm -f "$cache"/*.wasm
  ./node_modules/.bin/wasm-opt -O3 "${features[@]}" "$glue/saguaro_wasm_bg.wasm" -o "$cache/$key.tmp"
  mv "$cache/$key.tmp" "$cache/$key.wasm"
fi
cp "$cache/$key.wasm" wasm/saguaro_wasm_bg.wasm
raw=$(wc -c < wasm/saguaro_wasm_bg.wasm)
gz=$(gzip -9 -c wasm/saguaro_wasm_bg.wasm | wc -c)
echo "saguaro_wasm_bg.wasm: $raw bytes ($(awk "BEGIN {printf \"%.2f\", $raw / 1048576}") MiB), gzip -9: $gz bytes ($(awk "BEGIN {printf \"%.2f\", $gz / 1048576}") MiB)" >&2

step "TypeScript"
rm -rf dist
./node_modules/.bin/tsc -p tsconfig.json >&2

step "npm pack"
mkdir -p "$pack_dir"
rm -f "$pack_dir"/*.tgz
tarball=$(npm pack --pack-destination "$pack_dir" --loglevel=error | tail -n 1)
echo "$pack_dir/$tarball"
