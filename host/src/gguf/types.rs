//! ggml tensor types: block sizes for validating GGUF tensor byte sizes, and dequantization
//! of the simple block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) to f32 exactly as ggml defines
//! them (`dequantize_row_*` in ggml-quants.c; gguf-py's `gguf.quants` gives the same bits).
//!
//! Every block starts with an f16 scale `d` (little-endian). Per block of 32 elements:
//! - Q8_0 (34 bytes): `d`, 32 × i8 `q`; `x = d * q`.
//! - Q4_0 (18 bytes): `d`, 16 bytes: byte j holds element j in its low nibble and element
//!   j + 16 in its high nibble; `x = d * (nibble - 8)`.
//! - Q4_1 (20 bytes): `d`, `m` (f16), 16 nibble bytes as Q4_0; `x = d * nibble + m`.
//! - Q5_0 (22 bytes): `d`, `qh` (u32 LE, bit j is bit 4 of element j), 16 nibble bytes;
//!   `x = d * (q - 16)` with `q = nibble | bit << 4`.
//! - Q5_1 (24 bytes): `d`, `m`, `qh`, 16 nibble bytes; `x = d * q + m`.
//!
//! And the K-quants of llama-quantize's usual mixes (Q4_K_M, Q5_K_M, Q6_K; plain Q4_0 files
//! also keep the output / tied embedding matrix in Q6_K), per super-block of 256 elements:
//! - Q4_K (144 bytes): `d`, `dmin` (f16), 12 bytes of packed 6-bit scales and mins for 8
//!   sub-blocks of 32, 128 nibble bytes (each 32 bytes hold two sub-blocks: low nibbles,
//!   then high nibbles); `x = (d * sc) * q - dmin * m`.
//! - Q5_K (176 bytes): as Q4_K plus `qh` (32 bytes, bit s of byte l is bit 4 of element l
//!   of sub-block s) before the nibbles.
//! - Q6_K (210 bytes): `ql` (128), `qh` (64), 16 × i8 scales (one per 16 elements), `d`
//!   last; `x = (d * scale) * (q - 32)` with 6-bit `q`.

use half::f16;

/// A ggml tensor type as stored in a GGUF tensor info (`ggml_type` in ggml.h).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
}

const QK_K: usize = 256;

impl GgmlType {
    /// The type with ggml id `id`, or None for ids that are unknown or were removed from
    /// ggml (4, 5: Q4_2/Q4_3; 31..33: Q4_0_4_4 and friends; 36..38: IQ4_NL_4_4 and friends).
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            _ => return None,
        })
    }

    /// The ggml id of this type.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
            NVFP4 => 40,
            Q1_0 => 41,
        }
    }

    /// The ggml name (`Q8_0`, `F16`, ...).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
        }
    }

    /// Elements per block (1 for plain types). The innermost dimension (ne0) of a tensor
    /// must be a multiple of it.
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | I8 | I16 | I32 | I64 | F64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            NVFP4 => 64,
            Q1_0 => 128,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S | IQ3_S | IQ2_S | IQ4_XS
            | IQ1_M | TQ1_0 | TQ2_0 => QK_K,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | I32 => 4,
            F16 | BF16 | I16 => 2,
            I8 => 1,
            I64 | F64 => 8,
            Q4_0 => 2 + 16,
            Q4_1 => 2 + 2 + 16,
            Q5_0 => 2 + 4 + 16,
            Q5_1 => 2 + 2 + 4 + 16,
            Q8_0 => 2 + 32,
            // ggml's block_q8_1: f16 d, f16 s, 32 × i8 (never stored in model files).
            Q8_1 => 2 + 2 + 32,
            Q2_K => 2 + 2 + QK_K / 16 + QK_K / 4,
            Q3_K => 2 + QK_K / 4 + QK_K / 8 + 12,
            Q4_K => 2 + 2 + QK_K / 2 + 12,
            Q5_K => 2 + 2 + QK_K / 2 + QK_K / 8 + 12,
            Q6_K => 2 + QK_K / 2 + QK_K / 4 + QK_K / 16,
            Q8_K => 4 + QK_K + QK_K / 8,
            IQ2_XXS => 2 + QK_K / 4,
            IQ2_XS => 2 + QK_K / 4 + QK_K / 32,
            IQ3_XXS => 2 + QK_K / 4 + QK_K / 8,
            IQ1_S => 2 + QK_K / 8 + QK_K / 16,
            IQ4_NL => 2 + 16,
            IQ3_S => 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4,
            IQ2_S => 2 + QK_K / 4 + QK_K / 16,
            IQ4_XS => 2 + 2 + QK_K / 2 + QK_K / 64,
            IQ1_M => QK_K / 8 + QK_K / 16 + QK_K / 32,
            TQ1_0 => 2 + 4 * 13,
            TQ2_0 => 2 + 64,
            MXFP4 => 1 + 16,
            NVFP4 => 4 + 32,
            Q1_0 => 2 + 16,
        }
    }

    /// Whether [`dequantize`] can decode this type to f32.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(self, Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K / Q5_K
/// (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Decodes whole blocks of a block-quantized type to f32 values (`block_size` per block).
///
/// Returns None when the type is not one [`GgmlType::can_dequantize`] accepts or `bytes` is
/// not a whole number of blocks. Never panics.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    if !ty.can_dequantize() || !bytes.len().is_multiple_of(ty.type_size()) {
        return None;
    }
    let blocks = bytes.chunks_exact(ty.type_size());
    let mut out = Vec::with_capacity(blocks.len() * ty.block_size());
    for b in blocks {
        match ty {
            GgmlType::Q8_0 => {
                let d = half_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
            }
            GgmlType::Q4_0 => {
                let d = half_at(b, 0);
                let qs = &b[2..18];
                out.extend(qs.iter().map(|&q| d * f32::from((q & 0x0f) as i8 - 8)));
                out.extend(qs.iter().map(|&q| d * f32::from((q >> 4) as i8 - 8)));
            }
            GgmlType::Q4_1 => {
                let (d, m) = (half_at(b, 0), half_at(b, 2));
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0x0f) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let d = half_at(b, 0);
                let (m, rest) = if ty == GgmlType::Q5_1 { (Some(half_at(b, 2)), &b[4..]) } else { (None, &b[2..]) };
                let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let qs = &rest[4..20];
                let q5 = |j: usize| -> u8 {
                    let nibble = if j < 16 { qs[j] & 0x0f } else { qs[j - 16] >> 4 };
                    nibble | ((((qh >> j) & 1) as u8) << 4)
                };
                for j in 0..32 {
                    let q = q5(j);
                    out.push(match m {
                        Some(m) => d * f32::from(q) + m,
                        None => d * f32::from(q as i8 - 16),
                    });
                }
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                let (d, dmin) = (half_at(b, 0), half_at(b, 2));
                let scales = &b[4..16];
                let (qh, qs) = if ty == GgmlType::Q5_K { (Some(&b[16..48]), &b[48..176]) } else { (None, &b[16..144]) };
                for sub in 0..8 {
                    let (sc, m) = scale_min_k4(sub, scales);
                    let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
                    // Sub-blocks 2k and 2k+1 share 32 bytes: low nibbles, then high nibbles.
                    let bytes = &qs[32 * (sub / 2)..32 * (sub / 2) + 32];
                    for (l, &byte) in bytes.iter().enumerate() {
                        let nibble = if sub % 2 == 0 { byte & 0x0f } else { byte >> 4 };
                        let high = qh.map_or(0, |qh| ((qh[l] >> sub) & 1) << 4);
                        out.push(d1 * f32::from(nibble | high) - m1);
                    }
                }
            }
            GgmlType::Q6_K => {
                let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = half_at(b, 208);
                for j in 0..256 {
                    // 128-element halves; within one, element e takes from ql[e % 64] the low
                    // nibble (e < 64) or high nibble, and bits 2*(e / 32) of qh[e % 32].
                    let (half, e) = (j / 128, j % 128);
                    let lo = ql[64 * half + e % 64];
                    let nibble = if e < 64 { lo & 0x0f } else { lo >> 4 };
                    let hi = (qh[32 * half + e % 32] >> (2 * (e / 32))) & 3;
                    let q = (nibble | (hi << 4)) as i8 - 32;
                    let scale = d * f32::from(scales[j / 16] as i8);
                    out.push(scale * f32::from(q));
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sizes_match_ggml() {
        for id in 0..64 {
            if let Some(t) = GgmlType::from_id(id) {
                assert_eq!(t.id(), id);
                assert!(t.block_size() > 0 && t.type_size() > 0);
            }
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(31), None);
        assert_eq!((GgmlType::Q8_0.block_size(), GgmlType::Q8_0.type_size()), (32, 34));
        assert_eq!((GgmlType::Q4_0.block_size(), GgmlType::Q4_0.type_size()), (32, 18));
        assert_eq!((GgmlType::Q6_K.block_size(), GgmlType::Q6_K.type_size()), (256, 210));
        assert_eq!((GgmlType::Q4_K.block_size(), GgmlType::Q4_K.type_size()), (256, 144));
    }

    #[test]
    fn q8_0_and_q4_0_blocks_decode_as_ggml_defines() {
        // Q8_0: d = 0.5, q = -16..16.
        let mut b = f16::from_f32(0.5).to_le_bytes().to_vec();
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let x = dequantize(GgmlType::Q8_0, &b).unwrap();
        assert_eq!(x, (0..32).map(|i| 0.5 * (i as f32 - 16.0)).collect::<Vec<_>>());

        // Q4_0: d = 2; byte j = (j) | (15 - j) << 4 -> element j = j - 8, element 16 + j = 7 - j.
        let mut b = f16::from_f32(2.0).to_le_bytes().to_vec();
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let x = dequantize(GgmlType::Q4_0, &b).unwrap();
        for j in 0..16 {
            assert_eq!(x[j], 2.0 * (j as f32 - 8.0));
            assert_eq!(x[16 + j], 2.0 * (7.0 - j as f32));
        }
        // Not a whole number of blocks, or an unsupported type: None.
        assert!(dequantize(GgmlType::Q8_0, &b[..17]).is_none());
        assert!(dequantize(GgmlType::Q2_K, &[0; 84]).is_none());
        assert_eq!(dequantize(GgmlType::Q6_K, &[0; 210]).unwrap(), vec![0.0; 256]);
    }

    #[test]
    fn q5_blocks_use_the_high_bit_field() {
        // Q5_0 with d = 1, every nibble 0, qh = all ones: q = 16 -> x = 0; qh = 0 -> x = -16.
        let mut b = f16::from_f32(1.0).to_le_bytes().to_vec();
        b.extend(0xffff_0000u32.to_le_bytes());
        b.extend([0u8; 16]);
        let x = dequantize(GgmlType::Q5_0, &b).unwrap();
        assert!(x[..16].iter().all(|&v| v == -16.0));
        assert!(x[16..].iter().all(|&v| v == 0.0));
        // Q5_1 with d = 1, m = 0.25, nibbles 15, qh = 1 for element 0 only: 31.25 then 15.25.
        let mut b = f16::from_f32(1.0).to_le_bytes().to_vec();
        b.extend(f16::from_f32(0.25).to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend([0xffu8; 16]);
        let x = dequantize(GgmlType::Q5_1, &b).unwrap();
        assert_eq!(x[0], 31.25);
        assert!(x[1..].iter().all(|&v| v == 15.25));
    }
}
