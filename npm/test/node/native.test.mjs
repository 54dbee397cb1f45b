// The same bits as the native CLI: logits (every position) and generated tokens, for f32, f16,
// int8 and int4 files converted for this run (none of them is a committed file), dense and MoE.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, test } from 'node:test';

import { Model } from '@saguaro/llm';
import { MODELS, assertSameBits, cliGenerate, cliLogits, model } from './helpers.mjs';

const files = readdirSync(MODELS).filter((f) => f.endsWith('.cact')).sort();

/** A prompt of `n` ids in [1, vocab) from a fixed linear congruential sequence. */
function prompt(vocab, n, seed) {
  const ids = [];
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    ids.push(1 + (x % (vocab - 1)));
  }
  return ids;
}

describe('bit-identical to the native CLI', () => {
  test('the models cover f32, f16, int8 and int4, dense and MoE', () => {
    for (const q of ['f32', 'f16', 'int8', 'int4']) assert.ok(files.some((f) => f.endsWith(`-${q}.cact`)), q);
    assert.ok(files.some((f) => f.startsWith('moe-')), 'a MoE model');
  });

  for (const file of files) {
    test(`${file}: logits and tokens`, async () => {
      const path = model(file);
      const m = await Model.load(path);
      const vocab = m.info.vocab_size;
      // A short prompt, and one longer than a 16-wide kernel block with odd length.
      for (const ids of [prompt(vocab, 3, 7), prompt(vocab, 37, 11)]) {
        const logits = m.logits(ids);
        assert.equal(logits.length, ids.length * vocab);
        assertSameBits(logits, cliLogits(path, ids), `${file} logits of ${ids.length} tokens`);
      }
      const ids = prompt(vocab, 9, 3);
      const greedy = m.generateTokens(ids, { maxTokens: 24 });
      assert.ok(greedy instanceof Uint32Array);
      assert.deepEqual([...greedy], cliGenerate(path, ids, { maxTokens: 24 }), `${file} greedy`);
      const sampled = m.generateTokens(ids, { maxTokens: 24, temperature: 0.8, seed: 42 });
      assert.deepEqual([...sampled], cliGenerate(path, ids, { maxTokens: 24, temperature: 0.8, seed: 42 }), `${file} sampled`);
      const eos = m.generateTokens(ids, { maxTokens: 40, temperature: 1.5, seed: 5, stopOnEos: true });
      assert.deepEqual([...eos], cliGenerate(path, ids, { maxTokens: 40, temperature: 1.5, seed: 5, stopOnEos: true }), `${file} stop on eos`);
      m.free();
    });
  }

  test('generateTokens: onToken sees each id and can stop early', async () => {
    const m = await Model.load(model('chat-f32.cact'));
    const seen = [];
    const out = m.generateTokens([1, 2, 3], { maxTokens: 10, onToken: (id) => seen.push(id) });
    assert.deepEqual(seen, [...out]);
    const early = m.generateTokens([1, 2, 3], { maxTokens: 10, onToken: () => false });
    assert.equal(early.length, 1);
    assert.throws(() => m.generateTokens([1, 2, 3], { onToken: () => { throw new RangeError('mine'); } }), RangeError);
    assert.deepEqual([...m.generateTokens([1, 2, 3], { maxTokens: 10 })], [...out], 'unchanged after an exception');
    m.free();
  });
});
