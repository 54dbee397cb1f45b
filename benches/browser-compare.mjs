// The wasm rows of benches/compare.sh: wllama (llama.cpp in WebAssembly) and Saguaro's npm
// package in headless Chromium, on the same models (a GGUF for wllama, its `saguaro convert`
// .cact for Saguaro), the pages alternating for REPS rounds. Prints one JSON line per run.
// One thread by default (no cross-origin isolation, so wllama runs its single-thread build);
// `--threads T` (T > 1) serves the pages cross-origin isolated (COOP + COEP) and runs both
// engines' thread builds on T threads.
//
// Usage: node benches/browser-compare.mjs --wllama DIR --prefill P --decode N --reps R \
//          [--threads T] [--engines wllama,saguaro] GGUF:CACT [GGUF:CACT ...]
//   DIR: an installed @wllama/wllama package folder (benches/compare.sh installs it, pinned).
//
// Method, both engines: a P-token prompt of the native bench's pseudo-random ids, then N more
// tokens greedily, the model loaded once per round (load time is not counted).
// - Saguaro: `Model.generateTokens` on the page's main thread; prefill speed = P / time to the
//   first token, decode speed = N / the time from the first to the last token (the
//   `saguaro bench` method). The package picks its module (relaxed-simd in Chromium). With
//   threads: `WorkerModel.generateTokens` (the model in a worker, as threads require), the
//   token times taken on the page as each token's message arrives.
// - wllama: `createCompletion({prompt, max_tokens: N + 1, temperature: 0, ignore_eos})` with a
//   text prompt of P tokens (it cannot take ids; see wllamaRun), and llama.cpp's own timings from
//   the response (`prompt_per_second`, `predicted_per_second`), measured inside its worker;
//   `prompt_n` in each line says how many prompt tokens it counted.
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { chromium } = createRequire(path.join(root, 'npm', 'package.json'))('playwright-core');

const args = process.argv.slice(2);
const opt = { prefill: 512, decode: 64, reps: 3, threads: 1, wllama: '', engines: ['wllama', 'saguaro'] };
const pairs = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--wllama') opt.wllama = args[++i];
  else if (a === '--prefill') opt.prefill = Number(args[++i]);
  else if (a === '--decode') opt.decode = Number(args[++i]);
  else if (a === '--reps') opt.reps = Number(args[++i]);
  else if (a === '--threads') opt.threads = Number(args[++i]);
  else if (a === '--engines') opt.engines = args[++i].split(',');
  else if (a.includes(':')) pairs.push(a.split(':'));
  else throw new Error(`browser-compare: unknown argument ${a}`);
}
if (!opt.wllama || pairs.length === 0) {
  console.error('usage: node benches/browser-compare.mjs --wllama DIR [--prefill P --decode N --reps R] GGUF:CACT ...');
  process.exit(2);
}

// URL prefix -> folder. Models are served by their index (/models/3.cact; wllama wants a URL
// ending in .gguf).
const mounts = {
  '/wllama/': path.join(opt.wllama, 'esm'),
  '/saguaro/': path.join(root, 'npm'),
};
const models = pairs.flat();
const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };
// Cross-origin isolation (SharedArrayBuffer for both engines' thread builds) when threads > 1.
const isolation =
  opt.threads > 1
    ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp', 'cross-origin-resource-policy': 'same-origin' }
    : {};
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  let file;
  const m = url.pathname.match(/^\/models\/(\d+)\.[a-z]+$/);
  if (m) file = models[Number(m[1])];
  else if (url.pathname === '/') {
    res.writeHead(200, { 'content-type': 'text/html', ...isolation });
    res.end('<!doctype html><title>compare</title>');
    return;
  } else {
    for (const [prefix, dir] of Object.entries(mounts)) {
      if (url.pathname.startsWith(prefix)) file = path.join(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
    }
  }
  let size;
  try {
    size = statSync(file).size;
  } catch {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream', 'content-length': size, ...isolation });
  createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;

const profile = mkdtempSync(path.join(tmpdir(), 'saguaro-compare-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});

// The native bench's prompt: ids avoiding the special ids below 16, i * 2654435761 >> 8 (u32).
function prompt(vocab, n) {
  const [first, span] = vocab > 32 ? [16, vocab - 16] : [0, vocab];
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(first + ((Math.imul(i, 2654435761) >>> 0) >>> 8) % span);
  return ids;
}
const ids = prompt(65536, opt.prefill);

async function saguaroRun(page, cactUrl) {
  return page.evaluate(
    async ({ cactUrl, ids, decode, threads }) => {
      const stamps = [];
      let start;
      let info;
      if (threads > 1) {
        const { WorkerModel } = await import('/saguaro/dist/worker-client.js');
        const model = await WorkerModel.load(cactUrl, { threads });
        info = model.info;
        start = performance.now();
        await model.generateTokens(new Uint32Array(ids), { maxTokens: decode + 1, onToken: () => stamps.push(performance.now()) });
        await model.free();
      } else {
        const { Model } = await import('/saguaro/dist/index.js');
        const model = await Model.load(cactUrl);
        info = model.info;
        start = performance.now();
        model.generateTokens(new Uint32Array(ids), { maxTokens: decode + 1, onToken: () => stamps.push(performance.now()) });
        model.free();
      }
      const ttft = (stamps[0] - start) / 1000;
      return {
        kernels: info.kernels,
        threads: info.threads,
        prefill_tps: ids.length / ttft,
        decode_tps: decode / ((stamps[stamps.length - 1] - stamps[0]) / 1000),
        tokens: stamps.length,
      };
    },
    { cactUrl, ids, decode: opt.decode, threads: opt.threads },
  );
}

async function wllamaRun(page, ggufUrl) {
  return page.evaluate(
    async ({ ggufUrl, ids, decode, threads }) => {
      const { Wllama } = await import('/wllama/index.js');
      const w = new Wllama({ default: '/wllama/wasm/wllama.wasm' }, { suppressNativeLog: true });
      await w.loadModelFromUrl(ggufUrl, { n_threads: threads, n_ctx: ids.length + decode + 64, n_batch: 512, n_gpu_layers: 0, useCache: false });
      // wllama 3.13 cannot take token ids (its worker fails on an array prompt): a text of
      // P - 1 letters, one byte token each in these GGUFs (their only merge is "a b", and no
      // "a" is used), after the BOS token.
      const letters = 'cdefghijklmnopqrstuvwxyz';
      let text = '';
      for (let i = 0; i < ids.length - 1; i++) text += letters[ids[i] % letters.length];
      const r = await w.createCompletion({ prompt: text, max_tokens: decode + 1, temperature: 0, ignore_eos: true, cache_prompt: false });
      const t = r.timings;
      const multithread = w.isMultithread();
      const usedThreads = w.getNumThreads?.();
      await w.exit();
      return {
        multithread,
        threads: usedThreads,
        prefill_tps: t.prompt_per_second,
        decode_tps: t.predicted_per_second,
        prompt_n: t.prompt_n,
        tokens: t.predicted_n,
      };
    },
    { ggufUrl, ids, decode: opt.decode, threads: opt.threads },
  );
}

try {
  for (let rep = 1; rep <= opt.reps; rep++) {
    for (const [i, [gguf, cact]] of pairs.entries()) {
      for (const engine of opt.engines) {
        // A fresh page per run: no memory or compiled code carried between engines.
        const page = await browser.newPage();
        page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
        await page.goto(base + '/');
        const t0 = Date.now();
        const r = engine === 'wllama' ? await wllamaRun(page, `${base}/models/${2 * i}.gguf`) : await saguaroRun(page, `${base}/models/${2 * i + 1}.cact`);
        await page.close();
        console.log(JSON.stringify({ engine, rep, gguf, cact, model: engine === 'wllama' ? gguf : cact, wall_s: (Date.now() - t0) / 1000, ...r }));
      }
    }
  }
} finally {
  await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
