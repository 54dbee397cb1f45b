// The messages between the main thread (worker-client.ts) and the Web Worker (worker.ts).
//
// Every message carries `saguaro: PROTOCOL`, so a worker that also serves other messages (an app's
// own worker importing `@saguaro/llm/worker`) can tell them apart. Ids are chosen by the client:
// `id` names one request (its replies: progress, event, result or error), `model` and `session`
// name objects living in the worker. `cancel` aborts the AbortSignal the worker passed to the
// request; Session.complete yields to the event loop between engine steps, so the worker sees the
// cancel message between two tokens (or two prefill chunks).

/** Version of the message format. */
export const PROTOCOL = 1;

/** A model source as it crosses the worker boundary. */
export type WireSource =
  /** An absolute URL (or a path for a Node worker), fetched inside the worker. */
  | { kind: 'url'; url: string }
  /** The file's bytes (copied, or moved when the caller asked for it). */
  | { kind: 'bytes'; bytes: ArrayBuffer | ArrayBufferView }
  /** A Blob or File (structured clone shares its data, no copy). */
  | { kind: 'blob'; blob: Blob }
  /** A stream of the file's bytes (a Response's body, moved), with its length when known. */
  | { kind: 'stream'; stream: ReadableStream<Uint8Array>; size?: number };

/** Model.load's options that can cross the boundary (no callbacks, no signal). */
export interface WireLoadOptions {
  cache?: boolean | string;
  fetchOptions?: Record<string, unknown>;
  wasm?: unknown;
  threads?: number | 'auto';
}

/** Low-level model calls forwarded as they are. */
export type ModelMethod = 'tokenize' | 'detokenize' | 'logits' | 'generateTokens';

/** `aborted`: the request's signal was aborted before it was sent (the worker starts it cancelled). */
export type ToWorker = { saguaro: typeof PROTOCOL; id: number; aborted?: true } & (
  | { type: 'load'; model: number; source: WireSource; options: WireLoadOptions }
  | { type: 'session'; model: number; session: number }
  | { type: 'complete'; session: number; request: unknown; tokens: boolean; prefill: boolean; yieldMs?: number }
  | { type: 'call'; model: number; method: ModelMethod; args: unknown[]; tokens: boolean }
  | { type: 'reset'; session: number }
  | { type: 'free-session'; session: number }
  | { type: 'free'; model: number }
  | { type: 'cancel'; target: number }
);

export type FromWorker = { saguaro: typeof PROTOCOL; id: number } & (
  | { type: 'progress'; progress: unknown }
  /** A token event (`type: 'token'`), a prefill event (`type: 'prefill'`) or a token id (generateTokens). */
  | { type: 'event'; event: unknown }
  | { type: 'result'; value: unknown }
  | { type: 'error'; error: WireError }
);

/** What `complete` answers: the response and the session's token count after it. */
export interface WireCompletion {
  response: unknown;
  tokenCount: number;
}

/** An error as it crosses the worker boundary (SaguaroError and others). */
export interface WireError {
  name: string;
  message: string;
  /** SaguaroError's code ('io', 'format', 'input', ...); absent for other errors. */
  code?: string;
  /** SaguaroError's response (a failed completion). */
  response?: unknown;
  stack?: string;
}
