#!/usr/bin/env bash
# The npm package in headless Chromium (npm/test/browser/run.mjs): installs the packed package with
# the example app (npm/examples/chat) in a new temporary folder, serves it from 127.0.0.1 and
# checks, through the Web Worker entry, completions (response JSON, token events), logits and
# token ids against the native CLI bit for bit, streaming, Stop / AbortSignal, model sources and
# caching, and errors with their codes; fails on any console error or uncaught exception.
# Installs what it needs first (idempotent): Debian's chromium (never a downloaded browser),
# playwright-core (npm), the native CLI (cargo, debug). Uses the newest tarball in npm/pack and
# runs scripts/build-npm.sh when there is none.
# Ends with `test result: ok. N passed; M failed` (or FAILED) and a non-zero status on failure.
#
# Usage: ./scripts/test-browser.sh            (about 15 s after the builds)
# Options: --build (run scripts/build-npm.sh first), SAGUARO_NPM_TARBALL=path, SAGUARO_BIN=path,
#          KEEP_TMP=1, BROWSER_TEST_FILTER=substring, BROWSER_TEST_VERBOSE=1 (see run.mjs).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

build=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=1 ;;
    *) echo "test-browser: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

command -v node >/dev/null || { echo "test-browser: node (>= 20) is required" >&2; exit 1; }

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "installing chromium (apt)"
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq chromium >/dev/null
fi

# playwright-core (a devDependency of npm/) drives that chromium; it never downloads a browser.
if [ ! -f npm/node_modules/playwright-core/package.json ]; then
  echo "installing the npm devDependencies (playwright-core)"
  (cd npm && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error)
fi

# The native CLI the outputs are compared with, up to date with the sources.
if [ -z "${SAGUARO_BIN:-}" ]; then
  cargo build --quiet --locked -p saguaro-host
fi

if [ "$build" = 1 ]; then
  SAGUARO_NPM_TARBALL=$("$root/scripts/build-npm.sh" | tail -n 1)
  export SAGUARO_NPM_TARBALL
fi

exec node npm/test/browser/run.mjs
