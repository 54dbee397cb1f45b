#!/usr/bin/env node
// The headless-Chromium test of the npm package (scripts/test-browser.sh runs it).
//
// What it does, as an app developer would:
// 1. installs the packed package (the tarball of scripts/build-npm.sh) into a fresh temporary
//    folder holding a copy of the example app (npm/examples/chat), with fixture models made there
//    by the native CLI (`saguaro convert` of tests/fixtures/chat/model: int8, int4, f32);
// 2. serves that folder from 127.0.0.1 (examples/chat/serve.mjs) and opens the example page in
//    Debian's Chromium (headless, driven by playwright-core; no browser is downloaded);
// 3. drives the page's UI (load with progress, streamed chat, Stop, a bad URL) and calls the
//    package's worker API from the page (saguaro/worker-client: every model call runs inside the
//    Web Worker), comparing with the native CLI: response JSON (timings aside), token ids and
//    texts, logits bit for bit, greedy and sampled token ids; cancellation; errors with codes;
// 4. fails on any console error or uncaught exception in the page or its workers.
//
// Ends with `test result: ok. N passed; M failed` (or FAILED) like cargo; exits 1 on failure.
//
// Environment: SAGUARO_BIN (native CLI; default target/debug/saguaro under CARGO_TARGET_DIR or
// ./target), SAGUARO_NPM_TARBALL (the packed package; default: the newest .tgz in npm/pack or
// $SAGUARO_NPM_PACK_DIR, made by scripts/build-npm.sh when there is none), CHROMIUM (default /usr/bin/chromium), KEEP_TMP=1 (keep the
// temporary folder), BROWSER_TEST_FILTER (run only tests whose name contains it),
// BROWSER_TEST_VERBOSE=1 (print the page's console and the server log).

import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const npmDir = path.resolve(here, '../..');
const repo = path.resolve(npmDir, '..');
const exampleDir = path.join(npmDir, 'examples/chat');
const verbose = process.env.BROWSER_TEST_VERBOSE === '1';
const filter = process.env.BROWSER_TEST_FILTER ?? '';
const started = Date.now();

const log = (...a) => console.log(...a);
const fail = (msg) => {
  throw new Error(msg);
};
const assert = (cond, msg) => {
  if (!cond) fail(msg);
};

// ---------------------------------------------------------------------------------------------
// Setup: the native CLI, the tarball, the temporary app folder with its models.

function findSaguaro() {
  if (process.env.SAGUARO_BIN) return path.resolve(process.env.SAGUARO_BIN);
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(repo, process.env.CARGO_TARGET_DIR) : path.join(repo, 'target');
  const bin = path.join(targetDir, 'debug/saguaro');
  if (!fs.existsSync(bin)) {
    log('building the native CLI (cargo build -p saguaro-host)');
    execFileSync('cargo', ['build', '--quiet', '--locked', '-p', 'saguaro-host'], { cwd: repo, stdio: 'inherit' });
  }
  return bin;
}

function findTarball() {
  const given = process.env.SAGUARO_NPM_TARBALL || process.env.SAGUARO_TARBALL;
  if (given) return path.resolve(given);
  // Where scripts/build-npm.sh packs (npm/pack, or $SAGUARO_NPM_PACK_DIR).
  const packDir = process.env.SAGUARO_NPM_PACK_DIR ? path.resolve(process.env.SAGUARO_NPM_PACK_DIR) : path.join(npmDir, 'pack');
  const newest = () =>
    (fs.existsSync(packDir) ? fs.readdirSync(packDir) : [])
      .filter((f) => f.endsWith('.tgz'))
      .map((f) => path.join(packDir, f))
      .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  let tgz = newest();
  if (!tgz) {
    log('packing the npm package (scripts/build-npm.sh)');
    const out = execFileSync(path.join(repo, 'scripts/build-npm.sh'), [], { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    tgz = out.trim().split('\n').pop() || newest();
  }
  if (!tgz || !fs.existsSync(tgz)) fail(`no tarball in ${packDir} after scripts/build-npm.sh (set SAGUARO_NPM_TARBALL)`);
  return tgz;
}

function loadPlaywright() {
  const require = createRequire(path.join(npmDir, 'package.json'));
  try {
    return require('playwright-core');
  } catch {
    fail('playwright-core is not installed in npm/node_modules (scripts/test-browser.sh installs it)');
  }
}

/** Runs the CLI; returns stdout (a non-zero exit is fine when `allowFail`, e.g. a bad request). */
function saguaro(bin, args, { input, allowFail = false } = {}) {
  const r = spawnSync(bin, args, { input, encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
  if (r.error) throw r.error;
  if (r.status !== 0 && !allowFail) fail(`saguaro ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** `saguaro complete --stream`: the token events and the response. */
function nativeComplete(bin, model, request, tmp) {
  const file = path.join(tmp, `req-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file, JSON.stringify(request));
  const out = saguaro(bin, ['complete', '--model', model, '--request', file, '--stream'], { allowFail: true });
  fs.rmSync(file);
  const lines = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const response = lines.pop();
  return { tokens: lines, response };
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

/** Fields of the response that measure time or memory: not comparable across hosts. */
const TIMING_FIELDS = ['time_to_first_token_ms', 'total_time_ms', 'prefill_tps', 'decode_tps', 'ram_usage_mb'];

function withoutTimings(r) {
  const o = { ...r };
  for (const k of TIMING_FIELDS) delete o[k];
  return o;
}

/**
 * Deep equality of JSON-like values where a number from native JSON (f32 printed shortest) equals
 * the JS number when both round to the same f32 (the engine's floats are f32; integers must match
 * exactly). Returns the path of the first difference, or null.
 */
function diff(a, b, at = '$') {
  if (typeof a === 'number' && typeof b === 'number') {
    if (a === b || (Object.is(Math.fround(a), Math.fround(b)) && !(Number.isInteger(a) && Number.isInteger(b)))) return null;
    return `${at}: ${a} != ${b}`;
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') {
    return Object.is(a, b) ? null : `${at}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${at}: array vs object`;
  if (Array.isArray(a)) {
    if (a.length !== b.length) return `${at}: length ${a.length} != ${b.length}`;
    for (let i = 0; i < a.length; i++) {
      const d = diff(a[i], b[i], `${at}[${i}]`);
      if (d) return d;
    }
    return null;
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    if (!(k in a)) return `${at}.${k}: missing on the left (right: ${JSON.stringify(b[k])})`;
    if (!(k in b)) return `${at}.${k}: missing on the right (left: ${JSON.stringify(a[k])})`;
    const d = diff(a[k], b[k], `${at}.${k}`);
    if (d) return d;
  }
  return null;
}

/** Token events without the `type: 'token'` tag the JS API adds (the CLI's stream lines have none). */
function tokenEvents(list) {
  return list.map((e) => {
    const { type, ...rest } = e;
    if (type !== undefined && type !== 'token') fail(`a token event has type ${JSON.stringify(type)}`);
    return rest;
  });
}

function assertSame(actual, expected, what) {
  const d = diff(actual, expected);
  if (d) fail(`${what} differs from native at ${d}`);
}

/** Decodes the page's base64 Float32 bytes. */
function f32FromBase64(b64) {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

// ---------------------------------------------------------------------------------------------
// The test list.

const results = [];
/** Longest a test may take (a request the worker never answers must not hang the run). */
const TEST_TIMEOUT_MS = 90_000;
async function test(name, fn) {
  if (filter && !name.includes(filter)) return;
  const t0 = Date.now();
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT_MS / 1000} s`)), TEST_TIMEOUT_MS);
      }),
    ]);
    results.push({ name, ok: true });
    log(`test ${name} ... ok (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: e });
    log(`test ${name} ... FAILED (${Date.now() - t0} ms)\n    ${String(e?.stack ?? e).split('\n').join('\n    ')}`);
  } finally {
    clearTimeout(timer);
  }
}

function summary() {
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  log(`\nbrowser tests took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  log(`test result: ${failed ? 'FAILED' : 'ok'}. ${passed} passed; ${failed} failed`);
  return failed;
}

/** Once the builds are done, the run must end within 5 minutes (a hung browser must not block CI). */
function armWatchdog() {
  setTimeout(() => {
    log('test run ... FAILED: still running 5 minutes after the builds');
    results.push({ name: 'watchdog', ok: false });
    summary();
    process.exit(1);
  }, 300_000).unref();
}

async function main() {
  const bin = findSaguaro();
  const tarball = findTarball();
  armWatchdog();
  const { chromium } = loadPlaywright();
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  assert(fs.existsSync(executablePath), `${executablePath} is missing (apt-get install -y chromium)`);
  log(`native CLI: ${bin}\npackage: ${tarball}\nbrowser: ${executablePath}`);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'saguaro-browser-'));
  const appDir = path.join(tmp, 'app');
  const cleanup = [];
  try {
    // The example app, as a developer would set it up: copy, npm install the package.
    fs.cpSync(exampleDir, appDir, { recursive: true, filter: (src) => !src.includes('node_modules') });
    const t0 = Date.now();
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-update-notifier', '--loglevel=error', tarball], {
      cwd: appDir,
      stdio: verbose ? 'inherit' : ['ignore', 'ignore', 'inherit'],
    });
    const pkgName = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' })).name;
    const pkgDir = path.join(appDir, 'node_modules', pkgName);
    assert(fs.existsSync(path.join(pkgDir, 'package.json')), `the tarball did not install as node_modules/${pkgName}`);
    const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
    log(`installed ${pkg.name}@${pkg.version} in ${Date.now() - t0} ms`);

    // Fixture models, made by the native CLI.
    const models = path.join(appDir, 'models');
    fs.mkdirSync(models);
    const src = path.join(repo, 'tests/fixtures/chat/model');
    for (const q of ['int8', 'int4', 'f32']) {
      saguaro(bin, ['convert', src, '-o', path.join(models, `chat-${q}.cact`), '--quant', q, '--quiet']);
    }
    // A real model when the test command has one (SmolLM2-135M-Instruct int8, scripts/test-npm.sh --real).
    const real = process.env.SAGUARO_REAL_INT8;
    if (real) fs.copyFileSync(real, path.join(models, 'smollm2-int8.cact'));
    const int8 = path.join(models, 'chat-int8.cact');
    const int8Bytes = fs.statSync(int8).size;
    fs.writeFileSync(path.join(models, 'garbage.cact'), Buffer.from('this is not a model file, only some text\n'.repeat(50)));
    fs.writeFileSync(path.join(models, 'truncated.cact'), fs.readFileSync(int8).subarray(0, Math.floor(int8Bytes / 2)));
    fs.writeFileSync(
      path.join(appDir, 'models.json'),
      JSON.stringify(['int8', 'int4', 'f32'].map((q) => ({ name: `chat fixture (${q})`, url: `models/chat-${q}.cact` }))),
    );

    // Native references.
    const reference = JSON.parse(fs.readFileSync(path.join(repo, 'tests/fixtures/chat/reference.json'), 'utf8'));
    const tokCases = JSON.parse(fs.readFileSync(path.join(repo, 'tests/fixtures/chat/tokenizer_cases.json'), 'utf8')).cases;
    const requests = reference.generations.map((g) => ({ name: g.name, request: g.request }));
    requests.push({
      name: 'sampled',
      request: { messages: [{ role: 'user', content: 'Tell me a story about a cactus.' }], options: { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 1234, max_tokens: 48 } },
    });
    requests.push({
      name: 'stop sequence',
      request: { messages: [{ role: 'user', content: 'Tell me about the saguaro cactus.' }], options: { temperature: 0, max_tokens: 24, stop_sequences: ['(city'] } },
    });
    const native = {};
    for (const { name, request } of requests) native[name] = nativeComplete(bin, int8, request, tmp);
    const promptIds = reference.generations[0].prompt_ids;
    const logitsIds = promptIds.slice(0, 20);
    const nativeLogits = {};
    const nativeGen = {};
    for (const q of ['int8', 'int4', 'f32']) {
      const m = path.join(models, `chat-${q}.cact`);
      nativeLogits[q] = JSON.parse(saguaro(bin, ['logits', '--model', m, '--tokens', logitsIds.join(',')])).logits.flat();
      nativeGen[q] = {
        greedy: JSON.parse(saguaro(bin, ['generate', '--model', m, '--tokens', promptIds.join(','), '--max-tokens', '32', '--json'])).tokens,
        sampled: JSON.parse(
          saguaro(bin, ['generate', '--model', m, '--tokens', promptIds.join(','), '--max-tokens', '32', '--temperature', '0.9', '--seed', '7', '--json']),
        ).tokens,
        eos: JSON.parse(saguaro(bin, ['generate', '--model', m, '--tokens', promptIds.join(','), '--max-tokens', '64', '--stop-on-eos', '--json'])).tokens,
      };
    }
    // A long sampled answer for the cancellation tests: the seed whose native answer is longest.
    const uiSystem = 'You are a helpful assistant.';
    const longRequest = (seed) => ({
      messages: [
        { role: 'system', content: uiSystem },
        { role: 'user', content: 'Write a very long story.' },
      ],
      options: { temperature: 10, max_tokens: 3000, seed },
    });
    let long = null;
    for (let seed = 1; seed <= 32 && !(long && long.native.response.decode_tokens >= 1500); seed++) {
      const n = nativeComplete(bin, int8, longRequest(seed), tmp);
      if (!long || n.response.decode_tokens > long.native.response.decode_tokens) long = { seed, native: n };
    }
    assert(long.native.response.decode_tokens >= 400, `no seed gives a long answer (best: ${long.native.response.decode_tokens} tokens)`);
    const badRequest = { messages: [{ role: 'bot', content: 'hi' }] };
    const nativeBad = nativeComplete(bin, int8, badRequest, tmp).response;
    log(`native references ready (${Date.now() - started} ms so far; long answer: seed ${long.seed}, ${long.native.response.decode_tokens} tokens)`);

    // Serve the app folder.
    const { serve } = await import(pathToFileURL(path.join(appDir, 'serve.mjs')).href);
    const serverLog = [];
    const server = await serve(appDir, { log: (l) => serverLog.push(l) });
    cleanup.push(() => server.close());
    const base = server.url;

    // The browser.
    const userDataDir = path.join(tmp, 'chromium-profile');
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 60_000,
    });
    cleanup.unshift(() => context.close());
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(30_000);

    // Everything the page and its workers say; errors fail the run.
    const consoleLines = [];
    const problems = [];
    const expectedErrors = [];
    // (The page's console event also carries its workers' messages; uncaught exceptions and
    // unhandled rejections in workers arrive as pageerror.)
    page.on('console', (msg) => {
      const where = msg.location()?.url ?? '';
      const line = `[console ${msg.type()}] ${msg.text()}${where ? ` (${where})` : ''}`;
      consoleLines.push(line);
      if (verbose) log(line);
      if (msg.type() === 'error' && !expectedErrors.some((e) => e(msg.text(), where))) problems.push(line);
    });
    page.on('pageerror', (e) => problems.push(`[uncaught] ${e.stack ?? e}`));
    page.on('crash', () => problems.push('[page crashed]'));
    // Loading the missing model logs the failed request: expected.
    expectedErrors.push((text, url) => /status of 404/.test(text) && /\/(models\/missing\.cact|missing-worker\.js)$/.test(url));

    await page.goto(`${base}index.html`);
    await page.waitForFunction(() => window.saguaroExample !== undefined, null, { timeout: 15_000 });

    const waitState = (states, timeout = 30_000) =>
      page.waitForFunction((s) => s.includes(document.getElementById('status').dataset.state), states, { timeout });
    const state = () => page.$eval('#status', (el) => el.dataset.state);

    // ---- the example app, through its UI ----

    /** Loads the int8 fixture through the UI unless a model is loaded (tests run alone with a filter). */
    const ensureExampleModel = async () => {
      if (await page.evaluate(() => window.saguaroExample.model !== null)) return;
      await page.fill('#model-url', 'models/chat-int8.cact');
      await page.click('#load');
      await waitState(['ready', 'error']);
      if ((await state()) !== 'ready') fail(`loading failed: ${await page.textContent('#error')}`);
    };

    await test('example: loads a model by URL with a progress bar', async () => {
      await page.selectOption('#model-pick', 'models/chat-int8.cact');
      assert((await page.inputValue('#model-url')) === 'models/chat-int8.cact', 'the model picker did not fill the URL');
      await page.click('#load');
      await waitState(['ready', 'error']);
      const st = await state();
      if (st !== 'ready') fail(`status ${st}: ${await page.textContent('#error')}`);
      const { progress, info, bar } = await page.evaluate(() => ({
        progress: window.saguaroExample.progress,
        info: window.saguaroExample.model.info,
        bar: document.getElementById('progress').value,
      }));
      assert(progress.length > 0, 'no progress events');
      const bytes = progress.filter((p) => p.total === int8Bytes);
      assert(bytes.length > 0, `no progress event has total = ${int8Bytes} (file size): ${JSON.stringify(progress.slice(-3))}`);
      let last = -1;
      for (const p of bytes) {
        assert(p.loaded >= last, `progress went backwards: ${JSON.stringify(progress)}`);
        last = p.loaded;
      }
      assert(last === int8Bytes, `progress ended at ${last} of ${int8Bytes}`);
      assert(bar === 1, `the progress bar shows ${bar}`);
      assert(info.vocab_size === 512, `model.info: ${JSON.stringify(info)}`);
    });

    await test('example: a streamed chat answer equals native (tokens, text, response JSON)', async () => {
      await ensureExampleModel();
      const g = reference.generations[0]; // "plain": system + user, greedy
      const request = g.request;
      if (!(await page.isVisible('#system'))) await page.click('details > summary'); // the settings
      await page.fill('#system', request.messages[0].content);
      await page.fill('#temperature', '0');
      await page.fill('#max-tokens', String(request.options.max_tokens));
      await page.fill('#seed', '0');
      // The UI's request: system + user + {temperature, max_tokens, seed}; native gets the same.
      const uiRequest = { messages: request.messages, options: { temperature: 0, max_tokens: request.options.max_tokens, seed: 0 } };
      const expected = nativeComplete(bin, int8, uiRequest, tmp);
      await page.fill('#prompt', request.messages[1].content);
      await page.click('#send');
      await waitState(['ready', 'error']);
      const { last, shown } = await page.evaluate(() => ({
        last: window.saguaroExample.last,
        shown: [...document.querySelectorAll('#transcript .msg.assistant .text')].pop()?.textContent ?? '',
      }));
      assert(last.error === null, `error: ${JSON.stringify(last.error)}`);
      assertSame(last.request, uiRequest, 'the request the page sent');
      assertSame(tokenEvents(last.tokens), expected.tokens, 'the streamed token events');
      assertSame(withoutTimings(last.response), withoutTimings(expected.response), 'the response');
      assert(shown === expected.response.response, `the page shows ${JSON.stringify(shown)}, native answered ${JSON.stringify(expected.response.response)}`);
      assert(last.response.total_time_ms > 0, 'no timings in the response');
    });

    await test('example: the Stop button cancels a long answer promptly', async () => {
      await ensureExampleModel();
      await page.click('#reset');
      if (!(await page.isVisible('#temperature'))) await page.click('details > summary');
      await page.fill('#temperature', '10');
      await page.fill('#max-tokens', '3000');
      await page.fill('#seed', String(long.seed));
      await page.fill('#prompt', 'Write a very long story.');
      // The tiny model writes thousands of tokens a second: the page itself clicks Stop once 5
      // tokens have arrived (a click from here could come after the whole answer).
      await page.evaluate(() => {
        window.__stop = { clickedAt: 0, doneAt: 0 };
        const timer = setInterval(() => {
          const last = window.saguaroExample.last;
          if (!window.__stop.clickedAt && last && last.response === null && last.tokens.length >= 5) {
            window.__stop.clickedAt = performance.now();
            document.getElementById('stop').click();
          }
          if (window.__stop.clickedAt && last.response !== null) {
            window.__stop.doneAt = performance.now();
            clearInterval(timer);
          }
        }, 1);
      });
      await page.click('#send');
      await waitState(['ready', 'error'], 20_000);
      await page.waitForFunction(() => window.__stop.doneAt > 0, null, { timeout: 5_000 }).catch(() => {});
      const { last, stop } = await page.evaluate(() => ({ last: window.saguaroExample.last, stop: window.__stop }));
      assert(stop.clickedAt > 0, 'Stop was never clicked');
      const ms = stop.doneAt - stop.clickedAt;
      assert(last.error === null, `error: ${JSON.stringify(last.error)}`);
      const r = last.response;
      assert(r.finish_reason === 'cancelled', `finish_reason ${r.finish_reason} (decode_tokens ${r.decode_tokens} of native ${long.native.response.decode_tokens})`);
      assert(r.decode_tokens < long.native.response.decode_tokens, 'the answer was not cut short');
      assert(r.decode_tokens === last.tokens.length, `decode_tokens ${r.decode_tokens} but ${last.tokens.length} token events`);
      assertSame(tokenEvents(last.tokens), long.native.tokens.slice(0, last.tokens.length), 'the tokens before Stop');
      assert(ms < 3000, `stopping took ${ms} ms`);
      assert((await page.textContent('#status')).includes('Stopped'), 'the page does not say it stopped');
    });

    await test('example: a bad model URL shows an error with its code', async () => {
      await page.fill('#model-url', 'models/missing.cact');
      await page.click('#load');
      await waitState(['ready', 'error']);
      assert((await state()) === 'error', 'loading a missing model did not fail');
      const code = await page.getAttribute('#error', 'data-code');
      assert(code && code !== 'Error' && code !== 'error', `the error has no code: ${await page.textContent('#error')}`);
      // The garbage file: a format error.
      await page.fill('#model-url', 'models/garbage.cact');
      await page.click('#load');
      await waitState(['ready', 'error']);
      assert((await state()) === 'error', 'loading a garbage file did not fail');
      const code2 = await page.getAttribute('#error', 'data-code');
      assert(code2 && code2 !== 'Error', `the error has no code: ${await page.textContent('#error')}`);
    });

    await test('example: loads a model from a file picked on disk', async () => {
      await page.setInputFiles('#model-file', path.join(models, 'chat-int4.cact'));
      await waitState(['ready', 'error']);
      const st = await state();
      if (st !== 'ready') fail(`status ${st}: ${await page.textContent('#error')}`);
      const { info, last } = await page.evaluate(() => ({ info: window.saguaroExample.model.info, last: window.saguaroExample.progress.at(-1) }));
      const size = fs.statSync(path.join(models, 'chat-int4.cact')).size;
      assert(info.file_bytes === size, `info.file_bytes ${info.file_bytes}, file ${size}`);
      assert(last && last.loaded === size && last.total === size, `last progress ${JSON.stringify(last)}`);
    });

    // ---- the package's worker API, called from the page ----

    // A page-side helper module: the WorkerModel under test and a few utilities.
    await page.evaluate(async (pkgName) => {
      const mod = await import(`${pkgName}/worker-client`);
      window.__t = {
        mod,
        models: {},
        /** The fixture model of quantization q, loaded (in its own worker) on first use. */
        async get(q) {
          this.models[q] ??= this.mod.WorkerModel.load(`models/chat-${q}.cact`);
          return this.models[q];
        },
        b64(f32) {
          const bytes = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
          let s = '';
          for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
          return btoa(s);
        },
        err(e) {
          return { isSaguaroError: e instanceof mod.SaguaroError, isError: e instanceof Error, name: e?.name, code: e?.code, message: e?.message };
        },
      };
    }, pkgName);
    await test('worker: the page is cross-origin isolated, so each model worker runs the threads build on the cores (its logits and tokens are the ones checked below)', async () => {
      const got = await page.evaluate(async (pkgName) => ({
        relaxed: (await import(pkgName)).relaxedSimd(),
        isolated: globalThis.crossOriginIsolated,
        cores: navigator.hardwareConcurrency,
        info: (await window.__t.get('int4')).info,
      }), pkgName);
      assert(got.isolated === true, `crossOriginIsolated is ${got.isolated}`);
      const want = Math.min(got.cores, 8);
      assert(got.info.threads === want, `${got.info.threads} threads, want ${want} (${got.cores} cores)`);
      // The threads module with relaxed-simd where the browser validates it (Chromium does).
      assert(got.info.kernels === (got.relaxed ? 'simd128+relaxed' : 'simd128'), `relaxedSimd() ${got.relaxed}, kernels ${got.info.kernels}`);
      log(`  each model worker computes on ${got.info.threads} threads (${got.info.kernels})`);
    });
    await test('worker: completions equal native (response JSON, token events) for greedy, penalty, tools, sampled, stop sequence', async () => {
      for (const { name, request } of requests) {
        const got = await page.evaluate(async (request) => {
          const session = (await window.__t.get('int8')).session();
          const tokens = [];
          const prefill = [];
          const response = await session.complete(request, { onToken: (t) => void tokens.push(t), onPrefill: (p) => void prefill.push(p) });
          const tokenCount = session.tokenCount;
          session.free();
          return { tokens, response, prefill, tokenCount };
        }, request);
        const n = native[name].response;
        const lastPrefill = got.prefill[got.prefill.length - 1];
        assert(lastPrefill && lastPrefill.type === 'prefill' && lastPrefill.done === n.prefill_tokens && lastPrefill.total === n.prefill_tokens, `${name}: prefill events ${JSON.stringify(got.prefill)}`);
        assert(got.tokenCount >= n.prefill_tokens, `${name}: session.tokenCount ${got.tokenCount}`);
        assertSame(tokenEvents(got.tokens), native[name].tokens, `${name}: the token events`);
        assertSame(withoutTimings(got.response), withoutTimings(native[name].response), `${name}: the response`);
        assert(got.tokens.map((t) => t.text).join('') === got.response.response, `${name}: the streamed text is not the response`);
      }
    });

    if (real) {
      await test('worker: a real model (SmolLM2-135M-Instruct, int8) answers with the tokens of native', async () => {
        const realRequests = [
          { messages: [{ role: 'user', content: 'Name three colors of the rainbow.' }], options: { temperature: 0, max_tokens: 32 } },
          { messages: [{ role: 'system', content: 'You are a poet.' }, { role: 'user', content: 'Write a haiku about the desert.' }], options: { temperature: 0.7, top_p: 0.9, seed: 42, max_tokens: 40 } },
        ];
        for (const request of realRequests) {
          const want = nativeComplete(bin, real, request, tmp);
          assert(want.response.success && want.response.decode_tokens > 4, `native: ${JSON.stringify(want.response)}`);
          const got = await page.evaluate(async (request) => {
            window.__t.real ??= window.__t.mod.WorkerModel.load('models/smollm2-int8.cact');
            const session = (await window.__t.real).session();
            const tokens = [];
            const response = await session.complete(request, { onToken: (t) => void tokens.push(t) });
            session.free();
            return { tokens, response };
          }, request);
          assertSame(tokenEvents(got.tokens), want.tokens, 'the token events');
          assertSame(withoutTimings(got.response), withoutTimings(want.response), 'the response');
          log(`    ${got.response.decode_tokens} tokens: ${JSON.stringify(got.response.response)}`);
        }
        await page.evaluate(async () => (await window.__t.real).free());
      });
    } else {
      log('    (no real model: SAGUARO_REAL_INT8 is not set; scripts/test.sh sets it)');
    }

    await test('worker: session.stream() yields the same tokens, and returns the response', async () => {
      const { name, request } = requests[1];
      const got = await page.evaluate(async (request) => {
        const session = (await window.__t.get('int8')).session();
        const it = session.stream(request);
        const tokens = [];
        let r = await it.next();
        while (!r.done) {
          tokens.push(r.value);
          r = await it.next();
        }
        session.free();
        return { tokens, response: r.value ?? null };
      }, request);
      assertSame(tokenEvents(got.tokens), native[name].tokens, 'the streamed tokens');
      if (got.response !== null) assertSame(withoutTimings(got.response), withoutTimings(native[name].response), 'the response');
    });

    await test('worker: a follow-up turn reuses the session prefix and equals native', async () => {
      const first = requests[0].request;
      const answer = native[requests[0].name].response.response;
      const second = {
        messages: [...first.messages, { role: 'assistant', content: answer }, { role: 'user', content: 'And tomorrow?' }],
        options: first.options,
      };
      const expected = nativeComplete(bin, int8, second, tmp);
      const got = await page.evaluate(
        async ([first, second]) => {
          const session = (await window.__t.get('int8')).session();
          const r1 = await session.complete(first);
          const tokens = [];
          const r2 = await session.complete(second, { onToken: (t) => void tokens.push(t) });
          const tokenCount = session.tokenCount;
          await session.reset();
          const afterReset = session.tokenCount;
          session.free();
          return { r1, r2, tokens, tokenCount, afterReset };
        },
        [first, second],
      );
      assertSame(withoutTimings(got.r1), withoutTimings(native[requests[0].name].response), 'the first turn');
      assertSame(tokenEvents(got.tokens), expected.tokens, 'the second turn tokens');
      const e = expected.response;
      assert(got.r2.reused_tokens > 0, `no prefix reuse: ${JSON.stringify(got.r2)}`);
      assert(got.tokenCount >= e.prefill_tokens && got.afterReset === 0, `tokenCount ${got.tokenCount}, after reset ${got.afterReset}`);
      assert(got.r2.prefill_tokens + got.r2.reused_tokens === e.prefill_tokens, 'prefill + reused != native prompt length');
      const strip = (r) => {
        const o = withoutTimings(r);
        delete o.prefill_tokens;
        delete o.reused_tokens;
        delete o.total_tokens;
        return o;
      };
      assertSame(strip(got.r2), strip(e), 'the second turn');
    });

    await test('worker: logits equal native bit for bit (int8, int4, f32)', async () => {
      for (const q of ['int8', 'int4', 'f32']) {
        const b64 = await page.evaluate(
          async ([q, ids]) => {
            const l = await (await window.__t.get(q)).logits(ids);
            if (!(l instanceof Float32Array)) throw new Error(`logits returned ${Object.prototype.toString.call(l)}`);
            return window.__t.b64(l);
          },
          [q, logitsIds],
        );
        const got = f32FromBase64(b64);
        const want = nativeLogits[q];
        assert(got.length === want.length, `${q}: ${got.length} logits, native ${want.length}`);
        let bad = 0;
        let first = -1;
        for (let i = 0; i < want.length; i++) {
          if (!Object.is(got[i], Math.fround(want[i]))) {
            bad++;
            if (first < 0) first = i;
          }
        }
        assert(bad === 0, `${q}: ${bad} of ${want.length} logits differ (first at ${first}: ${got[first]} vs native ${want[first]})`);
      }
    });

    await test('worker: generateTokens equals native generate (greedy, sampled, stop on eos)', async () => {
      for (const q of ['int8', 'int4', 'f32']) {
        const got = await page.evaluate(
          async ([q, ids]) => {
            const m = await window.__t.get(q);
            const arr = (x) => Array.from(x);
            return {
              greedy: arr(await m.generateTokens(ids, { maxTokens: 32 })),
              sampled: arr(await m.generateTokens(ids, { maxTokens: 32, temperature: 0.9, seed: 7 })),
              eos: arr(await m.generateTokens(ids, { maxTokens: 64, stopOnEos: true })),
            };
          },
          [q, promptIds],
        );
        for (const k of ['greedy', 'sampled', 'eos']) assertSame(got[k], nativeGen[q][k], `${q} ${k}`);
      }
    });

    await test('worker: tokenize and detokenize match the tokenizer fixtures', async () => {
      const got = await page.evaluate(async (cases) => {
        const m = await window.__t.get('int8');
        const out = [];
        for (const c of cases) {
          out.push({ ids: Array.from(await m.tokenize(c.text)), text: await m.detokenize(c.ids), skip: await m.detokenize(c.ids, { skipSpecial: true }) });
        }
        return out;
      }, tokCases);
      tokCases.forEach((c, i) => {
        assertSame(got[i].ids, c.ids, `tokenize(${JSON.stringify(c.text)})`);
        assert(got[i].text === c.decoded, `detokenize(${JSON.stringify(c.ids)}) = ${JSON.stringify(got[i].text)}, want ${JSON.stringify(c.decoded)}`);
        assert(got[i].skip === c.decoded_skip_special, `detokenize(skipSpecial) = ${JSON.stringify(got[i].skip)}, want ${JSON.stringify(c.decoded_skip_special)}`);
      });
    });

    await test('worker: an AbortSignal cancels a completion promptly, mid-stream and right at the start', async () => {
      const got = await page.evaluate(async (request) => {
        const m = await window.__t.get('int8');
        const session = m.session();
        // Mid-stream: aborted when the third token reaches the page.
        const ac = new AbortController();
        const tokens = [];
        let abortedAt = 0;
        const response = await session.complete(request, {
          signal: ac.signal,
          onToken: (t) => {
            tokens.push(t);
            if (tokens.length === 3) {
              abortedAt = performance.now();
              ac.abort();
            }
          },
        });
        const latency = performance.now() - abortedAt;
        // Right after the call, with a yield after every engine step: the cancel message reaches
        // the worker a few steps in at most (how many depends on the machine's load).
        const ac2 = new AbortController();
        const tokens2 = [];
        const p = session.complete(request, { signal: ac2.signal, yieldMs: 0, onToken: (t) => void tokens2.push(t) });
        ac2.abort();
        const response2 = await p;
        // A signal aborted before the call: the request starts cancelled, no token at all.
        const ac0 = new AbortController();
        ac0.abort();
        const tokens0 = [];
        const response0 = await session.complete(request, { signal: ac0.signal, onToken: (t) => void tokens0.push(t) });
        // onToken returning false cancels too.
        const tokens3 = [];
        const response3 = await session.complete(request, { onToken: (t) => tokens3.push(t) < 2 });
        // The session still works afterwards.
        const response4 = await session.complete({ messages: [{ role: 'user', content: 'Hi' }], options: { temperature: 0, max_tokens: 4 } });
        session.free();
        return { tokens, response, latency, tokens2, response2, tokens0, response0, tokens3, response3, response4 };
      }, longRequest(long.seed));
      const nat = long.native;
      log(`    mid-stream: ${got.tokens.length} tokens, cancelled ${got.latency.toFixed(1)} ms after abort(); at the start: ${got.tokens2.length} tokens; aborted before: ${got.tokens0.length}; onToken false: ${got.tokens3.length} tokens`);
      assert(got.response.finish_reason === 'cancelled', `mid-stream: finish_reason ${got.response.finish_reason} after ${got.tokens.length} tokens (the worker never saw the cancel message?)`);
      assert(got.tokens.length < nat.response.decode_tokens, 'mid-stream: not cut short');
      assertSame(tokenEvents(got.tokens), nat.tokens.slice(0, got.tokens.length), 'mid-stream: the tokens before the cancel');
      assert(got.response.decode_tokens === got.tokens.length, `mid-stream: decode_tokens ${got.response.decode_tokens}, ${got.tokens.length} events`);
      assert(got.latency < 1000, `mid-stream: cancelling took ${got.latency.toFixed(0)} ms`);
      assert(got.response2.finish_reason === 'cancelled', `at the start: finish_reason ${got.response2.finish_reason}`);
      assert(got.tokens2.length < nat.response.decode_tokens / 4, `at the start: ${got.tokens2.length} tokens before the cancel took effect (yieldMs 0)`);
      assert(got.response0.finish_reason === 'cancelled', `aborted before: finish_reason ${got.response0.finish_reason}`);
      assert(got.tokens0.length === 0 && got.response0.decode_tokens === 0, `aborted before: ${got.tokens0.length} tokens (${got.response0.decode_tokens} decoded)`);
      assert(got.response3.finish_reason === 'cancelled', `onToken false: finish_reason ${got.response3.finish_reason}`);
      assert(got.tokens3.length < nat.response.decode_tokens, 'onToken false: not cut short');
      assert(got.response4.success && got.response4.decode_tokens > 0, `after cancelling, a request fails: ${JSON.stringify(got.response4)}`);
    });

    await test('page: Model on the main thread (no worker): a completion equals native; a timer abort cancels it', async () => {
      const { name, request } = requests[0];
      const got = await page.evaluate(
        async ([pkgName, request, long]) => {
          const { Model } = await import(pkgName);
          const model = await Model.load('models/chat-int8.cact');
          const session = model.session();
          const tokens = [];
          const response = await session.complete(request, { onToken: (t) => void tokens.push(t) });
          // A timer aborts: timers (and messages) must run between the engine's steps.
          const ac = new AbortController();
          let n = 0;
          const cancelled = await session.complete(long, {
            signal: ac.signal,
            onToken: () => {
              if (++n === 1) setTimeout(() => ac.abort(), 5);
            },
          });
          session.free();
          model.free();
          return { tokens, response, cancelled: { finish_reason: cancelled.finish_reason, decode_tokens: cancelled.decode_tokens } };
        },
        [pkgName, request, longRequest(long.seed)],
      );
      assertSame(tokenEvents(got.tokens), native[name].tokens, 'the token events');
      assertSame(withoutTimings(got.response), withoutTimings(native[name].response), 'the response');
      assert(
        got.cancelled.finish_reason === 'cancelled',
        `a setTimeout(abort) did not cancel: finish_reason ${got.cancelled.finish_reason} after ${got.cancelled.decode_tokens} tokens (timers starved between engine steps?)`,
      );
    });

    await test('worker: loads from an ArrayBuffer, a moved Uint8Array, a Blob, a fetch Response and a ReadableStream', async () => {
      const got = await page.evaluate(async () => {
        const { WorkerModel } = window.__t.mod;
        const url = 'models/chat-int4.cact';
        const bytes = async () => (await fetch(url)).arrayBuffer();
        const out = {};
        const check = async (key, source, options = {}) => {
          const progress = [];
          const m = await WorkerModel.load(source, { ...options, onProgress: (p) => void progress.push(p) });
          out[key] = { tokens: Array.from(await m.generateTokens([1, 6, 383], { maxTokens: 6 })), progress: progress.at(-1), info: m.info };
          m.free();
        };
        await check('arrayBuffer', await bytes());
        const moved = new Uint8Array(await bytes());
        await check('movedUint8Array', moved, { transfer: true });
        out.detached = moved.byteLength === 0;
        const kept = new Uint8Array(await bytes());
        await check('copiedUint8Array', kept);
        out.kept = kept.byteLength > 0;
        await check('blob', new Blob([await bytes()]));
        await check('response', await fetch(url));
        const res = await fetch(url);
        await check('stream', res.body, { size: Number(res.headers.get('content-length')) });
        return out;
      });
      const want = JSON.parse(saguaro(bin, ['generate', '--model', path.join(models, 'chat-int4.cact'), '--tokens', '1,6,383', '--max-tokens', '6', '--json'])).tokens;
      const size = fs.statSync(path.join(models, 'chat-int4.cact')).size;
      for (const k of ['arrayBuffer', 'movedUint8Array', 'copiedUint8Array', 'blob', 'response', 'stream']) {
        assertSame(got[k].tokens, want, `${k}: the tokens`);
        assert(got[k].progress && got[k].progress.loaded === size && got[k].progress.total === size, `${k}: last progress ${JSON.stringify(got[k].progress)}`);
        assert(got[k].info.file_bytes === size, `${k}: info.file_bytes ${got[k].info.file_bytes}`);
      }
      assert(got.detached, 'transfer: true did not move the buffer');
      assert(got.kept, 'without transfer the buffer was moved');
    });

    await test('worker: cache: true keeps a download in the Cache API (the next load reads it from there)', async () => {
      const url = 'models/chat-f32.cact?cache-test';
      const fetches = () => serverLog.filter((l) => l.startsWith(`GET /${url} `)).length;
      const before = fetches();
      const got = await page.evaluate(async (url) => {
        const { WorkerModel } = window.__t.mod;
        await caches.delete('saguaro-models');
        const load = async () => {
          const progress = [];
          const m = await WorkerModel.load(url, { cache: true, onProgress: (p) => void progress.push(p) });
          const tokens = Array.from(await m.generateTokens([1, 6, 383], { maxTokens: 6 }));
          m.free();
          return { tokens, phases: [...new Set(progress.map((p) => p.phase))], cached: progress.some((p) => p.cached) };
        };
        const first = await load();
        const second = await load();
        const cachedKeys = (await (await caches.open('saguaro-models')).keys()).map((r) => r.url);
        await caches.delete('saguaro-models');
        return { first, second, cachedKeys };
      }, url);
      const after = fetches();
      assert(after - before === 1, `the model was downloaded ${after - before} times (want 1): ${JSON.stringify(got)}`);
      assertSame(got.second.tokens, got.first.tokens, 'the tokens from the cached copy');
      assert(!got.first.cached && got.second.cached, `progress does not tell the cached load: ${JSON.stringify(got)}`);
      assert(got.cachedKeys.some((k) => k.endsWith(url)), `the cache holds ${JSON.stringify(got.cachedKeys)}`);
    });

    await test('worker: errors cross the boundary as SaguaroError with a code', async () => {
      const got = await page.evaluate(async (bad) => {
        const t = window.__t;
        const out = {};
        const attempt = async (key, fn) => {
          try {
            out[key] = { value: await fn() };
          } catch (e) {
            out[key] = { error: t.err(e) };
          }
        };
        await attempt('missing', () => t.mod.WorkerModel.load('models/missing.cact'));
        await attempt('garbage', () => t.mod.WorkerModel.load('models/garbage.cact'));
        await attempt('truncated', () => t.mod.WorkerModel.load('models/truncated.cact'));
        await attempt('bytes', () => t.mod.WorkerModel.load(new Uint8Array([1, 2, 3, 4])));
        await attempt('badToken', async () => (await t.get('int8')).logits([1, 999999]));
        await attempt('badRequest', async () => {
          const s = (await t.get('int8')).session();
          try {
            return await s.complete(bad);
          } finally {
            s.free();
          }
        });
        await attempt('noWorkerScript', () => t.mod.WorkerModel.load('models/chat-int8.cact', { worker: 'missing-worker.js' }));
        await attempt('aborted', () => t.mod.WorkerModel.load('models/chat-int8.cact', { signal: AbortSignal.abort() }));
        await attempt('stillWorks', async () => Array.from(await (await t.get('int8')).generateTokens([1, 6], { maxTokens: 3 })));
        return out;
      }, badRequest);
      for (const k of ['missing', 'garbage', 'truncated', 'bytes', 'badToken', 'noWorkerScript']) {
        const e = got[k].error;
        assert(e, `${k}: no error (got ${JSON.stringify(got[k].value)})`);
        assert(e.isSaguaroError && e.isError, `${k}: not a SaguaroError: ${JSON.stringify(e)}`);
        assert(typeof e.code === 'string' && e.code.length > 0, `${k}: no code: ${JSON.stringify(e)}`);
      }
      log(`    codes: ${Object.entries(got).map(([k, v]) => `${k} ${v.error ? v.error.code : v.value?.error_code ?? 'ok'}`).join(', ')}`);
      assert(got.badToken.error.code === 'input', `an out-of-range token: code ${got.badToken.error.code}`);
      // A bad request: a rejected SaguaroError or a failure response, with native's code either way.
      const br = got.badRequest;
      const code = br.error ? br.error.code : br.value?.error_code;
      if (br.error) assert(br.error.isSaguaroError, `bad request: not a SaguaroError: ${JSON.stringify(br.error)}`);
      else assert(br.value.success === false, `bad request succeeded: ${JSON.stringify(br.value)}`);
      assert(code === nativeBad.error_code, `bad request: code ${code}, native ${nativeBad.error_code}`);
      const ab = got.aborted.error;
      assert(ab && (ab.name === 'AbortError' || ab.code === 'cancelled' || ab.code === 'aborted'), `a load with an aborted signal: ${JSON.stringify(got.aborted)}`);
      assert(got.stillWorks.value?.length === 3, `the model is unusable after the errors: ${JSON.stringify(got.stillWorks)}`);
    });

    await test('worker: models share a given worker; free() ends the worker the package started', async () => {
      const got = await page.evaluate(async (pkgName) => {
        const { WorkerModel } = window.__t.mod;
        const worker = new Worker(new URL(`node_modules/${pkgName}/dist/worker.js`, location.href), { type: 'module' });
        const a = await WorkerModel.load('models/chat-int8.cact', { worker });
        const b = await WorkerModel.load('models/chat-int4.cact', { worker });
        const ids = [1, 6, 383];
        const ta = Array.from(await a.generateTokens(ids, { maxTokens: 4 }));
        const tb = Array.from(await b.generateTokens(ids, { maxTokens: 4 }));
        a.free();
        const tb2 = Array.from(await b.generateTokens(ids, { maxTokens: 4 }));
        let afterFree = null;
        try {
          await a.logits([1]);
        } catch (e) {
          afterFree = window.__t.err(e);
        }
        b.free();
        worker.terminate();
        // An own worker: calls after free() reject.
        const c = await WorkerModel.load('models/chat-int8.cact');
        c.free();
        let afterOwnFree = null;
        try {
          await c.tokenize('x');
        } catch (e) {
          afterOwnFree = window.__t.err(e);
        }
        return { ta, tb, tb2, afterFree, afterOwnFree, sameWorker: a.worker === b.worker };
      }, pkgName);
      const m8 = path.join(models, 'chat-int8.cact');
      const m4 = path.join(models, 'chat-int4.cact');
      const want8 = JSON.parse(saguaro(bin, ['generate', '--model', m8, '--tokens', '1,6,383', '--max-tokens', '4', '--json'])).tokens;
      const want4 = JSON.parse(saguaro(bin, ['generate', '--model', m4, '--tokens', '1,6,383', '--max-tokens', '4', '--json'])).tokens;
      assert(got.sameWorker, 'the models do not share the worker');
      assertSame(got.ta, want8, 'int8 in the shared worker');
      assertSame(got.tb, want4, 'int4 in the shared worker');
      assertSame(got.tb2, want4, 'int4 after freeing int8');
      assert(got.afterFree?.isSaguaroError, `a call after free() did not reject with a SaguaroError: ${JSON.stringify(got.afterFree)}`);
      assert(got.afterOwnFree?.isSaguaroError, `a call after free() did not reject with a SaguaroError: ${JSON.stringify(got.afterOwnFree)}`);
    });

    await test('page: the main thread stays responsive while the worker generates', async () => {
      const got = await page.evaluate(async (request) => {
        const session = (await window.__t.get('int8')).session();
        let maxGap = 0;
        let last = performance.now();
        const timer = setInterval(() => {
          const now = performance.now();
          maxGap = Math.max(maxGap, now - last);
          last = now;
        }, 5);
        const t0 = performance.now();
        const r = await session.complete(request, { onToken: () => {} });
        const ms = performance.now() - t0;
        clearInterval(timer);
        session.free();
        return { maxGap, ms, tokens: r.decode_tokens };
      }, longRequest(long.seed));
      log(`    ${got.tokens} tokens in ${got.ms.toFixed(0)} ms (${((got.tokens / got.ms) * 1000).toFixed(0)} tok/s with streaming); longest main-thread stall ${got.maxGap.toFixed(1)} ms`);
      assert(got.tokens === long.native.response.decode_tokens, `${got.tokens} tokens, native ${long.native.response.decode_tokens}`);
      assert(got.maxGap < 250, `the main thread stalled for ${got.maxGap.toFixed(0)} ms`);
    });

    await page.evaluate(() => {
      for (const m of Object.values(window.__t.models)) m.then((m) => m.free(), () => {});
    });

    // ---- a page that is not cross-origin isolated: one thread, relaxed-simd where validated ----
    await test('not isolated: the worker falls back to one thread (the relaxed-simd module where the browser validates it), same bits; asking for 2 threads is an input error', async () => {
      const plainServer = await serve(appDir, { isolated: false, log: (l) => serverLog.push(l) });
      cleanup.unshift(() => plainServer.close());
      const other = await context.newPage();
      cleanup.unshift(() => other.close());
      other.on('pageerror', (e) => problems.push(`[uncaught, page 2] ${e.stack ?? e}`));
      await other.goto(`${plainServer.url}index.html`);
      await other.waitForFunction(() => window.saguaroExample !== undefined, null, { timeout: 15_000 });
      const got = await other.evaluate(
        async ({ pkgName, ids, promptIds }) => {
          const { relaxedSimd } = await import(pkgName);
          const { WorkerModel } = await import(`${pkgName}/worker-client`);
          const model = await WorkerModel.load('models/chat-int4.cact');
          const logits = await model.logits(ids);
          const tokens = [...(await model.generateTokens(promptIds, { maxTokens: 32 }))];
          await model.free();
          let refused = null;
          try {
            (await WorkerModel.load('models/chat-int4.cact', { threads: 2 })).free();
          } catch (e) {
            refused = { code: e?.code, message: e?.message };
          }
          const bytes = new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength);
          let s = '';
          for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
          return { isolated: globalThis.crossOriginIsolated, relaxed: relaxedSimd(), info: model.info, logits: btoa(s), tokens, refused };
        },
        { pkgName, ids: logitsIds, promptIds },
      );
      assert(got.isolated === false, `crossOriginIsolated is ${got.isolated}`);
      assert(got.info.threads === 1, `${got.info.threads} threads`);
      assert(got.info.kernels === (got.relaxed ? 'simd128+relaxed' : 'simd128'), `relaxedSimd() ${got.relaxed}, kernels ${got.info.kernels}`);
      const logits = f32FromBase64(got.logits);
      assert(logits.length === nativeLogits.int4.length, `${logits.length} logits`);
      for (let i = 0; i < logits.length; i++) {
        if (!Object.is(logits[i], Math.fround(nativeLogits.int4[i]))) fail(`logit ${i}: ${logits[i]} != native ${nativeLogits.int4[i]}`);
      }
      assertSame(got.tokens, nativeGen.int4.greedy, 'greedy tokens on one thread');
      assert(got.refused?.code === 'input' && /isolated|SharedArrayBuffer/.test(got.refused.message), `threads: 2 without isolation gave ${JSON.stringify(got.refused)}`);
      log(`  not isolated: ${got.info.kernels} on ${got.info.threads} thread`);
    });

    await test('page: no console errors and no uncaught exceptions', async () => {
      await page.waitForTimeout(100);
      assert(problems.length === 0, `the page reported:\n      ${problems.join('\n      ')}`);
    });

    if (verbose) log(serverLog.join('\n'));
    else if (results.some((r) => !r.ok) && consoleLines.length) log(`the page's last console lines:\n  ${consoleLines.slice(-40).join('\n  ')}`);
  } finally {
    for (const f of cleanup) {
      try {
        await f();
      } catch {
        // closing is best effort
      }
    }
    if (process.env.KEEP_TMP === '1') log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (e) {
  results.push({ name: 'setup', ok: false, error: e });
  log(`test setup ... FAILED\n    ${String(e?.stack ?? e).split('\n').join('\n    ')}`);
}
process.exitCode = summary() ? 1 : 0;
