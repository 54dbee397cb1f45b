// The memory check (scripts/test-npm.sh --big): an LFM2-350M-shaped int8 model (about 380 MB,
// `saguaro synth`) loads into wasm32 memory without a second copy and runs, with the bits of
// the native CLI. Prints load time, memory and speed.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { test } from 'node:test';

import { Model, init, memoryBytes } from '@saguaro/llm';
import { assertSameBits, cliGenerate, cliLogits } from './helpers.mjs';

const PATH = process.env.SAGUARO_BIG_MODEL;
const MiB = 1024 * 1024;

test('an LFM2-350M-shaped int8 model loads and runs in wasm32', { skip: !PATH && 'SAGUARO_BIG_MODEL is not set' }, async (t) => {
  const size = statSync(PATH).size;
  await init();
  const before = memoryBytes();
  let t0 = performance.now();
  let events = 0;
  const model = await Model.load(PATH, { onProgress: () => events++ });
  const loadMs = performance.now() - t0;
  const after = memoryBytes();
  t.diagnostic(`file ${(size / MiB).toFixed(1)} MiB, loaded in ${loadMs.toFixed(0)} ms (${events} progress events); wasm memory ${(before / MiB).toFixed(1)} -> ${(after / MiB).toFixed(1)} MiB`);
  assert.equal(model.info.file_bytes, size);
  assert.equal(model.info.vocab_size, 65536);
  // The file is in memory once: no second full copy on the way in.
  assert.ok(after - before < size + 64 * MiB, `memory grew by ${((after - before) / MiB).toFixed(1)} MiB for a ${(size / MiB).toFixed(1)} MiB file`);

  const ids = [1, 1010, 2020, 3030];
  t0 = performance.now();
  const logits = model.logits(ids);
  const logitsMs = performance.now() - t0;
  assertSameBits(logits, cliLogits(PATH, ids), 'logits');

  const prompt = Array.from({ length: 64 }, (_, i) => 1 + ((i * 7919) % 65000));
  t0 = performance.now();
  model.logits(prompt);
  const prefillMs = performance.now() - t0;

  const n = 16;
  t0 = performance.now();
  const tokens = model.generateTokens(ids, { maxTokens: n });
  const genMs = performance.now() - t0;
  assert.deepEqual([...tokens], cliGenerate(PATH, ids, { maxTokens: n }));
  t.diagnostic(
    `logits of 4 tokens ${logitsMs.toFixed(0)} ms; prefill 64 tokens ${(64 / (prefillMs / 1000)).toFixed(1)} tok/s; ` +
      `generate ${n} tokens ${(n / (genMs / 1000)).toFixed(1)} tok/s (single thread, simd128); wasm memory ${(memoryBytes() / MiB).toFixed(1)} MiB`,
  );
  assert.ok(memoryBytes() < 2048 * MiB);
  model.free();
});
