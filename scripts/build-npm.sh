#!/usr/bin/env bash
# Builds the npm package (npm/): the engine for wasm32-unknown-unknown with simd128, the
# wasm-bindgen glue (the CLI at the Cargo.lock version), wasm-opt -O3 (binaryen from npm), the
# TypeScript, and `npm pack` into npm/pack/ (or $SAGUARO_NPM_PACK_DIR).
# Two wasm files share one glue: saguaro_wasm_bg.wasm (simd128) and saguaro_wasm_relaxed_bg.wasm
# (the engine's relaxed-simd feature: 8-bit dot products in the INT4 GEMM), which the package
# loads where the runtime validates relaxed-simd (npm/src/core.ts). Two more share another glue,
# saguaro_wasm_threads.js: saguaro_wasm_threads_bg.wasm and saguaro_wasm_threads_relaxed_bg.wasm
# have shared memory (the atomics feature) and run their work on Web Workers or Node worker
# threads (wasm/src/web/threads.rs).
# Installs what it needs first (idempotent): the rustup target and rust-src, wasm-bindgen-cli,
# npm devDependencies.
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
# The relaxed build (another cargo feature set: the engine and this crate build again) is kept
# apart from the plain one, which cargo would overwrite.
wasm_relaxed_in="$target_dir/npm-relaxed/saguaro_wasm.wasm"
mkdir -p "$(dirname "$wasm_relaxed_in")"
cp "$wasm_in" "$target_dir/npm-relaxed/plain.wasm"
cargo build --profile wasm-release --locked -p saguaro-wasm --target wasm32-unknown-unknown --features relaxed-simd >&2
cp "$wasm_in" "$wasm_relaxed_in"
cp "$target_dir/npm-relaxed/plain.wasm" "$wasm_in"

step "the threads build (shared memory: std rebuilt with atomics)"
# Shared memory needs every object compiled with the atomics feature, std included, and the
# only way to rebuild std is cargo's -Zbuild-std. It is unstable: RUSTC_BOOTSTRAP=1 allows it on
# the project's own stable compiler (the same rustc and LLVM as every other build, so the same
# kernels), for this one build only; rustup's rust-src component holds std's sources. The flags
# replace .cargo/config.toml's for this build (the getrandom cfg is repeated); the linker flags
# are those of wasm-bindgen's threads support: a shared, imported memory of up to 4 GiB and the
# TLS symbols its start function uses for each new thread. Its own target folder keeps the
# std-less builds' caches intact.
if ! rustup component list --installed | grep -q '^rust-src'; then
  rustup component add rust-src >&2
fi
threads_flags=(-C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals --cfg 'getrandom_backend="wasm_js"'
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align
  -C link-arg=--export=__tls_base)
build_threads() { # [cargo flags]
  RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="${threads_flags[*]}" \
    cargo build --profile wasm-release --locked -p saguaro-wasm --target wasm32-unknown-unknown \
    -Zbuild-std=panic_abort,std --target-dir "$target_dir/wasm-threads" "$@" >&2
}
# Twice, as the single-thread modules: without and with relaxed-simd (only the engine and this
# crate build again; std and the other crates are shared).
threads_out="$target_dir/wasm-threads/wasm32-unknown-unknown/wasm-release/saguaro_wasm.wasm"
wasm_threads_in="$target_dir/wasm-threads/plain.wasm"
wasm_threads_relaxed_in="$target_dir/wasm-threads/relaxed.wasm"
build_threads --features relaxed-simd
cp "$threads_out" "$wasm_threads_relaxed_in"
build_threads
cp "$threads_out" "$wasm_threads_in"

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
rm -rf "$glue-relaxed"
mkdir -p "$glue-relaxed"
wasm-bindgen --target web --out-dir "$glue-relaxed" --out-name saguaro_wasm "$wasm_relaxed_in" >&2
rm -rf "$glue-threads"
mkdir -p "$glue-threads"
wasm-bindgen --target web --out-dir "$glue-threads" --out-name saguaro_wasm_threads "$wasm_threads_in" >&2
grep -q 'shared: *true' "$glue-threads/saguaro_wasm_threads.js" \
  || { echo "build-npm: the threads build's glue makes no shared memory (were the atomics flags applied?)" >&2; exit 1; }
rm -rf "$glue-threads-relaxed"
mkdir -p "$glue-threads-relaxed"
wasm-bindgen --target web --out-dir "$glue-threads-relaxed" --out-name saguaro_wasm_threads "$wasm_threads_relaxed_in" >&2
cmp -s "$glue-threads/saguaro_wasm_threads.js" "$glue-threads-relaxed/saguaro_wasm_threads.js" \
  || { echo "build-npm: the relaxed threads build's wasm-bindgen glue differs from the threads one's" >&2; exit 1; }
# One glue serves both single-thread modules: the builds differ only inside the GEMM, never in what they
# import or export.
cmp -s "$glue/saguaro_wasm.js" "$glue-relaxed/saguaro_wasm.js" \
  || { echo "build-npm: the relaxed build's wasm-bindgen glue differs from the plain one's" >&2; exit 1; }

step "npm ci (typescript, binaryen)"
cd "$root/npm"
npm ci --no-audit --no-fund --loglevel=error >&2

step "wasm-opt -O3 (binaryen $(./node_modules/.bin/wasm-opt --version | awk '{print $3}'))"
mkdir -p wasm
cp "$glue/saguaro_wasm.js" "$glue/saguaro_wasm.d.ts" wasm/
cp "$glue-threads/saguaro_wasm_threads.js" "$glue-threads/saguaro_wasm_threads.d.ts" wasm/
# The features rustc 1.95 enables for wasm32 by default, plus simd128.
features=(--enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext
  --enable-reference-types --enable-multivalue --enable-mutable-globals)
# wasm-opt takes about a minute per module: reuse its output when its input has not changed.
cache="$target_dir/npm-wasm-opt"
mkdir -p "$cache"
# optimize IN OUT [extra wasm-opt flags]
optimize() {
  local key
  key=$( (sha256sum "$1"; ./node_modules/.bin/wasm-opt --version; echo "${features[*]} ${*:3}") | sha256sum | cut -c1-32)
  if [ -f "$cache/$key.wasm" ]; then
    echo "unchanged since the last build: reusing $cache/$key.wasm" >&2
  else
    ./node_modules/.bin/wasm-opt -O3 "${features[@]}" "${@:3}" "$1" -o "$cache/$key.tmp"
    mv "$cache/$key.tmp" "$cache/$key.wasm"
  fi
  cp "$cache/$key.wasm" "$2"
  kept+=("$cache/$key.wasm")
}
kept=()
optimize "$glue/saguaro_wasm_bg.wasm" wasm/saguaro_wasm_bg.wasm

# The relaxed module. LLVM's wasm backend applies one feature set to the whole module, and with
# relaxed-simd it lowers the pmax / pmin patterns (f32x4_pmax in the activation quantizer,
# clamps the scalar code vectorizes) to f32x4.relaxed_max / relaxed_min, whose NaN and
# signed-zero results are the runtime's choice. The same IR gives f32x4.pmax / pmin in the
# plain build, so they are put back (binaryen's text round trip), and the optimized module
# must hold no relaxed instruction but the dot product, whose use is exact (engine/src/
# kernels/simd128/relaxed.rs).
# relaxed_module IN OUT [extra features]: the rewrite, wasm-opt and the check.
relaxed_module() {
  local dis="$target_dir/npm-relaxed/$(basename "$2" .wasm).wat" restored="$target_dir/npm-relaxed/$(basename "$2" .wasm).restored.wasm" others
  ./node_modules/.bin/wasm-dis "$1" -o "$dis"
  sed -i -e 's/f32x4\.relaxed_max/f32x4.pmax/g' -e 's/f32x4\.relaxed_min/f32x4.pmin/g' \
    -e 's/f64x2\.relaxed_max/f64x2.pmax/g' -e 's/f64x2\.relaxed_min/f64x2.pmin/g' "$dis"
  ./node_modules/.bin/wasm-as "${features[@]}" --enable-relaxed-simd "${@:3}" "$dis" -o "$restored"
  rm -f "$dis"
  optimize "$restored" "$2" --enable-relaxed-simd "${@:3}"
  others=$(./node_modules/.bin/wasm-dis "$2" | grep -o '[a-z0-9]*\.relaxed_[a-z0-9_]*' | sort | uniq -c \
    | grep -v ' i16x8\.relaxed_dot_i8x16_i7x16_s$' || true)
  if [ -n "$others" ]; then
    echo "build-npm: $2 holds relaxed instructions other than the dot product:" >&2
    echo "$others" >&2
    exit 1
  fi
}
relaxed_module "$glue-relaxed/saguaro_wasm_bg.wasm" wasm/saguaro_wasm_relaxed_bg.wasm
# The threads modules (their atomics are wasm's threads proposal).
optimize "$glue-threads/saguaro_wasm_threads_bg.wasm" wasm/saguaro_wasm_threads_bg.wasm --enable-threads
relaxed_module "$glue-threads-relaxed/saguaro_wasm_threads_bg.wasm" wasm/saguaro_wasm_threads_relaxed_bg.wasm --enable-threads
# Drop the cache entries of earlier inputs.
for f in "$cache"/*.wasm; do
  case " ${kept[*]} " in *" $f "*) ;; *) rm -f "$f" ;; esac
done
for f in saguaro_wasm_bg.wasm saguaro_wasm_relaxed_bg.wasm saguaro_wasm_threads_bg.wasm saguaro_wasm_threads_relaxed_bg.wasm; do
  raw=$(wc -c < "wasm/$f")
  gz=$(gzip -9 -c "wasm/$f" | wc -c)
  echo "$f: $raw bytes ($(awk "BEGIN {printf \"%.2f\", $raw / 1048576}") MiB), gzip -9: $gz bytes ($(awk "BEGIN {printf \"%.2f\", $gz / 1048576}") MiB)" >&2
done

step "TypeScript"
rm -rf dist
./node_modules/.bin/tsc -p tsconfig.json >&2

step "npm pack"
mkdir -p "$pack_dir"
rm -f "$pack_dir"/*.tgz
tarball=$(npm pack --pack-destination "$pack_dir" --loglevel=error | tail -n 1)
echo "$pack_dir/$tarball"
