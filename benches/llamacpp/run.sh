#!/usr/bin/env bash
# Saguaro beside llama.cpp on the same GGUF, in one run (issue #8; any GGUF with --gguf, issue #13):
#  1. builds llama.cpp's llama-bench if missing (benches/llamacpp/build.sh: the llama-cpp-python
#     0.3.36 sdist through pip, which vendors llama.cpp 0c1e57098 with the `lfm2moe` architecture);
#  2. writes the random-weight 8B-A1B-shaped Q4_0 GGUF if missing (make_gguf.py, ~4.7 GB),
#     unless --gguf names a file (e.g. SmolLM2's real Q4_1 GGUF: scripts/get-model.sh smollm2);
#  3. converts that same GGUF to a Saguaro .cact (`saguaro convert --quant Q`, default int4);
#  4. llama-bench: decode (tg) of N tokens on 1 and 2 threads from an empty context and after a
#     P-token context, and prefill (pp) of P tokens on 2 threads;
#  5. saguaro bench: prefill P tokens on 2 threads then decode N tokens on 1 thread, and again
#     with --decode-threads 2 (R processes each, as llama-bench's R repetitions);
#  6. prints a markdown table and appends it (date, CPU, llama.cpp version, method) to
#     benches/RESULTS.md.
#
# Usage: benches/llamacpp/run.sh [--gguf FILE] [--quant int4|int8] [--prefill P] [--decode N]
#                                [--reps R] [--no-record] [--llama-arg ARG]...
# --llama-arg passes one more argument to every llama-bench run and names it in the table (e.g.
# `--llama-arg --repack --llama-arg 0`). When a llama-bench run crashes with its defaults, it is
# run again with `--repack 0` and the table marks those cells: this llama.cpp build segfaults on
# SmolLM2's Q4_1 GGUF for any batch of 2 or more tokens when it repacks the weights for the CPU
# (llama-bench -p 2), while its batch-1 decode works, and is twice as fast, with the repack.
# Environment: LLAMACPP_DIR (default /work/llamacpp: the sdist and its source), LLAMACPP_BUILD
# (default $LLAMACPP_DIR/build; llama.cpp's own libraries are linked in statically, so only
# $LLAMACPP_BUILD/bin/llama-bench is needed afterwards), MODELS_DIR (default benches/models,
# gitignored), SAGUARO_BIN (default: build target/release/saguaro with --no-default-features),
# PYTHON (default /work/pyenv/bin/python if present, else python3; numpy and gguf-py for step 2).
# Disk: ~4.7 GB for the GGUF + ~4.7 GB for the .cact in MODELS_DIR, ~0.1 GB for the llama.cpp
# build. Run it on an otherwise idle machine: the figures are wall-clock speeds.
set -euo pipefail
cd "$(dirname "$0")/../.."

prefill=512 decode=100 reps=5 record=1 gguf="" quant=int4
llama_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --gguf) gguf=$2; shift 2 ;;
    --quant) quant=$2; shift 2 ;;
    --prefill) prefill=$2; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --no-record) record=0; shift ;;
    --llama-arg) llama_args+=("$2"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

LLAMACPP_DIR=${LLAMACPP_DIR:-/work/llamacpp}
if [ -z "${PYTHON:-}" ]; then
  if [ -x /work/pyenv/bin/python ]; then PYTHON=/work/pyenv/bin/python; else PYTHON=python3; fi
fi
build=${LLAMACPP_BUILD:-$LLAMACPP_DIR/build}
models=${MODELS_DIR:-benches/models}
if [ -z "$gguf" ]; then
  synthetic=1
  gguf=$models/lfm2-8b-a1b-q4_0.gguf
else
  synthetic=0
  [ -f "$gguf" ] || { echo "no such GGUF: $gguf" >&2; exit 2; }
fi
cact=$models/$(basename "$gguf" .gguf)-$quant.cact
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
log() { echo "[llamacpp-bench] $*" >&2; }

# 1. llama-bench (benches/llamacpp/build.sh: the sdist through pip, a cmake build).
bindir=$(LLAMACPP_DIR=$LLAMACPP_DIR LLAMACPP_BUILD=$build PYTHON=$PYTHON benches/llamacpp/build.sh llama-bench | tail -n 1)
llama_bench=$bindir/llama-bench
src=$(ls -d "$LLAMACPP_DIR"/llama_cpp_python-*/vendor/llama.cpp | head -n 1)

# 2. The GGUF.
mkdir -p "$models"
if [ "$synthetic" = 1 ] && [ ! -f "$gguf" ]; then
  log "writing $gguf"
  "$PYTHON" benches/llamacpp/make_gguf.py --shape lfm2-8b-a1b --quant q4_0 "$gguf" >&2
fi

# 3. The same weights as a Saguaro int4 .cact.
if [ -n "${SAGUARO_BIN:-}" ]; then
  bin=$SAGUARO_BIN
else
  cargo build --quiet --release --locked -p saguaro-host --no-default-features
  bin=target/release/saguaro
fi
if [ ! -f "$cact" ] || [ "$gguf" -nt "$cact" ]; then
  log "converting $gguf to $cact"
  /usr/bin/time -f "%e s, max RSS %M KB" -o "$logs/convert.time" "$bin" convert "$gguf" -o "$cact" --quant "$quant" --quiet
  log "convert: $(cat "$logs/convert.time")"
fi

# Runs a command, recording its peak RSS and CPU time (/usr/bin/time) and the largest RssAnon
# seen while it runs (sampled from /proc every 0.5 s) into $logs/$1.mem as
# "peak_kb user_s sys_s anon_kb".
measure() {
  local tag=$1; shift
  /usr/bin/time -f "%M %U %S" -o "$logs/$tag.time" "$@" >"$logs/$tag.out" 2>"$logs/$tag.err" &
  local tpid=$! anon=0 child="" k v rest
  while kill -0 "$tpid" 2>/dev/null; do
    [ -n "$child" ] || child=$(pgrep -P "$tpid" | head -n 1 || true)
    if [ -n "$child" ] && [ -r "/proc/$child/status" ]; then
      # Builtins only: the sampling must not load the machine it measures.
      while read -r k v rest; do
        if [ "$k" = "RssAnon:" ]; then
          [ "$v" -gt "$anon" ] && anon=$v
          break
        fi
      done 2>/dev/null <"/proc/$child/status" || true
    fi
    sleep 0.5
  done
  if ! wait "$tpid"; then
    cat "$logs/$tag.err" >&2
    echo "failed: $*" >&2
    return 1
  fi
  echo "$(tail -n 1 "$logs/$tag.time") $anon" >"$logs/$tag.mem"
}

# llama-bench with the --llama-arg arguments; when it crashes, once more with `--repack 0`
# (recorded in $logs/norepack, marked in the table).
llama_measure() {
  local tag=$1; shift
  if ! measure "$tag" "$llama_bench" ${llama_args[@]+"${llama_args[@]}"} "$@"; then
    log "llama-bench failed with its weight repacking: again with --repack 0"
    measure "$tag" "$llama_bench" ${llama_args[@]+"${llama_args[@]}"} --repack 0 "$@" || exit 1
    echo "$tag" >>"$logs/norepack"
  fi
}

# Busy CPU time of the whole machine over the measurements (/proc/stat), to tell whether
# anything else ran meanwhile.
cpu_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
busy0=$(cpu_busy) t0=$(date +%s.%N) load0=$(cut -d' ' -f1 /proc/loadavg)
[ "${load0%.*}" -ge 1 ] && log "warning: load average $load0 before the run: is the machine idle?"

# 4. llama.cpp (default settings: mmap, Q4_0 repacked for the CPU, flash attention auto).
log "llama-bench: decode $decode tokens, 1 and 2 threads, empty context"
llama_measure lc_tg -m "$gguf" -p 0 -n "$decode" -t 1,2 -r "$reps" -o json
log "llama-bench: decode $decode tokens, 1 and 2 threads, after $prefill tokens"
llama_measure lc_tg_depth -m "$gguf" -p 0 -n "$decode" -d "$prefill" -t 1,2 -r "$(( reps < 3 ? reps : 3 ))" -o json
log "llama-bench: prefill $prefill tokens, 2 threads"
llama_measure lc_pp -m "$gguf" -p "$prefill" -n 0 -t 2 -r "$reps" -o json

# 5. Saguaro: one process per repetition (each opens the model, prefills, decodes).
for i in $(seq "$reps"); do
  log "saguaro bench $i/$reps: prefill $prefill (2 threads), decode $decode (1 thread)"
  measure "sg_1_$i" "$bin" bench --model "$cact" --prefill "$prefill" --decode "$decode" --threads 2 --json || exit 1
done
for i in $(seq "$reps"); do
  log "saguaro bench $i/$reps: prefill $prefill (2 threads), decode $decode (2 threads)"
  measure "sg_2_$i" "$bin" bench --model "$cact" --prefill "$prefill" --decode "$decode" --threads 2 --decode-threads 2 --json || exit 1
done

busy1=$(cpu_busy) t1=$(date +%s.%N)

# 6. The table.
fstype=$(stat -f -c %T "$models")
other=$(awk -v b0="$busy0" -v b1="$busy1" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
  'BEGIN {printf "%.1f %.1f", (b1 - b0) / hz, t1 - t0}')
"$PYTHON" - "$logs" "$record" "$gguf" "$cact" "$src" "$prefill" "$decode" "$reps" "$fstype" $other "$synthetic" "$quant" "${llama_args[*]-}" <<'PY'
import datetime, json, os, platform, subprocess, sys

logs, record, gguf, cact, src = sys.argv[1:6]
prefill, decode, reps = map(int, sys.argv[6:9])
fstype = sys.argv[9]
busy_s, wall_s = float(sys.argv[10]), float(sys.argv[11])
synthetic, quant = sys.argv[12] == "1", sys.argv[13]
llama_args = sys.argv[14] if len(sys.argv) > 14 else ""
record = record == "1"

def read(tag):
    return open(os.path.join(logs, tag + ".out")).read()

def mem(tag):
    peak, user, system, anon = open(os.path.join(logs, tag + ".mem")).read().split()
    return int(peak) / 1024, int(anon) / 1024

TAGS = ("lc_tg", "lc_tg_depth", "lc_pp") + tuple(f"sg_{t}_{i}" for t in (1, 2) for i in range(1, reps + 1))
own_s = sum(float(x) for t in TAGS for x in open(os.path.join(logs, t + ".mem")).read().split()[1:3])
other_s = max(0.0, busy_s - own_s)
if other_s > 0.02 * wall_s * (os.cpu_count() or 1):
    print(f"warning: other processes used {other_s:.1f} CPU-s during the {wall_s:.0f} s of measurements", file=sys.stderr)

lc = []
for tag in ("lc_tg", "lc_tg_depth", "lc_pp"):
    lc += json.loads(read(tag))
sg = {t: [json.loads(read(f"sg_{t}_{i}")) for i in range(1, reps + 1)] for t in (1, 2)}

def mean_sd(xs):
    m = sum(xs) / len(xs)
    sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
    return m, sd

norepack_path = os.path.join(logs, "norepack")
norepack = set(open(norepack_path).read().split()) if os.path.exists(norepack_path) else set()

def lc_find(threads, n_prompt, n_gen, depth):
    for r in lc:
        if (r["n_threads"], r["n_prompt"], r["n_gen"], r["n_depth"]) == (threads, n_prompt, n_gen, depth):
            tag = "lc_pp" if n_prompt else ("lc_tg_depth" if depth else "lc_tg")
            mark = " †" if tag in norepack else ""
            return f"{r['avg_ts']:.1f} ± {r['stddev_ts']:.1f}{mark}", r["avg_ts"]
    return "-", None

cpu = "unknown"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
cores = os.cpu_count()
flags = open("/proc/cpuinfo").read()
isa = "AVX-512 VNNI" if "avx512_vnni" in flags else ("AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2"))
try:
    commit = subprocess.run(["git", "-C", src, "rev-parse", "--short=9", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
except Exception:
    commit = lc[0].get("build_commit", "unknown")
ggml = "?"
try:
    v = {}
    for line in open(os.path.join(src, "ggml", "CMakeLists.txt")):
        for part in ("MAJOR", "MINOR", "PATCH"):
            if line.startswith(f"set(GGML_VERSION_{part} "):
                v[part] = line.split()[1].rstrip(")")
    ggml = f"{v['MAJOR']}.{v['MINOR']}.{v['PATCH']}"
except Exception:
    pass
r0 = lc[0]
gb = lambda n: f"{n / 1e9:.2f} GB"

lc_peak_tg, lc_anon_tg = mem("lc_tg")
lc_peak_pp, lc_anon_pp = mem("lc_pp")
rows = []
tg1, tg1_v = lc_find(1, 0, decode, 0)
tg2, tg2_v = lc_find(2, 0, decode, 0)
td1, td1_v = lc_find(1, 0, decode, prefill)
td2, td2_v = lc_find(2, 0, decode, prefill)
pp2, _ = lc_find(2, prefill, 0, 0)
lc_name = f"llama.cpp {commit}"
# llama-bench names the model's type, e.g. "llama 135M Q4_1 - Medium"; its last word(s) are the
# weight type.
lc_weights = (r0.get("model_type", "").split(" ", 2)[-1] or "?") + " GGUF"
rows.append(f"| {lc_name} | {lc_weights} | 1 | - | {tg1} | {td1} | {lc_peak_tg:.0f} | {lc_anon_tg:.0f} |")
rows.append(f"| {lc_name} | {lc_weights} | 2 | {pp2} | {tg2} | {td2} | {max(lc_peak_tg, lc_peak_pp):.0f} | {max(lc_anon_tg, lc_anon_pp):.0f} |")
sg_decode = {}
for t in (1, 2):
    runs = sg[t]
    pm, ps = mean_sd([r["prefill_tps"] for r in runs])
    dm, ds = mean_sd([r["decode_tps"] for r in runs])
    sg_decode[t] = dm
    mems = [mem(f"sg_{t}_{i}") for i in range(1, reps + 1)]
    peak = max([m[0] for m in mems] + [r["peak_rss_mb"] for r in runs])
    anon = max([m[1] for m in mems] + [r["rss_anon_mb"] for r in runs])
    rows.append(
        f"| saguaro ({runs[0]['kernels']}) | {quant} .cact | {t} | {pm:.0f} ± {ps:.0f} | - "
        f"| {dm:.1f} ± {ds:.1f} | {peak:.0f} | {anon:.0f} |"
    )
s1 = sg_decode[1]
ratios = []
if td1_v:
    ratios.append(f"{s1 / td1_v:.2f}x llama.cpp's 1-thread decode after {prefill} tokens")
if tg1_v:
    ratios.append(f"{s1 / tg1_v:.2f}x its 1-thread decode from an empty context")
if td2_v:
    ratios.append(f"{s1 / td2_v:.2f}x its 2-thread decode after {prefill} tokens")

repacked = "Q4_0 here" if synthetic else ("none here: repacking was off" if "--repack 0" in llama_args else "where it can")
norepack_note = ("""- † llama-bench crashed (SIGSEGV) on this GGUF with its default weight repacking, so the
  marked measurements ran again with `--repack 0`, its slower plain layout; the unmarked ones
  use the repack.
""" if norepack else "")
extra_note = f" plus `{llama_args}` on every run" if llama_args else ""
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
if synthetic:
    title = "LFM2-8B-A1B shape"
    about = f"""One random-weight LFM2-8B-A1B-shaped model (8.3 B parameters, 32 experts top-4, 24 layers) for
both engines: `benches/llamacpp/make_gguf.py` writes it as a GGUF (`lfm2moe`, every matrix
Q4_0 including the tied embedding; router, expert bias, norms and conv taps F32; {gb(os.path.getsize(gguf))}) and
`saguaro convert --quant int4` turns that same file into the .cact ({gb(os.path.getsize(cact))}; both
formats are 32-weight groups with an f16 scale, and Q4_0 blocks convert to int4 without loss: the
same weights).
`benches/llamacpp/run.sh` made this table in one run."""
    ids_note = "On these random weights greedy\n  decoding repeats the prompt's last token, where llama-bench feeds random ids."
else:
    title = f"{os.path.basename(gguf)} ({r0.get('model_type', '?')})"
    about = f"""The same GGUF for both engines: llama.cpp reads `{os.path.basename(gguf)}` ({gb(os.path.getsize(gguf))}) and
`saguaro convert --quant {quant}` turns that file into the .cact ({gb(os.path.getsize(cact))}; the GGUF's blocks
are converted to Saguaro's {quant}, 32-weight groups with an f16 scale: lossless from Q4_0 to int4
and from Q8_0 to int8, re-rounded otherwise; docs/quantization.md).
`benches/llamacpp/run.sh --gguf {os.path.basename(gguf)} --quant {quant}` made this table in one run."""
    ids_note = "Both feed token ids, not text:\n  llama-bench random ids, Saguaro a fixed pseudo-random prompt and then its own greedy tokens."
text = f"""
## {now}: {title}, Saguaro beside llama.cpp ({cpu}, {cores} cores, {isa}, {platform.system()} {platform.release()})

{about}

| engine | weights | decode threads | prefill {prefill} tok/s (2 threads) | decode tok/s, empty context | decode tok/s after {prefill} tokens | peak RSS MB | RssAnon MB (max) |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Saguaro's 1-thread decode ({s1:.1f} tok/s) is {"; ".join(ratios)}.

- llama.cpp: {commit} (vendored in the llama-cpp-python 0.3.36 sdist; ggml {ggml}), built with
  `-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON`; `llama-bench` with its defaults (mmap, weights
  repacked for the CPU where ggml has such a layout, flash attention auto, ubatch {r0.get('n_ubatch', '?')}){extra_note}: `-p 0 -n {decode} -t 1,2` (empty
  context), the same with `-d {prefill}`, and `-p {prefill} -n 0 -t 2`; mean ± deviation of {reps} repetitions
  ({min(reps, 3)} for `-d`) after a warm-up, random token ids.
{norepack_note}- Saguaro: `saguaro bench --prefill {prefill} --decode {decode} --threads 2 --json`, and with
  `--decode-threads 2`; mean ± deviation of {reps} processes each: a {prefill}-token prompt of fixed
  pseudo-random ids, then {decode} greedy tokens, so its decode runs after {prefill} tokens (the
  like-for-like llama.cpp column is "after {prefill} tokens"). {ids_note}
- Memory: peak RSS is the process's maximum resident set (`/usr/bin/time`), RssAnon the
  largest value sampled from /proc every 0.5 s (llama.cpp: per llama-bench invocation). llama.cpp
  copies the weights it repacks for the CPU ({repacked}) into anonymous memory while reading them through
  the mmapped file, so its peak counts both; Saguaro computes from the mmapped .cact in place.
- Machine load: the benchmarks took {wall_s:.0f} s; other processes used {other_s:.1f} CPU-seconds
  meanwhile (busy time in /proc/stat minus the benchmarks' own).
- Both files were in memory (""" + ("on tmpfs" if fstype == "tmpfs" else "in the page cache") + """) and both engines map them: the
  timings do not include reading them from disk.
"""
print(text)
if record:
    with open("benches/RESULTS.md", "a") as f:
        f.write(text)
PY
