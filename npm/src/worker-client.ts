// The main-thread side of the Web Worker entry: `WorkerModel` has Model's capabilities, every call
// asynchronous, with the model running in a worker (worker.ts) so the page never freezes.
//
//   import { WorkerModel } from '@saguaro/llm/worker-client';
//   const model = await WorkerModel.load('/models/lfm2-350m.cact', { onProgress: (p) => (bar.value = p.loaded / p.total) });
//   const session = model.session();
//   const stop = new AbortController();                   // stopButton.onclick = () => stop.abort()
//   const response = await session.complete(request, { onToken: (t) => out.append(t.text), signal: stop.signal });
//   session.free();
//   model.free();                                         // the worker ends with the last object
//
// An AbortSignal becomes a `cancel` message; the worker handles it between two engine steps and
// the completion resolves with `finish_reason: 'cancelled'`, as with Model. Errors keep their class
// and code across the boundary (SaguaroError with `code`, and `response` for a failed request).

import { SaguaroError } from './core.js';
import type { GenerateOptions, LoadOptions, ModelSource, TokenIds } from './core.js';
import type { CompletionRequest, CompletionResponse, LoadProgress, ModelInfo, PrefillEvent, TokenEvent } from './types.js';
import type { FromWorker, ModelMethod, ToWorker, WireCompletion, WireError, WireLoadOptions, WireSource } from './worker-protocol.js';
import { PROTOCOL } from './worker-protocol.js';

export { SaguaroError };
export type * from './types.js';

export interface WorkerLoadOptions extends Omit<LoadOptions, 'fetchOptions' | 'wasm'> {
  /**
   * The worker to use: a Worker running `@saguaro/llm/worker` (it may hold several models and is
   * never terminated by this package), or the URL of that script. Default: a new module worker
   * of this package's worker.js, terminated when its last model and session are freed.
   */
  worker?: Worker | URL | string;
  /** As Model.load's (headers as a plain object or a list of pairs; no signal: use `signal`). */
  fetchOptions?: RequestInit;
  /** Where the worker loads the WebAssembly module from: a URL, its bytes or a compiled WebAssembly.Module. */
  wasm?: string | URL | BufferSource | WebAssembly.Module;
  /**
   * For an ArrayBuffer or typed-array source: move its buffer to the worker instead of copying it
   * (the caller's buffer is detached afterwards). Default false.
   */
  transfer?: boolean;
}

export interface WorkerCompleteOptions {
  /** Each generated token, as it is produced in the worker; returning `false` cancels like the signal. */
  onToken?: (event: TokenEvent) => unknown;
  /** Each prefill chunk. */
  onPrefill?: (event: PrefillEvent) => void;
  /** Cancels: the request ends at the worker's next step with `finish_reason: 'cancelled'`. */
  signal?: AbortSignal;
  /** Longest run of engine steps between two event-loop turns in the worker, in ms (default 8). */
  yieldMs?: number;
}

/** The async iterator of `WorkerSession.stream`: token events; its return value is the response. */
export type WorkerCompletionStream = AsyncGenerator<TokenEvent, CompletionResponse, undefined> & {
  response: Promise<CompletionResponse>;
};

type Body = ToWorker extends infer T ? (T extends unknown ? Omit<T, 'saguaro' | 'id'> : never) : never;

interface RequestOptions {
  onEvent?: (event: unknown) => unknown;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
  transfer?: Transferable[];
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  options: RequestOptions;
  cleanup?: () => void;
}

/** One worker and the requests in flight on it. */
class Connection {
  private nextId = 1;
  private nextHandle = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | null = null;
  /** Models and sessions alive in the worker. */
  private users = 0;

  constructor(
    readonly worker: Worker,
    readonly owned: boolean,
  ) {
    worker.addEventListener('message', (event: MessageEvent) => this.onMessage(event.data as FromWorker));
    worker.addEventListener('error', (event: Event) => {
      const message = (event as ErrorEvent).message || 'the worker script could not be loaded or failed to start';
      this.fail(new SaguaroError(`the Saguaro worker failed: ${message}`, 'internal'));
    });
    worker.addEventListener('messageerror', () => {
      this.fail(new SaguaroError('a message from the Saguaro worker could not be read', 'internal'));
    });
  }

  handle(): number {
    return this.nextHandle++;
  }

  acquire(): void {
    this.users++;
  }

  /** One model or session fewer; a worker this package started ends with the last one. */
  release(): void {
    if (--this.users === 0 && this.owned) {
      this.worker.terminate();
      this.fail(new SaguaroError('the model was freed (its worker has ended)', 'freed'));
    }
  }

  /** Sends one request; resolves with its result. */
  request(body: Body, options: RequestOptions = {}): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const pending: Pending = { resolve, reject, options };
      this.pending.set(id, pending);
      const { signal } = options;
      // Already aborted: the request says so itself. A separate cancel message could reach the
      // worker only after it has computed a few tokens (messages between threads take time).
      const aborted = signal?.aborted ? { aborted: true as const } : {};
      try {
        this.worker.postMessage({ ...body, ...aborted, saguaro: PROTOCOL, id }, { transfer: options.transfer ?? [] });
      } catch (e) {
        this.pending.delete(id);
        reject(e);
        return;
      }
      if (signal && !signal.aborted) {
        const onAbort = () => this.cancel(id);
        signal.addEventListener('abort', onAbort, { once: true });
        pending.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
    });
  }

  /** A message that needs no answer. */
  post(body: Body): void {
    if (this.failure) return;
    this.worker.postMessage({ ...body, saguaro: PROTOCOL, id: this.nextId++ });
  }

  /** Asks the worker to abort request `id` (a no-op once it has finished). */
  private cancel(id: number): void {
    if (this.pending.has(id)) this.post({ type: 'cancel', target: id });
  }

  private onMessage(msg: FromWorker): void {
    if (!msg || typeof msg !== 'object' || msg.saguaro !== PROTOCOL) return;
    const pending = this.pending.get(msg.id);
    if (!pending) return;
    switch (msg.type) {
      case 'progress':
        pending.options.onProgress?.(msg.progress as LoadProgress);
        break;
      case 'event':
        try {
          if (pending.options.onEvent?.(msg.event) === false) this.cancel(msg.id);
        } catch (e) {
          // As with Model: an exception in a callback cancels the request and rejects with it.
          this.cancel(msg.id);
          this.settle(msg.id, pending);
          pending.reject(e);
        }
        break;
      case 'result':
        this.settle(msg.id, pending);
        pending.resolve(msg.value);
        break;
      case 'error':
        this.settle(msg.id, pending);
        pending.reject(fromWire(msg.error, pending.options.signal));
        break;
    }
  }

  private settle(id: number, pending: Pending): void {
    this.pending.delete(id);
    pending.cleanup?.();
  }

  /** The worker is gone: every request in flight fails with `error`, and every later one. */
  fail(error: Error): void {
    this.failure ??= error;
    for (const [id, pending] of this.pending) {
      this.settle(id, pending);
      pending.reject(error);
    }
  }
}

/** Connections of the workers given by the app, shared by the models loaded into them. */
const connections = new WeakMap<Worker, Connection>();

function connect(worker: WorkerLoadOptions['worker']): Connection {
  if (worker !== undefined && typeof worker === 'object' && !(worker instanceof URL)) {
    let conn = connections.get(worker);
    if (!conn) {
      conn = new Connection(worker, false);
      connections.set(worker, conn);
    }
    return conn;
  }
  if (worker !== undefined) return new Connection(new Worker(worker, { type: 'module', name: 'saguaro' }), true);
  // Written out in full: bundlers (Vite, webpack) recognise this exact form and bundle the worker.
  return new Connection(new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'saguaro' }), true);
}

/** An error from the worker, as the class it was thrown as. */
function fromWire(e: WireError, signal?: AbortSignal): Error {
  // An abort the caller asked for rejects with the caller's own reason (as Model.load does).
  if (e.name === 'AbortError' && signal?.aborted && signal.reason instanceof Error) return signal.reason;
  let error: Error;
  if (e.code !== undefined) {
    const options = e.response !== undefined ? { response: e.response as CompletionResponse } : {};
    error = new SaguaroError(e.message, e.code, options);
  } else if (e.name === 'AbortError' && typeof DOMException === 'function') {
    error = new DOMException(e.message, 'AbortError');
  } else {
    error = new Error(e.message);
    if (e.name && e.name !== 'Error') error.name = e.name;
  }
  if (e.stack && !(error instanceof DOMException)) {
    error.stack = `${error.name}: ${error.message}\n    (in the Saguaro worker)\n${e.stack.split('\n').slice(1).join('\n')}`;
  }
  return error;
}

function absoluteUrl(url: string | URL): string {
  const g = globalThis as { location?: { href?: string }; document?: { baseURI?: string } };
  return new URL(String(url), g.document?.baseURI ?? g.location?.href).href;
}

/** The source as it crosses the boundary, and what to move rather than copy. */
function toWire(source: ModelSource, options: WorkerLoadOptions): { source: WireSource; transfer: Transferable[] } {
  if (typeof source === 'string' || source instanceof URL) {
    // Relative URLs mean the page's, not the worker script's.
    return { source: { kind: 'url', url: absoluteUrl(source) }, transfer: [] };
  }
  const move = options.transfer === true;
  if (source instanceof ArrayBuffer) return { source: { kind: 'bytes', bytes: source }, transfer: move ? [source] : [] };
  if (ArrayBuffer.isView(source)) {
    const whole = source.buffer instanceof ArrayBuffer && source.byteOffset === 0 && source.byteLength === source.buffer.byteLength;
    return { source: { kind: 'bytes', bytes: source }, transfer: move && whole ? [source.buffer as ArrayBuffer] : [] };
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) return { source: { kind: 'blob', blob: source }, transfer: [] };
  if (typeof Response !== 'undefined' && source instanceof Response) {
    if (!source.ok) {
      throw new SaguaroError(`could not fetch the model${source.url ? ` from ${source.url}` : ''}: HTTP ${source.status} ${source.statusText}`.trim(), 'io');
    }
    if (!source.body) throw new SaguaroError('the model response has no body', 'io');
    const header = source.headers.get('content-length');
    const encoding = source.headers.get('content-encoding');
    const size = header !== null && /^\d+$/.test(header.trim()) && (!encoding || encoding.trim() === 'identity') ? Number(header) : undefined;
    return streamSource(source.body, size);
  }
  if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) return streamSource(source, options.size);
  throw new SaguaroError('a model source must be a URL, an ArrayBuffer, a typed array, a Blob, a Response or a ReadableStream', 'input');
}

function streamSource(stream: ReadableStream<Uint8Array>, size: number | undefined): { source: WireSource; transfer: Transferable[] } {
  const source: WireSource = size === undefined ? { kind: 'stream', stream } : { kind: 'stream', stream, size };
  return { source, transfer: [stream as unknown as Transferable] };
}

/** Browsers without transferable streams: read the stream here and send its bytes. */
async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function wireLoadOptions(options: WorkerLoadOptions): WireLoadOptions {
  const out: WireLoadOptions = {};
  if (options.cache !== undefined) out.cache = options.cache;
  if (options.threads !== undefined) out.threads = options.threads;
  if (options.fetchOptions !== undefined) {
    const { signal: _signal, window: _window, ...rest } = options.fetchOptions;
    const fetchOptions: Record<string, unknown> = { ...rest };
    if (rest.headers instanceof Headers) fetchOptions.headers = [...rest.headers];
    out.fetchOptions = fetchOptions;
  }
  if (options.wasm !== undefined) {
    out.wasm = typeof options.wasm === 'string' || options.wasm instanceof URL ? absoluteUrl(options.wasm) : options.wasm;
  }
  return out;
}

/** A model running in a Web Worker: Model's capabilities, every call asynchronous. */
export class WorkerModel {
  #freed = false;
  readonly #conn: Connection;
  readonly #handle: number;
  /** Facts about the model (Model.info, read once at load). */
  readonly info: ModelInfo;

  private constructor(conn: Connection, handle: number, info: ModelInfo) {
    this.#conn = conn;
    this.#handle = handle;
    this.info = Object.freeze(info);
  }

  /**
   * Loads a model in a worker (a new one unless `options.worker` is given): the download, the
   * copy into WebAssembly memory and the parsing all happen there. Sources and options as
   * Model.load; a relative URL is relative to the page.
   */
  static async load(source: ModelSource, options: WorkerLoadOptions = {}): Promise<WorkerModel> {
    options.signal?.throwIfAborted();
    let wire = toWire(source, options);
    const conn = connect(options.worker);
    const handle = conn.handle();
    conn.acquire();
    const send = () =>
      conn.request(
        { type: 'load', model: handle, source: wire.source, options: wireLoadOptions(options) },
        { signal: options.signal, transfer: wire.transfer, onProgress: options.onProgress },
      );
    try {
      let result: unknown;
      try {
        result = await send();
      } catch (e) {
        // postMessage refuses a stream where streams are not transferable (DataCloneError).
        if (wire.source.kind !== 'stream' || !(e instanceof Error) || e.name !== 'DataCloneError') throw e;
        wire = { source: { kind: 'bytes', bytes: await readAll(wire.source.stream) }, transfer: [] };
        result = await send();
      }
      return new WorkerModel(conn, handle, (result as { info: ModelInfo }).info);
    } catch (e) {
      conn.release();
      throw e;
    }
  }

  /** The Worker this model runs in. */
  get worker(): Worker {
    return this.#conn.worker;
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#freed;
  }

  #check(): void {
    if (this.#freed) throw new SaguaroError('this model was freed', 'freed');
  }

  /**
   * A new chat session, its state in the worker. Made without a round trip: an error (a model
   * without tokenizer) comes with the session's first request.
   */
  session(): WorkerSession {
    this.#check();
    const handle = this.#conn.handle();
    this.#conn.acquire();
    this.#conn.request({ type: 'session', model: this.#handle, session: handle }).catch(() => {});
    return new WorkerSession(this.#conn, handle);
  }

  /** Token ids of `text` (no special tokens added). */
  tokenize(text: string): Promise<Uint32Array> {
    return this.#call('tokenize', [text]) as Promise<Uint32Array>;
  }

  /** Text of `ids`; `skipSpecial` drops special tokens. */
  detokenize(ids: TokenIds, options: boolean | { skipSpecial?: boolean } = {}): Promise<string> {
    return this.#call('detokenize', [idList(ids), options]) as Promise<string>;
  }

  /** Logits of every position of `ids` from a fresh state: `ids.length * vocab_size` floats, row-major. */
  logits(ids: TokenIds): Promise<Float32Array> {
    return this.#call('logits', [idList(ids)]) as Promise<Float32Array>;
  }

  /**
   * New tokens after `ids` from a fresh state. In the worker this runs in one go: `onToken` sees
   * the ids as they arrive here (returning false cannot stop it), and `signal` is checked before
   * it starts. Use sessions for work that must be interruptible.
   */
  generateTokens(ids: TokenIds, options: GenerateOptions = {}): Promise<Uint32Array> {
    const { onToken, signal, ...rest } = options;
    const request: RequestOptions = {};
    if (onToken) request.onEvent = (id) => onToken(id as number);
    if (signal) request.signal = signal;
    return this.#call('generateTokens', [idList(ids), rest], request, onToken !== undefined) as Promise<Uint32Array>;
  }

  #call(method: ModelMethod, args: unknown[], options: RequestOptions = {}, tokens = false): Promise<unknown> {
    try {
      this.#check();
      options.signal?.throwIfAborted();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#conn.request({ type: 'call', model: this.#handle, method, args, tokens }, options);
  }

  /**
   * Frees the model in the worker. As with Model, its sessions keep working until they are freed
   * too; a worker this package started ends with the last of them.
   */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.#conn.post({ type: 'free', model: this.#handle });
    this.#conn.release();
  }

  /**
   * Ends the worker at once, even in the middle of a request (which rejects with a `freed`
   * error); every model and session in it goes too.
   */
  terminate(): void {
    this.#freed = true;
    this.#conn.worker.terminate();
    this.#conn.fail(new SaguaroError('the Saguaro worker was terminated', 'freed'));
  }

  [Symbol.dispose](): void {
    this.free();
  }
}

/** Token ids in a form that crosses the boundary (a typed array or a plain array). */
function idList(ids: TokenIds): TokenIds {
  if (ArrayBuffer.isView(ids) || Array.isArray(ids)) return ids;
  if (ids === null || typeof ids !== 'object') return ids;
  return Array.from(ids as Iterable<number>);
}

/** A chat session whose state lives in the worker. One request at a time. */
export class WorkerSession {
  #freed = false;
  #running = 0;
  #released = false;
  #tokenCount = 0;
  readonly #conn: Connection;
  readonly #handle: number;

  /** @internal (use model.session()) */
  constructor(conn: Connection, handle: number) {
    this.#conn = conn;
    this.#handle = handle;
  }

  /**
   * Runs one request in the worker and resolves with its response. `onToken` sees each token as
   * it is generated; `signal` cancels (the response then has `finish_reason: 'cancelled'`).
   * Rejects as Session.complete does: a SaguaroError with `code` (and `response`).
   */
  async complete(request: CompletionRequest | string, options: WorkerCompleteOptions = {}): Promise<CompletionResponse> {
    if (this.#freed) throw new SaguaroError('this session was freed', 'freed');
    const { onToken, onPrefill, signal, yieldMs } = options;
    const body: Body = { type: 'complete', session: this.#handle, request, tokens: onToken !== undefined, prefill: onPrefill !== undefined };
    if (yieldMs !== undefined) body.yieldMs = yieldMs;
    const req: RequestOptions = {
      onEvent: (event) => {
        const e = event as TokenEvent | PrefillEvent;
        if (e.type === 'prefill') return onPrefill?.(e);
        return onToken?.(e);
      },
    };
    if (signal) req.signal = signal;
    this.#running++;
    try {
      const reply = (await this.#conn.request(body, req)) as WireCompletion;
      this.#tokenCount = reply.tokenCount;
      return reply.response as CompletionResponse;
    } finally {
      this.#running--;
      if (this.#freed) this.#release();
    }
  }

  /**
   * The tokens of one request as an async iterator; its return value (and `.response`) is the
   * response. Leaving the loop early (`break`) cancels the request.
   */
  stream(request: CompletionRequest | string, options: Omit<WorkerCompleteOptions, 'onToken'> = {}): WorkerCompletionStream {
    const queue: TokenEvent[] = [];
    let wake: (() => void) | null = null;
    let finished = false;
    const local = new AbortController();
    const outer = options.signal;
    const onOuterAbort = () => local.abort(outer?.reason);
    if (outer?.aborted) onOuterAbort();
    else outer?.addEventListener('abort', onOuterAbort, { once: true });
    const response = this.complete(request, {
      ...options,
      signal: local.signal,
      onToken: (event) => {
        queue.push(event);
        wake?.();
      },
    }).finally(() => {
      finished = true;
      outer?.removeEventListener('abort', onOuterAbort);
      wake?.();
    });
    response.catch(() => {}); // reported through the iterator (and `response` for its own users)
    async function* tokens(): AsyncGenerator<TokenEvent, CompletionResponse, undefined> {
      try {
        for (;;) {
          while (queue.length) yield queue.shift() as TokenEvent;
          if (finished) return await response;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = null;
        }
      } finally {
        if (!finished) {
          local.abort();
          await response.catch(() => {});
        }
      }
    }
    return Object.assign(tokens(), { response });
  }

  /** Forgets the conversation: the next request prefills its whole prompt. */
  async reset(): Promise<void> {
    if (this.#freed) throw new SaguaroError('this session was freed', 'freed');
    this.#tokenCount = (await this.#conn.request({ type: 'reset', session: this.#handle })) as number;
  }

  /** Tokens the session's state holds, as of its last request. */
  get tokenCount(): number {
    return this.#freed ? 0 : this.#tokenCount;
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#freed;
  }

  /** Frees the session's state in the worker. A request in progress is cancelled first (it resolves as cancelled). */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.#conn.post({ type: 'free-session', session: this.#handle });
    if (this.#running === 0) this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#conn.release();
  }

  [Symbol.dispose](): void {
    this.free();
  }
}
