// The package's API, the same in browsers, workers and Node: Model, Session, SaguaroError.
// The entry points (index.ts for browsers and workers, node.ts for Node) only say where the
// WebAssembly module comes from and how a file path is read.

import * as singleThreadGlue from '../wasm/saguaro_wasm.js';
import type { Model as RawModel, ModelBuffer as RawModelBuffer, Session as RawSession } from '../wasm/saguaro_wasm.js';
import type {
  CompletionRequest,
  CompletionResponse,
  LoadProgress,
  ModelInfo,
  PrefillEvent,
  TokenEvent,
} from './types.js';

export type * from './types.js';

// `using model = await Model.load(...)` needs Symbol.dispose; Node 18 and older browsers lack
// it (Node's own polyfill uses this registered symbol).
if (typeof (Symbol as { dispose?: symbol }).dispose !== 'symbol') {
  Object.defineProperty(Symbol, 'dispose', { value: Symbol.for('nodejs.dispose'), configurable: true });
}

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Every error the package throws. `code` says what went wrong:
 * - from the engine: `config`, `weights`, `format` (a bad model file), `input` (a bad request,
 *   token id or argument), `context_full`, `io` (a download, file or memory problem);
 * - from the package: `freed` (the object was freed), `busy` (a session already runs a request),
 *   `internal` (the WebAssembly instance trapped; load the package again).
 * A failed completion also carries its `response` (`success: false`, as the CLI prints it).
 */
export class SaguaroError extends Error {
  readonly code: SaguaroErrorCode;
  readonly response?: CompletionResponse;

  constructor(message: string, code: SaguaroErrorCode, options: { cause?: unknown; response?: CompletionResponse } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SaguaroError';
    this.code = code;
    if (options.response) this.response = options.response;
  }
}

export type SaguaroErrorCode =
  | 'config'
  | 'weights'
  | 'format'
  | 'input'
  | 'context_full'
  | 'io'
  | 'cancelled'
  | 'freed'
  | 'busy'
  | 'internal'
  | (string & {});

/** An error from the WebAssembly side (an `Error` with `code`) as a SaguaroError. */
function wrap(e: unknown): unknown {
  if (e instanceof SaguaroError) return e;
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string') {
    const { code, response } = e as unknown as { code: string; response?: CompletionResponse };
    return new SaguaroError(e.message, code, { cause: e, response });
  }
  if (typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError) {
    return new SaguaroError(`internal error in the WebAssembly engine (${e.message}); load the package again`, 'internal', { cause: e });
  }
  return e;
}

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw wrap(e);
  }
}

function isAbort(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'AbortError';
}

// ---------------------------------------------------------------------------------------------
// The WebAssembly module

/** Where the WebAssembly module comes from: a URL, its bytes, a compiled module or a Response. */
export type WasmSource = string | URL | BufferSource | WebAssembly.Module | globalThis.Response;

/**
 * The package's WebAssembly modules (all give the same bits):
 * - `simd128`: one thread (`saguaro_wasm_bg.wasm`);
 * - `relaxed`: one thread, with relaxed-simd dot products in the INT4 matrix products
 *   (`saguaro_wasm_relaxed_bg.wasm`);
 * - `threads`: shared memory, its work split across Web Workers or Node worker threads
 *   (`saguaro_wasm_threads_bg.wasm`, with its own glue `saguaro_wasm_threads.js`);
 * - `threads-relaxed`: the same with relaxed-simd (`saguaro_wasm_threads_relaxed_bg.wasm`).
 */
export type WasmKind = 'simd128' | 'relaxed' | 'threads' | 'threads-relaxed';

/** A started thread: a Web Worker or a Node worker thread running thread-worker.js. @internal */
export interface ThreadWorker {
  postMessage(message: unknown): void;
  /** Calls `listener` with each message's data. */
  onMessage(listener: (data: unknown) => void): void;
  /** Calls `listener` when the worker fails to load or throws. */
  onError(listener: (error: unknown) => void): void;
  /** Called once the thread serves the pool (Node: the worker stops holding the process open). */
  serving?(): void;
}

/** A local file (Node): its size and positional reads. @internal */
export interface LocalFile {
  size: number;
  read(into: Uint8Array, position: number): Promise<number>;
  close(): Promise<void>;
}

/** What an entry point provides. @internal */
export interface Platform {
  /** Higher wins when two entry points are loaded (node over browser). */
  priority: number;
  /** The module file of `kind`. */
  wasm(kind: WasmKind): WasmSource | Promise<WasmSource>;
  /** A local file for `source`, or null when it is to be fetched. */
  openFile?(source: string | URL): Promise<LocalFile> | null;
  /** Starts a thread running thread-worker.js (absent: no threads). */
  spawnThread?(): ThreadWorker | Promise<ThreadWorker>;
  /** Logical cores (the default thread count). */
  cores?(): number;
  /** The thread count asked for by the environment (Node: SAGUARO_WASM_THREADS), if any. */
  threadsFromEnv?(): number | 'auto' | undefined;
  /** Why this process may not start threads (Node's permission model), or null. */
  threadsForbidden?(): string | null;
}

let platform: Platform | undefined;

/** @internal */
export function setPlatform(p: Platform): void {
  if (!platform || p.priority >= platform.priority) platform = p;
}

type Glue = typeof singleThreadGlue;
/** The glue of the instantiated module (set by init). */
let glue: Glue | undefined;
let ready: Promise<void> | undefined;
/** Threads of the instantiated module (0 before init). */
let runningThreads = 0;

function useGlue(): Glue {
  if (!glue) throw new SaguaroError('the WebAssembly module is not loaded: call init() (Model.load does) first', 'internal');
  return glue;
}

// The smallest module using i16x8.relaxed_dot_i8x16_i7x16_s: a function returning the dot of two
// zero vectors. It validates where the runtime has relaxed-simd (tested: Chromium 156; Node 20
// only behind --experimental-wasm-relaxed-simd).
const v128Zero = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
  0x03, 0x02, 0x01, 0x00, // functions: one of type 0
  0x0a, 0x2b, 0x01, 0x29, 0x00, ...v128Zero, ...v128Zero, 0xfd, 0x92, 0x02, 0x0b, // code
]);

/**
 * Whether the runtime has WebAssembly relaxed-simd, so the package can load a relaxed module
 * (`saguaro_wasm_relaxed_bg.wasm`, or `saguaro_wasm_threads_relaxed_bg.wasm` with threads: 8-bit
 * dot products in the INT4 matrix products, about 1.45x the INT4 prefill speed). All modules
 * give the same bits: the dot products are used only where every runtime computes the same
 * exact integers. `kernels` in `model.info` says which one runs (`simd128+relaxed` or
 * `simd128`).
 */
export function relaxedSimd(): boolean {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

/**
 * Why this context cannot run the threads build, or null when it can: it needs
 * SharedArrayBuffer (browsers give it only to cross-origin isolated pages: serve the page with
 * `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`),
 * a thread that may block (a Web Worker, e.g. WorkerModel's, or Node; not a page's main
 * thread) and an entry point that can start threads (in Node, one the permission model lets
 * start worker threads).
 */
export function threadsUnavailable(): string | null {
  const g = globalThis as { crossOriginIsolated?: boolean; SharedArrayBuffer?: unknown };
  if (typeof g.SharedArrayBuffer !== 'function') return 'SharedArrayBuffer is missing (a page must be cross-origin isolated: COOP same-origin and COEP require-corp)';
  if (g.crossOriginIsolated === false) return 'the page is not cross-origin isolated (serve it with COOP same-origin and COEP require-corp)';
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
  } catch {
    return "this thread may not block (a page's main thread): run the model in a worker (WorkerModel)";
  }
  if (!platform?.spawnThread) return 'this entry point cannot start threads';
  return platform.threadsForbidden?.() ?? null;
}

/** Options of {@link init}. */
export interface InitOptions {
  /**
   * Threads computing each model (prefill and decode), all giving the same bits. `'auto'` (the
   * default): the logical cores (at most 8) where threads can run (see
   * {@link threadsUnavailable}), else 1. A number above 1 where threads cannot run is an `input`
   * error. Node reads the default from the SAGUARO_WASM_THREADS environment variable.
   */
  threads?: number | 'auto';
}

/** Most threads `'auto'` starts (more cores rarely pay for their memory traffic in wasm). */
const AUTO_THREADS_MAX = 8;

function chooseThreads(asked: number | 'auto' | undefined): number {
  const want = asked ?? platform?.threadsFromEnv?.() ?? 'auto';
  const why = threadsUnavailable();
  if (want === 'auto') {
    if (why !== null) return 1;
    return Math.max(1, Math.min(AUTO_THREADS_MAX, Math.floor(platform?.cores?.() ?? 1)));
  }
  if (!Number.isInteger(want) || want < 1 || want > 64) throw new SaguaroError(`threads must be 'auto' or an integer from 1 to 64, not ${String(want)}`, 'input');
  if (want > 1 && why !== null) throw new SaguaroError(`cannot run ${want} threads here: ${why}`, 'input');
  return want;
}

/** Compiles a module source (what the glue accepts, compiled here so init can look at it). */
async function compile(source: WasmSource): Promise<WebAssembly.Module> {
  if (source instanceof WebAssembly.Module) return source;
  if (typeof source === 'string' || source instanceof URL) source = await fetch(source);
  if (typeof Response === 'function' && source instanceof Response) {
    if (!source.ok) throw new Error(`${source.url}: HTTP ${source.status}`);
    const type = source.headers.get('Content-Type') ?? '';
    if (typeof WebAssembly.compileStreaming === 'function' && type.startsWith('application/wasm')) return WebAssembly.compileStreaming(source);
    return WebAssembly.compile(await source.arrayBuffer());
  }
  return WebAssembly.compile(source as BufferSource);
}

/**
 * Instantiates the WebAssembly module (Model.load does it on first use) and starts its threads.
 * Call it first only to load the module from somewhere else (a CDN, bytes you already have:
 * any of the package's modules, see {@link WasmKind}; a single-thread one runs one thread), to
 * choose the thread count, or to start early. Once per page or process: later calls return the
 * first one's promise (an explicit `threads` other than the running count is an `input` error).
 */
export function init(source?: WasmSource | Promise<WasmSource>, options: InitOptions = {}): Promise<void> {
  const asked = options.threads;
  if (ready && typeof asked === 'number') {
    // The module runs one thread count for its lifetime: a different explicit count is an error.
    return ready.then(() => {
      if (asked !== runningThreads) {
        throw new SaguaroError(`the WebAssembly module already runs ${runningThreads} thread(s); it cannot change to ${asked} (threads are chosen by the first init or Model.load)`, 'input');
      }
    });
  }
  if (!ready) {
    ready = (async () => {
      let threads = chooseThreads(options.threads);
      const relaxed = relaxedSimd();
      let kind: WasmKind = threads > 1 ? (relaxed ? 'threads-relaxed' : 'threads') : relaxed ? 'relaxed' : 'simd128';
      let g: Glue;
      try {
        let input: WasmSource | undefined;
        if (source !== undefined) {
          // A module given by the caller decides: the threads build is the one importing its
          // (shared) memory.
          const module = await compile(await source);
          const shared = WebAssembly.Module.imports(module).some((i) => i.kind === 'memory');
          if (!shared && threads > 1) {
            if (options.threads !== undefined && options.threads !== 'auto') {
              throw new SaguaroError(`the WebAssembly module given to init has no threads (it is not saguaro_wasm_threads_bg.wasm); asked for ${threads}`, 'input');
            }
            threads = 1;
          }
          // (Plain or relaxed: the glue is the same.)
          kind = shared ? 'threads' : 'simd128';
          input = module;
        } else {
          input = await platform?.wasm(kind);
        }
        g = kind.startsWith('threads') ? ((await import('../wasm/saguaro_wasm_threads.js')) as unknown as Glue) : singleThreadGlue;
        // Without an entry point's answer, the glue finds the file next to itself.
        await g.default(input === undefined ? undefined : { module_or_path: input });
      } catch (e) {
        if (e instanceof SaguaroError) throw e;
        throw new SaguaroError(`could not load the Saguaro WebAssembly module: ${e instanceof Error ? e.message : String(e)}`, 'io', {
          cause: e,
        });
      }
      if (threads > 1) await startThreads(g, threads);
      glue = g;
      runningThreads = threads;
    })();
    ready.catch(() => {
      ready = undefined;
    });
  }
  return ready;
}

/**
 * Threads the WebAssembly instance computes on (0 before init; `model.info.threads` says the
 * same per model, and `model.info.kernels` which kernels run).
 */
export function threadCount(): number {
  return runningThreads;
}

/** How long a thread may take to load the module before init gives up. */
const THREAD_START_MS = 60_000;

/** Starts the workers of the module's thread pool and waits until each serves it. */
async function startThreads(g: Glue, threads: number): Promise<void> {
  const spawn = platform?.spawnThread;
  if (!spawn) throw new SaguaroError('this entry point cannot start threads', 'input');
  const workers = call(() => g.startThreads(threads));
  const module = g.threadModule();
  const memory = g.threadMemory();
  const started = Array.from({ length: workers }, async () => {
    const worker = await spawn();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer in ${THREAD_START_MS / 1000} s`)), THREAD_START_MS);
      worker.onMessage((data) => {
        const m = data as { saguaroThread?: string; error?: string } | null;
        if (m?.saguaroThread === 'serving') {
          clearTimeout(timer);
          worker.serving?.();
          resolve();
        } else if (m?.saguaroThread === 'failed') {
          clearTimeout(timer);
          reject(new Error(m.error ?? 'unknown error'));
        }
      });
      worker.onError((e) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String((e as { message?: unknown })?.message ?? e)));
      });
      worker.postMessage({ saguaroThread: 'start', module, memory });
    });
  });
  try {
    await Promise.all(started);
  } catch (e) {
    // The pool still computes (a missing worker's tasks run on the other threads), but not
    // with the threads asked for: say so instead of running slower in silence.
    throw new SaguaroError(`could not start the WebAssembly threads: ${e instanceof Error ? e.message : String(e)}`, 'io', { cause: e });
  }
}

/** Size of the WebAssembly memory in bytes (0 before init). It grows as needed and never shrinks. */
export function memoryBytes(): number {
  try {
    return glue ? glue.memoryBytes() : 0;
  } catch {
    return 0;
  }
}

/**
 * Largest model file the wasm32 build accepts (3.5 GiB): linear memory is at most 4 GiB and the
 * engine needs room for its state besides the file. Bigger files fail with an `io` error.
 */
export const MAX_MODEL_BYTES = 3.5 * 1024 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Yielding to the event loop

/** A macrotask turn: timers, I/O, messages and aborts run; the page can paint. */
const yieldToEventLoop: () => Promise<void> = (() => {
  const g = globalThis as unknown as {
    setImmediate?: (f: () => void) => unknown;
    MessageChannel?: typeof MessageChannel;
  };
  // Not scheduler.yield(): its continuation goes ahead of pending tasks, so timers (and the
  // aborts they trigger) could starve. A message task lets every queued task run first.
  if (typeof g.setImmediate === 'function') return () => new Promise<void>((resolve) => g.setImmediate!(resolve));
  if (typeof g.MessageChannel === 'function') {
    const channel = new g.MessageChannel();
    const waiting: Array<() => void> = [];
    channel.port1.onmessage = () => waiting.shift()?.();
    return () =>
      new Promise<void>((resolve) => {
        waiting.push(resolve);
        channel.port2.postMessage(null);
      });
  }
  return () => new Promise<void>((resolve) => setTimeout(resolve, 0));
})();

const now: () => number =
  typeof performance !== 'undefined' && typeof performance.now === 'function' ? () => performance.now() : () => Date.now();

/** Calls `yieldToEventLoop` when `budgetMs` have passed since the last turn. */
class Yielder {
  private last = now();
  constructor(private readonly budgetMs: number) {}
  async maybe(): Promise<void> {
    if (now() - this.last >= this.budgetMs) {
      await yieldToEventLoop();
      this.last = now();
    }
  }
}

/** Default time between two event-loop turns during long work (ms). */
const YIELD_MS = 8;

// ---------------------------------------------------------------------------------------------
// Loading

/**
 * What a model can be loaded from: a URL (string or URL; in Node a string or `file:` URL
 * that is not http(s) is a file path), the file's bytes, a Blob/File, a fetch Response, or a
 * ReadableStream of its bytes.
 */
export type ModelSource = string | URL | ArrayBuffer | ArrayBufferView | Blob | globalThis.Response | ReadableStream<Uint8Array>;

export interface LoadOptions {
  /** Progress: `{phase: 'download' | 'load', loaded, total}` (see LoadProgress). */
  onProgress?: (progress: LoadProgress) => void;
  /** Cancels the download or load (the promise rejects with the signal's reason, an AbortError). */
  signal?: AbortSignal;
  /**
   * Browsers: keep downloaded models in the Cache API (the cache named by the string, default
   * `saguaro-models`), keyed by URL and revalidated by size (and ETag) with a HEAD request when
   * online. Ignored where the Cache API is missing (Node, insecure origins).
   */
  cache?: boolean | string;
  /** Extra fetch options for URL sources (headers, credentials, ...). */
  fetchOptions?: RequestInit;
  /** For a ReadableStream source: its length in bytes, if known (the buffer is then allocated once). */
  size?: number;
  /** Where to load the WebAssembly module from (default: the package's own file). */
  wasm?: WasmSource;
  /** Threads, for the first load (see {@link InitOptions.threads}). */
  threads?: number | 'auto';
}

/** Bytes handed to the engine per call: the JS-to-wasm copy of a chunk uses this much scratch. */
const WRITE_SLICE = 1 << 20;

class Loader {
  loaded = 0;
  private readonly yielder = new Yielder(16);

  constructor(
    private readonly options: LoadOptions,
    private readonly phase: LoadProgress['phase'],
    private total: number,
    private readonly cached = false,
  ) {}

  check(): void {
    this.options.signal?.throwIfAborted();
  }

  progress(): void {
    const p: LoadProgress = { phase: this.phase, loaded: this.loaded, total: this.total };
    if (this.cached) p.cached = true;
    this.options.onProgress?.(p);
  }

  /** A buffer for the whole file (an `io` error when wasm32 cannot hold it). */
  allocate(len: number): RawModelBuffer {
    this.total = len;
    return call(() => new (useGlue().ModelBuffer)(len));
  }

  /** Copies `chunk` into `buffer` at `this.loaded`. */
  write(buffer: RawModelBuffer, chunk: Uint8Array): void {
    if (this.loaded + chunk.byteLength > buffer.length) {
      throw new SaguaroError(
        `the model source delivered more than the ${buffer.length} bytes it announced (a compressed transfer? serve .cact files without Content-Encoding)`,
        'io',
      );
    }
    for (let at = 0; at < chunk.byteLength; at += WRITE_SLICE) {
      const slice = chunk.subarray(at, Math.min(at + WRITE_SLICE, chunk.byteLength));
      call(() => buffer.write(this.loaded, slice));
      this.loaded += slice.byteLength;
    }
  }

  async pause(): Promise<void> {
    await this.yielder.maybe();
    this.check();
  }
}

/** Parses a filled buffer into a model (the buffer is consumed). */
function finish(buffer: RawModelBuffer, options: LoadOptions): RawModel {
  const raw = call(() => buffer.finish());
  const total = raw.info().file_bytes as number;
  options.onProgress?.({ phase: 'load', loaded: total, total });
  return raw;
}

async function withBuffer(loader: Loader, len: number, options: LoadOptions, fill: (b: RawModelBuffer) => Promise<void>): Promise<RawModel> {
  loader.check();
  const buffer = loader.allocate(len);
  try {
    loader.progress();
    await fill(buffer);
    loader.check();
  } catch (e) {
    buffer.free();
    throw e;
  }
  return finish(buffer, options);
}

async function fromMemory(bytes: Uint8Array, options: LoadOptions): Promise<RawModel> {
  const loader = new Loader(options, 'load', bytes.byteLength);
  return withBuffer(loader, bytes.byteLength, options, async (buffer) => {
    const step = 16 << 20;
    for (let at = 0; at < bytes.byteLength; at += step) {
      loader.write(buffer, bytes.subarray(at, Math.min(at + step, bytes.byteLength)));
      loader.progress();
      await loader.pause();
    }
  });
}

async function fromFile(file: LocalFile, options: LoadOptions): Promise<RawModel> {
  try {
    const loader = new Loader(options, 'load', file.size);
    return await withBuffer(loader, file.size, options, async (buffer) => {
      const scratch = new Uint8Array(Math.min(4 << 20, Math.max(file.size, 1)));
      while (loader.loaded < file.size) {
        const n = await file.read(scratch, loader.loaded);
        if (n === 0) break; // the file shrank: finish() reports the missing bytes
        loader.write(buffer, scratch.subarray(0, n));
        loader.progress();
        await loader.pause();
      }
    });
  } finally {
    await file.close().catch(() => {});
  }
}

/** Reads a stream into a buffer allocated once (`len` known) or after collecting its chunks. */
async function fromStream(
  stream: ReadableStream<Uint8Array>,
  len: number | undefined,
  options: LoadOptions,
  phase: LoadProgress['phase'],
  cached = false,
): Promise<RawModel> {
  const reader = stream.getReader();
  const loader = new Loader(options, phase, len ?? 0, cached);
  const read = async (): Promise<Uint8Array | undefined> => {
    loader.check();
    const { done, value } = await reader.read();
    return done ? undefined : value;
  };
  try {
    if (len !== undefined) {
      return await withBuffer(loader, len, options, async (buffer) => {
        for (let chunk = await read(); chunk; chunk = await read()) {
          loader.write(buffer, chunk);
          loader.progress();
        }
      });
    }
    // Unknown length: keep the chunks, then copy them into a buffer of the final size.
    const chunks: Uint8Array[] = [];
    let total = 0;
    loader.progress();
    for (let chunk = await read(); chunk; chunk = await read()) {
      chunks.push(chunk);
      total += chunk.byteLength;
      loader.loaded = total;
      loader.progress();
    }
    const writer = new Loader({ signal: options.signal }, phase, total, cached); // progress already reported
    return await withBuffer(writer, total, options, async (buffer) => {
      while (chunks.length) writer.write(buffer, chunks.shift()!);
    });
  } catch (e) {
    reader.cancel(e).catch(() => {});
    throw e;
  } finally {
    reader.releaseLock();
  }
}

/** The body's length when Content-Length gives it (and no Content-Encoding changes it). */
function knownLength(res: globalThis.Response): number | undefined {
  const header = res.headers.get('content-length');
  const encoding = res.headers.get('content-encoding');
  if (header === null || !/^\d+$/.test(header.trim())) return undefined;
  if (encoding && encoding.trim().toLowerCase() !== 'identity') return undefined;
  return Number(header);
}

async function fromResponse(res: globalThis.Response, options: LoadOptions, phase: LoadProgress['phase'], cached = false): Promise<RawModel> {
  if (!res.ok) {
    throw new SaguaroError(`could not fetch the model${res.url ? ` from ${res.url}` : ''}: HTTP ${res.status} ${res.statusText}`.trim(), 'io');
  }
  if (!res.body) throw new SaguaroError('the model response has no body', 'io');
  return fromStream(res.body, knownLength(res), options, phase, cached);
}

/** An AbortSignal that fires when `outer` does or when `abort()` is called. */
function linkedController(outer?: AbortSignal): AbortController {
  const c = new AbortController();
  if (outer) {
    if (outer.aborted) c.abort(outer.reason);
    else outer.addEventListener('abort', () => c.abort(outer.reason), { once: true });
  }
  return c;
}

async function doFetch(url: string | URL, options: LoadOptions, signal?: AbortSignal, method = 'GET'): Promise<globalThis.Response> {
  try {
    return await fetch(url, { ...options.fetchOptions, method, signal });
  } catch (e) {
    if (isAbort(e)) throw e;
    throw new SaguaroError(`could not fetch the model from ${String(url)}: ${e instanceof Error ? e.message : String(e)}`, 'io', { cause: e });
  }
}

function absoluteUrl(url: string | URL): string {
  const g = globalThis as { location?: { href?: string }; document?: { baseURI?: string } };
  const base = g.document?.baseURI ?? g.location?.href;
  return new URL(String(url), base).href;
}

async function fromUrl(url: string | URL, options: LoadOptions): Promise<RawModel> {
  const cacheName = options.cache === true ? 'saguaro-models' : typeof options.cache === 'string' ? options.cache : undefined;
  const caches = (globalThis as { caches?: CacheStorage }).caches;
  if (cacheName && caches) {
    let key: string | undefined;
    try {
      key = absoluteUrl(url);
    } catch {
      key = undefined;
    }
    if (key && /^https?:/i.test(key)) {
      let cache: Cache | undefined;
      try {
        cache = await caches.open(cacheName);
      } catch {
        cache = undefined; // no Cache API here (an opaque origin, private mode): just download
      }
      if (cache) return fromUrlCached(key, cache, options);
    }
  }
  const res = await doFetch(url, options, options.signal);
  return fromResponse(res, options, 'download');
}

/** Is a cached copy of `size` bytes still what the server has? Offline or unknown: yes. */
async function stillFresh(key: string, size: number, etag: string | null, options: LoadOptions): Promise<boolean> {
  try {
    const head = await fetch(key, { ...options.fetchOptions, method: 'HEAD', signal: options.signal });
    if (!head.ok) return head.status !== 404 && head.status !== 410;
    const len = knownLength(head);
    if (len !== undefined && len !== size) return false;
    const serverTag = head.headers.get('etag');
    return !(serverTag && etag && serverTag !== etag);
  } catch (e) {
    if (isAbort(e)) throw e;
    return true;
  }
}

async function fromUrlCached(key: string, cache: Cache, options: LoadOptions): Promise<RawModel> {
  let hit: globalThis.Response | undefined;
  try {
    hit = await cache.match(key);
  } catch {
    hit = undefined;
  }
  if (hit?.body) {
    const size = Number(hit.headers.get('x-saguaro-size'));
    if (Number.isSafeInteger(size) && size > 0 && (await stillFresh(key, size, hit.headers.get('x-saguaro-etag'), options))) {
      try {
        return await fromStream(hit.body, size, options, 'load', true);
      } catch (e) {
        if (isAbort(e)) throw e;
        // A damaged entry: drop it and download again.
      }
    }
    await cache.delete(key).catch(() => false);
  }
  const controller = linkedController(options.signal);
  const res = await doFetch(key, options, controller.signal);
  const len = knownLength(res);
  if (!res.ok || !res.body || len === undefined) return fromResponse(res, options, 'download');
  // One download feeds both the engine and the cache.
  const [mine, forCache] = res.body.tee();
  const headers = new Headers({ 'content-type': 'application/octet-stream', 'content-length': String(len), 'x-saguaro-size': String(len) });
  const etag = res.headers.get('etag');
  if (etag) headers.set('x-saguaro-etag', etag);
  const stored = cache.put(key, new globalThis.Response(forCache, { headers })).then(
    () => true,
    () => false,
  );
  try {
    const raw = await fromStream(mine, len, { ...options, signal: controller.signal }, 'download');
    await stored;
    return raw;
  } catch (e) {
    controller.abort(e); // stops the cache's half of the download too
    if (await stored) await cache.delete(key).catch(() => false);
    throw e;
  }
}

async function loadRaw(source: ModelSource, options: LoadOptions): Promise<RawModel> {
  if (typeof source === 'string' || source instanceof URL) {
    const file = platform?.openFile?.(source);
    if (file) return fromFile(await file, options);
    return fromUrl(source, options);
  }
  if (source instanceof ArrayBuffer) return fromMemory(new Uint8Array(source), options);
  if (ArrayBuffer.isView(source)) return fromMemory(new Uint8Array(source.buffer, source.byteOffset, source.byteLength), options);
  if (typeof Blob !== 'undefined' && source instanceof Blob) return fromStream(source.stream(), source.size, options, 'load');
  if (typeof globalThis.Response !== 'undefined' && source instanceof globalThis.Response) return fromResponse(source, options, 'download');
  if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) {
    const size = options.size;
    return fromStream(source, size !== undefined && Number.isSafeInteger(size) && size >= 0 ? size : undefined, options, 'download');
  }
  throw new SaguaroError('a model source must be a URL, a file path (Node), an ArrayBuffer, a typed array, a Blob, a Response or a ReadableStream', 'input');
}

// ---------------------------------------------------------------------------------------------
// Model

/** Token ids: an array of integers in [0, 2^32) or a Uint32Array. */
export type TokenIds = ArrayLike<number> | Iterable<number>;

function toIds(ids: TokenIds): Uint32Array {
  if (ids instanceof Uint32Array) return ids;
  if (ids === null || typeof ids !== 'object') throw new SaguaroError('token ids must be an array of integers or a Uint32Array', 'input');
  const list = Array.from(ids as ArrayLike<number>);
  for (const [i, id] of list.entries()) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) {
      throw new SaguaroError(`invalid input: token id at index ${i} (${String(id)}) is not an integer in [0, 2^32)`, 'input');
    }
  }
  return Uint32Array.from(list);
}

export interface GenerateOptions {
  /** New tokens to produce (default 16). */
  maxTokens?: number;
  /** 0 (default) is greedy: argmax, lowest id on ties. */
  temperature?: number;
  /** Seed of the portable sampler (default 0). */
  seed?: number | bigint;
  /** Stop after the model's end-of-sequence token (default false). */
  stopOnEos?: boolean;
  /** Sees each new token id (synchronously); returning `false` stops early. */
  onToken?: (tokenId: number) => unknown;
  /** Checked before starting (generateTokens runs synchronously; use sessions to cancel mid-way). */
  signal?: AbortSignal;
}

/** A loaded model. Free it with `free()` (or `using`) to give its memory back to the module. */
export class Model {
  #raw: RawModel | null;
  /** Facts about the model: vocab size, layers, context length, kernels, ... */
  readonly info: ModelInfo;

  private constructor(raw: RawModel) {
    this.#raw = raw;
    this.info = Object.freeze(call(() => raw.info()) as ModelInfo);
  }

  /**
   * Loads a `.cact` model file. URL downloads stream straight into WebAssembly memory (one
   * allocation of the file's size when Content-Length is known, no second copy); a path (Node)
   * is read in chunks; bytes are copied in once.
   */
  static async load(source: ModelSource, options: LoadOptions = {}): Promise<Model> {
    options.signal?.throwIfAborted();
    await init(options.wasm, { threads: options.threads });
    return new Model(await loadRaw(source, options));
  }

  #use(): RawModel {
    if (!this.#raw) throw new SaguaroError('this model was freed', 'freed');
    return this.#raw;
  }

  /** A new chat session (conversation state). Fails with `input` when the file has no tokenizer. */
  session(): Session {
    const raw = this.#use();
    return new Session(call(() => raw.session()));
  }

  /** Token ids of `text` (no special tokens added: chat templates write their own). */
  tokenize(text: string): Uint32Array {
    const raw = this.#use();
    if (typeof text !== 'string') throw new SaguaroError('tokenize() takes a string', 'input');
    return call(() => raw.tokenize(text));
  }

  /** Text of `ids`; `skipSpecial` (default false) drops special tokens such as `<|im_end|>`. */
  detokenize(ids: TokenIds, options: boolean | { skipSpecial?: boolean } = {}): string {
    const raw = this.#use();
    const skip = typeof options === 'boolean' ? options : Boolean(options?.skipSpecial);
    const list = toIds(ids);
    return call(() => raw.detokenize(list, skip));
  }

  /** Logits of every position of `ids` from a fresh state: `ids.length * vocab_size` floats, row-major. */
  logits(ids: TokenIds): Float32Array {
    const raw = this.#use();
    const list = toIds(ids);
    return call(() => raw.logits(list));
  }

  /** New tokens after `ids` from a fresh state (what `saguaro generate` prints), synchronously. */
  generateTokens(ids: TokenIds, options: GenerateOptions = {}): Uint32Array {
    const raw = this.#use();
    options.signal?.throwIfAborted();
    const list = toIds(ids);
    const { maxTokens, temperature, seed, stopOnEos, onToken } = options;
    const opts: Record<string, unknown> = {};
    if (maxTokens !== undefined) opts.maxTokens = maxTokens;
    if (temperature !== undefined) opts.temperature = temperature;
    if (seed !== undefined) opts.seed = seed;
    if (stopOnEos !== undefined) opts.stopOnEos = stopOnEos;
    return call(() => raw.generateTokens(list, opts, onToken ?? null));
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#raw === null;
  }

  /**
   * Frees the model. Sessions made from it keep working (they share the weights) until they
   * are freed too; the memory returns to the module when the last one goes.
   */
  free(): void {
    const raw = this.#raw;
    this.#raw = null;
    raw?.free();
  }

  [Symbol.dispose](): void {
    this.free();
  }
}

// ---------------------------------------------------------------------------------------------
// Session

export interface CompleteOptions {
  /**
   * Sees each generated token as it is produced; returning `false` cancels (like the signal).
   * It may return a promise: the next step waits for it (backpressure).
   */
  onToken?: (event: TokenEvent) => unknown;
  /** Sees each prefill chunk (256 prompt tokens). */
  onPrefill?: (event: PrefillEvent) => void;
  /** Cancels: the request ends at the next step with `finish_reason: 'cancelled'`. */
  signal?: AbortSignal;
  /** Longest run of engine steps between two event-loop turns, in ms (default 8). */
  yieldMs?: number;
}

/** The async iterator of `Session.stream`: token events; its return value is the response. */
export type CompletionStream = AsyncGenerator<TokenEvent, CompletionResponse, undefined> & {
  /**
   * The response (also the iterator's return value). Reading it lets the request run to the
   * end without waiting for the iterator to be read.
   */
  readonly response: Promise<CompletionResponse>;
};

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * A conversation. It keeps its state between requests: a follow-up whose prompt extends the
 * previous one (previous messages + the answer + a new message) prefills only the new part.
 * One request at a time.
 */
export class Session {
  #raw: RawSession | null;
  #busy = false;
  #freeLater = false;

  /** @internal (use model.session()) */
  constructor(raw: RawSession) {
    this.#raw = raw;
  }

  #use(): RawSession {
    if (!this.#raw || this.#freeLater) throw new SaguaroError('this session was freed', 'freed');
    if (this.#busy) throw new SaguaroError('this session is already running a request (one at a time)', 'busy');
    return this.#raw;
  }

  /**
   * Runs one request and resolves with its response. The engine runs step by step (a prefill
   * chunk or a token each), yielding to the event loop every few ms, so the page stays
   * responsive and `signal` cancels promptly: the response then has `finish_reason:
   * 'cancelled'` and holds what was generated. Rejects with a SaguaroError carrying the failure
   * response (`error.response`, `success: false`) when the request fails: a bad request
   * (`input`), a prompt over the context (`context_full`). An exception thrown by `onToken`
   * cancels the request and rejects with that exception.
   */
  complete(request: CompletionRequest | string, options: CompleteOptions = {}): Promise<CompletionResponse> {
    let raw: RawSession;
    try {
      raw = this.#use();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#run(raw, request, options);
  }

  async #run(raw: RawSession, request: CompletionRequest | string, options: CompleteOptions): Promise<CompletionResponse> {
    const { onToken, onPrefill, signal } = options;
    const yielder = new Yielder(options.yieldMs ?? YIELD_MS);
    this.#busy = true;
    let thrown: { error: unknown } | undefined;
    let failed: unknown;
    try {
      call(() => raw.start(request));
      for (;;) {
        if (signal?.aborted || this.#freeLater) raw.cancel();
        let event: TokenEvent | PrefillEvent | undefined;
        try {
          event = raw.next() as TokenEvent | PrefillEvent | undefined;
        } catch (e) {
          failed = wrap(e);
          break;
        }
        if (event === undefined) break;
        try {
          if (event.type === 'token') {
            let verdict = onToken?.(event);
            if (isPromiseLike(verdict)) verdict = await verdict;
            if (verdict === false) raw.cancel();
          } else {
            onPrefill?.(event);
          }
        } catch (e) {
          thrown = { error: e };
          raw.cancel();
          break;
        }
        await yielder.maybe();
      }
      const response = call(() => raw.finish()) as CompletionResponse;
      if (thrown) throw thrown.error;
      if (failed instanceof SaguaroError) throw new SaguaroError(failed.message, failed.code, { cause: failed.cause, response });
      if (failed !== undefined) throw failed;
      if (!response.success) {
        throw new SaguaroError(response.error ?? 'the request failed', response.error_code ?? 'internal', { response });
      }
      return response;
    } finally {
      if (raw.active) {
        try {
          raw.finish();
        } catch {
          // already reported
        }
      }
      this.#busy = false;
      if (this.#freeLater) this.free();
    }
  }

  /**
   * The tokens of one request as an async iterator; its return value (and `.response`) is the
   * response. Generation follows the reader: the next token is computed when the loop asks for
   * it, and leaving the loop early (`break`) cancels the request without computing more.
   * An aborted `signal` ends the iteration (the response has `finish_reason: 'cancelled'`).
   */
  stream(request: CompletionRequest | string, options: Omit<CompleteOptions, 'onToken'> = {}): CompletionStream {
    const queue: TokenEvent[] = [];
    /** Wakes the reader (a token, or the end). */
    let wakeReader: (() => void) | null = null;
    /** Wakes the engine (the reader took the token, or stopped reading). */
    let wakeEngine: (() => void) | null = null;
    let finished = false;
    let draining = false;
    const local = linkedController(options.signal);
    const release = () => {
      const wake = wakeEngine;
      wakeEngine = null;
      wake?.();
    };
    local.signal.addEventListener('abort', release, { once: true });
    const response = this.complete(request, {
      ...options,
      signal: local.signal,
      onToken: (event) => {
        queue.push(event);
        wakeReader?.();
        if (draining || local.signal.aborted) return undefined;
        return new Promise<void>((resolve) => (wakeEngine = resolve));
      },
    }).finally(() => {
      finished = true;
      wakeReader?.();
    });
    response.catch(() => {}); // reported by the iterator (and `response` for its own users)
    async function* tokens(): AsyncGenerator<TokenEvent, CompletionResponse, undefined> {
      try {
        for (;;) {
          while (queue.length) {
            const event = queue.shift()!;
            yield event;
          }
          if (finished) return await response;
          release();
          await new Promise<void>((resolve) => (wakeReader = resolve));
          wakeReader = null;
        }
      } finally {
        if (!finished) {
          local.abort();
          release();
          await response.catch(() => {});
        }
      }
    }
    const it = tokens();
    Object.defineProperty(it, 'response', {
      enumerable: true,
      get() {
        draining = true;
        release();
        return response;
      },
    });
    return it as CompletionStream;
  }

  /**
   * Runs one request synchronously (no yielding, no signal): for scripts and workers that do
   * not need to be interrupted. `onToken` returning `false` cancels. Errors as for `complete`.
   */
  completeSync(request: CompletionRequest | string, options: Pick<CompleteOptions, 'onToken'> = {}): CompletionResponse {
    const raw = this.#use();
    this.#busy = true;
    try {
      const response = call(() => raw.complete(request, options.onToken ?? null)) as CompletionResponse;
      if (!response.success) {
        throw new SaguaroError(response.error ?? 'the request failed', response.error_code ?? 'internal', { response });
      }
      return response;
    } finally {
      this.#busy = false;
    }
  }

  /** Forgets the conversation: the next request prefills its whole prompt. */
  reset(): void {
    this.#use().reset();
  }

  /** Tokens the session's state holds (the conversation so far, as the model saw it). */
  get tokenCount(): number {
    return this.#raw && !this.#freeLater ? this.#raw.tokenCount : 0;
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#raw === null || this.#freeLater;
  }

  /** Frees the session's state. A request in progress is cancelled first (it resolves as cancelled). */
  free(): void {
    if (this.#busy) {
      this.#freeLater = true;
      return;
    }
    const raw = this.#raw;
    this.#raw = null;
    this.#freeLater = false;
    raw?.free();
  }

  [Symbol.dispose](): void {
    this.free();
  }
}
