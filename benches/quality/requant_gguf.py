#!/usr/bin/env python3
"""Writes a copy of a GGUF whose 4-bit tensors (Q4_1, Q4_K, ...) are requantized to Q4_0.

Issue 15, item 6: a Q4_0 block (32 weights, one f16 scale d, codes 0..15 meaning (q - 8) * d) fits
Saguaro's int4 group exactly, so `saguaro convert --quant int4` of a Q4_0 GGUF should keep its
weights bit for bit. No real model here ships as Q4_0, so this makes one from a real GGUF: the
requantized file *is* the model under test (its f32 conversion is the reference), the loss
against the original file does not matter. Metadata is copied unchanged; tensors that are not
4-bit quantized (F32 norms, Q8_0, F16, Q6_K) are copied as they are.

Usage: requant_gguf.py IN.gguf OUT.gguf   (needs the PyPI packages gguf and numpy)
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

FOUR_BIT = {T.Q4_0, T.Q4_1, T.Q4_K, T.Q5_0, T.Q5_1, T.Q5_K, T.IQ4_NL, T.IQ4_XS}


def main(src: str, dst: str) -> None:
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    converted = 0
    for t in reader.tensors:
        # GGUF dims are innermost first; numpy shapes outermost first.
        shape = tuple(reversed([int(d) for d in t.shape]))
        if t.tensor_type in FOUR_BIT and shape[-1] % 32 == 0:
            weights = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
            data = gguf.quants.quantize(weights.astype(np.float32), T.Q4_0)
            writer.add_tensor(t.name, data, raw_dtype=T.Q4_0)
            converted += 1
        else:
            writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"{dst}: {converted} tensors requantized to Q4_0, {len(reader.tensors) - converted} copied", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
