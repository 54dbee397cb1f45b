// A thread of the threads build in Node: a worker_threads worker (see thread-worker.ts).

import { parentPort } from 'node:worker_threads';

import { serveThread } from './thread-worker.js';
import type { ThreadStart } from './thread-worker.js';

const port = parentPort;
if (port) {
  port.once('message', (data: ThreadStart) => {
    if (data?.saguaroThread === 'start') serveThread(data, (m) => port.postMessage(m));
  });
}
