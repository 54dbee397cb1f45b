// Only for building the example with Vite (`npx vite` / `npx vite build`); the page also runs
// as it is, without a bundler. The package stays out of dependency pre-bundling so that its
// worker and .wasm URLs (new URL(..., import.meta.url)) keep pointing at its own files.
// The headers make the page cross-origin isolated, so the package's worker runs its threads
// module (see serve.mjs).
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
export default {
  optimizeDeps: { exclude: ['@saguaro/llm'] },
  worker: { format: 'es' },
  server: { headers: isolation },
  preview: { headers: isolation },
};
