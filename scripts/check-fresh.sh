#!/usr/bin/env bash
# Proves that the README's test command works on a fresh machine: removes everything the test
# scripts install (apt packages, the backports source, cargo-installed tools, rustup targets, npm
# and cargo download caches), clones the repository anew into a temporary folder and runs
# `.ci/run` there as CI does (CI=true, no standard input), timed. Not part of the test command:
# it changes the machine (root; apt-get purge), so it asks for --yes.
#
# Usage: ./scripts/check-fresh.sh --yes [--keep-downloads] [--ref REF] [--log FILE]
#   --keep-downloads  keep ~/.cargo/registry, ~/.npm and pip's cache (offline-ish rerun; not "from nothing")
#   --ref REF         the commit to clone (default HEAD of this checkout; commit your changes first)
#   --log FILE        where the run's output goes (default /tmp/saguaro-check-fresh.log)
# Prints the wall time and the closing `saguaro: N passed, N failed` line; exits with .ci/run's status.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

yes=0 keep=0 ref=HEAD log=/tmp/saguaro-check-fresh.log
while [ $# -gt 0 ]; do
  case "$1" in
    --yes) yes=1 ;;
    --keep-downloads) keep=1 ;;
    --ref) ref=$2; shift ;;
    --log) log=$2; shift ;;
    *) echo "check-fresh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ "$yes" = 1 ] || { echo "check-fresh: this purges packages and tools from this machine; run with --yes" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "check-fresh: needs root (apt-get purge)" >&2; exit 2; }
step() { printf '\n==> %s\n' "$*"; }

commit=$(git -C "$root" rev-parse --verify "$ref^{commit}")
[ -z "$(git -C "$root" status --porcelain)" ] || echo "check-fresh: note: uncommitted changes are not part of the run"

step "purge what the test scripts install"
# apt: the aarch64 cross tools, qemu-user (and its backports source), chromium. `|| true`: a
# package that is not installed is not an error here.
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
  chromium chromium-common chromium-sandbox >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive apt-get autoremove -y -qq --purge >/dev/null 2>&1 || true
rm -f /etc/apt/sources.list.d/bookworm-backports.list
# cargo-installed tools (and cargo's record of them).
for tool in wasm-bindgen-cli cargo-fuzz; do cargo uninstall -q "$tool" >/dev/null 2>&1 || true; done
rm -f "$HOME"/.cargo/bin/wasm-bindgen* "$HOME"/.cargo/bin/wasm2es6js "$HOME"/.cargo/bin/cargo-fuzz
# rustup targets the scripts add (the host's own target stays).
for t in wasm32-unknown-unknown wasm32-wasip1 wasm32-wasip2 aarch64-unknown-linux-gnu; do
  rustup target remove "$t" >/dev/null 2>&1 || true
done
# rust-src (std's sources, for the npm package's threads build).
rustup component remove rust-src >/dev/null 2>&1 || true
if [ "$keep" = 0 ]; then
  # Download caches: crates, npm packages, pip wheels (the model package of run.sh included).
  rm -rf "$HOME/.cargo/registry" "$HOME/.cargo/git" "$HOME/.npm" "$HOME/.cache/pip" "$HOME/.cache/saguaro"
fi
echo "  qemu-aarch64: $(command -v qemu-aarch64 || echo absent); chromium: $(command -v chromium || echo absent);" \
  "wasm-bindgen: $(command -v wasm-bindgen || echo absent); targets: $(rustup target list --installed | tr '\n' ' ');" \
  "rust-src: $(rustup component list --installed | grep -c '^rust-src')"

step "clean clone of $commit"
work=$(mktemp -d "${TMPDIR:-/tmp}/saguaro-fresh.XXXXXX")
git clone --quiet --no-local "$root" "$work/saguaro"
git -C "$work/saguaro" checkout --quiet "$commit"
echo "  $work/saguaro"

step "CI=true bash .ci/run (output: $log)"
start=$(date +%s)
status=0
(cd "$work/saguaro" && CI=true bash .ci/run </dev/null) >"$log" 2>&1 || status=$?
wall=$(( $(date +%s) - start ))

echo
grep -E '^ *[0-9]+s  ' "$log" || true
echo
echo "commit $commit, exit status $status, wall time $((wall / 60)) min $((wall % 60)) s"
grep -E '^saguaro: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || echo "(no closing line: see $log)"
[ "$status" = 0 ] && rm -rf "$work"
exit "$status"
