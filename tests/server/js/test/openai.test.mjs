// `saguaro serve` driven by OpenAI's own npm client (`openai`), against the chat fixture model
// (tests/fixtures/chat/model: random weights, the real LFM2 chat template). Greedy answers must
// equal `saguaro complete` on the same request; streaming, tools, completions, models, the API
// key and errors go through the client's own parsing. Run by scripts/test-server.sh:
// SAGUARO_BIN is the `saguaro` binary, SAGUARO_ROOT the source tree. Only 127.0.0.1 is contacted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import OpenAI from 'openai';

const ROOT = process.env.SAGUARO_ROOT;
const BIN = process.env.SAGUARO_BIN;
const MODEL = join(ROOT, 'tests', 'fixtures', 'chat', 'model');
const KEY = 'js-test-key';
const GENERATIONS = JSON.parse(readFileSync(join(ROOT, 'tests', 'fixtures', 'chat', 'reference.json'), 'utf8')).generations;
const TOOLS = [{ type: 'function', function: {
  name: 'get_weather', description: 'Get the current weather for a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
const TOOL_HISTORY = [
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: null, tool_calls: [
    { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
  { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": 21}' },
];

/** The reference: `saguaro complete` on an engine request. */
function cliComplete(request) {
  const out = execFileSync(BIN, ['complete', '--model', MODEL], { input: JSON.stringify(request) }).toString();
  return JSON.parse(out.trim().split('\n').at(-1));
}

const finishReason = (engine) => ({ tool_calls: 'tool_calls', length: 'length', context_full: 'length' })[engine] ?? 'stop';

let server;
let client;

before(async () => {
  let url;
  [server, url] = await startServer(MODEL, ['--parallel', '2', '--api-key', KEY]);
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 120_000 });
  client.url = url;
});

after(() => server?.kill('SIGKILL'));

function chatArgs(engine) {
  const args = { model: 'fixture', messages: engine.messages, temperature: 0, max_tokens: engine.options.max_tokens,
    repetition_penalty: engine.options.repetition_penalty };
  if (engine.tools) args.tools = engine.tools;
  return args;
}

test('chat completions equal the CLI (greedy)', async () => {
  for (const g of GENERATIONS) {
    const want = cliComplete(g.request);
    const r = await client.chat.completions.create(chatArgs(g.request));
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.content, want.response);
    assert.equal(r.choices[0].finish_reason, finishReason(want.finish_reason));
    assert.equal(r.usage.completion_tokens, want.decode_tokens);
    assert.equal(r.saguaro.finish_reason, want.finish_reason);
  }
});

test('streamed chat completions carry the same text, a finish chunk and usage', async () => {
  for (const g of GENERATIONS) {
    const want = cliComplete(g.request);
    const stream = await client.chat.completions.create({ ...chatArgs(g.request), stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.equal(chunks.filter((c) => c.choices.length).map((c) => c.choices[0].delta.content ?? '').join(''), want.response);
    assert.deepEqual(chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0].finish_reason), [finishReason(want.finish_reason)]);
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.equal(chunks.at(-1).usage.completion_tokens, want.decode_tokens);
  }
});

test('tool calls and results in the history, tools declared', async () => {
  const want = cliComplete({ messages: TOOL_HISTORY, tools: TOOLS, options: { temperature: 0, max_tokens: 24 } });
  const r = await client.chat.completions.create({ model: 'fixture', messages: TOOL_HISTORY, tools: TOOLS, tool_choice: 'auto', temperature: 0, max_tokens: 24 });
  assert.equal(r.choices[0].message.content ?? '', want.response);
  assert.deepEqual((r.choices[0].message.tool_calls ?? []).map((c) => [c.function.name, JSON.parse(c.function.arguments)]),
    want.function_calls.map((c) => [c.name, c.arguments]));
  // The client's stream helper assembles tool-call deltas and content into one message.
  const runner = client.chat.completions.stream({ model: 'fixture', messages: TOOL_HISTORY, tools: TOOLS, temperature: 0, max_tokens: 24 });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content ?? '', want.response);
});

test('a forced tool call: a parsed call with arguments valid against the tool', async () => {
  const caps = (await client.models.list()).data[0].saguaro;
  assert.equal(caps.tool_choice, true);
  // A bounded city: random weights would otherwise write one string until max_tokens.
  const tools = structuredClone(TOOLS);
  tools[0].function.parameters.properties.city.maxLength = 12;
  const r = await client.chat.completions.create({ model: 'fixture', messages: [{ role: 'user', content: 'Weather in Paris?' }], tools,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, temperature: 0, max_tokens: 160 });
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(r.choices[0].message.tool_calls[0].function.name, 'get_weather');
  assert.equal(typeof JSON.parse(r.choices[0].message.tool_calls[0].function.arguments).city, 'string');
});

test('structured output: response_format json_schema gives JSON with the required, typed fields', async () => {
  const caps = (await client.models.list()).data[0].saguaro;
  assert.equal(caps.json_schema, true);
  const schema = { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, sunny: { type: 'boolean' } },
    required: ['city', 'sunny'], additionalProperties: false };
  const args = { model: 'fixture', messages: [{ role: 'user', content: 'Weather in Paris?' }], temperature: 0, max_tokens: 160,
    response_format: { type: 'json_schema', json_schema: { name: 'weather', schema, strict: true } } };
  const r = await client.chat.completions.create(args);
  assert.equal(r.choices[0].finish_reason, 'stop');
  const doc = JSON.parse(r.choices[0].message.content);
  assert.deepEqual(Object.keys(doc).sort(), ['city', 'sunny']);
  assert.equal(typeof doc.city, 'string');
  assert.equal(typeof doc.sunny, 'boolean');
  let streamed = '';
  for await (const chunk of await client.chat.completions.create({ ...args, stream: true })) streamed += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(streamed, r.choices[0].message.content);
});

test('completions take the raw prompt', async () => {
  const want = cliComplete(GENERATIONS[0].request);
  const prompt = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n';
  const args = { model: 'fixture', prompt, temperature: 0, max_tokens: 40, repetition_penalty: 1.0 };
  const r = await client.completions.create(args);
  assert.equal(r.choices[0].text, want.response);
  let text = '';
  for await (const c of await client.completions.create({ ...args, stream: true })) text += c.choices[0].text;
  assert.equal(text, want.response);
});

/** Starts `saguaro serve` on `model`; resolves to [process, base URL]. */
async function startServer(model, extra) {
  const proc = spawn(BIN, ['serve', '--model', model, '--host', '127.0.0.1', '--port', '0', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
  const url = await new Promise((resolve, reject) => {
    createInterface({ input: proc.stderr }).on('line', (line) => {
      const m = line.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (code) => reject(new Error(`saguaro serve exited (${code}) before listening`)));
  });
  return [proc, url];
}

/** A copy of the fixture model that never ends its turn (`<|im_end|>` renamed, an
 * end-of-sequence id outside the vocabulary): greedy runs go on until max_tokens. */
function endlessModel() {
  const dir = mkdtempSync(join(tmpdir(), 'saguaro-endless-'));
  for (const name of readdirSync(MODEL)) {
    let bytes = readFileSync(join(MODEL, name));
    if (name.endsWith('.json')) {
      let text = bytes.toString('utf8').replaceAll('<|im_end|>', '<|im_fin|>');
      if (name === 'config.json' || name === 'generation_config.json') {
        const v = JSON.parse(text);
        v.eos_token_id = 100000;
        text = JSON.stringify(v);
      }
      bytes = Buffer.from(text);
    }
    writeFileSync(join(dir, name), bytes);
  }
  return dir;
}

test('a client that aborts mid-stream stops its generation', async () => {
  const dir = endlessModel();
  const [proc, url] = await startServer(dir, ['--parallel', '1']);
  try {
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const ac = new AbortController();
    const stream = await c.completions.create({ model: 'fixture', prompt: 'hi', temperature: 0, max_tokens: 4000, stream: true },
      { signal: ac.signal });
    let seen = 0;
    try {
      for await (const _ of stream) {
        if (++seen === 2) {
          ac.abort();
          break;
        }
      }
    } catch (e) {
      // Depending on the client version an abort ends the loop or throws an abort error.
      assert.ok(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', String(e));
    }
    assert.equal(seen, 2);
    let h;
    for (let i = 0; i < 400; i++) {
      h = await (await fetch(`${url}/health`)).json();
      if (h.slots_processing === 0) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(h.slots_processing, 0);
    assert.equal(h.requests_cancelled, 1);
    assert.ok(h.tokens_generated < 2000, `the generation went on after the client left: ${h.tokens_generated} tokens`);
  } finally {
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('models, errors and the API key', async () => {
  assert.deepEqual((await client.models.list()).data.map((m) => m.id), ['model']);
  await assert.rejects(client.chat.completions.create({ model: 'fixture', messages: [{ role: 'user', content: 'hi' }], n: 3 }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.param === 'n');
  await assert.rejects(client.chat.completions.create({ model: 'fixture', messages: 'hi' }), OpenAI.BadRequestError);
  const wrong = new OpenAI({ baseURL: `${client.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(wrong.models.list(), OpenAI.AuthenticationError);
});
