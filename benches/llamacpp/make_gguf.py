#!/usr/bin/env python3
"""Write a random-weight LFM2-8B-A1B-shaped GGUF (architecture `lfm2moe`) in Q4_0, for
llama.cpp's llama-bench and `saguaro convert` (benches/llamacpp/run.sh).

    /work/pyenv/bin/python benches/llamacpp/make_moe_gguf.py benches/models/lfm2-8b-a1b-q4_0.gguf

The shape is engine/src/synth.rs `shape_config("lfm2-8b-a1b")`: hidden 2048, 24 layers
(attention at 2, 6, 10, 14, 18, 21; the rest short-conv with L = 3 and no bias), 32 query
heads / 8 KV heads of 64, dense SwiGLU FFN 7168 in the first 2 layers, then 32 experts of
width 1792 with top-4 sigmoid routing, an expert bias and normalised top-k weights; vocabulary
65536 with tied embeddings. 8.3 B parameters, ~4.7 GB.

Tensors and metadata follow llama.cpp's `LFM2MoeModel` converter and its loader
(src/models/lfm2moe.cpp `load_arch_tensors` / `load_arch_hparams`), as
tests/fixtures/make_gguf.py `write_moe_model` writes them: stacked experts
`blk.N.ffn_{gate,up,down}_exps.weight` (numpy shape [E, rows, cols]), the router
`blk.N.ffn_gate_inp.weight` and `blk.N.exp_probs_b.bias` in F32, norms and short-conv taps in
F32. Every matrix is Q4_0, the tied `token_embd` too (llama-quantize's default would give the
output matrix Q6_K; Q4_0 keeps parity with Saguaro's int4, which quantizes the tied embedding).

Weights are random Q4_0 blocks generated as bytes (nibbles uniform in 1..15, i.e. values in
-7d..7d with mean 0, and an f16 scale d of about 1 / (8 sqrt(cols)) per block, so the values have
a deviation of ~0.54 / sqrt(cols), as `saguaro synth` uses 0.6 / sqrt(fan_in); the embedding has
deviation ~1); no f32 copy of a matrix is ever made. The file is
written one tensor at a time (peak memory: the largest tensor, ~75 MB) to `<out>.partial`,
renamed on success. Deterministic for a given --seed. The vocabulary is placeholder text (the
256 GPT-2 byte tokens, one merge, `<tN>` for the rest): enough for llama.cpp to load it and for
llama-bench, which feeds random token ids below n_vocab.
"""

import argparse
import os
import sys
import time
import zlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

HIDDEN = 2048
LAYERS = 24
ATTN_LAYERS = (2, 6, 10, 14, 18, 21)
HEADS = 32
KV_HEADS = 8
HEAD_DIM = HIDDEN // HEADS
FFN = 7168
DENSE_LAYERS = 2
EXPERTS = 32
TOP_K = 4
EXPERT_FFN = 1792
VOCAB = 65536
CONV_L = 3
N_SPECIAL = 16  # ids 0..15: control tokens (BOS 1, EOS 7, PAD 0, as LFM2)

Q4_BLOCK, Q4_BYTES = gguf.GGML_QUANT_SIZES[Q.Q4_0]  # 32 weights in 18 bytes


def tensor_plan():
    """[(gguf name, numpy shape (outermost first), kind)]; kind: 'q4' (a matrix or a stack of
    matrices, Q4_0), 'embed' (Q4_0, unit deviation), 'norm' (F32 ones), 'conv', 'router',
    'bias' (F32 random)."""
    plan = [("token_embd.weight", (VOCAB, HIDDEN), "embed")]
    for i in range(LAYERS):
        b = f"blk.{i}"
        plan.append((f"{b}.attn_norm.weight", (HIDDEN,), "norm"))
        if i in ATTN_LAYERS:
            plan += [
                (f"{b}.attn_q.weight", (HEADS * HEAD_DIM, HIDDEN), "q4"),
                (f"{b}.attn_k.weight", (KV_HEADS * HEAD_DIM, HIDDEN), "q4"),
                (f"{b}.attn_v.weight", (KV_HEADS * HEAD_DIM, HIDDEN), "q4"),
                (f"{b}.attn_output.weight", (HIDDEN, HEADS * HEAD_DIM), "q4"),
                (f"{b}.attn_q_norm.weight", (HEAD_DIM,), "norm"),
                (f"{b}.attn_k_norm.weight", (HEAD_DIM,), "norm"),
            ]
        else:
            plan += [
                (f"{b}.shortconv.in_proj.weight", (3 * HIDDEN, HIDDEN), "q4"),
                (f"{b}.shortconv.conv.weight", (HIDDEN, CONV_L), "conv"),  # GGUF ne = [L, D]
                (f"{b}.shortconv.out_proj.weight", (HIDDEN, HIDDEN), "q4"),
            ]
        plan.append((f"{b}.ffn_norm.weight", (HIDDEN,), "norm"))
        if i < DENSE_LAYERS:
            plan += [
                (f"{b}.ffn_gate.weight", (FFN, HIDDEN), "q4"),
                (f"{b}.ffn_up.weight", (FFN, HIDDEN), "q4"),
                (f"{b}.ffn_down.weight", (HIDDEN, FFN), "q4"),
            ]
        else:
            plan += [
                (f"{b}.ffn_gate_inp.weight", (EXPERTS, HIDDEN), "router"),
                (f"{b}.exp_probs_b.bias", (EXPERTS,), "bias"),
                (f"{b}.ffn_gate_exps.weight", (EXPERTS, EXPERT_FFN, HIDDEN), "q4"),
                (f"{b}.ffn_up_exps.weight", (EXPERTS, EXPERT_FFN, HIDDEN), "q4"),
                (f"{b}.ffn_down_exps.weight", (EXPERTS, HIDDEN, EXPERT_FFN), "q4"),
            ]
    plan.append(("token_embd_norm.weight", (HIDDEN,), "norm"))  # the final norm (LFM2 naming)
    return plan


def is_quant(kind):
    return kind in ("q4", "embed")


def q4_byte_shape(shape):
    assert shape[-1] % Q4_BLOCK == 0, shape
    return (*shape[:-1], shape[-1] // Q4_BLOCK * Q4_BYTES)


def q4_random(rng, shape, scale):
    """Random Q4_0 bytes for a tensor of `shape`: per block an f16 scale d within +-25% of
    `scale` and 32 nibbles uniform in 1..15, i.e. values (nibble - 8) * d uniform in -7d..7d.
    (Uniform nibbles 0..15 would give every weight a mean of -d/2: the same bias in every row
    drives all hidden states towards one direction, and then every token picks the same
    experts, which is not how a trained MoE routes.)"""
    n_blocks = int(np.prod(shape)) // Q4_BLOCK
    out = np.empty((n_blocks, Q4_BYTES), dtype=np.uint8)
    d = (scale * rng.uniform(0.75, 1.25, size=n_blocks)).astype(np.float16)
    out[:, :2] = d.view(np.uint8).reshape(n_blocks, 2)
    nib = rng.integers(1, 16, size=(n_blocks, Q4_BLOCK), dtype=np.uint8)
    # ggml's block_q4_0: byte j holds element j (low nibble) and element j + 16 (high nibble).
    out[:, 2:] = nib[:, :16] | (nib[:, 16:] << 4)
    return out.reshape(q4_byte_shape(shape))


def f32_tensor(rng, shape, kind):
    if kind == "norm":
        return np.ones(shape, dtype=np.float32)
    if kind == "conv":
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)
    if kind == "router":
        return (rng.standard_normal(shape) * (0.6 / np.sqrt(shape[-1]))).astype(np.float32)
    if kind == "bias":
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)
    raise ValueError(kind)


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (the byte-level BPE token texts)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def vocabulary():
    """(tokens, token types, merges): 16 control tokens, the 256 byte tokens, one merged
    token, placeholders up to VOCAB."""
    byte_tokens = [bytes_to_unicode()[b] for b in range(256)]
    tokens = [f"<|special_{i}|>" for i in range(N_SPECIAL)] + byte_tokens + ["ab"]
    tokens += [f"<t{i}>" for i in range(len(tokens), VOCAB)]
    assert len(tokens) == VOCAB and len(set(tokens)) == VOCAB
    types = [gguf.TokenType.CONTROL if i < N_SPECIAL else gguf.TokenType.NORMAL for i in range(VOCAB)]
    return tokens, types, ["a b"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output .gguf path")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LFM2MOE]
    tmp = args.out + ".partial"
    w = gguf.GGUFWriter(tmp, arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("lfm2-8b-a1b-random")
    w.add_block_count(LAYERS)
    w.add_context_length(128000)
    w.add_embedding_length(HIDDEN)
    w.add_head_count(HEADS)
    w.add_head_count_kv([KV_HEADS if i in ATTN_LAYERS else 0 for i in range(LAYERS)])
    w.add_rope_freq_base(1000000.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(VOCAB)
    w.add_shortconv_l_cache(CONV_L)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_feed_forward_length(FFN)
    w.add_leading_dense_block_count(DENSE_LAYERS)
    w.add_expert_count(EXPERTS)
    w.add_expert_used_count(TOP_K)
    w.add_expert_feed_forward_length(EXPERT_FFN)
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    w.add_expert_weights_scale(1.0)
    w.add_expert_weights_norm(True)
    tokens, types, merges = vocabulary()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("lfm2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(7)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)

    plan = tensor_plan()
    n_params = 0
    for name, shape, kind in plan:
        n_params += int(np.prod(shape))
        if is_quant(kind):
            bshape = q4_byte_shape(shape)
            w.add_tensor_info(name, bshape, np.dtype(np.uint8), int(np.prod(bshape)), raw_dtype=Q.Q4_0)
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    start = time.time()
    for i, (name, shape, kind) in enumerate(plan):
        rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])
        if kind == "q4":
            data = q4_random(rng, shape, 1.0 / (8.0 * np.sqrt(shape[-1])))
        elif kind == "embed":
            data = q4_random(rng, shape, 1.0 / 4.3)  # deviation ~1, as synth's embeddings
        else:
            data = f32_tensor(rng, shape, kind)
        w.write_tensor_data(data)
        if sys.stderr.isatty():
            print(f"\r{i + 1}/{len(plan)} tensors, {time.time() - start:.0f} s", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    w.close()
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {n_params / 1e9:.2f} B parameters, {os.path.getsize(args.out) / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
