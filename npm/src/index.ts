// Browsers and Web Workers (and the default for bundlers): the WebAssembly module is fetched
// from the package's own folder, next to this file's (wasm/saguaro_wasm_bg.wasm, or
// wasm/saguaro_wasm_relaxed_bg.wasm where the runtime has relaxed-simd).
//
//   import { Model } from '@saguaro/llm';
//   const model = await Model.load('/models/lfm2-350m-int8.cact', { onProgress, cache: true });
//   const session = model.session();
//   const response = await session.complete({ messages: [{ role: 'user', content: 'Hi' }] },
//                                           { onToken: (t) => out.append(t.text), signal });

import { setPlatform } from './core.js';

setPlatform({
  priority: 1,
  // Two literal URLs, so bundlers see (and copy) both files.
  wasm: (relaxed) =>
    relaxed ? new URL('../wasm/saguaro_wasm_relaxed_bg.wasm', import.meta.url) : new URL('../wasm/saguaro_wasm_bg.wasm', import.meta.url),
});

export * from './core.js';
