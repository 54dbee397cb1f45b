#!/usr/bin/env python3
"""Write a random-weight LFM2-shaped GGUF for llama.cpp's llama-bench and `saguaro convert`
(benches/llamacpp/run.sh, benches/compare.sh): the LFM2-8B-A1B shape (architecture `lfm2moe`)
or the LFM2-350M shape (`lfm2`), every matrix Q4_0 or Q8_0.

    /work/pyenv/bin/python benches/llamacpp/make_gguf.py benches/models/lfm2-8b-a1b-q4_0.gguf
    /work/pyenv/bin/python benches/llamacpp/make_gguf.py --shape lfm2-350m --quant q8_0 OUT.gguf

The shapes are engine/src/synth.rs `shape_config`:
- lfm2-8b-a1b: hidden 2048, 24 layers (attention at 2, 6, 10, 14, 18, 21; the rest short-conv
  with L = 3 and no bias), 32 query heads / 8 KV heads of 64, dense SwiGLU FFN 7168 in the
  first 2 layers, then 32 experts of width 1792 with top-4 sigmoid routing, an expert bias and
  normalised top-k weights. 8.3 B parameters, ~4.7 GB in Q4_0, ~8.8 GB in Q8_0.
- lfm2-350m: hidden 1024, 16 layers (attention at 2, 5, 8, 10, 12, 14), 16 query heads / 8 KV
  heads of 64, SwiGLU FFN 4608. 354 M parameters, ~0.2 GB in Q4_0, ~0.38 GB in Q8_0.
Both: vocabulary 65536 with tied embeddings.

Tensors and metadata follow llama.cpp's `LFM2Model` / `LFM2MoeModel` converters and loaders
(src/models/lfm2.cpp, lfm2moe.cpp), as tests/fixtures/make_gguf.py writes them: stacked experts
`blk.N.ffn_{gate,up,down}_exps.weight` (numpy shape [E, rows, cols]), the router
`blk.N.ffn_gate_inp.weight` and `blk.N.exp_probs_b.bias` in F32, norms and short-conv taps in
F32. Every matrix is quantized, the tied `token_embd` too (llama-quantize's default would give
the output matrix Q6_K; one type keeps parity with Saguaro's int4 / int8, which quantize the
tied embedding).

Weights are random blocks generated as bytes, mean 0, with an f16 scale d per block chosen so the
values have a deviation of ~0.54 / sqrt(cols) (as `saguaro synth` uses 0.6 / sqrt(fan_in); the
embedding has deviation ~1): Q4_0 nibbles uniform in 1..15 (values -7d..7d), Q8_0 bytes uniform
in -127..127. No f32 copy of a matrix is ever made. The file is written one tensor at a time
(peak memory: the largest tensor) to `<out>.partial`, renamed on success. Deterministic for a
given --seed. The vocabulary is placeholder text (the 256 GPT-2 byte tokens, one merge, `<tN>`
for the rest): enough for llama.cpp to load it and for llama-bench, which feeds random token ids
below n_vocab.
"""

import argparse
import os
import sys
import time
import zlib

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

SHAPES = {
    # hidden, layers, attention layers, heads, KV heads, dense FFN, dense layers, experts, top-k, expert FFN
    "lfm2-8b-a1b": dict(hidden=2048, layers=24, attn=(2, 6, 10, 14, 18, 21), heads=32, kv_heads=8, ffn=7168,
                        dense_layers=2, experts=32, top_k=4, expert_ffn=1792),
    "lfm2-350m": dict(hidden=1024, layers=16, attn=(2, 5, 8, 10, 12, 14), heads=16, kv_heads=8, ffn=4608,
                      dense_layers=16, experts=0, top_k=0, expert_ffn=0),
}
VOCAB = 65536
CONV_L = 3
N_SPECIAL = 16  # ids 0..15: control tokens (BOS 1, EOS 7, PAD 0, as LFM2)
HEAD_DIM = 64

# (weights per block, bytes per block)
BLOCK = {"q4_0": gguf.GGML_QUANT_SIZES[Q.Q4_0], "q8_0": gguf.GGML_QUANT_SIZES[Q.Q8_0]}
GGML_TYPE = {"q4_0": Q.Q4_0, "q8_0": Q.Q8_0}
FILE_TYPE = {"q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
# Deviation of one quantized value in units of d: Q4_0 -7..7 uniform, Q8_0 -127..127 uniform.
VALUE_SD = {"q4_0": (2 * sum(k * k for k in range(1, 8)) / 15) ** 0.5, "q8_0": (127 * 128 / 3) ** 0.5}


def tensor_plan(c):
    """[(gguf name, numpy shape (outermost first), kind)]; kind: 'mat' (a matrix or a stack of
    matrices, quantized), 'embed' (quantized, unit deviation), 'norm' (F32 ones), 'conv',
    'router', 'bias' (F32 random)."""
    hidden, heads, kv = c["hidden"], c["heads"], c["kv_heads"]
    plan = [("token_embd.weight", (VOCAB, hidden), "embed")]
    for i in range(c["layers"]):
        b = f"blk.{i}"
        plan.append((f"{b}.attn_norm.weight", (hidden,), "norm"))
        if i in c["attn"]:
            plan += [
                (f"{b}.attn_q.weight", (heads * HEAD_DIM, hidden), "mat"),
                (f"{b}.attn_k.weight", (kv * HEAD_DIM, hidden), "mat"),
                (f"{b}.attn_v.weight", (kv * HEAD_DIM, hidden), "mat"),
                (f"{b}.attn_output.weight", (hidden, heads * HEAD_DIM), "mat"),
                (f"{b}.attn_q_norm.weight", (HEAD_DIM,), "norm"),
                (f"{b}.attn_k_norm.weight", (HEAD_DIM,), "norm"),
            ]
        else:
            plan += [
                (f"{b}.shortconv.in_proj.weight", (3 * hidden, hidden), "mat"),
                (f"{b}.shortconv.conv.weight", (hidden, CONV_L), "conv"),  # GGUF ne = [L, D]
                (f"{b}.shortconv.out_proj.weight", (hidden, hidden), "mat"),
            ]
        plan.append((f"{b}.ffn_norm.weight", (hidden,), "norm"))
        if i < c["dense_layers"]:
            plan += [
                (f"{b}.ffn_gate.weight", (c["ffn"], hidden), "mat"),
                (f"{b}.ffn_up.weight", (c["ffn"], hidden), "mat"),
                (f"{b}.ffn_down.weight", (hidden, c["ffn"]), "mat"),
            ]
        else:
            e, f = c["experts"], c["expert_ffn"]
            plan += [
                (f"{b}.ffn_gate_inp.weight", (e, hidden), "router"),
                (f"{b}.exp_probs_b.bias", (e,), "bias"),
                (f"{b}.ffn_gate_exps.weight", (e, f, hidden), "mat"),
                (f"{b}.ffn_up_exps.weight", (e, f, hidden), "mat"),
                (f"{b}.ffn_down_exps.weight", (e, hidden, f), "mat"),
            ]
    plan.append(("token_embd_norm.weight", (hidden,), "norm"))  # the final norm (LFM2 naming)
    return plan


def is_quant(kind):
    return kind in ("mat", "embed")


def byte_shape(quant, shape):
    block, nbytes = BLOCK[quant]
    assert shape[-1] % block == 0, shape
    return (*shape[:-1], shape[-1] // block * nbytes)


def quant_random(rng, quant, shape, sd):
    """Random blocks for a tensor of `shape` whose values have deviation ~`sd`: per block an f16
    scale d within +-25% of sd / VALUE_SD and 32 values of mean 0.
    Q4_0: nibbles uniform in 1..15, i.e. values (nibble - 8) * d in -7d..7d. (Uniform nibbles
    0..15 would give every weight a mean of -d/2: the same bias in every row drives all hidden
    states towards one direction, and then every token picks the same experts, which is not how
    a trained MoE routes.) Q8_0: bytes uniform in -127..127."""
    block, nbytes = BLOCK[quant]
    n_blocks = int(np.prod(shape)) // block
    out = np.empty((n_blocks, nbytes), dtype=np.uint8)
    d = (sd / VALUE_SD[quant] * rng.uniform(0.75, 1.25, size=n_blocks)).astype(np.float16)
    out[:, :2] = d.view(np.uint8).reshape(n_blocks, 2)
    if quant == "q4_0":
        nib = rng.integers(1, 16, size=(n_blocks, block), dtype=np.uint8)
        # ggml's block_q4_0: byte j holds element j (low nibble) and element j + 16 (high nibble).
        out[:, 2:] = nib[:, :16] | (nib[:, 16:] << 4)
    else:
        out[:, 2:] = rng.integers(-127, 128, size=(n_blocks, block), dtype=np.int8).view(np.uint8)
    return out.reshape(byte_shape(quant, shape))


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
    ap.add_argument("--shape", choices=sorted(SHAPES), default="lfm2-8b-a1b")
    ap.add_argument("--quant", choices=sorted(BLOCK), default="q4_0")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    c = SHAPES[args.shape]
    moe = c["experts"] > 0

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LFM2MOE if moe else gguf.MODEL_ARCH.LFM2]
    tmp = args.out + ".partial"
    w = gguf.GGUFWriter(tmp, arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"{args.shape}-random")
    w.add_block_count(c["layers"])
    w.add_context_length(128000)
    w.add_embedding_length(c["hidden"])
    w.add_head_count(c["heads"])
    w.add_head_count_kv([c["kv_heads"] if i in c["attn"] else 0 for i in range(c["layers"])])
    w.add_rope_freq_base(1000000.0)
    w.add_file_type(FILE_TYPE[args.quant])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(VOCAB)
    w.add_shortconv_l_cache(CONV_L)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_feed_forward_length(c["ffn"])
    if moe:
        w.add_leading_dense_block_count(c["dense_layers"])
        w.add_expert_count(c["experts"])
        w.add_expert_used_count(c["top_k"])
        w.add_expert_feed_forward_length(c["expert_ffn"])
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

    plan = tensor_plan(c)
    n_params = 0
    for name, shape, kind in plan:
        n_params += int(np.prod(shape))
        if is_quant(kind):
            bshape = byte_shape(args.quant, shape)
            w.add_tensor_info(name, bshape, np.dtype(np.uint8), int(np.prod(bshape)), raw_dtype=GGML_TYPE[args.quant])
        else:
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    start = time.time()
    for i, (name, shape, kind) in enumerate(plan):
        rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])
        if kind == "mat":
            data = quant_random(rng, args.quant, shape, VALUE_SD["q4_0"] / (8.0 * np.sqrt(shape[-1])))
        elif kind == "embed":
            data = quant_random(rng, args.quant, shape, 1.0)  # deviation ~1, as synth's embeddings
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
