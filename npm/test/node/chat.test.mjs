// Chat completions: the same response JSON and token events as `saguaro complete --stream`
// (timings aside), streaming, the async iterator, cancellation, sessions, request errors.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Model, SaguaroError } from '@saguaro/llm';
import { FIXTURES, TIMINGS, cliComplete, comparable, comparableEvent, model } from './helpers.mjs';

const reference = JSON.parse(readFileSync(join(FIXTURES, 'chat', 'reference.json'), 'utf8'));
const byName = Object.fromEntries(reference.generations.map((g) => [g.name, g.request]));

const TOOLS = byName.tools.tools;
const requests = {
  ...byName,
  sampled: { messages: [{ role: 'user', content: 'Write a poem about the desert.' }], options: { temperature: 0.9, top_k: 40, top_p: 0.95, seed: 1234, max_tokens: 48 } },
  defaults: { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi!' }] },
  stops: { messages: [{ role: 'user', content: 'Count: one two three' }], options: { temperature: 0.7, seed: 9, max_tokens: 64, stop_sequences: ['e', 'ab'] } },
  history: {
    messages: [
      { role: 'user', content: 'Weather in Tokyo?' },
      { role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city: 'Tokyo' } } }] },
      { role: 'tool', content: '{"temp": 21}' },
      { role: 'user', content: 'And in Paris? ünïcödé 🌵' },
    ],
    tools: TOOLS,
    options: { temperature: 0.5, seed: 77, max_tokens: 40, confidence_threshold: 0.2 },
  },
  short: { messages: [{ role: 'user', content: 'Hello' }], options: { max_tokens: 3, temperature: 0 } },
};

/** The chat models: f32 and int4 (q4 kernels in the chat path). */
const MODELS = ['chat-f32.cact', 'chat-int4.cact'];

describe('chat completions', () => {
  const models = {};
  before(async () => {
    for (const name of MODELS) models[name] = await Model.load(model(name));
  });
  after(() => {
    for (const m of Object.values(models)) m.free();
  });

  for (const name of MODELS) {
    for (const [label, request] of Object.entries(requests)) {
      test(`${name} ${label}: the response and token events of saguaro complete`, async () => {
        const native = cliComplete(model(name), request);
        assert.equal(native.response.success, true, JSON.stringify(native.response));
        const session = models[name].session();
        const events = [];
        const response = await session.complete(request, { onToken: (e) => events.push(e) });
        assert.deepEqual(comparable(response), comparable(native.response));
        assert.deepEqual(events.map(comparableEvent), native.events.map(comparableEvent));
        assert.equal(events.map((e) => e.text).join(''), response.response, 'streamed text == response');
        assert.ok(events.every((e) => e.type === 'token'));
        for (const k of TIMINGS) assert.equal(typeof response[k], 'number', k);
        assert.ok(response.total_time_ms > 0 && response.ram_usage_mb > 1);
        // The same request as a JSON string, synchronously, and on a fresh session.
        const again = models[name].session();
        assert.deepEqual(comparable(again.completeSync(JSON.stringify(request))), comparable(response));
        again.free();
        session.free();
      });
    }
  }

  test('a tool call is parsed into function_calls', async () => {
    // The random model rarely calls tools by itself: the history of `history` has one, and
    // the parser is shared with the native path compared above. Here: the response shape.
    const session = models['chat-f32.cact'].session();
    const r = await session.complete(requests.tools);
    assert.ok(Array.isArray(r.function_calls));
    assert.ok(['stop', 'tool_calls', 'length'].includes(r.finish_reason));
    session.free();
  });

  test('stream(): an async iterator of token events returning the response', async () => {
    const m = models['chat-f32.cact'];
    const native = cliComplete(model('chat-f32.cact'), requests.penalty);
    const session = m.session();
    const stream = session.stream(requests.penalty);
    const events = [];
    for await (const e of stream) events.push(e);
    const response = await stream.response;
    assert.deepEqual(comparable(response), comparable(native.response));
    assert.deepEqual(events.map(comparableEvent), native.events.map(comparableEvent));
    // The iterator's return value is the response too.
    const it = session.stream(requests.short);
    let r;
    for (;;) {
      r = await it.next();
      if (r.done) break;
    }
    assert.equal(r.value.finish_reason, 'length');
    assert.equal(r.value.decode_tokens, 3);
    // Leaving the loop early cancels the request.
    const early = session.stream(requests.penalty);
    let n = 0;
    for await (const e of early) {
      if (++n === 2) break;
    }
    const cancelled = await early.response;
    assert.equal(cancelled.finish_reason, 'cancelled');
    assert.ok(cancelled.decode_tokens <= 3, `${cancelled.decode_tokens} tokens`);
    session.free();
  });

  test('an AbortSignal cancels: finish_reason cancelled, at most one more token', async () => {
    const session = models['chat-f32.cact'].session();
    const controller = new AbortController();
    const events = [];
    const r = await session.complete(requests.penalty, {
      signal: controller.signal,
      onToken: (e) => {
        events.push(e);
        if (events.length === 2) controller.abort();
      },
    });
    assert.equal(r.finish_reason, 'cancelled');
    assert.equal(r.success, true);
    assert.ok(events.length >= 2 && events.length <= 3, `${events.length} tokens`);
    assert.equal(r.decode_tokens, events.length);
    assert.equal(events.map((e) => e.text).join(''), r.response);
    // onToken returning false cancels too.
    const r2 = await session.complete(requests.penalty, { onToken: () => false });
    assert.equal(r2.finish_reason, 'cancelled');
    assert.equal(r2.decode_tokens, 1);
    // An already aborted signal: nothing is generated.
    const r3 = await session.complete(requests.penalty, { signal: AbortSignal.abort() });
    assert.equal(r3.finish_reason, 'cancelled');
    assert.equal(r3.decode_tokens, 0);
    // The session still answers correctly afterwards.
    const native = cliComplete(model('chat-f32.cact'), requests.plain);
    assert.deepEqual(comparable(await session.complete(requests.plain)), comparable(native.response));
    session.free();
  });

  test('the event loop runs during a completion (a timer aborts a long prefill)', async () => {
    const session = models['chat-f32.cact'].session();
    // About 3000 prompt tokens: a dozen prefill chunks.
    const long = { messages: [{ role: 'user', content: 'the saguaro cactus grows slowly in the desert. '.repeat(150) }], options: { max_tokens: 64, temperature: 0 } };
    let ticks = 0;
    const interval = setInterval(() => ticks++, 0);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 1);
    const prefill = [];
    let r;
    try {
      r = await session.complete(long, { signal: controller.signal, onPrefill: (e) => prefill.push(e) });
    } finally {
      clearInterval(interval);
    }
    assert.equal(r.finish_reason, 'cancelled');
    assert.ok(ticks > 0, 'timers ran while the engine worked');
    assert.ok(r.decode_tokens <= 1, `${r.decode_tokens} tokens after the abort`);
    // The whole request, with prefill events.
    const events = [];
    const full = await session.complete(long, { onPrefill: (e) => events.push(e) });
    assert.ok(full.prefill_tokens > 1024, `${full.prefill_tokens} prompt tokens`);
    assert.ok(events.length >= 4, `${events.length} prefill events`);
    assert.equal(events[events.length - 1].done, events[events.length - 1].total);
    session.free();
  });

  test('a follow-up turn reuses the session state', async () => {
    const session = models['chat-f32.cact'].session();
    const first = await session.complete(requests.plain);
    const followUp = {
      messages: [...requests.plain.messages, { role: 'assistant', content: first.response }, { role: 'user', content: 'And tomorrow?' }],
      options: requests.plain.options,
    };
    const second = await session.complete(followUp);
    assert.ok(second.reused_tokens > 0, `reused ${second.reused_tokens}`);
    // The same answer as a fresh session that prefills everything.
    const fresh = models['chat-f32.cact'].session();
    const expected = await fresh.complete(followUp);
    assert.equal(expected.reused_tokens, 0);
    assert.equal(second.response, expected.response);
    assert.equal(second.decode_tokens, expected.decode_tokens);
    assert.ok(session.tokenCount > 0);
    session.reset();
    assert.equal(session.tokenCount, 0);
    assert.equal((await session.complete(followUp)).reused_tokens, 0);
    session.free();
    fresh.free();
  });

  test('bad requests reject with code input (and the failure response)', async () => {
    const session = models['chat-f32.cact'].session();
    const bad = [
      [{ messages: [] }, /messages/],
      [{ messages: [{ role: 'bot', content: 'x' }] }, /unknown role/],
      [{ messages: [{ role: 'user', content: 3 }] }, /content/],
      [{ messages: [{ role: 'user', content: 'x' }], tools: ['f'] }, /tools\[0\]/],
      [{ messages: [{ role: 'user', content: 'x' }], options: { temperature: -1 } }, /temperature/],
      [{ messages: [{ role: 'user', content: 'x' }], options: { temperature: 'hot' } }, /schema/],
      [{ messages: 5 }, /schema/],
      [{}, /messages/],
      ['{"messages": [', /JSON/],
      [null, /object/],
      [42, /object/],
    ];
    for (const [request, message] of bad) {
      await assert.rejects(session.complete(request), (e) => {
        assert.ok(e instanceof SaguaroError, String(e));
        assert.equal(e.code, 'input', `${JSON.stringify(request)}: ${e.message}`);
        assert.match(e.message, message);
        return true;
      });
      assert.throws(() => session.completeSync(request), (e) => e instanceof SaguaroError && e.code === 'input');
    }
    // The native CLI agrees that these fail, with the same message.
    const native = cliComplete(model('chat-f32.cact'), { messages: [{ role: 'bot', content: 'x' }] });
    await assert.rejects(session.complete({ messages: [{ role: 'bot', content: 'x' }] }), (e) => {
      assert.equal(e.response.success, false);
      assert.equal(e.response.error, native.response.error);
      assert.equal(e.response.error_code, native.response.error_code);
      return true;
    });
    // A prompt over the context window.
    const huge = { messages: [{ role: 'user', content: 'saguaro '.repeat(6000) }] };
    await assert.rejects(session.complete(huge), (e) => e instanceof SaguaroError && e.code === 'context_full');
    // The session still works.
    assert.equal((await session.complete(requests.short)).decode_tokens, 3);
    session.free();
  });

  test('one request at a time per session; onToken exceptions reject', async () => {
    const session = models['chat-f32.cact'].session();
    const a = session.complete(requests.penalty);
    await assert.rejects(session.complete(requests.plain), (e) => e.code === 'busy');
    assert.equal((await a).success, true);
    const boom = new Error('from onToken');
    await assert.rejects(session.complete(requests.penalty, { onToken: () => { throw boom; } }), (e) => e === boom);
    assert.equal((await session.complete(requests.short)).decode_tokens, 3);
    session.free();
  });
});
