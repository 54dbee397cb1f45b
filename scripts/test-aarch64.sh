#!/usr/bin/env bash
# Runs the aarch64 kernel tests (host/src/kernels/aarch64) under qemu-user on an x86_64 machine,
# once per emulated CPU, so every tier runs against the scalar definitions:
#   cortex-a53  NEON only            -> tier neon
#   neoverse-n1 + dotprod            -> tiers neon, dotprod
#   neoverse-v1 + i8mm, sve          -> tiers neon, dotprod, i8mm
#   max         + sve2, sme (no sme2) -> tiers neon, dotprod, i8mm, sme
# Installs what it needs first (idempotent, quiet): the Rust target, the cross linker and libc,
# qemu-user >= 10 (bookworm-backports on Debian 12). The linker and the qemu runner are set in
# .cargo/config.toml.
# Usage: ./scripts/test-aarch64.sh [extra arguments for the test binary]
# SAGUARO_PROPTEST_CASES (default 256) sets the random cases per property.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null; }

step "toolchain and emulator"
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1

# Every probe below must succeed when the thing probed is missing (set -euo pipefail): a missing
# qemu-aarch64 makes the pipeline return 127, so the function reads it into a variable first.
qemu_major() {
  local v
  v=$(qemu-aarch64 --version 2>/dev/null || true)
  sed -n 's/.*version \([0-9]*\).*/\1/p' <<<"$v" | head -n1
}
# The URI of the apt source that serves the `bookworm` suite: deb822 stanzas (*.sources, Debian
# 12's default) or one-line entries (sources.list, *.list). Empty when there is none.
debian_mirror() {
  {
    awk 'BEGIN { RS = ""; FS = "\n" }
      { uris = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris); sub(/[ \t].*/, "", uris) }
          if ($i ~ /^Suites:/ && (" " $i " ") ~ /[ \t]bookworm[ \t]/) ok = 1
        }
        if (ok && uris != "") print uris }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    awk '$1 == "deb" { sub(/\[[^]]*\][ \t]*/, ""); if ($3 == "bookworm") print $2 }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
  } | head -n1
}
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || missing+=(libc6-dev-arm64-cross)
major=$(qemu_major)
need_qemu=0
if [ -z "$major" ] || [ "$major" -lt 10 ]; then need_qemu=1; fi
if [ ${#missing[@]} -gt 0 ] || [ $need_qemu = 1 ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ $need_qemu = 1 ] && [ "$codename" = bookworm ] \
    && ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
    # One-line (sources.list, *.list) and deb822 (*.sources, `Suites: ...`) entries both match.
    # bookworm-backports from the mirror this machine already uses for bookworm.
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || { echo "test-aarch64: no bookworm entry in the apt sources to add backports from" >&2; exit 1; }
    echo "deb $mirror bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
  fi
  $SUDO apt-get update -qq >/dev/null
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  if [ $need_qemu = 1 ]; then
    if [ "$codename" = bookworm ]; then apt_install -t bookworm-backports qemu-user; else apt_install qemu-user; fi
  fi
fi
echo "  $(aarch64-linux-gnu-gcc --version | head -n1)"
echo "  $(qemu-aarch64 --version | head -n1)"

target=aarch64-unknown-linux-gnu
step "build the saguaro-host tests for $target"
# --no-default-features: the kernels and tiers tests need no wasmtime host (the `component`
# feature); building wasmtime and cranelift for aarch64 cost CI about ten minutes for nothing.
cargo test --quiet --locked --target "$target" -p saguaro-host --no-default-features --lib --test tiers --no-run

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for cpu in cortex-a53 neoverse-n1 neoverse-v1 max; do
  step "QEMU_CPU=$cpu"
  if ! QEMU_CPU=$cpu SAGUARO_QEMU_CPU=$cpu \
    cargo test --quiet --locked --target "$target" -p saguaro-host --no-default-features --lib kernels -- "$@" 2>&1 | tee -a "$log"; then
    status=1
  fi
  # End to end: every tier this CPU has gives the recorded logits bits on every fixture.
  if ! QEMU_CPU=$cpu cargo test --quiet --locked --target "$target" -p saguaro-host --no-default-features --test tiers 2>&1 | tee -a "$log"; then
    status=1
  fi
done

# One closing line for the whole run, summed over the four CPUs.
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "aarch64: ${passed} passed, ${failed} failed"
exit $status
