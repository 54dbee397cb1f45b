// Node: the WebAssembly module is read from the package folder, and a string source that is not
// an http(s)/data/blob URL is a file path (read in chunks straight into WebAssembly memory).
// Threads are worker_threads running dist/thread-worker-node.js; SAGUARO_WASM_THREADS (a count
// or `auto`) sets the default thread count (init's `threads` option wins over it).
//
//   import { Model } from '@saguaro/llm';
//   const model = await Model.load('./lfm2-350m-int8.cact');

import { open, readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

import { SaguaroError, setPlatform } from './core.js';
import type { LocalFile } from './core.js';

/** `source` as a file path, or null when it is a URL to fetch. */
function filePath(source: string | URL): string | null {
  if (source instanceof URL) return source.protocol === 'file:' ? fileURLToPath(source) : null;
  if (/^file:/i.test(source)) return fileURLToPath(source);
  // http:, https:, data:, blob: ... (a Windows drive letter such as C:\ is a path)
  if (/^[a-z][a-z0-9+.-]+:/i.test(source) && !/^[a-z]:[\\/]/i.test(source)) return null;
  return source;
}

async function openFile(path: string): Promise<LocalFile> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (e) {
    throw new SaguaroError(`could not open the model file ${path}: ${e instanceof Error ? e.message : String(e)}`, 'io', { cause: e });
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new SaguaroError(`${path} is not a file`, 'io');
    return {
      size: stat.size,
      read: async (into, position) => {
        try {
          return (await handle.read(into, 0, into.byteLength, position)).bytesRead;
        } catch (e) {
          throw new SaguaroError(`could not read the model file ${path}: ${e instanceof Error ? e.message : String(e)}`, 'io', { cause: e });
        }
      },
      close: () => handle.close(),
    };
  } catch (e) {
    await handle.close().catch(() => {});
    throw e;
  }
}

/**
 * The thread workers' Node options: inherited (the default), unless the process was started with
 * options that say what its main script is (`node --input-type=module -e ...`, `node --test`),
 * which would make a worker fail to start: then none. A thread only loads this package's files,
 * and V8's flags (the wasm ones among them) are process-wide, so it needs none of them; Node
 * rejects V8 flags in a worker's explicit execArgv anyway.
 */
function workerExecArgv(): string[] | undefined {
  const scriptOptions = /^(--input-type|--eval|-e|--print|-p|--test)(=|-|$)/;
  return process.execArgv.some((a) => scriptOptions.test(a)) ? [] : undefined;
}

const wasmFiles = {
  simd128: '../wasm/saguaro_wasm_bg.wasm',
  relaxed: '../wasm/saguaro_wasm_relaxed_bg.wasm',
  threads: '../wasm/saguaro_wasm_threads_bg.wasm',
  'threads-relaxed': '../wasm/saguaro_wasm_threads_relaxed_bg.wasm',
};

setPlatform({
  priority: 2,
  wasm: (kind) => readFile(new URL(wasmFiles[kind], import.meta.url)),
  openFile(source) {
    const path = filePath(source);
    return path === null ? null : openFile(path);
  },
  spawnThread: () => {
    const execArgv = workerExecArgv();
    const worker = new Worker(new URL('./thread-worker-node.js', import.meta.url), { name: 'saguaro-thread', ...(execArgv ? { execArgv } : {}) });
    return {
      postMessage: (m) => worker.postMessage(m),
      onMessage: (f) => worker.on('message', f),
      onError: (f) => worker.on('error', f),
      // A thread serves until the process ends: it must not keep the process alive once it
      // runs (until then, the wait for it does).
      serving: () => worker.unref(),
    };
  },
  cores: () => availableParallelism(),
  threadsForbidden: () => {
    // Node's permission model (--experimental-permission / --permission) without --allow-worker.
    const permission = (process as { permission?: { has(scope: string): boolean } }).permission;
    return permission && !permission.has('worker') ? "Node's permission model forbids worker threads (run with --allow-worker)" : null;
  },
  threadsFromEnv: () => {
    const v = process.env.SAGUARO_WASM_THREADS;
    if (v === undefined || v === '' || v === 'auto') return v === 'auto' ? 'auto' : undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw new SaguaroError(`SAGUARO_WASM_THREADS must be 'auto' or an integer, not ${v}`, 'input');
    return n;
  },
});

export * from './core.js';
