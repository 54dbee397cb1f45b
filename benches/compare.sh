#!/usr/bin/env bash
# One comparison command: Saguaro against llama.cpp natively and against wllama (llama.cpp in
# WebAssembly) in headless Chromium, on the same random-weight models, with the ratios
# Saguaro / peer per row. Issue 15 item 5.
#  1. llama.cpp's llama-bench (benches/llamacpp/build.sh: the llama-cpp-python sdist through
#     `pip download`, built with cmake; nothing of it is committed);
#  2. random GGUFs of the LFM2-350M and LFM2-8B-A1B shapes in Q8_0 and Q4_0
#     (benches/llamacpp/make_gguf.py) and the same files converted by `saguaro convert` (Q8_0 to
#     int8, Q4_0 to int4; both lossless: 32-weight blocks with an f16 scale);
#  3. native, interleaved (model by model; each round runs both engines before the next round):
#     llama-bench decode of N tokens on 1 and 2 threads (`-p 0 -n N -t 1,2`) and prefill of P
#     tokens on 2 threads (`-p P -n 0 -t 2`), one repetition per round; `saguaro bench --threads 2`
#     with `--prefill P --decode 0`, and `--prefill 64 --decode N` with 1 and with 2 decode
#     threads. Decode runs from an empty context (llama.cpp) or after 64 tokens (Saguaro):
#     llama-bench's `-d P` runs a batched prefill first, which crashes (SIGSEGV) in this llama.cpp
#     build on these files with its default weight repacking, and without the repacking its decode
#     is slower. A crashing prefill run is repeated with `--repack 0` and marked;
#  4. wasm, in Chromium: benches/browser-compare.mjs, wllama (npm @wllama/wllama, pinned, installed
#     under target/compare-npm) and Saguaro's npm package on the LFM2-350M files, one thread
#     each, rounds alternating (the 8B-A1B files are larger than wasm32's 4 GiB memory); then
#     again on 2 threads, the pages cross-origin isolated (both engines' thread builds);
#  5. one table of medians over the rounds with the ratios and the issue's targets, printed and
#     appended to benches/RESULTS.md.
#
# Usage: benches/compare.sh [--rounds R] [--prefill P] [--decode N] [--wasm-prefill P]
#                           [--wasm-decode N] [--shapes lfm2-350m,lfm2-8b-a1b] [--quants q8_0,q4_0]
#                           [--no-browser] [--no-record]
# Defaults: 3 rounds, P 512, N 64; in the browser P 128 and N 32 (wllama decodes a few tokens a
# second). Disk: ~15 GB in benches/models (gitignored) with both 8B-A1B files and their .cact.
# Environment: LLAMACPP_DIR, LLAMACPP_BUILD, PYTHON (as benches/llamacpp/run.sh; PYTHON needs numpy
# and gguf: `python3 -m venv /work/pyenv && /work/pyenv/bin/pip install numpy gguf`).
# Run it on an otherwise idle machine: the figures are wall-clock speeds.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 prefill=512 decode=64 wprefill=128 wdecode=32 shapes=lfm2-350m,lfm2-8b-a1b quants=q8_0,q4_0
browser=1 record=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --prefill) prefill=$2; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    --wasm-prefill) wprefill=$2; shift 2 ;;
    --wasm-decode) wdecode=$2; shift 2 ;;
    --shapes) shapes=$2; shift 2 ;;
    --quants) quants=$2; shift 2 ;;
    --no-browser) browser=0; shift ;;
    --no-record) record=0; shift ;;
    *) echo "compare: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "[compare] $*" >&2; }

LLAMACPP_DIR=${LLAMACPP_DIR:-/work/llamacpp}
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/pyenv/bin/python ]; then PYTHON=/work/pyenv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -c 'import numpy, gguf' 2>/dev/null || {
  echo "compare: $PYTHON needs numpy and gguf (python3 -m venv /work/pyenv && /work/pyenv/bin/pip install numpy gguf)" >&2
  exit 1
}
build=${LLAMACPP_BUILD:-$LLAMACPP_DIR/build}
models=benches/models
mkdir -p "$models"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# 1. llama-bench.
bindir=$(LLAMACPP_DIR=$LLAMACPP_DIR LLAMACPP_BUILD=$build PYTHON=$PYTHON benches/llamacpp/build.sh llama-bench | tail -n 1)
llama_bench=$bindir/llama-bench
src=$(ls -d "$LLAMACPP_DIR"/llama_cpp_python-*/vendor/llama.cpp | head -n 1)
cargo build --quiet --release --locked -p saguaro-host --no-default-features
bin=target/release/saguaro

# 2. The models: NAME GGUF CACT per line.
list=$out/models
: >"$list"
for shape in ${shapes//,/ }; do
  for q in ${quants//,/ }; do
    case "$q" in q8_0) sq=int8 ;; q4_0) sq=int4 ;; *) echo "compare: unknown quant $q" >&2; exit 2 ;; esac
    gguf=$models/$shape-$q.gguf
    cact=$models/$shape-$q-$sq.cact
    if [ ! -f "$gguf" ]; then
      log "writing $gguf"
      "$PYTHON" benches/llamacpp/make_gguf.py --shape "$shape" --quant "$q" "$gguf" >&2
    fi
    if [ ! -f "$cact" ] || [ "$gguf" -nt "$cact" ]; then
      log "converting $gguf to $cact"
      "$bin" convert "$gguf" -o "$cact" --quant "$sq" --quiet >&2
    fi
    echo "$shape-$q $gguf $cact" >>"$list"
  done
done

# 3. Native rounds. Each line of $out/native.jsonl: {"engine", "model", ...the tool's JSON}.
load0=$(cut -d' ' -f1 /proc/loadavg)
[ "${load0%.*}" -ge 1 ] && log "warning: load average $load0 before the run: is the machine idle?"
t0=$SECONDS
while read -r name gguf cact; do
  # Both files into the page cache first (they are timed in place, not read from disk); a model
  # at a time, so that the 8B-A1B pairs (up to 18 GB) need not share the cache.
  cat "$gguf" "$cact" >/dev/null
  for round in $(seq "$rounds"); do
    log "round $round/$rounds: $name: llama-bench decode (1, 2 threads) and prefill"
    "$llama_bench" -m "$gguf" -p 0 -n "$decode" -t 1,2 -r 1 -o json >"$out/lc.json" 2>"$out/lc.err" \
      || { cat "$out/lc.err" >&2; exit 1; }
    if ! "$llama_bench" -m "$gguf" -p "$prefill" -n 0 -t 2 -r 1 -o json >"$out/lp.json" 2>"$out/lp.err"; then
      log "llama-bench prefill crashed with its weight repacking: again with --repack 0"
      "$llama_bench" -m "$gguf" -p "$prefill" -n 0 -t 2 -r 1 --repack 0 -o json >"$out/lp.json" 2>"$out/lp.err" \
        || { cat "$out/lp.err" >&2; exit 1; }
    fi
    "$PYTHON" - "$name" "$round" "$out/lc.json" "$out/lp.json" >>"$out/native.jsonl" <<'PY'
import json, sys
name, rnd = sys.argv[1], int(sys.argv[2])
for path in sys.argv[3:]:
    for r in json.load(open(path)):
        print(json.dumps({**r, "engine": "llama.cpp", "model": name, "round": rnd}))
PY
    # Prefill, then decode after a short prompt on 1 and 2 threads (llama-bench's tg runs from an
    # empty context after a warm-up run). The 64-token prompt touches (page-faults in) nearly
    # every expert of the mmapped file before the timed decode, as llama-bench's warm-up does;
    # with a 1-token prompt the first decode steps of a MoE model pay those faults (measured:
    # 8B-A1B Q8_0 1-thread decode 5.3 tok/s, against 8.1 after a 512-token prompt).
    for run in "prefill --prefill $prefill --decode 0" "decode1 --prefill 64 --decode $decode --decode-threads 1" \
               "decode2 --prefill 64 --decode $decode --decode-threads 2"; do
      set -- $run
      kind=$1; shift
      log "round $round/$rounds: $name: saguaro bench $*"
      "$bin" bench --model "$cact" --threads 2 "$@" --json >"$out/sg.json"
      "$PYTHON" -c 'import json,sys; print(json.dumps({**json.load(open(sys.argv[4])), "engine": "saguaro", "kind": sys.argv[3], "model": sys.argv[1], "round": int(sys.argv[2])}))' \
        "$name" "$round" "$kind" "$out/sg.json" >>"$out/native.jsonl"
    done
  done
done <"$list"
native_s=$((SECONDS - t0))

# 4. The browser rounds (LFM2-350M files only).
: >"$out/browser.jsonl"
if [ "$browser" = 1 ]; then
  pairs=()
  while read -r name gguf cact; do
    case "$name" in lfm2-350m-*) pairs+=("$gguf:$cact") ;; esac
  done <"$list"
  if [ ${#pairs[@]} -gt 0 ]; then
    [ -f npm/dist/index.js ] && [ -f npm/wasm/saguaro_wasm_relaxed_bg.wasm ] || ./scripts/build-npm.sh >&2
    command -v chromium >/dev/null || { echo "compare: chromium is required for the wasm rows (apt install chromium)" >&2; exit 1; }
    wl=target/compare-npm
    if [ ! -f "$wl/node_modules/@wllama/wllama/package.json" ]; then
      mkdir -p "$wl"
      [ -f "$wl/package.json" ] || echo '{"name": "saguaro-compare", "private": true}' >"$wl/package.json"
      (cd "$wl" && npm install --no-audit --no-fund --loglevel=error @wllama/wllama@3.13.0 >&2)
    fi
    log "browser: wllama and Saguaro's npm package, $rounds rounds"
    node benches/browser-compare.mjs --wllama "$wl/node_modules/@wllama/wllama" --prefill "$wprefill" --decode "$wdecode" \
      --reps "$rounds" "${pairs[@]}" >"$out/browser.jsonl"
    log "browser, 2 threads (cross-origin isolated): wllama and Saguaro's npm package, $rounds rounds"
    node benches/browser-compare.mjs --wllama "$wl/node_modules/@wllama/wllama" --prefill "$wprefill" --decode "$wdecode" \
      --reps "$rounds" --threads 2 "${pairs[@]}" >"$out/browser-threads.jsonl"
  fi
fi
total_s=$((SECONDS - t0))

# 5. The table.
"$PYTHON" - "$out" "$list" "$record" "$prefill" "$decode" "$wprefill" "$wdecode" "$rounds" "$src" "$native_s" "$total_s" <<'PY'
import datetime, json, os, platform, statistics, subprocess, sys

out, listfile, record = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
prefill, decode, wprefill, wdecode, rounds = map(int, sys.argv[4:9])
src, native_s, total_s = sys.argv[9], int(sys.argv[10]), int(sys.argv[11])
names = [line.split()[0] for line in open(listfile) if line.strip()]
native = [json.loads(l) for l in open(os.path.join(out, "native.jsonl")) if l.strip()]
def jsonl(name):
    path = os.path.join(out, name)
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
browser = jsonl("browser.jsonl")
browser2 = jsonl("browser-threads.jsonl")
med = lambda xs: statistics.median(xs) if xs else None

def lc(name, threads, prompt, gen):
    return med([r["avg_ts"] for r in native if r["engine"] == "llama.cpp" and r["model"] == name
                and r["n_threads"] == threads and r["n_prompt"] == prompt and r["n_gen"] == gen])

def lc_norepack(name):
    return any(r.get("repack") is False for r in native if r["engine"] == "llama.cpp"
               and r["model"] == name and r["n_prompt"] == prefill)

def sg(name, key, kind):
    return med([r[key] for r in native if r["engine"] == "saguaro" and r["model"] == name and r["kind"] == kind])

def wb(name, engine, key, runs=None):
    runs = browser if runs is None else runs
    return med([r[key] for r in runs if r["engine"] == engine and os.path.basename(r["gguf"]).startswith(name + ".")])

def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"

def ratio(a, b, target=None):
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    mark = "" if target is None else (" ✓" if r >= target else f" ✗ (target {target}x)")
    return f"**{r:.2f}x**{mark}"

rows = []
for n in names:
    rows.append(("native decode, 1 thread (tok/s)", n, sg(n, "decode_tps", "decode1"), lc(n, 1, 0, decode), 1.4))
    rows.append(("native decode, 2 threads (tok/s)", n, sg(n, "decode_tps", "decode2"), lc(n, 2, 0, decode), 1.0 if "8b-a1b" in n else None))
    mark = " (llama.cpp: --repack 0 †)" if lc_norepack(n) else ""
    rows.append((f"native prefill {prefill}, 2 threads (tok/s){mark}", n, sg(n, "prefill_tps", "prefill"), lc(n, 2, prefill, 0), 2.0))
kernels = next((r["kernels"] for r in native if r["engine"] == "saguaro"), "?")
wasm_kernels = next((r.get("kernels") for r in browser if r["engine"] == "saguaro"), "?")
wasm2_kernels = next((r.get("kernels") for r in browser2 if r["engine"] == "saguaro"), "?")
for n in names:
    if not any(os.path.basename(r["gguf"]).startswith(n + ".") for r in browser):
        continue
    rows.append((f"wasm decode, 1 thread (tok/s)", n, wb(n, "saguaro", "decode_tps"), wb(n, "wllama", "decode_tps"), 5.0))
    rows.append((f"wasm prefill {wprefill}, 1 thread (tok/s)", n, wb(n, "saguaro", "prefill_tps"), wb(n, "wllama", "prefill_tps"), 10.0))
    if any(os.path.basename(r["gguf"]).startswith(n + ".") for r in browser2):
        rows.append((f"wasm decode, 2 threads (tok/s)", n, wb(n, "saguaro", "decode_tps", browser2), wb(n, "wllama", "decode_tps", browser2), None))
        rows.append((f"wasm prefill {wprefill}, 2 threads (tok/s)", n, wb(n, "saguaro", "prefill_tps", browser2), wb(n, "wllama", "prefill_tps", browser2), None))
own = []
for n in names:
    w, nat = wb(n, "saguaro", "decode_tps"), sg(n, "decode_tps", "decode1")
    if w is not None and nat is not None:
        w2 = wb(n, "saguaro", "decode_tps", browser2)
        own.append(f"{n} {w / nat * 100:.0f}%" + (f" (2 wasm threads: {w2 / nat * 100:.0f}%)" if w2 is not None else ""))

cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
try:
    commit = subprocess.run(["git", "-C", src, "rev-parse", "--short=9", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
except Exception:
    commit = next((r.get("build_commit") for r in native if r["engine"] == "llama.cpp"), "?")
chromium = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.strip() if browser else "-"
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
lines = [
    f"\n## {now}: benches/compare.sh, Saguaro / llama.cpp and Saguaro / wllama ({cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()})\n",
    f"Medians of {rounds} rounds, the engines alternating in each. Native: llama.cpp {commit} (llama-bench, `-p 0 -n {decode} -t 1,2` and "
    f"`-p {prefill} -n 0 -t 2`, one repetition per round) against `saguaro bench --threads 2` with `--prefill {prefill} --decode 0` "
    f"and `--prefill 64 --decode {decode} --decode-threads 1|2` (kernels {kernels}): decode from an empty context (llama.cpp, after its warm-up run) and after a 64-token prompt (Saguaro); "
    f"† llama-bench's batched prefill crashed (SIGSEGV) with its default weight repacking, so it ran with `--repack 0`. Wasm ({chromium}, headless, one "
    f"thread, no cross-origin isolation; then 2 threads on cross-origin isolated pages, each engine's thread build: Saguaro's model in a worker): "
    f"wllama 3.13.0 against Saguaro's npm package ({wasm_kernels}; on 2 threads {wasm2_kernels}), prompt {wprefill}, "
    f"decode {wdecode}. Models: random weights, `benches/llamacpp/make_gguf.py` GGUFs and their `saguaro convert` .cact "
    f"(Q8_0 to int8, Q4_0 to int4, the same weights). ✓ / ✗: the issue's target for the row.\n",
    "| measure | model | Saguaro | peer | Saguaro / peer |",
    "|---|---|---|---|---|",
]
for what, n, s, p, target in rows:
    lines.append(f"| {what} | {n} | {fmt(s)} | {fmt(p)} | {ratio(s, p, target)} |")
if own:
    lines.append(f"\nSaguaro wasm decode as a share of its native 1-thread decode (target 75%): {', '.join(own)}.")
lines.append(f"\nNative measurements took {native_s} s, the whole run {total_s} s.")
text = "\n".join(lines) + "\n"
print(text)
if record:
    with open("benches/RESULTS.md", "a") as f:
        f.write(text)
PY
