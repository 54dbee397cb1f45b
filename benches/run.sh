#!/usr/bin/env bash
# The benchmark harness: synthetic LFM2-350M-shaped models (int8 and int4, `saguaro synth`),
# the machine's single-thread read-bandwidth ceiling, then for each model `saguaro bench`
# (native), benches/wasm-node.mjs (the npm package's wasm build in Node) and
# `saguaro bench --engine component` (the WASI component in wasmtime), appended as a dated
# table to benches/RESULTS.md. `--moe` adds the LFM2-8B-A1B-shaped int4 model (4.7 GB, native).
#
# `--json-schema FILE` also decodes under that schema's token masks (native rows; see
# `saguaro bench --json-schema`) and records the mask cost per token beside the plain decode.
#
# Surfaces: native, wasm-node, wasm-node-relaxed (the npm package's relaxed-simd module: Node 20
# gets --experimental-wasm-relaxed-simd), wasm-node-threads and wasm-node-threads-relaxed (the
# threads modules on --threads worker threads, prefill and decode), component, and component-epochs (the component
# compiled with wasmtime's epoch checks, `--component-epochs`: what mid-call cancellation costs).
#
# Usage: benches/run.sh [--prefill N] [--decode N] [--threads N]
#                       [--surfaces native,wasm-node,wasm-node-relaxed,wasm-node-threads,wasm-node-threads-relaxed,component]
#                       [--moe] [--json-schema FILE] [--no-record]
# Run it on an otherwise idle machine: the figures are wall-clock speeds.
set -euo pipefail
cd "$(dirname "$0")/.."

prefill=1024 decode=100 threads=$(nproc) record=1 surfaces=native,wasm-node,wasm-node-relaxed,wasm-node-threads,wasm-node-threads-relaxed,component moe=0 schema_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --surfaces) surfaces=$2; shift 2 ;;
    --moe) moe=1; shift ;;
    --json-schema) schema_args=(--json-schema "$2"); shift 2 ;;
    --prefill) prefill=$2; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --no-record) record=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

has() { case ",$surfaces," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# wasmtime (the `component` feature) only when the component is benchmarked.
if has component || has component-epochs; then
  cargo build --quiet --release --locked -p saguaro-host
else
  cargo build --quiet --release --locked -p saguaro-host --no-default-features
fi
bin=target/release/saguaro
mkdir -p benches/models
for quant in int8 int4; do
  model=benches/models/lfm2-350m-$quant.cact
  [ -f "$model" ] || "$bin" synth --shape lfm2-350m --quant "$quant" -o "$model" --quiet
done

models=(benches/models/lfm2-350m-int8.cact benches/models/lfm2-350m-int4.cact)
if [ "$moe" = 1 ]; then
  model=benches/models/lfm2-8b-a1b-int4.cact
  [ -f "$model" ] || "$bin" synth --shape lfm2-8b-a1b --quant int4 -o "$model" --quiet
fi
if has wasm-node || has wasm-node-relaxed || has wasm-node-threads || has wasm-node-threads-relaxed; then
  [ -f npm/dist/node.js ] && [ -f npm/wasm/saguaro_wasm_bg.wasm ] && [ -f npm/wasm/saguaro_wasm_relaxed_bg.wasm ] \
    && [ -f npm/wasm/saguaro_wasm_threads_bg.wasm ] && [ -f npm/wasm/saguaro_wasm_threads_relaxed_bg.wasm ] \
    || ./scripts/build-npm.sh >&2
fi
# The relaxed-simd module: Node 20 validates it only behind a V8 flag (later Nodes ship it).
relaxed_flags=()
if { has wasm-node-relaxed || has wasm-node-threads-relaxed; } && node --experimental-wasm-relaxed-simd -e 0 2>/dev/null; then
  relaxed_flags=(--experimental-wasm-relaxed-simd)
fi
component_args=()
if has component || has component-epochs; then
  component=$(./scripts/build-component.sh | tail -n 1)
  component_args=(--engine component --component "$component")
fi

bandwidth=$("$bin" bench --bandwidth --json)
results=()
for model in "${models[@]}"; do
  # Dropping the page cache's advantage between runs is not possible without root tricks;
  # the model is read once before timing by the open + prefill anyway.
  if has native; then
    results+=("$("$bin" bench --model "$model" --prefill "$prefill" --decode "$decode" --threads "$threads" ${schema_args[@]+"${schema_args[@]}"} --json)")
  fi
  if has wasm-node; then
    results+=("$(SAGUARO_WASM_MODULE=plain node benches/wasm-node.mjs "$model" "$prefill" "$decode")")
  fi
  if has wasm-node-relaxed; then
    results+=("$(SAGUARO_WASM_MODULE=relaxed node ${relaxed_flags[@]+"${relaxed_flags[@]}"} benches/wasm-node.mjs "$model" "$prefill" "$decode")")
  fi
  if has wasm-node-threads; then
    results+=("$(SAGUARO_WASM_MODULE=threads SAGUARO_WASM_THREADS="$threads" node benches/wasm-node.mjs "$model" "$prefill" "$decode")")
  fi
  if has wasm-node-threads-relaxed; then
    results+=("$(SAGUARO_WASM_MODULE=threads-relaxed SAGUARO_WASM_THREADS="$threads" node ${relaxed_flags[@]+"${relaxed_flags[@]}"} benches/wasm-node.mjs "$model" "$prefill" "$decode")")
  fi
  if has component; then
    results+=("$("$bin" bench --model "$model" --prefill "$prefill" --decode "$decode" "${component_args[@]}" --json)")
  fi
  if has component-epochs; then
    results+=("$("$bin" bench --model "$model" --prefill "$prefill" --decode "$decode" "${component_args[@]}" --component-epochs --json)")
  fi
done
if [ "$moe" = 1 ] && has native; then
  results+=("$("$bin" bench --model benches/models/lfm2-8b-a1b-int4.cact --prefill "$prefill" --decode "$decode" --threads "$threads" --json)")
fi

python3 - "$bandwidth" "$record" "${results[@]}" <<'PY'
import json, platform, subprocess, sys, datetime
bandwidth = json.loads(sys.argv[1])["read_bandwidth_gbs"]
record = sys.argv[2] == "1"
rows = [json.loads(r) for r in sys.argv[3:]]
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
lines = []
lines.append(f"\n## {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}: {cpu}, {cores} cores, {platform.system()} {platform.release()}\n")
lines.append(f"Single-thread read bandwidth (saguaro bench --bandwidth): {bandwidth:.1f} GB/s.\n")
lines.append("| surface | model | kernels | prefill tok/s (threads) | decode tok/s (threads) | decode % of bandwidth ceiling | TTFT ms | open ms | peak RSS MB | RssAnon after open MB | RssAnon after decode MB |")
lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
# Bytes per decoded token come from the native bench of the same file (same model, same reads).
bytes_per_token = {r["model"]: r["bytes_per_decode_token"] for r in rows if "bytes_per_decode_token" in r}
def f(r, key, fmt):
    return format(r[key], fmt) if key in r else "-"
for r in rows:
    name = r["model"].rsplit("/", 1)[-1].removesuffix(".cact")
    surface = r.get("surface", "native")
    frac = "-"
    if r["model"] in bytes_per_token:
        ceiling = bandwidth * 1e9 / bytes_per_token[r["model"]]
        frac = f"{r['decode_tps'] / ceiling * 100:.0f}% of {ceiling:.0f} tok/s"
    if surface.startswith("wasm-node"):
        # Node: whole-process RSS (the wasm heap holds the model: there is no mmap in wasm).
        mem = f"{r['rss_mb']:.0f} (process RSS) | - | - "
    else:
        mem = f"{f(r, 'peak_rss_mb', '.0f')} | {f(r, 'rss_anon_open_mb', '.1f')} | {f(r, 'rss_anon_mb', '.1f')} "
    lines.append(f"| {surface} | {name} | {r['kernels']} | {r['prefill_tps']:.0f} ({r['prefill_threads']}) | {r['decode_tps']:.1f} ({r.get('decode_threads', 1)}) | {frac} | {r['time_to_first_token_ms']:.0f} | {r['open_ms']:.1f} | {mem}|")
for r in rows:
    if "mask_ms_mean" in r:
        name = r["model"].rsplit("/", 1)[-1].removesuffix(".cact")
        lines.append(f"\nConstrained decoding ({name}, schema {r['json_schema']}, synthetic 65536-token byte-level vocabulary): "
                     f"mask {r['mask_ms_mean']:.3f} ms/token mean (p50 {r['mask_ms_p50']:.3f}, p99 {r['mask_ms_p99']:.3f}, max {r['mask_ms_max']:.3f}) = "
                     f"{r['mask_cost_pct_of_decode']:.1f}% of a plain decode step; constrained decode {r['constrained_decode_tps']:.1f} tok/s vs {r['decode_tps']:.1f}; "
                     f"grammar compile {r['grammar_compile_ms_mean']:.1f} ms per request, vocabulary trie {r['constraint_vocab_build_ms']:.0f} ms once per model; "
                     f"{r['documents_completed']} documents completed.")
lines.append(f"\nprefill {rows[0]['prefill_tokens']} tokens, decode {rows[0]['decode_tokens']} tokens after it; ceiling = bandwidth / bytes read per decoded token (all weights + KV cache at the mean position; MoE: the k chosen experts).")
text = "\n".join(lines) + "\n"
print(text)
if record:
    with open("benches/RESULTS.md", "a") as f:
        f.write(text)
PY
