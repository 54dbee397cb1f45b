// The Web Worker entry: runs models off the main thread for `WorkerModel` (worker-client.ts).
//
// WorkerModel.load starts this script itself when no worker is given. To share one worker
// between models, or to run it in an app's own worker (`import '@saguaro/llm/worker'` there: it
// only answers messages tagged with the protocol, so the app's other messages pass by untouched):
//
//   const worker = new Worker(import.meta.resolve('@saguaro/llm/worker'), { type: 'module' });
//   const model = await WorkerModel.load(url, { worker });
//
// Loaded as a module worker, it answers the messages of worker-protocol.ts.
//
// Each request runs as an async task. Session.complete yields to the event loop between engine
// steps, so a `cancel` message is handled between two tokens and aborts the request's signal.

import { Model, SaguaroError } from './index.js';
import type { FromWorker, ToWorker, WireCompletion, WireError, WireLoadOptions, WireSource } from './worker-protocol.js';
import { PROTOCOL } from './worker-protocol.js';

/** The part of a DedicatedWorkerGlobalScope (or a MessagePort) this file uses. */
export interface WorkerEndpoint {
  postMessage(message: unknown, options?: { transfer?: Transferable[] }): void;
  addEventListener(type: 'message', listener: (event: MessageEvent) => void): void;
}

type Session = ReturnType<Model['session']>;
type LoadOptions = NonNullable<Parameters<typeof Model.load>[1]>;
type CompleteOptions = NonNullable<Parameters<Session['complete']>[1]>;

const models = new Map<number, Model>();
/** A session, or why it could not be made (reported by the first call that uses it). */
const sessions = new Map<number, { session?: Session; error?: unknown }>();
/** Running requests by id: their abort controllers. */
const running = new Map<number, AbortController>();

/** True in a dedicated Web Worker (not on a page, not in Node). */
function inWorker(): boolean {
  const scope = (globalThis as { DedicatedWorkerGlobalScope?: abstract new () => unknown }).DedicatedWorkerGlobalScope;
  return typeof scope === 'function' && globalThis instanceof scope;
}

/**
 * Serves the protocol on `endpoint` (default: this worker's scope). Runs by itself when this
 * module is loaded in a worker; call it only for another endpoint (a MessagePort).
 */
export function serve(endpoint: WorkerEndpoint = globalThis as unknown as WorkerEndpoint): void {
  endpoint.addEventListener('message', (event: MessageEvent) => {
    const msg = event.data as ToWorker | undefined;
    if (!msg || typeof msg !== 'object' || msg.saguaro !== PROTOCOL) return;
    handle(endpoint, msg);
  });
}

function post(endpoint: WorkerEndpoint, msg: FromWorker, transfer: Transferable[] = []): void {
  if (transfer.length) {
    try {
      endpoint.postMessage(msg, { transfer });
      return;
    } catch {
      // Not transferable after all: copy.
    }
  }
  endpoint.postMessage(msg);
}

function handle(endpoint: WorkerEndpoint, msg: ToWorker): void {
  const { id } = msg;
  if (msg.type === 'cancel') {
    running.get(msg.target)?.abort();
    return;
  }
  const controller = new AbortController();
  if (msg.aborted) controller.abort();
  running.set(id, controller);
  const event = (e: unknown) => post(endpoint, { saguaro: PROTOCOL, id, type: 'event', event: plain(e) });
  run(endpoint, msg, controller.signal, event)
    .then(
      (value) => post(endpoint, { saguaro: PROTOCOL, id, type: 'result', value }, transferables(value)),
      (e: unknown) => post(endpoint, { saguaro: PROTOCOL, id, type: 'error', error: wireError(e) }),
    )
    .finally(() => running.delete(id));
}

async function run(endpoint: WorkerEndpoint, msg: ToWorker, signal: AbortSignal, event: (e: unknown) => void): Promise<unknown> {
  const { id } = msg;
  switch (msg.type) {
    case 'load': {
      if (models.has(msg.model)) throw new SaguaroError(`model handle ${msg.model} is already in use`, 'input');
      const [source, extra] = fromWire(msg.source);
      const options: LoadOptions = {
        ...loadOptions(msg.options),
        ...extra,
        signal,
        onProgress: (progress) => post(endpoint, { saguaro: PROTOCOL, id, type: 'progress', progress: plain(progress) }),
      };
      const model = await Model.load(source as Parameters<typeof Model.load>[0], options);
      models.set(msg.model, model);
      return { info: plain(model.info) };
    }
    case 'session': {
      const entry: { session?: Session; error?: unknown } = {};
      try {
        entry.session = model(msg.model).session();
      } catch (e) {
        entry.error = e;
      }
      sessions.set(msg.session, entry);
      if (entry.error !== undefined) throw entry.error;
      return null;
    }
    case 'complete': {
      const s = session(msg.session);
      const options: CompleteOptions = { signal };
      if (msg.tokens) options.onToken = event;
      if (msg.prefill) options.onPrefill = event;
      if (msg.yieldMs !== undefined) options.yieldMs = msg.yieldMs;
      const response = await s.complete(msg.request as Parameters<Session['complete']>[0], options);
      const reply: WireCompletion = { response: plain(response), tokenCount: s.tokenCount };
      return reply;
    }
    case 'reset': {
      const s = session(msg.session);
      s.reset();
      return s.tokenCount;
    }
    case 'call': {
      const m = model(msg.model) as unknown as Record<string, (...args: unknown[]) => unknown>;
      const fn = m[msg.method];
      if (typeof fn !== 'function') throw new SaguaroError(`unknown model method ${msg.method}`, 'input');
      const args = [...msg.args];
      if (msg.method === 'generateTokens') {
        // Functions and signals cannot cross the boundary: the options get them back here.
        const opts: Record<string, unknown> = { ...((args[1] as Record<string, unknown> | undefined) ?? {}), signal };
        if (msg.tokens) opts.onToken = event;
        args[1] = opts;
      }
      return await fn.apply(m, args);
    }
    case 'free-session': {
      const entry = sessions.get(msg.session);
      sessions.delete(msg.session);
      entry?.session?.free();
      return null;
    }
    case 'free': {
      // As with Model.free: the model's sessions keep working until they are freed.
      const m = models.get(msg.model);
      models.delete(msg.model);
      m?.free();
      return null;
    }
  }
}

function model(handle: number): Model {
  const m = models.get(handle);
  if (!m) throw new SaguaroError('this model was freed (or never loaded in this worker)', 'freed');
  return m;
}

function session(handle: number): Session {
  const entry = sessions.get(handle);
  if (!entry) throw new SaguaroError('this session was freed', 'freed');
  if (entry.error !== undefined) throw entry.error;
  return entry.session as Session;
}

function loadOptions(o: WireLoadOptions): LoadOptions {
  const out: LoadOptions = {};
  if (o.cache !== undefined) out.cache = o.cache;
  if (o.threads !== undefined) out.threads = o.threads;
  if (o.fetchOptions !== undefined) out.fetchOptions = o.fetchOptions as RequestInit;
  if (o.wasm !== undefined) out.wasm = o.wasm as LoadOptions['wasm'];
  return out;
}

/** A Model.load source (and options it implies) from its wire form. */
function fromWire(source: WireSource): [unknown, LoadOptions] {
  switch (source.kind) {
    case 'url':
      return [source.url, {}];
    case 'bytes':
      return [source.bytes, {}];
    case 'blob':
      return [source.blob, {}];
    case 'stream':
      return [source.stream, source.size === undefined ? {} : { size: source.size }];
  }
}

/** The error in a form that survives postMessage, keeping SaguaroError's code and response. */
function wireError(e: unknown): WireError {
  if (e && typeof e === 'object' && 'message' in e) {
    const o = e as { name?: unknown; message?: unknown; code?: unknown; response?: unknown; stack?: unknown };
    const out: WireError = { name: String(o.name ?? 'Error'), message: String(o.message) };
    if (typeof o.code === 'string') out.code = o.code; // (DOMException's numeric code is not one)
    if (o.response !== undefined) out.response = plain(o.response);
    if (typeof o.stack === 'string') out.stack = o.stack;
    return out;
  }
  return { name: 'Error', message: String(e) };
}

/**
 * A structured-clone-safe copy: plain data is kept as it is (typed arrays included); objects with
 * a class become plain objects of their readable properties; functions are dropped.
 */
function plain(value: unknown, depth = 0): unknown {
  if (typeof value === 'function') return undefined;
  if (value === null || typeof value !== 'object') return value;
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value;
  if (depth > 64) return undefined;
  if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1));
  const out: Record<string, unknown> = {};
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    for (let p = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
      for (const [key, desc] of Object.entries(Object.getOwnPropertyDescriptors(p))) {
        if (desc.get && !(key in out)) out[key] = plain((value as Record<string, unknown>)[key], depth + 1);
      }
    }
  }
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== 'function') out[key] = plain(v, depth + 1);
  }
  return out;
}

/** The buffer of a typed-array result, to move rather than copy (logits can be large). */
function transferables(value: unknown): Transferable[] {
  if (!ArrayBuffer.isView(value) || !(value.buffer instanceof ArrayBuffer)) return [];
  // Only an array that owns its whole buffer (never a view of WebAssembly memory).
  return value.byteOffset === 0 && value.byteLength === value.buffer.byteLength ? [value.buffer] : [];
}

if (inWorker()) serve();
