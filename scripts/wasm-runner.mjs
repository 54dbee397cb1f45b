// Cargo runner for wasm32-wasip1 binaries: runs a .wasm (e.g. a test harness) in Node's WASI.
// Usage: node --no-warnings --no-turbo-fast-api-calls scripts/wasm-runner.mjs file.wasm [args...]
// (without --no-turbo-fast-api-calls, Node 20's WASI can corrupt its heap: see test-wasm-kernels.sh)
// Set as CARGO_TARGET_WASM32_WASIP1_RUNNER by scripts/test-wasm-kernels.sh.
// The guest sees the host's environment and the whole file system at the same absolute paths
// ("/" is preopened as "/"; a test that reads files should build absolute paths, e.g. from
// env!("CARGO_MANIFEST_DIR")). Its working directory is "/" (wasi-libc): relative paths do not
// follow the host's. Exit status: the guest's, or 134 when it traps (a panic aborts).
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [wasmPath, ...args] = process.argv.slice(2);
if (!wasmPath) {
  console.error('usage: wasm-runner.mjs file.wasm [args...]');
  process.exit(2);
}

const wasi = new WASI({
  version: 'preview1',
  args: [wasmPath, ...args],
  env: process.env,
  preopens: { '/': '/' },
  returnOnExit: true,
});

let code;
try {
  const module = await WebAssembly.compile(await readFile(wasmPath));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  code = wasi.start(instance);
} catch (e) {
  // A panic under wasm32-wasip1 (panic=abort) ends in an `unreachable` trap; libtest's
  // captured output (the panic message) is lost with it: rerun with `-- --nocapture`.
  const detail = process.env.WASM_RUNNER_STACK ? (e && e.stack) || e : (e && e.message) || e;
  console.error(`wasm-runner: ${wasmPath} trapped: ${detail} (a panic aborts under wasm32-wasip1)`);
  code = 134;
}
process.exitCode = code;
