// The example chat page: loads a .cact model into a Web Worker (@saguaro/llm/worker-client), shows the
// download/load progress, streams the answer token by token and stops it on demand.
//
// Everything model-related runs in the worker; this file only moves text to and from the DOM.
// `window.saguaroExample` exposes the live objects and the last exchange (the browser test reads
// them; handy in the devtools console too).
import { WorkerModel, SaguaroError } from '@saguaro/llm/worker-client';

const $ = (id) => document.getElementById(id);
const ui = {
  form: $('load-form'), pick: $('model-pick'), url: $('model-url'), file: $('model-file'), cache: $('cache'),
  load: $('load'), progress: $('progress'), progressText: $('progress-text'), status: $('status'), error: $('error'),
  system: $('system'), temperature: $('temperature'), maxTokens: $('max-tokens'), seed: $('seed'),
  transcript: $('transcript'), promptForm: $('prompt-form'), prompt: $('prompt'),
  send: $('send'), stop: $('stop'), reset: $('reset'), stats: $('stats'),
};

const app = {
  model: null,
  session: null,
  /** The conversation so far, as request messages (system prompt excluded). */
  history: [],
  /** Progress events of the last load. */
  progress: [],
  /** The last exchange: request, streamed token events, response (or error). */
  last: null,
  loading: null,
  generating: null,
};
window.saguaroExample = app;

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showError(e) {
  if (!e) {
    ui.error.hidden = true;
    ui.error.textContent = '';
    ui.error.removeAttribute('data-code');
    return;
  }
  const code = e instanceof SaguaroError ? e.code : e?.name ?? 'error';
  ui.error.hidden = false;
  ui.error.dataset.code = code;
  ui.error.textContent = `${code}: ${e?.message ?? e}`;
}

function setBusy() {
  const ready = !!app.model && !app.loading;
  ui.prompt.disabled = !ready;
  ui.send.disabled = !ready || !!app.generating;
  ui.stop.disabled = !app.generating && !app.loading;
  ui.reset.disabled = !ready || !!app.generating;
  ui.load.textContent = app.loading ? 'Cancel' : 'Load';
}

const mb = (n) => (n / (1024 * 1024)).toFixed(1);

// ---- loading ----

async function load(source, label) {
  if (app.loading) return;
  showError(null);
  app.generating?.abort();
  app.session?.free();
  app.model?.free();
  app.model = app.session = null;
  app.history = [];
  app.progress = [];
  ui.transcript.replaceChildren();
  ui.stats.textContent = '';
  ui.progress.value = 0;
  ui.progressText.textContent = '';
  const controller = new AbortController();
  app.loading = controller;
  setStatus('loading', `Loading ${label}…`);
  setBusy();
  const t0 = performance.now();
  try {
    const model = await WorkerModel.load(source, {
      signal: controller.signal,
      cache: ui.cache.checked,
      onProgress: (p) => {
        app.progress.push({ ...p });
        if (p.total > 0) ui.progress.value = Math.min(1, p.loaded / p.total);
        ui.progressText.textContent = p.total > 0 ? `${p.phase}: ${mb(p.loaded)} / ${mb(p.total)} MB` : `${p.phase}: ${mb(p.loaded)} MB`;
      },
    });
    app.model = model;
    app.session = model.session();
    ui.progress.value = 1;
    const i = model.info;
    const facts = [
      i.model_type,
      i.vocab_size && `vocab ${i.vocab_size}`,
      i.num_layers && `${i.num_layers} layers`,
      i.file_bytes && `${mb(i.file_bytes)} MB`,
      i.kernels && `kernels ${i.kernels}`,
    ].filter(Boolean);
    setStatus('ready', `Ready: ${label} (${facts.join(', ')}) in ${((performance.now() - t0) / 1000).toFixed(2)} s.`);
    ui.prompt.focus();
  } catch (e) {
    showError(e);
    setStatus(controller.signal.aborted ? 'idle' : 'error', controller.signal.aborted ? 'Loading cancelled.' : 'Loading failed.');
  } finally {
    app.loading = null;
    setBusy();
  }
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (app.loading) return app.loading.abort();
  const file = ui.file.files?.[0];
  if (file) {
    ui.file.value = '';
    return load(file, file.name);
  }
  const url = ui.url.value.trim();
  if (!url) return showError(new Error('Enter the URL of a .cact model, or pick a file.'));
  load(url, url.split('/').pop() || url);
});

ui.file.addEventListener('change', () => {
  const file = ui.file.files?.[0];
  if (file && !app.loading) {
    ui.file.value = '';
    load(file, file.name);
  }
});

ui.pick.addEventListener('change', () => {
  if (ui.pick.value) ui.url.value = ui.pick.value;
});

// Presets: models.json next to the page ([{ "name": "...", "url": "..." }]), when there is one.
fetch('models.json')
  .then((r) => (r.ok ? r.json() : []))
  .then((list) => {
    for (const m of list) ui.pick.append(new Option(m.name, m.url));
  })
  .catch(() => {});

const params = new URLSearchParams(location.search);
if (params.get('model')) {
  ui.url.value = params.get('model');
  if (params.has('autoload')) load(ui.url.value, ui.url.value.split('/').pop());
}

// ---- chatting ----

function bubble(role, text = '') {
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.textContent = text;
  ui.transcript.append(div);
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  return div;
}

function requestFor(messages) {
  const options = {
    temperature: Number(ui.temperature.value),
    max_tokens: Math.max(1, Math.floor(Number(ui.maxTokens.value))),
    seed: Math.max(0, Math.floor(Number(ui.seed.value) || 0)),
  };
  const system = ui.system.value.trim();
  return { messages: system ? [{ role: 'system', content: system }, ...messages] : messages, options };
}

async function send() {
  const text = ui.prompt.value;
  if (!app.session || app.generating || !text.trim()) return;
  showError(null);
  ui.prompt.value = '';
  bubble('user', text);
  const messages = [...app.history, { role: 'user', content: text }];
  const request = requestFor(messages);
  const out = bubble('assistant');
  const answer = out.appendChild(document.createElement('span'));
  answer.className = 'text';
  out.classList.add('streaming');
  const controller = new AbortController();
  app.generating = controller;
  app.last = { request, tokens: [], response: null, error: null };
  const last = app.last;
  setStatus('generating', 'Generating…');
  setBusy();
  try {
    const response = await app.session.complete(request, {
      signal: controller.signal,
      onToken: (t) => {
        last.tokens.push(t);
        if (t.text) {
          answer.append(t.text);
          ui.transcript.scrollTop = ui.transcript.scrollHeight;
        }
      },
    });
    last.response = response;
    if (!response.success) throw new SaguaroError(response.error ?? 'the completion failed', response.error_code ?? 'internal');
    if (response.function_calls?.length) {
      const calls = document.createElement('div');
      calls.className = 'calls';
      calls.textContent = response.function_calls.map((c) => `→ ${c.name}(${JSON.stringify(c.arguments)})`).join('\n');
      out.append(calls);
    }
    // The answer joins the conversation (also when stopped: what was shown is what was said).
    app.history = [...messages, { role: 'assistant', content: response.response }];
    const tps = response.decode_tps ? `${response.decode_tps.toFixed(1)} tok/s` : '';
    ui.stats.textContent = [
      response.finish_reason,
      `${response.decode_tokens} tokens`,
      tps,
      `first token ${Math.round(response.time_to_first_token_ms)} ms`,
      response.reused_tokens ? `${response.reused_tokens} prompt tokens reused` : '',
    ].filter(Boolean).join(' · ');
    setStatus('ready', response.finish_reason === 'cancelled' ? 'Stopped.' : 'Ready.');
  } catch (e) {
    last.error = { name: e?.name, message: e?.message, code: e?.code };
    showError(e);
    setStatus('error', 'The completion failed.');
  } finally {
    out.classList.remove('streaming');
    app.generating = null;
    setBusy();
  }
}

ui.promptForm.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
ui.stop.addEventListener('click', () => {
  app.generating?.abort();
  app.loading?.abort();
});
ui.reset.addEventListener('click', () => {
  if (!app.model || app.generating) return;
  app.session?.free();
  app.session = app.model.session();
  app.history = [];
  ui.transcript.replaceChildren();
  ui.stats.textContent = '';
  setStatus('ready', 'New chat.');
});

setBusy();
