// The Saguaro WASI component (wasm32-wasip2) transpiled by jco and run in Node with
// @bytecodealliance/preview2-shim as its WASI: every result is compared with the native
// `saguaro` CLI, bit for bit (logits as f32 bit patterns, token ids, response JSON with the
// timings aside).
//
// Environment (scripts/test-component-js.sh sets them):
//   SAGUARO_BIN      the native `saguaro` binary (required)
//   SAGUARO_JCO_OUT  the folder `jco transpile` wrote (default: ../out)
//   SAGUARO_ROOT     the repository (default: ../..)
//
// Setup converts fixture models (tests/fixtures/*) to .cact files in a temporary folder with
// `saguaro convert` (f32, f16, int8 and int4, a MoE model among them) and preopens that folder
// as /models for the component.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { _setPreopens } from '@bytecodealliance/preview2-shim/filesystem';

const here = fileURLToPath(new URL('.', import.meta.url));
const ROOT = resolve(process.env.SAGUARO_ROOT ?? join(here, '..', '..'));
const OUT = resolve(process.env.SAGUARO_JCO_OUT ?? join(here, '..', 'out'));
const BIN = process.env.SAGUARO_BIN;
const FIXTURES = join(ROOT, 'tests', 'fixtures');

if (!BIN || !existsSync(BIN)) {
  throw new Error(`SAGUARO_BIN must name the native saguaro binary (got ${BIN}); run scripts/test-component-js.sh`);
}

/** Converted models: name -> [fixture folder, quant]. */
const MODELS = {
  'chat-f32': ['chat/model', 'f32'],
  'chat-int8': ['chat/model', 'int8'],
  'gqa-int4': ['hybrid-gqa', 'int4'],
  'mqa-f16': ['mqa-headdim', 'f16'],
  'moe-int8': ['moe-e4k2', 'int8'],
};
const CHAT_MODELS = ['chat-f32', 'chat-int8'];

/** Response fields that measure the run rather than describe the answer. */
const TIMING_FIELDS = ['time_to_first_token_ms', 'total_time_ms', 'prefill_tps', 'decode_tps', 'ram_usage_mb'];

const dir = mkdtempSync(join(tmpdir(), 'saguaro-component-js-'));
const modelPath = (name) => join(dir, `${name}.cact`);
const guestPath = (name) => `/models/${name}.cact`;

function cli(args, input = '') {
  const r = spawnSync(BIN, args, { input, encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  return r;
}

function cliOk(args, input = '') {
  const r = cli(args, input);
  assert.equal(r.status, 0, `saguaro ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

for (const [name, [src, quant]] of Object.entries(MODELS)) {
  cliOk(['convert', join(FIXTURES, src), '-o', modelPath(name), '--quant', quant, '--quiet']);
}

// The component sees the temporary folder as /models and nothing else.
_setPreopens({ '/models': dir });
const { llm } = await import(pathToFileURL(join(OUT, 'saguaro.js')).href);

/** Runs `f`, expects a component error; returns its payload ({tag, val}). */
function componentError(f) {
  try {
    f();
  } catch (e) {
    assert.ok(e.payload && typeof e.payload.tag === 'string', `not a component error: ${e?.stack ?? e}`);
    return e.payload;
  }
  assert.fail('expected an error');
}

function expectError(f, tag, pattern) {
  const p = componentError(f);
  assert.equal(p.tag, tag, `expected a ${tag} error, got ${JSON.stringify(p)}`);
  if (pattern) assert.match(p.val, pattern);
  return p;
}

const f32Bits = (a) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/** The CLI's logits (JSON numbers printed from f32) as f32 bit patterns, row-major. */
function cliLogitsBits(name, ids) {
  const rows = JSON.parse(cliOk(['logits', '--model', modelPath(name), '--tokens', ids.join(',')])).logits;
  return f32Bits(Float32Array.from(rows.flat().map(Math.fround)));
}

function assertSameBits(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: ${actual.length} values vs ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) {
      const f = (b) => new Float32Array(new Uint32Array([b]).buffer)[0];
      assert.fail(`${what}: value ${i} differs: component ${f(actual[i])} (0x${actual[i].toString(16)}), native ${f(expected[i])} (0x${expected[i].toString(16)})`);
    }
  }
}

function withoutTimings(json) {
  const v = typeof json === 'string' ? JSON.parse(json) : { ...json };
  for (const k of TIMING_FIELDS) {
    assert.ok(k in v, `response lacks ${k}`);
    delete v[k];
  }
  return v;
}

function cliComplete(name, request) {
  const r = cli(['complete', '--model', modelPath(name)], JSON.stringify(request));
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]);
}

/** Pulls a started request to its end; returns the steps. */
function drain(session, limit = 100000) {
  const steps = [];
  for (let s; (s = session.next()) !== undefined; ) {
    steps.push(s);
    assert.ok(steps.length < limit, 'next() never returned none');
  }
  return steps;
}

const references = JSON.parse(readFileSync(join(FIXTURES, 'chat', 'reference.json'), 'utf8')).generations;

const longText = 'The saguaro cactus grows slowly in the Sonoran desert and flowers in May. '.repeat(40);

const REQUESTS = [
  ...references.map((g) => g.request),
  {
    messages: [{ role: 'user', content: 'Write a long answer, with a stop sequence.' }],
    options: { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 7, max_tokens: 40, stop_sequences: ['e', '\n'] },
  },
  {
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: longText }],
    options: { temperature: 0.5, min_p: 0.05, repetition_penalty: 1.1, seed: 3, max_tokens: 20 },
  },
];

const models = {};
function model(name) {
  models[name] ??= llm.Model.loadPath(guestPath(name));
  return models[name];
}

after(() => {
  for (const m of Object.values(models)) m[Symbol.dispose]?.();
  rmSync(dir, { recursive: true, force: true });
});

describe('loading and info', () => {
  test('info() describes each model; the kernels are simd128', () => {
    for (const name of Object.keys(MODELS)) {
      const info = model(name).info();
      const config = JSON.parse(readFileSync(join(FIXTURES, MODELS[name][0], 'config.json'), 'utf8'));
      assert.equal(info.kernels, 'simd128', name);
      assert.equal(info.vocabSize, config.vocab_size, name);
      assert.equal(info.hiddenSize, config.hidden_size, name);
      assert.equal(info.fileBytes, BigInt(statSync(modelPath(name)).size), name);
      assert.equal(info.hasTokenizer, CHAT_MODELS.includes(name), name);
      assert.equal(info.isMoe, name.startsWith('moe'), name);
      assert.equal(info.modelType, config.model_type, name);
    }
  });

  test('a model from bytes and from a path give the same bits', () => {
    const ids = [1, 2, 3, 4, 5];
    for (const name of ['chat-int8', 'gqa-int4']) {
      const fromBytes = llm.Model.loadBytes(readFileSync(modelPath(name)));
      try {
        assert.deepEqual(fromBytes.info(), model(name).info());
        assertSameBits(f32Bits(fromBytes.logits(new Uint32Array(ids))), f32Bits(model(name).logits(new Uint32Array(ids))), name);
      } finally {
        fromBytes[Symbol.dispose]();
      }
    }
  });
});

describe('low level: the same bits as the native CLI', () => {
  const sequences = (vocab) => [[1, 2, 3], Array.from({ length: 37 }, (_, i) => (i * 7919 + 11) % vocab)];

  for (const name of Object.keys(MODELS)) {
    test(`logits of ${name}`, () => {
      const m = model(name);
      const vocab = m.info().vocabSize;
      for (const ids of sequences(vocab)) {
        const got = m.logits(new Uint32Array(ids));
        assert.equal(got.length, ids.length * vocab);
        assertSameBits(f32Bits(got), cliLogitsBits(name, ids), `${name} logits of ${ids.length} tokens`);
      }
    });

    test(`greedy and sampled tokens of ${name}`, () => {
      const m = model(name);
      const ids = [1, 2, 3];
      const greedy = m.generateTokens(new Uint32Array(ids), { maxTokens: 16, temperature: 0, seed: 0n, stopOnEos: false });
      const native = JSON.parse(cliOk(['generate', '--model', modelPath(name), '--tokens', ids.join(','), '--max-tokens', '16', '--json'])).tokens;
      assert.deepEqual(Array.from(greedy), native);
      const sampled = m.generateTokens(new Uint32Array(ids), { maxTokens: 12, temperature: 0.9, seed: 1234n, stopOnEos: true });
      const nativeSampled = JSON.parse(
        cliOk(['generate', '--model', modelPath(name), '--tokens', ids.join(','), '--max-tokens', '12', '--temperature', '0.9', '--seed', '1234', '--stop-on-eos', '--json']),
      ).tokens;
      assert.deepEqual(Array.from(sampled), nativeSampled);
    });
  }

  test('tokenize and detokenize round-trip', () => {
    const m = model('chat-f32');
    const text = 'Hello, saguaro! Weather in Paris?';
    const ids = m.tokenize(text);
    assert.ok(ids.length > 0);
    assert.equal(m.detokenize(ids, false), text);
    const im = m.tokenize('<|im_start|>user');
    assert.equal(m.detokenize(im, true), 'user');
    assert.equal(m.detokenize(im, false), '<|im_start|>user');
  });
});

describe('chat: the same responses as `saguaro complete`', () => {
  for (const name of CHAT_MODELS) {
    test(`complete on ${name}`, () => {
      const m = model(name);
      REQUESTS.forEach((request, i) => {
        const session = m.session();
        try {
          const got = JSON.parse(session.complete(JSON.stringify(request)));
          assert.equal(got.success, true, `${name} request ${i}: ${got.error}`);
          assert.deepEqual(withoutTimings(got), withoutTimings(cliComplete(name, request)), `${name} request ${i}`);
          if (name === 'chat-f32' && i < references.length) {
            assert.equal(got.response, references[i].text, 'transformers reference text');
          }
        } finally {
          session[Symbol.dispose]();
        }
      });
    });
  }

  test('pull API: start/next/finish is complete, the token texts add up to the response', () => {
    const m = model('chat-int8');
    REQUESTS.forEach((request, i) => {
      const json = JSON.stringify(request);
      const session = m.session();
      session.start(json);
      const steps = drain(session);
      const response = JSON.parse(session.finish());
      const tokens = steps.filter((s) => s.tag === 'token').map((s) => s.val);
      const prefills = steps.filter((s) => s.tag === 'prefill').map((s) => s.val);
      assert.equal(tokens.map((t) => t.text).join(''), response.response, `request ${i}`);
      assert.equal(tokens.length, response.decode_tokens);
      assert.ok(prefills.length >= 1, 'at least one prefill chunk');
      for (let k = 1; k < prefills.length; k++) assert.ok(prefills[k].done > prefills[k - 1].done);
      const last = prefills[prefills.length - 1];
      assert.equal(last.done, last.total);
      assert.equal(last.total, response.prefill_tokens);
      // Steps come in order: every prefill before the first token.
      assert.ok(steps.findIndex((s) => s.tag === 'token') > steps.findLastIndex((s) => s.tag === 'prefill'));
      for (const t of tokens) assert.ok(t.confidence >= 0 && t.confidence <= 1);
      const fresh = m.session();
      assert.deepEqual(withoutTimings(response), withoutTimings(fresh.complete(json)), `request ${i}`);
      fresh[Symbol.dispose]();
      session[Symbol.dispose]();
    });
    // The long prompt is prefilled in several chunks.
    const s = m.session();
    s.start(JSON.stringify(REQUESTS[REQUESTS.length - 1]));
    assert.ok(drain(s).filter((x) => x.tag === 'prefill').length >= 2);
    s.finish();
    s[Symbol.dispose]();
  });

  test('cancel ends the request: after a token, and during prefill', () => {
    const m = model('chat-f32');
    const request = JSON.stringify({ messages: [{ role: 'user', content: longText }], options: { temperature: 0, max_tokens: 50 } });
    const s = m.session();
    s.start(request);
    let step;
    do step = s.next();
    while (step.tag !== 'token');
    s.cancel();
    assert.equal(s.next(), undefined);
    let r = JSON.parse(s.finish());
    assert.equal(r.finish_reason, 'cancelled');
    assert.equal(r.decode_tokens, 1);
    assert.equal(r.success, true);

    s.reset();
    s.start(request);
    assert.equal(s.next().tag, 'prefill');
    s.cancel();
    assert.equal(s.next(), undefined);
    r = JSON.parse(s.finish());
    assert.equal(r.finish_reason, 'cancelled');
    assert.equal(r.decode_tokens, 0);
    s[Symbol.dispose]();
  });

  test('a new start drops the request in progress; finish before the end counts as cancelled', () => {
    const m = model('chat-int8');
    const a = JSON.stringify(REQUESTS[0]);
    const b = JSON.stringify(REQUESTS[1]);
    const s = m.session();
    s.start(a);
    s.next();
    s.start(b);
    drain(s);
    const rb = JSON.parse(s.finish());
    const fresh = m.session();
    const expected = JSON.parse(fresh.complete(b));
    assert.equal(rb.response, expected.response);
    assert.equal(rb.finish_reason, expected.finish_reason);
    s.start(a);
    s.next();
    assert.equal(JSON.parse(s.finish()).finish_reason, 'cancelled');
    s[Symbol.dispose]();
    fresh[Symbol.dispose]();
  });

  test('a follow-up turn reuses the prefix and answers as a fresh session and the CLI do', () => {
    const m = model('chat-f32');
    const s = m.session();
    const first = { messages: [{ role: 'user', content: 'Tell me about the saguaro cactus.' }], options: { temperature: 0, max_tokens: 12 } };
    const r1 = JSON.parse(s.complete(JSON.stringify(first)));
    const second = {
      messages: [...first.messages, { role: 'assistant', content: r1.response }, { role: 'user', content: 'And in winter?' }],
      options: { temperature: 0, max_tokens: 12 },
    };
    const r2 = JSON.parse(s.complete(JSON.stringify(second)));
    assert.ok(r2.reused_tokens > 0, `reused ${r2.reused_tokens}`);
    const fresh = m.session();
    const expected = JSON.parse(fresh.complete(JSON.stringify(second)));
    assert.equal(r2.response, expected.response);
    assert.deepEqual(r2.function_calls, expected.function_calls);
    assert.equal(r2.confidence, expected.confidence);
    assert.equal(r2.response, cliComplete('chat-f32', second).response);
    s[Symbol.dispose]();
    fresh[Symbol.dispose]();
  });

  test('a session outlives its model handle', () => {
    const m = llm.Model.loadPath(guestPath('chat-int8'));
    const s = m.session();
    m[Symbol.dispose]();
    const r = JSON.parse(s.complete(JSON.stringify(REQUESTS[0])));
    assert.equal(r.success, true);
    assert.equal(r.response, cliComplete('chat-int8', REQUESTS[0]).response);
    s[Symbol.dispose]();
  });
});

describe('errors, never traps', () => {
  test('model files: garbage, truncated, empty, missing, outside the preopen', () => {
    const good = readFileSync(modelPath('chat-f32'));
    expectError(() => llm.Model.loadBytes(new Uint8Array(4096).fill(7)), 'format', /magic/);
    expectError(() => llm.Model.loadBytes(good.subarray(0, good.length >> 1)), 'format', /truncated/);
    expectError(() => llm.Model.loadBytes(good.subarray(0, 20)), 'format');
    expectError(() => llm.Model.loadBytes(new Uint8Array(0)), 'format', /empty/);
    writeFileSync(join(dir, 'truncated.cact'), good.subarray(0, good.length - 1000));
    writeFileSync(join(dir, 'empty.cact'), new Uint8Array(0));
    writeFileSync(join(dir, 'garbage.cact'), new Uint8Array(100000).fill(0xcd));
    expectError(() => llm.Model.loadPath('/models/truncated.cact'), 'format', /truncated/);
    expectError(() => llm.Model.loadPath('/models/empty.cact'), 'format', /empty/);
    expectError(() => llm.Model.loadPath('/models/garbage.cact'), 'format', /magic/);
    expectError(() => llm.Model.loadPath('/models/missing.cact'), 'io', /missing\.cact/);
    expectError(() => llm.Model.loadPath('/models'), 'io', /folder/);
    expectError(() => llm.Model.loadPath(modelPath('chat-f32')), 'io', /preopen/);
    expectError(() => llm.Model.loadPath('/etc/passwd'), 'io', /preopen/);
    expectError(() => llm.Model.loadPath('/models/../../../../etc/passwd'), 'io');
    expectError(() => llm.Model.loadPath(''), 'io');
  });

  test('low-level calls: bad token ids, empty input, over the context, no tokenizer', () => {
    const m = model('gqa-int4');
    const vocab = m.info().vocabSize;
    const opts = { maxTokens: 4, temperature: 0, seed: 0n, stopOnEos: false };
    expectError(() => m.logits(new Uint32Array([1, vocab])), 'input', /out of range/);
    expectError(() => m.logits(new Uint32Array([0xffffffff])), 'input', /out of range/);
    expectError(() => m.logits(new Uint32Array([])), 'input', /empty/);
    expectError(() => m.generateTokens(new Uint32Array([vocab + 5]), opts), 'input', /out of range/);
    expectError(() => m.generateTokens(new Uint32Array([]), opts), 'input');
    expectError(() => m.generateTokens(new Uint32Array([1]), { ...opts, temperature: -1 }), 'input', /temperature/);
    expectError(() => m.generateTokens(new Uint32Array([1]), { ...opts, temperature: NaN }), 'input', /temperature/);
    expectError(() => m.session(), 'input', /tokenizer/);
    expectError(() => m.tokenize('hello'), 'input', /tokenizer/);
    expectError(() => m.detokenize(new Uint32Array([1]), false), 'input', /tokenizer/);
    const chat = model('chat-f32');
    expectError(() => chat.detokenize(new Uint32Array([1, 1_000_000]), false), 'input', /out of range/);
    const context = chat.info().maxPositionEmbeddings;
    expectError(() => chat.logits(new Uint32Array(context + 1).fill(5)), 'context-full');
    // The model still works after all of that.
    assertSameBits(f32Bits(m.logits(new Uint32Array([1, 2, 3]))), cliLogitsBits('gqa-int4', [1, 2, 3]), 'after errors');
  });

  test('sessions: bad requests, calls in the wrong order', () => {
    const m = model('chat-f32');
    const s = m.session();
    for (const bad of ['{bad json', '42', '{"messages": []}', '{"messages": [{"role": "robot", "content": "hi"}]}', '{"messages": [{"role": "user", "content": "hi"}], "tools": [42]}', '{"messages": [{"role": "user", "content": "hi"}], "options": {"temperature": "warm"}}']) {
      const r = JSON.parse(s.complete(bad));
      assert.equal(r.success, false, bad);
      assert.equal(r.error_code, 'input', bad);
      assert.ok(r.error.length > 0);
      expectError(() => s.start(bad), 'input');
    }
    const huge = JSON.stringify({ messages: [{ role: 'user', content: longText.repeat(12) }] });
    const r = JSON.parse(s.complete(huge));
    assert.equal(r.success, false);
    assert.equal(r.error_code, 'context_full');
    expectError(() => s.start(huge), 'context-full');

    expectError(() => s.next(), 'input', /start/);
    expectError(() => s.finish(), 'input', /start/);
    s.cancel(); // nothing to cancel: a no-op
    const ok = JSON.stringify(REQUESTS[0]);
    s.start(ok);
    drain(s);
    assert.equal(s.next(), undefined); // finished: none again
    JSON.parse(s.finish());
    expectError(() => s.finish(), 'input');
    expectError(() => s.next(), 'input');
    s.start(ok);
    s.reset();
    expectError(() => s.next(), 'input');
    // Still answers correctly.
    assert.deepEqual(withoutTimings(s.complete(ok)), withoutTimings(cliComplete('chat-f32', REQUESTS[0])));
    s[Symbol.dispose]();
  });
});
