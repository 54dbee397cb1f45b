#!/usr/bin/env bash
# The benchmark harness: synthetic LFM2-350M-shaped models (int8 and int4, `saguaro synth`),
# the machine's single-thread read-bandwidth ceiling, then `saguaro bench` for each model,
# appended as a dated table to benches/RESULTS.md.
#
# Usage: benches/run.sh [--prefill N] [--decode N] [--threads N] [--no-record]
# Run it on an otherwise idle machine: the figures are wall-clock speeds.
set -euo pipefail
cd "$(dirname "$0")/.."

prefill=1024 decode=100 threads=$(nproc) record=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefill) prefill=$2; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --no-record) record=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --quiet --release --locked -p saguaro-host
bin=target/release/saguaro
mkdir -p benches/models
for quant in int8 int4; do
  model=benches/models/lfm2-350m-$quant.cact
  [ -f "$model" ] || "$bin" synth --shape lfm2-350m --quant "$quant" -o "$model" --quiet
done

bandwidth=$("$bin" bench --bandwidth --json)
results=()
for quant in int8 int4; do
  # Drop the page cache's advantage between runs is not possible without root tricks;
  # the model is read once before timing by the open + prefill anyway.
  results+=("$("$bin" bench --model benches/models/lfm2-350m-$quant.cact --prefill "$prefill" --decode "$decode" --threads "$threads" --json)")
done

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
lines.append("| surface | model | kernels | prefill tok/s (threads) | decode tok/s (1 thread) | decode % of bandwidth ceiling | TTFT ms | open ms | peak RSS MB | RssAnon after open MB | RssAnon after decode MB |")
lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    name = r["model"].rsplit("/", 1)[-1].removesuffix(".cact")
    ceiling = bandwidth * 1e9 / r["bytes_per_decode_token"]
    frac = r["decode_tps"] / ceiling * 100
    lines.append(f"| native | {name} | {r['kernels']} | {r['prefill_tps']:.0f} ({r['prefill_threads']}) | {r['decode_tps']:.1f} | {frac:.0f}% of {ceiling:.0f} tok/s | {r['time_to_first_token_ms']:.0f} | {r['open_ms']:.1f} | {r['peak_rss_mb']:.0f} | {r['rss_anon_open_mb']:.1f} | {r['rss_anon_mb']:.1f} |")
lines.append(f"\nprefill {rows[0]['prefill_tokens']} tokens, decode {rows[0]['decode_tokens']} tokens after it; ceiling = bandwidth / bytes read per decoded token (all weights + KV cache at the mean position).")
text = "\n".join(lines) + "\n"
print(text)
if record:
    with open("benches/RESULTS.md", "a") as f:
        f.write(text)
PY
