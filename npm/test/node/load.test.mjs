// Loading a model from every kind of source, with progress; the 4 GiB limit; bad files.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { MAX_MODEL_BYTES, Model, SaguaroError, memoryBytes, relaxedSimd, threadCount } from '@saguaro/llm';
import { assertSameBits, model, serveModels } from './helpers.mjs';

const CHAT = model('chat-f32.cact');
const IDS = [1, 6, 96, 102, 280, 357];

/** Same model: the info and the logits of a few tokens. */
function assertSameModel(m, reference) {
  assert.deepEqual(m.info, reference.info);
  assertSameBits(m.logits(IDS), reference.logits(IDS), 'logits');
}

/** Progress events: phases, monotonic, and the last one complete. */
function checkProgress(events, phase, size) {
  assert.ok(events.length >= 2, `${events.length} progress events`);
  const transfer = events.filter((e) => e.phase === phase);
  assert.ok(transfer.length >= 1, `no ${phase} events`);
  for (let i = 1; i < transfer.length; i++) assert.ok(transfer[i].loaded >= transfer[i - 1].loaded, 'monotonic');
  const last = events[events.length - 1];
  assert.deepEqual(last, { phase: 'load', loaded: size, total: size });
}

describe('Model.load', () => {
  let reference;
  let server;
  const size = readFileSync(CHAT).byteLength;
  before(async () => {
    reference = await Model.load(CHAT);
    server = await serveModels();
  });
  after(async () => {
    reference.free();
    await server.close();
  });

  test('from a file path, with progress', async () => {
    const events = [];
    const m = await Model.load(CHAT, { onProgress: (p) => events.push(p) });
    assert.equal(m.info.file_bytes, size);
    // scripts/test-npm.sh runs these tests once per module and says which it expects: one
    // thread or the threads build (SAGUARO_EXPECT_THREADS), each with relaxed-simd where the
    // runtime has it (Node 20: --experimental-wasm-relaxed-simd, SAGUARO_EXPECT_RELAXED=1).
    const threads = Number(process.env.SAGUARO_EXPECT_THREADS ?? m.info.threads);
    assert.equal(m.info.threads, threads);
    assert.equal(threadCount(), threads);
    if (process.env.SAGUARO_EXPECT_RELAXED === '1') assert.equal(relaxedSimd(), true, 'relaxed-simd expected in this run');
    assert.equal(m.info.kernels, relaxedSimd() ? 'simd128+relaxed' : 'simd128');
    assert.equal(m.info.has_tokenizer, true);
    checkProgress(events, 'load', size);
    assert.ok(events.every((e) => e.total === size));
    m.free();
  });

  test('from a file: URL and a URL object', async () => {
    for (const src of [pathToFileURL(CHAT), pathToFileURL(CHAT).href]) {
      const m = await Model.load(src);
      assertSameModel(m, reference);
      m.free();
    }
  });

  test('from a Uint8Array, an ArrayBuffer, a Buffer and a view with an offset', async () => {
    const bytes = readFileSync(CHAT);
    const padded = new Uint8Array(bytes.byteLength + 13);
    padded.set(bytes, 13);
    const sources = [new Uint8Array(bytes), bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength), bytes, padded.subarray(13)];
    for (const src of sources) {
      const events = [];
      const m = await Model.load(src, { onProgress: (p) => events.push(p) });
      assertSameModel(m, reference);
      checkProgress(events, 'load', size);
      m.free();
    }
  });

  test('from a Blob, a Response and a ReadableStream', async () => {
    const bytes = readFileSync(CHAT);
    const m1 = await Model.load(new Blob([bytes]));
    assertSameModel(m1, reference);
    m1.free();
    const m2 = await Model.load(new Response(bytes, { headers: { 'content-length': String(bytes.byteLength) } }));
    assertSameModel(m2, reference);
    m2.free();
    for (const sized of [true, false]) {
      const stream = new Blob([bytes]).stream();
      const m3 = await Model.load(stream, sized ? { size: bytes.byteLength } : {});
      assertSameModel(m3, reference);
      m3.free();
    }
  });

  test('from a URL on a local HTTP server, with download progress', async () => {
    const events = [];
    const m = await Model.load(server.url('slow/chat-f32.cact'), { onProgress: (p) => events.push(p) });
    assertSameModel(m, reference);
    checkProgress(events, 'download', size);
    const downloads = events.filter((e) => e.phase === 'download');
    assert.ok(downloads.length > 10, `${downloads.length} download events`);
    assert.ok(downloads.every((e) => e.total === size), 'total from Content-Length');
    assert.equal(downloads[0].loaded, 0);
    assert.equal(downloads[downloads.length - 1].loaded, size);
    m.free();
  });

  test('from a URL without Content-Length (chunks collected first)', async () => {
    const events = [];
    const m = await Model.load(new URL(server.url('chunked/chat-f32.cact')), { onProgress: (p) => events.push(p) });
    assertSameModel(m, reference);
    const downloads = events.filter((e) => e.phase === 'download');
    assert.equal(downloads[downloads.length - 1].loaded, size);
    assert.equal(events[events.length - 1].loaded, size);
    m.free();
  });

  test('browser caching (Cache API stand-in): one download, then HEAD revalidation by size', async () => {
    // Node has no Cache API: a minimal in-memory CacheStorage with its semantics (put reads the
    // body, match returns a new Response).
    const store = new Map();
    const cache = {
      match: async (key) => {
        const e = store.get(String(key));
        return e && new Response(e.bytes, { headers: e.headers });
      },
      put: async (key, res) => {
        const bytes = new Uint8Array(await res.arrayBuffer());
        store.set(String(key), { bytes, headers: [...res.headers] });
      },
      delete: async (key) => store.delete(String(key)),
    };
    globalThis.caches = { open: async (name) => (assert.equal(name, 'my-models'), cache) };
    try {
      const url = server.url('chat-f32.cact');
      const seen = () => server.requests.filter((r) => r.endsWith('/chat-f32.cact'));
      const start = seen().length;
      const m1 = await Model.load(url, { cache: 'my-models' });
      assertSameModel(m1, reference);
      m1.free();
      assert.deepEqual(seen().slice(start), [`GET /chat-f32.cact`]);
      const entry = store.get(url);
      assert.ok(entry, 'stored under its URL');
      assert.equal(entry.bytes.byteLength, size);
      assert.equal(new Headers(entry.headers).get('x-saguaro-size'), String(size));

      // Again: from the cache after a HEAD request, with 'load' progress marked cached.
      const events = [];
      const m2 = await Model.load(url, { cache: 'my-models', onProgress: (p) => events.push(p) });
      assertSameModel(m2, reference);
      m2.free();
      assert.deepEqual(seen().slice(start), [`GET /chat-f32.cact`, `HEAD /chat-f32.cact`]);
      assert.ok(events.some((e) => e.phase === 'load' && e.cached === true));
      assert.ok(!events.some((e) => e.phase === 'download'));

      // A stale entry (another size) and a damaged one (same size, bad bytes) are downloaded again.
      store.set(url, { bytes: entry.bytes.subarray(0, 100), headers: [['x-saguaro-size', '100']] });
      const m3 = await Model.load(url, { cache: 'my-models' });
      assertSameModel(m3, reference);
      m3.free();
      store.set(url, { bytes: new Uint8Array(size).fill(3), headers: [['x-saguaro-size', String(size)]] });
      const m4 = await Model.load(url, { cache: 'my-models' });
      assertSameModel(m4, reference);
      m4.free();
      assert.equal(store.get(url).bytes[0], entry.bytes[0], 'the entry was replaced');
      assert.equal(seen().slice(start).filter((r) => r.startsWith('GET')).length, 3);

      // A cache that cannot be opened is ignored.
      globalThis.caches = { open: async () => { throw new Error('SecurityError'); } };
      const m5 = await Model.load(url, { cache: true });
      assertSameModel(m5, reference);
      m5.free();
    } finally {
      delete globalThis.caches;
    }
  });

  test('an HTTP error and an unreachable server are io errors', async () => {
    await assert.rejects(Model.load(server.url('missing.cact')), (e) => e instanceof SaguaroError && e.code === 'io' && /404/.test(e.message));
    await assert.rejects(Model.load('http://127.0.0.1:1/x.cact'), (e) => e instanceof SaguaroError && e.code === 'io');
  });

  test('an AbortSignal cancels a download', async () => {
    const controller = new AbortController();
    const p = Model.load(server.url('slow/chat-f32.cact'), {
      signal: controller.signal,
      onProgress: (e) => {
        if (e.loaded > 64 * 1024) controller.abort();
      },
    });
    await assert.rejects(p, (e) => e.name === 'AbortError');
    await assert.rejects(Model.load(CHAT, { signal: AbortSignal.abort() }), (e) => e.name === 'AbortError');
  });

  test('over the wasm32 limit: a clean io error before any download', async () => {
    assert.equal(MAX_MODEL_BYTES, 3.5 * 2 ** 30);
    const before = memoryBytes();
    await assert.rejects(Model.load(server.url('huge')), (e) => e instanceof SaguaroError && e.code === 'io' && /4 GiB/.test(e.message));
    // An 8B-A1B int4 file is about 4.7 GB.
    const stream = new ReadableStream({ pull: (c) => c.enqueue(new Uint8Array(1024)) });
    await assert.rejects(Model.load(stream, { size: 4.7e9 }), (e) => e.code === 'io' && /int4 conversion or the native host/.test(e.message));
    assert.equal(memoryBytes(), before, 'no memory was reserved');
    // The module still works.
    const m = await Model.load(CHAT);
    assertSameModel(m, reference);
    m.free();
  });

  test('garbage, truncated, empty and missing files are errors', async () => {
    const bytes = readFileSync(CHAT);
    await assert.rejects(Model.load(new Uint8Array(4096).fill(7)), (e) => e instanceof SaguaroError && e.code === 'format');
    await assert.rejects(Model.load(bytes.subarray(0, bytes.byteLength >> 1)), (e) => e instanceof SaguaroError && ['format', 'io'].includes(e.code));
    await assert.rejects(Model.load(bytes.subarray(0, 100)), (e) => e instanceof SaguaroError && e.code === 'format');
    await assert.rejects(Model.load(new Uint8Array(0)), (e) => e instanceof SaguaroError && e.code === 'input');
    await assert.rejects(Model.load(join(tmpdir(), 'no-such-model.cact')), (e) => e instanceof SaguaroError && e.code === 'io');
    const dir = mkdtempSync(join(tmpdir(), 'saguaro-npm-'));
    const truncated = join(dir, 'truncated.cact');
    writeFileSync(truncated, bytes.subarray(0, bytes.byteLength - 1000));
    await assert.rejects(Model.load(truncated), (e) => e instanceof SaguaroError && ['format', 'io'].includes(e.code));
    // Flipped header bytes.
    const bad = new Uint8Array(bytes);
    bad[5] ^= 0xff;
    await assert.rejects(Model.load(bad), (e) => e instanceof SaguaroError);
    await assert.rejects(Model.load(42), (e) => e instanceof SaguaroError && e.code === 'input');
    // None of this broke the module.
    const m = await Model.load(CHAT);
    assertSameModel(m, reference);
    m.free();
  });

  test('a download that is shorter than its Content-Length is an io error', async () => {
    const bytes = readFileSync(CHAT);
    const res = new Response(bytes.subarray(0, 5000), { headers: { 'content-length': String(bytes.byteLength) } });
    await assert.rejects(Model.load(res), (e) => e.code === 'io' && /5000 of/.test(e.message));
    const long = new Response(bytes, { headers: { 'content-length': '5000' } });
    await assert.rejects(Model.load(long), (e) => e.code === 'io' && /more than the 5000 bytes/.test(e.message));
  });
});
