// Quantization quality on a real model: for 20 real chat prompts, the last-position logits of
// each storage scheme (.cact files converted from the same GGUF) against the f32 conversion,
// which holds the GGUF's dequantized weights exactly. Prints a Markdown table: top-1 agreement,
// top-5 overlap, cosine similarity (mean and worst) and the largest logit difference.
//
// Runs the models in the npm package's wasm build (its logits equal the native CLI's bit for
// bit, which the test command checks), so all prompts of a model run in one process.
// Usage (see run.sh): node quant-quality.mjs [--format chatml|plain] [--prefix JSON_IDS]
//                      REF.cact NAME=PATH.cact ...
// --format chatml (default): SmolLM2's ChatML template with its default system prompt; plain:
// "Question: ...\nAnswer:" for a base model. --prefix: ids put before every prompt (the GGUF's
// BOS: `saguaro tokenize --prompt ""` prints them), since tokenize() adds none.
import { Model } from '@saguaro/llm';

/** Prompts of many kinds. */
const PROMPTS = [
  'What is the capital of France?',
  'Explain photosynthesis in one sentence.',
  'Write a haiku about the ocean.',
  'What is 17 times 23?',
  'Write a Python function that reverses a string.',
  'Translate "thank you very much" into Spanish.',
  'Give me three tips for a good night\'s sleep.',
  'Who wrote "Pride and Prejudice"?',
  'What is the boiling point of water in Fahrenheit?',
  'Summarize the plot of Romeo and Juliet in two sentences.',
  'List the planets of the solar system in order.',
  'How do I make a cup of green tea?',
  'What does HTTP stand for?',
  'Write a short, polite email declining a meeting invitation.',
  'Why is the sky blue?',
  'Name a famous painting by Leonardo da Vinci.',
  'What is the difference between a list and a tuple in Python?',
  'Describe a cat to someone who has never seen one.',
  'If a train travels 60 miles in 1.5 hours, what is its average speed?',
  'Suggest a name for a bakery that sells cactus-shaped cookies.',
];

const SYSTEM = 'You are a helpful AI assistant named SmolLM, trained by Hugging Face';
const RENDER = {
  chatml: (user) => `<|im_start|>system\n${SYSTEM}<|im_end|>\n<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`,
  plain: (user) => `Question: ${user}\nAnswer:`,
};

function lastRow(model, ids) {
  const all = model.logits(ids);
  const v = model.info.vocab_size;
  return all.subarray(all.length - v);
}

function topK(row, k) {
  const idx = Array.from(row.keys());
  idx.sort((a, b) => row[b] - row[a] || a - b);
  return idx.slice(0, k);
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

const args = process.argv.slice(2);
let format = 'chatml', prefix = [];
while (args[0]?.startsWith('--')) {
  const [flag, value] = args.splice(0, 2);
  if (flag === '--format' && value in RENDER) format = value;
  else if (flag === '--prefix') prefix = JSON.parse(value);
  else {
    console.error(`unknown option ${flag} ${value}`);
    process.exit(2);
  }
}
const render = RENDER[format];
const [refPath, ...others] = args;
if (!refPath || others.length === 0) {
  console.error('usage: node quant-quality.mjs [--format chatml|plain] [--prefix JSON_IDS] REF.cact NAME=PATH.cact ...');
  process.exit(2);
}

const ref = await Model.load(refPath);
const prompts = PROMPTS.map((p) => [...prefix, ...Array.from(ref.tokenize(render(p)))]);
const refRows = prompts.map((ids) => Float32Array.from(lastRow(ref, ids)));
ref.free();

console.log(`| scheme | file MB | top-1 agrees | top-5 overlap | cosine mean | cosine worst | max abs diff |`);
console.log(`|---|---:|---:|---:|---:|---:|---:|`);
for (const spec of others) {
  const [name, path] = spec.split('=');
  const model = await Model.load(path);
  let agree = 0, overlap = 0, cosSum = 0, cosMin = 1, maxDiff = 0;
  const flips = [];
  prompts.forEach((ids, i) => {
    const row = lastRow(model, ids);
    const r = refRows[i];
    const t1 = topK(r, 5), t2 = topK(row, 5);
    if (t1[0] === t2[0]) agree++;
    else flips.push(`${i + 1}: ${JSON.stringify(model.detokenize([t1[0]]))} -> ${JSON.stringify(model.detokenize([t2[0]]))} (f32 margin ${(r[t1[0]] - r[t1[1]]).toFixed(3)})`);
    overlap += t2.filter((t) => t1.includes(t)).length / 5;
    const c = cosine(r, row);
    cosSum += c;
    cosMin = Math.min(cosMin, c);
    for (let j = 0; j < r.length; j++) maxDiff = Math.max(maxDiff, Math.abs(r[j] - row[j]));
  });
  const mb = (model.info.file_bytes / 1e6).toFixed(1);
  model.free();
  const n = prompts.length;
  console.log(`| ${name} | ${mb} | ${agree}/${n} | ${(overlap / n).toFixed(2)} | ${(cosSum / n).toFixed(6)} | ${cosMin.toFixed(6)} | ${maxDiff.toFixed(3)} |`);
  for (const f of flips) console.error(`  ${name} top-1 differs on prompt ${f}`);
}
