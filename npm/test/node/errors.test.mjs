// Low-level calls and their errors, free() and Symbol.dispose, a model without a tokenizer.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import * as saguaro from '@saguaro/llm';
import { Model, SaguaroError } from '@saguaro/llm';
import { FIXTURES, cli, model } from './helpers.mjs';

const isCode = (code) => (e) => {
  assert.ok(e instanceof SaguaroError, `not a SaguaroError: ${e}`);
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'SaguaroError');
  assert.equal(e.code, code, e.message);
  return true;
};

describe('low-level calls', () => {
  test('tokenize and detokenize match the tokenizer cases of the fixtures', async () => {
    const m = await Model.load(model('chat-f32.cact'));
    const cases = JSON.parse(readFileSync(join(FIXTURES, 'chat', 'tokenizer_cases.json'), 'utf8'));
    const list = Array.isArray(cases) ? cases : cases.cases;
    assert.ok(list.length > 5);
    for (const c of list) {
      const ids = m.tokenize(c.text);
      assert.ok(ids instanceof Uint32Array);
      assert.deepEqual([...ids], c.ids, JSON.stringify(c.text));
      assert.equal(m.detokenize(ids), c.decoded);
      assert.equal(m.detokenize(c.ids, { skipSpecial: true }), c.decoded_skip_special);
      assert.equal(m.detokenize(c.ids, true), c.decoded_skip_special);
    }
    m.free();
  });

  test('out-of-range and malformed token ids are input errors', async () => {
    const m = await Model.load(model('chat-f32.cact'));
    const vocab = m.info.vocab_size;
    for (const f of [(ids) => m.logits(ids), (ids) => m.generateTokens(ids), (ids) => m.detokenize(ids)]) {
      assert.throws(() => f([1, vocab]), isCode('input'));
      assert.throws(() => f([1, 2 ** 32 - 1]), isCode('input'));
      assert.throws(() => f([-1]), isCode('input'));
      assert.throws(() => f([1.5]), isCode('input'));
      assert.throws(() => f(['1']), isCode('input'));
      assert.throws(() => f(null), isCode('input'));
    }
    assert.throws(() => m.logits([]), isCode('input'));
    assert.throws(() => m.generateTokens([]), isCode('input'));
    assert.throws(() => m.generateTokens([1], { temperature: -1 }), isCode('input'));
    assert.throws(() => m.generateTokens([1], { maxTokens: 'many' }), isCode('input'));
    assert.throws(() => m.tokenize(5), isCode('input'));
    // The native CLI rejects the same id.
    assert.throws(() => cli(['logits', '--model', model('chat-f32.cact'), '--tokens', `1,${vocab}`]));
    // Still fine.
    assert.equal(m.logits([1, 2]).length, 2 * vocab);
    m.free();
  });

  test('a model without a tokenizer: low-level calls work, chat is an input error', async () => {
    const m = await Model.load(model('hybrid-gqa-f32.cact'));
    assert.equal(m.info.has_tokenizer, false);
    assert.equal(m.logits([1, 2, 3]).length, 3 * m.info.vocab_size);
    assert.throws(() => m.session(), isCode('input'));
    assert.throws(() => m.tokenize('hi'), isCode('input'));
    assert.throws(() => m.detokenize([1]), isCode('input'));
    m.free();
  });
});

describe('free() and Symbol.dispose', () => {
  test('using a freed model or session throws code freed', async () => {
    const m = await Model.load(model('chat-f32.cact'));
    const s = m.session();
    assert.equal(m.freed, false);
    m.free();
    assert.equal(m.freed, true);
    m.free(); // twice is fine
    for (const f of [() => m.logits([1]), () => m.tokenize('a'), () => m.detokenize([1]), () => m.generateTokens([1]), () => m.session()]) {
      assert.throws(f, isCode('freed'));
    }
    // A session outlives its model (it shares the weights until it is freed).
    const r = await s.complete({ messages: [{ role: 'user', content: 'Hi' }], options: { max_tokens: 4 } });
    assert.equal(r.success, true);
    s.free();
    assert.equal(s.freed, true);
    await assert.rejects(s.complete({ messages: [{ role: 'user', content: 'Hi' }] }), isCode('freed'));
    assert.throws(() => s.completeSync({ messages: [{ role: 'user', content: 'Hi' }] }), isCode('freed'));
    assert.throws(() => s.reset(), isCode('freed'));
    assert.equal(s.tokenCount, 0);
  });

  test('freeing a session during a request cancels it', async () => {
    const m = await Model.load(model('chat-f32.cact'));
    const s = m.session();
    const p = s.complete({ messages: [{ role: 'user', content: 'Tell me a story.' }], options: { max_tokens: 200, temperature: 0 } }, {
      onToken: () => s.free(),
      yieldMs: 0,
    });
    const r = await p;
    assert.equal(r.finish_reason, 'cancelled');
    assert.equal(s.freed, true);
    await assert.rejects(s.complete({ messages: [{ role: 'user', content: 'Hi' }] }), isCode('freed'));
    m.free();
  });

  test('Symbol.dispose frees', async () => {
    assert.equal(typeof Symbol.dispose, 'symbol');
    const m = await Model.load(model('chat-f32.cact'));
    const s = m.session();
    s[Symbol.dispose]();
    assert.equal(s.freed, true);
    m[Symbol.dispose]();
    assert.equal(m.freed, true);
  });

  test('the package exports', () => {
    for (const name of ['Model', 'Session', 'SaguaroError', 'init', 'memoryBytes', 'MAX_MODEL_BYTES', 'threadCount', 'threadsUnavailable', 'relaxedSimd']) {
      assert.ok(name in saguaro, name);
    }
    const e = new SaguaroError('x', 'io');
    assert.ok(e instanceof Error);
    assert.equal(e.code, 'io');
    assert.ok(saguaro.memoryBytes() > 0);
  });

  test('threads: a count other than the running one is an input error; Node can run threads', async () => {
    const m = await Model.load(model('chat-f32.cact'));
    const running = saguaro.threadCount();
    assert.ok(running >= 1 && m.info.threads === running, `${running} running, model ${m.info.threads}`);
    for (const bad of [running + 1, 0, 65]) {
      await assert.rejects(Model.load(model('chat-f32.cact'), { threads: bad }), isCode('input'), String(bad));
      await assert.rejects(saguaro.init(undefined, { threads: bad }), isCode('input'), String(bad));
    }
    // The running count and 'auto' are fine.
    for (const ok of [running, 'auto']) (await Model.load(model('chat-f32.cact'), { threads: ok })).free();
    // Node's main thread may block and worker_threads share memory: threads are available.
    assert.equal(saguaro.threadsUnavailable(), null);
    m.free();
  });

  test('the memory of freed models is reused', async () => {
    const bytes = readFileSync(model('chat-f32.cact'));
    const m0 = await Model.load(bytes);
    m0.free();
    const before = saguaro.memoryBytes();
    for (let i = 0; i < 20; i++) {
      const m = await Model.load(bytes);
      const s = m.session();
      s.completeSync({ messages: [{ role: 'user', content: 'Hi' }], options: { max_tokens: 4 } });
      s.free();
      m.free();
    }
    assert.ok(saguaro.memoryBytes() <= before + 4 * bytes.byteLength, `${before} -> ${saguaro.memoryBytes()}`);
  });
});
