// A thread of the threads build (core.ts startThreads): a Web Worker, or a Node worker thread
// (thread-worker-node.ts feeds it the same messages). It instantiates the module on the shared
// memory it is sent, says it serves, and then runs the thread pool's jobs until the instance
// ends (threadWorkerRun blocks this thread: it never handles another message).

import { initSync, threadWorkerRun } from '../wasm/saguaro_wasm_threads.js';

export interface ThreadStart {
  saguaroThread: 'start';
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
}

/** Runs one thread of the pool; `reply` answers the starting thread. @internal */
export function serveThread(msg: ThreadStart, reply: (message: unknown) => void): void {
  try {
    initSync({ module: msg.module, memory: msg.memory });
  } catch (e) {
    reply({ saguaroThread: 'failed', error: e instanceof Error ? e.message : String(e) });
    return;
  }
  reply({ saguaroThread: 'serving' });
  // Returns when the pool ends, or at once when no worker was waiting (more threads started
  // than the pool asked for). Either way this thread has nothing more to do.
  threadWorkerRun();
}

function isStart(data: unknown): data is ThreadStart {
  return typeof data === 'object' && data !== null && (data as { saguaroThread?: unknown }).saguaroThread === 'start';
}

// A Web Worker: the first start message.
const scope = globalThis as unknown as {
  DedicatedWorkerGlobalScope?: abstract new () => unknown;
  addEventListener?: (type: 'message', listener: (event: MessageEvent) => void) => void;
  postMessage?: (message: unknown) => void;
  close?: () => void;
};
if (typeof scope.DedicatedWorkerGlobalScope === 'function' && globalThis instanceof scope.DedicatedWorkerGlobalScope) {
  scope.addEventListener?.('message', (event: MessageEvent) => {
    if (!isStart(event.data)) return;
    serveThread(event.data, (m) => scope.postMessage?.(m));
    scope.close?.();
  });
}
