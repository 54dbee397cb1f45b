// Thread counts the test passes do not run (scripts/test-npm.sh runs the package tests on 1 and
// 2 threads): a child process on the threads module with 3 and 4 threads (more threads than
// this machine may have cores; tasks are split differently for each count) must give the native
// CLI's logits and tokens, dense and MoE, int8 and int4.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';

import { assertSameBits, cliGenerate, cliLogits, model } from './helpers.mjs';

const MODELS = ['realistic-hybrid-int4.cact', 'conv-heavy-int8.cact', 'moe-e6k3-int4.cact', 'moe-e4k2-int8.cact'];
const IDS = [1, 5, 9, 2, 7, 3, 11, 4, 8, 6, 10, 12, 3, 3, 14, 2, 9, 1, 7, 5];

// Loads each model in a fresh Node process with SAGUARO_WASM_THREADS=threads and prints its
// thread count, logits (as bits) and greedy tokens.
const CHILD = `
import { Model, threadCount } from '@saguaro/llm';
const [ids, ...paths] = JSON.parse(process.argv[1]);
const out = [];
for (const path of paths) {
  const m = await Model.load(path);
  const logits = m.logits(ids);
  out.push({ threads: m.info.threads, logits: Buffer.from(logits.buffer, logits.byteOffset, logits.byteLength).toString('base64'), tokens: [...m.generateTokens(ids, { maxTokens: 12 })] });
  m.free();
}
console.log(JSON.stringify({ running: threadCount(), out }));
`;

// The child processes do not depend on test-npm.sh's pass: run them once, in the plain threads
// pass (or when run alone).
const skip =
  process.env.SAGUARO_EXPECT_THREADS !== undefined && (process.env.SAGUARO_EXPECT_THREADS !== '2' || process.env.SAGUARO_EXPECT_RELAXED === '1');

describe('threads module on more threads', () => {
  for (const threads of [3, 4]) {
    test(`${threads} threads: logits and tokens equal native`, { skip }, () => {
      const paths = MODELS.map(model);
      const stdout = execFileSync(process.execPath, ['--input-type=module', '-e', CHILD, JSON.stringify([IDS, ...paths])], {
        env: { ...process.env, SAGUARO_WASM_THREADS: String(threads) },
        encoding: 'utf8',
        maxBuffer: 1 << 28,
      });
      const got = JSON.parse(stdout);
      assert.equal(got.running, threads);
      for (const [i, path] of paths.entries()) {
        const r = got.out[i];
        assert.equal(r.threads, threads, path);
        const buf = Buffer.from(r.logits, 'base64');
        const logits = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
        assertSameBits(logits, cliLogits(path, IDS), `${MODELS[i]} logits on ${threads} threads`);
        assert.deepEqual(r.tokens, cliGenerate(path, IDS, { maxTokens: 12 }), `${MODELS[i]} tokens on ${threads} threads`);
      }
    });
  }
});

describe('threads where Node forbids workers', { skip }, () => {
  // Node's permission model without --allow-worker: 'auto' runs one thread (same bits), an
  // explicit count is an input error that says why.
  const CHAT = model('chat-int4.cact');
  const PROBE = `
import { Model, threadCount, threadsUnavailable } from '@saguaro/llm';
try {
  const m = await Model.load(process.argv[1]);
  const l = m.logits([1, 2, 3, 4]);
  console.log(JSON.stringify({ running: threadCount(), why: threadsUnavailable(), logits: Buffer.from(l.buffer, l.byteOffset, l.byteLength).toString('base64') }));
} catch (e) {
  console.log(JSON.stringify({ error: { code: e.code, message: e.message }, why: threadsUnavailable() }));
}
`;
  const run = (threads) => {
    const env = { ...process.env };
    delete env.SAGUARO_WASM_THREADS;
    if (threads !== undefined) env.SAGUARO_WASM_THREADS = String(threads);
    const args = ['--no-warnings', '--experimental-permission', '--allow-fs-read=*', '--input-type=module', '-e', PROBE, CHAT];
    return JSON.parse(execFileSync(process.execPath, args, { env, encoding: 'utf8' }));
  };
  test("'auto' falls back to one thread with the native bits; 2 threads is an input error", () => {
    const auto = run(undefined);
    assert.equal(auto.running, 1, JSON.stringify(auto));
    assert.match(auto.why, /permission/);
    const buf = Buffer.from(auto.logits, 'base64');
    assertSameBits(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)), cliLogits(CHAT, [1, 2, 3, 4]), 'logits');
    const two = run(2);
    assert.equal(two.error?.code, 'input', JSON.stringify(two));
    assert.match(two.error.message, /permission/);
  });
});

