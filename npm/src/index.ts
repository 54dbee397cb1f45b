// Browsers and Web Workers (and the default for bundlers): the WebAssembly module is fetched
// from the package's own folder, next to this file's (wasm/saguaro_wasm_bg.wasm, or
// wasm/saguaro_wasm_relaxed_bg.wasm where the runtime has relaxed-simd, or with threads
// wasm/saguaro_wasm_threads_bg.wasm / _threads_relaxed_bg.wasm: Web Workers running
// dist/thread-worker.js, where the page is cross-origin isolated and the model runs in a worker).
//
//   import { Model } from '@saguaro/llm';
//   const model = await Model.load('/models/lfm2-350m-int8.cact', { onProgress, cache: true });
//   const session = model.session();
//   const response = await session.complete({ messages: [{ role: 'user', content: 'Hi' }] },
//                                           { onToken: (t) => out.append(t.text), signal });

import { setPlatform } from './core.js';

const wasmFiles = {
  // Literal URLs, so bundlers see (and copy) every file.
  simd128: () => new URL('../wasm/saguaro_wasm_bg.wasm', import.meta.url),
  relaxed: () => new URL('../wasm/saguaro_wasm_relaxed_bg.wasm', import.meta.url),
  threads: () => new URL('../wasm/saguaro_wasm_threads_bg.wasm', import.meta.url),
  'threads-relaxed': () => new URL('../wasm/saguaro_wasm_threads_relaxed_bg.wasm', import.meta.url),
};

setPlatform({
  priority: 1,
  wasm: (kind) => wasmFiles[kind](),
  spawnThread: () => {
    const worker = new Worker(new URL('./thread-worker.js', import.meta.url), { type: 'module', name: 'saguaro-thread' });
    return {
      postMessage: (m) => worker.postMessage(m),
      onMessage: (f) => worker.addEventListener('message', (e) => f(e.data)),
      onError: (f) => worker.addEventListener('error', (e) => f(e.error ?? new Error(e.message || 'the thread worker failed to load'))),
    };
  },
  cores: () => (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) || 1,
});

export * from './core.js';
