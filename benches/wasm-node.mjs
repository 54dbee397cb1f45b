// The `saguaro bench` measurement for WebAssembly in Node: the npm package's wasm build
// (wasm32 + simd128) on the same synthetic model file and the same prompt.
//
// Usage: node benches/wasm-node.mjs MODEL.cact PREFILL DECODE   (prints one JSON line)
//
// Same method as the native bench (host/src/bench.rs): a deterministic prompt of PREFILL
// ids, prefill with greedy pick of the first token (time to first token), then DECODE more
// greedy tokens one at a time. `generateTokens` calls back synchronously after each token, so
// the timestamps split prefill from decode inside one call.
//
// SAGUARO_WASM_MODULE=plain | relaxed | threads | threads-relaxed loads that module
// (saguaro_wasm_bg.wasm, _relaxed_bg, _threads_bg or _threads_relaxed_bg) whatever the runtime supports;
// unset, the package chooses. The threads module runs SAGUARO_WASM_THREADS threads (default 2)
// for prefill and decode (worker_threads on one shared memory); the others one.
import { readFile } from 'node:fs/promises';
import { init, memoryBytes, Model, relaxedSimd, threadCount } from '../npm/dist/node.js';

const which = process.env.SAGUARO_WASM_MODULE;
if ((which === 'relaxed' || which === 'threads-relaxed') && !relaxedSimd()) {
  console.error('wasm-node: this Node has no relaxed-simd (Node 20: --experimental-wasm-relaxed-simd)');
  process.exit(1);
}
const files = {
  plain: 'saguaro_wasm_bg.wasm',
  relaxed: 'saguaro_wasm_relaxed_bg.wasm',
  threads: 'saguaro_wasm_threads_bg.wasm',
  'threads-relaxed': 'saguaro_wasm_threads_relaxed_bg.wasm',
};
if (which !== undefined) {
  if (!(which in files)) {
    console.error(`wasm-node: SAGUARO_WASM_MODULE must be plain, relaxed, threads or threads-relaxed, not ${which}`);
    process.exit(2);
  }
  const threads = which.startsWith('threads') ? Number(process.env.SAGUARO_WASM_THREADS ?? 2) : 1;
  await init(readFile(new URL(`../npm/wasm/${files[which]}`, import.meta.url)), { threads });
}

const [path, prefillArg, decodeArg] = process.argv.slice(2);
if (!path) {
  console.error('usage: node benches/wasm-node.mjs MODEL.cact PREFILL DECODE');
  process.exit(2);
}
const prefill = Number(prefillArg ?? 1024);
const decode = Number(decodeArg ?? 100);

const MB = 1024 * 1024;
const t0 = performance.now();
const model = await Model.load(path);
const openMs = performance.now() - t0;
const rssOpen = process.memoryUsage().rss;

const vocab = model.info.vocab_size;
// The native bench's prompt: ids avoiding the special ids below 16, i * 2654435761 >> 8 (u32).
const [first, span] = vocab > 32 ? [16, vocab - 16] : [0, vocab];
const prompt = new Uint32Array(prefill);
for (let i = 0; i < prefill; i++) prompt[i] = first + ((Math.imul(i, 2654435761) >>> 0) >>> 8) % span;

const stamps = [];
const start = performance.now();
model.generateTokens(prompt, { maxTokens: decode + 1, onToken: () => { stamps.push(performance.now()); } });
const ttft = (stamps[0] - start) / 1000;
const decodeSecs = (stamps[stamps.length - 1] - stamps[0]) / 1000;

console.log(JSON.stringify({
  model: path,
  surface: (threadCount() > 1 ? 'wasm-node-threads' : 'wasm-node') + (model.info.kernels === 'simd128+relaxed' ? '-relaxed' : ''),
  kernels: model.info.kernels,
  node: process.version,
  prefill_threads: model.info.threads,
  decode_threads: model.info.threads,
  prefill_tokens: prefill,
  decode_tokens: decode,
  prefill_tps: prefill / ttft,
  decode_tps: decode > 0 ? decode / decodeSecs : 0,
  time_to_first_token_ms: ttft * 1000,
  open_ms: openMs,
  rss_open_mb: rssOpen / MB,
  rss_mb: process.memoryUsage().rss / MB,
  wasm_memory_mb: memoryBytes() / MB,
}));
model.free();
