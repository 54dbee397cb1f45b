// Only for building the example with Vite (`npx vite` / `npx vite build`); the page also runs
// as it is, without a bundler. The package stays out of dependency pre-bundling so that its
// worker and .wasm URLs (new URL(..., import.meta.url)) keep pointing at its own files.
export default {
  optimizeDeps: { exclude: ['@saguaro/llm'] },
  worker: { format: 'es' },
};
