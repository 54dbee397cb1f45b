// Shared by the node:test files. They run from a temporary folder where the packed package is
// installed (scripts/test-npm.sh), and import it by name. Environment (set by the script):
//   SAGUARO_BIN       the native CLI (target/release/saguaro)
//   SAGUARO_MODELS    a folder of .cact files converted for the run (see test-npm.sh)
//   SAGUARO_FIXTURES  tests/fixtures
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with scripts/test-npm.sh`);
  return v;
}

export const BIN = env('SAGUARO_BIN');
export const MODELS = env('SAGUARO_MODELS');
export const FIXTURES = env('SAGUARO_FIXTURES');
export const model = (name) => join(MODELS, name);

/** Runs the native CLI; returns stdout (and the status, which is not checked when `allowFail`). */
export function cli(args, { input, allowFail = false } = {}) {
  try {
    return execFileSync(BIN, args, { input, maxBuffer: 1 << 30, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    if (allowFail && typeof e.stdout === 'string') return e.stdout;
    throw e;
  }
}

/** `saguaro logits` as one Float32Array (its JSON prints f32 values in shortest form). */
export function cliLogits(path, ids) {
  const rows = JSON.parse(cli(['logits', '--model', path, '--tokens', ids.join(',')])).logits;
  return Float32Array.from(rows.flat());
}

/** `saguaro generate --json` tokens. */
export function cliGenerate(path, ids, { maxTokens = 16, temperature = 0, seed = 0, stopOnEos = false } = {}) {
  const args = ['generate', '--model', path, '--tokens', ids.join(','), '--max-tokens', String(maxTokens),
    '--temperature', String(temperature), '--seed', String(seed), '--json'];
  if (stopOnEos) args.push('--stop-on-eos');
  return JSON.parse(cli(args)).tokens;
}

/** `saguaro complete --stream`: the token events and the response. */
export function cliComplete(path, request) {
  const lines = cli(['complete', '--model', path, '--request', '-', '--stream'], { input: JSON.stringify(request), allowFail: true })
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  return { events: lines.slice(0, -1), response: lines[lines.length - 1] };
}

/** Asserts two Float32Arrays have the same bits (NaN payloads and -0 included). */
export function assertSameBits(actual, expected, what = 'values') {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) assert.fail(`${what}: first difference at ${i}: ${actual[i]} (0x${a[i].toString(16)}) != ${expected[i]} (0x${b[i].toString(16)})`);
  }
}

/** Fields that measure time or memory (different on every run and host). */
export const TIMINGS = ['time_to_first_token_ms', 'total_time_ms', 'prefill_tps', 'decode_tps', 'ram_usage_mb'];

/** A response with the timings removed and f32 fields rounded as f32 (the CLI prints them shortest). */
export function comparable(response) {
  const r = structuredClone(response);
  for (const k of TIMINGS) delete r[k];
  r.confidence = Math.fround(r.confidence);
  return r;
}

export function comparableEvent(e) {
  const { type, ...rest } = e;
  return { ...rest, confidence: Math.fround(rest.confidence) };
}

/**
 * A local HTTP server for the models folder on 127.0.0.1. Paths: /<file> (with Content-Length),
 * /chunked/<file> (no Content-Length), /slow/<file> (small chunks, slowly), /huge (announces
 * 5 GB and never sends them), /etag/<file> (with an ETag), anything else 404.
 */
export async function serveModels() {
  const requests = [];
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const url = new URL(req.url, 'http://x');
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] === 'huge') {
      res.writeHead(200, { 'content-length': String(5 * 1024 ** 3), 'content-type': 'application/octet-stream' });
      res.write(new Uint8Array(16));
      req.on('close', () => res.destroy());
      return;
    }
    const mode = parts.length > 1 ? parts[0] : '';
    const file = join(MODELS, parts[parts.length - 1] ?? '');
    let size;
    try {
      size = statSync(file).size;
    } catch {
      res.writeHead(404).end('not found');
      return;
    }
    const headers = { 'content-type': 'application/octet-stream' };
    if (mode !== 'chunked') headers['content-length'] = String(size);
    res.writeHead(200, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(file, { highWaterMark: mode === 'slow' ? 16 * 1024 : 64 * 1024 });
    if (mode === 'slow') {
      stream.on('data', (chunk) => {
        stream.pause();
        res.write(chunk);
        setTimeout(() => stream.resume(), 5);
      });
      stream.on('end', () => res.end());
    } else {
      stream.pipe(res);
    }
    req.on('close', () => stream.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: (path) => `http://127.0.0.1:${port}/${path}`,
    requests,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}
