//! GGUF (v2 and v3, little-endian) reader over a byte slice.
//!
//! [`GgufFile::parse`] validates the whole header up front — magic, version, every count,
//! length and offset with checked arithmetic and caps, `general.alignment`, each tensor's
//! type, dims and byte size, and that every tensor's data lies inside the file without
//! overlapping another — so nothing read afterwards can go out of bounds. Hostile input gives
//! an [`Error::Format`], never a panic. Nothing is copied: metadata strings and tensor data
//! borrow the input bytes.
//!
//! Layout (all little-endian):
//! ```text
//! "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//! kv_count × (string key | u32 value_type | value)
//! tensor_count × (string name | u32 n_dims | n_dims × u64 ne | u32 ggml_type | u64 offset)
//! padding to `general.alignment` (default 32) | tensor data (offsets are relative to here)
//! string = u64 length + bytes; array = u32 element type + u64 count + elements
//! ```
//! `ne[0]` is the innermost (contiguous) dimension, so a Hugging Face `[rows, cols]` matrix is
//! stored with `ne = [cols, rows]`.
//!
//! [`lfm2`] serves the tensors under their Hugging Face names (the engine's
//! [`TensorSource`](saguaro_engine::weights::TensorSource)) and builds a config.json from the
//! `lfm2.*` / `lfm2moe.*` metadata; [`llama`] does the same for `llama.*` and `gemma3.*` files
//! (undoing llama.cpp's Q/K permutation and Gemma norm shift). [`GgufFile::model_config`]
//! picks by `general.architecture`.

pub mod lfm2;
pub mod llama;
pub mod tokenizer;
pub mod types;

use std::borrow::Cow;
use std::collections::HashMap;

use saguaro_engine::weights::{DType, RawTensor};
use saguaro_engine::{Error, Result};

pub use lfm2::{hf_to_gguf_name, GgufName};
pub use llama::llama_family_gguf_name;
pub use tokenizer::{GgufTokenizer, VocabKind};
pub use types::GgmlType;

/// The file magic, "GGUF".
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a ggml tensor has.
pub const MAX_DIMS: usize = 4;
/// Caps on header counts and lengths (far above any real model, far below what could
/// exhaust memory).
pub const MAX_TENSORS: u64 = 1 << 20;
pub const MAX_KV: u64 = 1 << 20;
pub const MAX_STRING_LEN: u64 = 1 << 28;
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
pub const MAX_NAME_LEN: u64 = 1 << 10;
/// Longest metadata key (the GGUF specification caps keys at 65535 bytes).
pub const MAX_KEY_LEN: u64 = 65535;
/// Deepest nesting of arrays inside arrays.
pub const MAX_ARRAY_DEPTH: usize = 8;

fn format_err(msg: impl Into<String>) -> Error {
    Error::Format(format!("GGUF: {}", msg.into()))
}

/// Type tag of a metadata value (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// The type with GGUF id `id`.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The GGUF id of this type.
    pub fn id(self) -> u32 {
        use ValueType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// Encoded size of a fixed-size value, None for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// Fewest bytes one value of this type takes in the file.
    fn min_size(self) -> u64 {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            other => other.fixed_size().unwrap_or(1) as u64,
        }
    }
}

/// One metadata value. Strings are the raw bytes of the file (GGUF strings should be UTF-8;
/// [`MetaValue::as_str`] checks).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(&'a [u8]),
    Array(MetaArray<'a>),
}

impl<'a> MetaValue<'a> {
    /// The value type tag.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::F64(_) => ValueType::F64,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(_) => ValueType::Array,
        }
    }

    /// Any integer value as i128 (so every integer type fits).
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An integer value of any integer type that is >= 0 and fits in u64.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer value of any integer type that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// A float value, or an integer value converted to f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A string value that is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            MetaValue::String(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&MetaArray<'a>> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// An array value. Fixed-size elements stay as their bytes in the file (decoded on access),
/// strings and nested arrays are parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaArray<'a> {
    /// `len` values of the fixed-size type `elem`, little-endian, `len * size` bytes.
    Scalars {
        elem: ValueType,
        len: usize,
        bytes: &'a [u8],
    },
    Strings(Vec<&'a [u8]>),
    Arrays(Vec<MetaArray<'a>>),
}

impl<'a> MetaArray<'a> {
    /// Element type.
    pub fn elem_type(&self) -> ValueType {
        match self {
            MetaArray::Scalars { elem, .. } => *elem,
            MetaArray::Strings(_) => ValueType::String,
            MetaArray::Arrays(_) => ValueType::Array,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            MetaArray::Scalars { len, .. } => *len,
            MetaArray::Strings(v) => v.len(),
            MetaArray::Arrays(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, or None past the end.
    pub fn get(&self, i: usize) -> Option<MetaValue<'a>> {
        match self {
            MetaArray::Scalars { elem, len, bytes } => {
                if i >= *len {
                    return None;
                }
                let size = elem.fixed_size()?;
                let start = i.checked_mul(size)?;
                let b = bytes.get(start..start.checked_add(size)?)?;
                decode_scalar(*elem, b)
            }
            MetaArray::Strings(v) => v.get(i).map(|s| MetaValue::String(s)),
            MetaArray::Arrays(v) => v.get(i).map(|a| MetaValue::Array(a.clone())),
        }
    }

    /// Every element in order.
    pub fn iter(&self) -> impl Iterator<Item = MetaValue<'a>> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

/// Decodes one fixed-size value from exactly its bytes.
fn decode_scalar<'a>(ty: ValueType, b: &[u8]) -> Option<MetaValue<'a>> {
    let a2 = || -> Option<[u8; 2]> { b.try_into().ok() };
    let a4 = || -> Option<[u8; 4]> { b.try_into().ok() };
    let a8 = || -> Option<[u8; 8]> { b.try_into().ok() };
    Some(match ty {
        ValueType::U8 => MetaValue::U8(*b.first()?),
        ValueType::I8 => MetaValue::I8(*b.first()? as i8),
        ValueType::Bool => MetaValue::Bool(*b.first()? != 0),
        ValueType::U16 => MetaValue::U16(u16::from_le_bytes(a2()?)),
        ValueType::I16 => MetaValue::I16(i16::from_le_bytes(a2()?)),
        ValueType::U32 => MetaValue::U32(u32::from_le_bytes(a4()?)),
        ValueType::I32 => MetaValue::I32(i32::from_le_bytes(a4()?)),
        ValueType::F32 => MetaValue::F32(f32::from_le_bytes(a4()?)),
        ValueType::U64 => MetaValue::U64(u64::from_le_bytes(a8()?)),
        ValueType::I64 => MetaValue::I64(i64::from_le_bytes(a8()?)),
        ValueType::F64 => MetaValue::F64(f64::from_le_bytes(a8()?)),
        ValueType::String | ValueType::Array => return None,
    })
}

/// One tensor of the file, validated: its data lies inside the file and has exactly the
/// byte size its type and dims call for.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo<'a> {
    pub name: &'a str,
    pub ggml_type: GgmlType,
    /// `ne` in GGUF order: `dims[0]` is the innermost (contiguous) dimension.
    pub dims: Vec<usize>,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// The tensor's bytes.
    pub data: &'a [u8],
}

impl TensorInfo<'_> {
    /// Number of elements.
    pub fn n_elements(&self) -> usize {
        // Checked at parse time not to overflow.
        self.dims.iter().product()
    }

    /// The shape in row-major (PyTorch / Hugging Face) order: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed GGUF file borrowing its bytes.
#[derive(Debug, Clone)]
pub struct GgufFile<'a> {
    version: u32,
    alignment: u64,
    data_offset: usize,
    metadata: Vec<(&'a str, MetaValue<'a>)>,
    meta_index: HashMap<&'a str, usize>,
    tensors: Vec<TensorInfo<'a>>,
    tensor_index: HashMap<&'a str, usize>,
}

/// Bounds-checked little-endian reading from a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let n_usize = usize::try_from(n).ok().filter(|&n| n <= self.remaining()).ok_or_else(|| {
            format_err(format!(
                "file truncated: {what} needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            ))
        })?;
        let out = &self.bytes[self.pos..self.pos + n_usize];
        self.pos += n_usize;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed string's bytes, at most `cap` long.
    fn string(&mut self, cap: u64, what: &str) -> Result<&'a [u8]> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > cap {
            return Err(format_err(format!("{what} at offset {at} has length {len}, more than the limit of {cap}")));
        }
        self.take(len, what)
    }

    /// Checks that `count` items of at least `min_size` bytes each can still fit.
    fn check_count(&self, count: u64, min_size: u64, cap: u64, what: &str) -> Result<usize> {
        if count > cap {
            return Err(format_err(format!("{what} is {count}, more than the limit of {cap}")));
        }
        let need = count.checked_mul(min_size);
        match need {
            Some(need) if need <= self.remaining() as u64 => Ok(count as usize),
            _ => Err(format_err(format!(
                "{what} is {count}, but only {} bytes remain at offset {}",
                self.remaining(),
                self.pos
            ))),
        }
    }

    fn value_type(&mut self, what: &str) -> Result<ValueType> {
        let at = self.pos;
        let id = self.u32(what)?;
        ValueType::from_id(id).ok_or_else(|| format_err(format!("{what} at offset {at} has unknown value type {id}")))
    }

    fn value(&mut self, ty: ValueType, depth: usize, what: &str) -> Result<MetaValue<'a>> {
        match ty {
            ValueType::String => Ok(MetaValue::String(self.string(MAX_STRING_LEN, what)?)),
            ValueType::Array => Ok(MetaValue::Array(self.array_value(depth + 1, what)?)),
            fixed => {
                let size = fixed.fixed_size().unwrap_or(1);
                let b = self.take(size as u64, what)?;
                decode_scalar(fixed, b).ok_or_else(|| format_err(format!("{what}: cannot decode value")))
            }
        }
    }

    fn array_value(&mut self, depth: usize, what: &str) -> Result<MetaArray<'a>> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(format_err(format!("{what}: arrays nested more than {MAX_ARRAY_DEPTH} deep")));
        }
        let elem = self.value_type(what)?;
        let count = self.u64(what)?;
        let len = self.check_count(count, elem.min_size(), MAX_ARRAY_LEN, &format!("{what}: array length"))?;
        Ok(match elem {
            ValueType::String => {
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.string(MAX_STRING_LEN, what)?);
                }
                MetaArray::Strings(items)
            }
            ValueType::Array => {
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.array_value(depth + 1, what)?);
                }
                MetaArray::Arrays(items)
            }
            fixed => {
                let size = fixed.fixed_size().unwrap_or(1) as u64;
                // check_count guaranteed len * size fits in the remaining bytes.
                let bytes = self.take(len as u64 * size, what)?;
                MetaArray::Scalars { elem: fixed, len, bytes }
            }
        })
    }
}

/// `x` rounded up to a multiple of `align` (a power of two), None on overflow.
fn align_up(x: u64, align: u64) -> Option<u64> {
    x.checked_add(align - 1).map(|v| v & !(align - 1))
}

impl<'a> GgufFile<'a> {
    /// Parses and validates a GGUF file held in memory.
    pub fn parse(bytes: &'a [u8]) -> Result<GgufFile<'a>> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r.take(4, "magic").map_err(|_| format_err("file too short for a GGUF header"))?;
        if magic != GGUF_MAGIC {
            return Err(format_err(format!("bad magic {:02x?} (expected \"GGUF\"): not a GGUF file", magic)));
        }
        let version = r.u32("version")?;
        match version {
            2 | 3 => {}
            1 => return Err(format_err("GGUF version 1 is not supported (only versions 2 and 3)")),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(format_err("big-endian GGUF files are not supported"))
            }
            v => return Err(format_err(format!("unsupported GGUF version {v} (only 2 and 3)"))),
        }
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.u64("metadata count")?;
        // Every tensor info takes >= 24 bytes (name length, n_dims, type, offset).
        let n_tensors = r.check_count(tensor_count, 24, MAX_TENSORS, "tensor count")?;
        // Every key/value pair takes >= 13 bytes (key length, type, 1-byte value).
        let n_kv = r.check_count(kv_count, 13, MAX_KV, "metadata count")?;

        let mut metadata = Vec::with_capacity(n_kv);
        let mut meta_index = HashMap::with_capacity(n_kv);
        // Where the previous value started: a wrong length inside it misplaces the next key,
        // so errors about a key name the value before it too.
        let mut previous: Option<(String, usize)> = None;
        for i in 0..n_kv {
            let at = r.pos;
            let hint = |e: Error| match (&previous, e) {
                (Some((what, start)), Error::Format(m)) => Error::Format(format!(
                    "{m} (if the length of the value before it, {what} at offset {start}, is wrong, this key is read from the wrong place)"
                )),
                (_, e) => e,
            };
            let key_bytes = r.string(MAX_KEY_LEN, &format!("metadata key #{i}")).map_err(hint)?;
            let key = std::str::from_utf8(key_bytes).map_err(|_| {
                hint(format_err(format!("metadata key #{i} at offset {at} ({} bytes) is not UTF-8", key_bytes.len())))
            })?;
            let what = format!("metadata `{key}`");
            let value_at = r.pos;
            let ty = r.value_type(&what)?;
            let value = r.value(ty, 0, &what)?;
            previous = Some((what.clone(), value_at));
            if meta_index.insert(key, metadata.len()).is_some() {
                return Err(format_err(format!("duplicate metadata key `{key}`")));
            }
            metadata.push((key, value));
        }

        let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(MetaValue::U32(a)) if *a != 0 && a.is_power_of_two() => u64::from(*a),
            Some(MetaValue::U32(a)) => return Err(format_err(format!("general.alignment {a} is not a power of two"))),
            Some(other) => {
                return Err(format_err(format!("general.alignment must be a u32, found {:?}", other.value_type())))
            }
        };

        struct Pending<'a> {
            name: &'a str,
            ggml_type: GgmlType,
            dims: Vec<usize>,
            offset: u64,
            size: u64,
        }
        let mut pending = Vec::with_capacity(n_tensors);
        let mut tensor_index = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name_bytes = r.string(MAX_NAME_LEN, &format!("name of tensor #{i}"))?;
            let name =
                std::str::from_utf8(name_bytes).map_err(|_| format_err(format!("name of tensor #{i} is not UTF-8")))?;
            let n_dims = r.u32(&format!("tensor `{name}` n_dims"))?;
            if n_dims == 0 || n_dims as usize > MAX_DIMS {
                return Err(format_err(format!("tensor `{name}` has {n_dims} dimensions (must be 1 to {MAX_DIMS})")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut n_elements: u64 = 1;
            for _ in 0..n_dims {
                let d = r.u64(&format!("tensor `{name}` dims"))?;
                if d > i64::MAX as u64 {
                    return Err(format_err(format!("tensor `{name}` has dimension {d}, too large")));
                }
                n_elements = n_elements
                    .checked_mul(d)
                    .filter(|&n| n <= i64::MAX as u64)
                    .ok_or_else(|| format_err(format!("tensor `{name}`: the element count overflows")))?;
                dims.push(usize::try_from(d).map_err(|_| {
                    format_err(format!("tensor `{name}` has dimension {d}, too large for this machine"))
                })?);
            }
            let type_id = r.u32(&format!("tensor `{name}` type"))?;
            let ggml_type = GgmlType::from_id(type_id)
                .ok_or_else(|| format_err(format!("tensor `{name}` has unknown or unsupported ggml type {type_id}")))?;
            let offset = r.u64(&format!("tensor `{name}` offset"))?;

            let block = ggml_type.block_size() as u64;
            let ne0 = dims[0] as u64;
            if !ne0.is_multiple_of(block) {
                return Err(format_err(format!(
                    "tensor `{name}`: innermost dimension {ne0} is not a multiple of the {ggml_type} block size {block}"
                )));
            }
            let size = (n_elements / block)
                .checked_mul(ggml_type.type_size() as u64)
                .ok_or_else(|| format_err(format!("tensor `{name}`: the byte size overflows")))?;
            if !offset.is_multiple_of(alignment) {
                return Err(format_err(format!(
                    "tensor `{name}` has offset {offset}, not a multiple of the alignment {alignment}"
                )));
            }
            if tensor_index.insert(name, i).is_some() {
                return Err(format_err(format!("duplicate tensor name `{name}`")));
            }
            pending.push(Pending { name, ggml_type, dims, offset, size });
        }

        let data_start =
            align_up(r.pos as u64, alignment).ok_or_else(|| format_err("the data section offset overflows"))?;
        let file_len = bytes.len() as u64;
        let mut tensors = Vec::with_capacity(pending.len());
        for p in pending {
            let start = data_start.checked_add(p.offset);
            let end = start.and_then(|s| s.checked_add(p.size));
            let (start, end) = match (start, end) {
                (Some(s), Some(e)) if e <= file_len => (s as usize, e as usize),
                _ => {
                    return Err(format_err(format!(
                        "tensor `{}` data (offset {}, {} bytes) lies outside the file ({} bytes, data section at {})",
                        p.name, p.offset, p.size, file_len, data_start
                    )))
                }
            };
            tensors.push(TensorInfo {
                name: p.name,
                ggml_type: p.ggml_type,
                dims: p.dims,
                offset: p.offset,
                data: &bytes[start..end],
            });
        }

        // No two tensors may share bytes.
        let mut ranges: Vec<(u64, u64, &str)> = tensors
            .iter()
            .filter(|t| !t.data.is_empty())
            .map(|t| (t.offset, t.offset + t.data.len() as u64, t.name))
            .collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(format_err(format!("tensors `{}` and `{}` overlap", w[0].2, w[1].2)));
            }
        }

        Ok(GgufFile {
            version,
            alignment,
            data_offset: data_start as usize,
            metadata,
            meta_index,
            tensors,
            tensor_index,
        })
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section in the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Every metadata key and value, in file order.
    pub fn metadata(&self) -> &[(&'a str, MetaValue<'a>)] {
        &self.metadata
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue<'a>> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&'a str> {
        self.get("general.architecture").and_then(|v| v.as_str())
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor with GGUF name `name` (e.g. `blk.0.attn_q.weight`).
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Decodes a tensor's bytes for the engine: F32, F16 and BF16 borrowed as they are,
    /// Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q4_K / Q5_K / Q6_K dequantized to f32. `shape` is
    /// the shape to report (same element count as `data`).
    pub(crate) fn decode<'b>(
        name: &str,
        ggml_type: GgmlType,
        shape: Vec<usize>,
        data: &'b [u8],
    ) -> Result<RawTensor<'b>> {
        let borrowed = |dtype| Ok(RawTensor { dtype, shape: shape.clone(), bytes: Cow::Borrowed(data) });
        match ggml_type {
            GgmlType::F32 => borrowed(DType::F32),
            GgmlType::F16 => borrowed(DType::F16),
            GgmlType::BF16 => borrowed(DType::BF16),
            t if t.can_dequantize() => {
                let values = types::dequantize(t, data).ok_or_else(|| {
                    Error::Weights(format!("tensor `{name}`: {t} data is not a whole number of blocks"))
                })?;
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                Ok(RawTensor { dtype: DType::F32, shape, bytes: Cow::Owned(bytes) })
            }
            t => Err(Error::Weights(format!(
                "tensor `{name}` has ggml type {t}, which saguaro cannot decode (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)"
            ))),
        }
    }

    /// A tensor decoded for the engine (see [`GgufFile::decode`]) with its row-major shape
    /// (GGUF dims reversed), under its GGUF name.
    pub fn read_tensor(&self, info: &TensorInfo<'a>) -> Result<RawTensor<'a>> {
        Self::decode(info.name, info.ggml_type, info.shape(), info.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = GGUF_MAGIC.to_vec();
        b.extend(version.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }

    #[test]
    fn empty_files_parse_and_bad_headers_do_not() {
        let bytes = header(3, 0, 0);
        let f = GgufFile::parse(&bytes).unwrap();
        assert_eq!((f.version(), f.alignment(), f.tensors().len()), (3, 32, 0));
        assert!(GgufFile::parse(&header(2, 0, 0)).is_ok());
        assert!(GgufFile::parse(b"GGU").is_err());
        assert!(GgufFile::parse(&header(3, 0, 0)[..20]).is_err());
        let err = GgufFile::parse(&header(0x0300_0000, 0, 0)).unwrap_err().to_string();
        assert!(err.contains("big-endian"), "{err}");
    }

    #[test]
    fn metadata_scalars_and_arrays_decode() {
        let mut b = header(3, 0, 2);
        b.extend(3u64.to_le_bytes());
        b.extend(b"abc");
        b.extend(ValueType::I16.id().to_le_bytes());
        b.extend((-5i16).to_le_bytes());
        b.extend(3u64.to_le_bytes());
        b.extend(b"arr");
        b.extend(ValueType::Array.id().to_le_bytes());
        b.extend(ValueType::U16.id().to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(7u16.to_le_bytes());
        b.extend(9u16.to_le_bytes());
        let f = GgufFile::parse(&b).unwrap();
        assert_eq!(f.get("abc"), Some(&MetaValue::I16(-5)));
        assert_eq!(f.get("abc").unwrap().as_u64(), None);
        assert_eq!(f.get("abc").unwrap().as_i64(), Some(-5));
        let arr = f.get("arr").unwrap().as_array().unwrap();
        assert_eq!(arr.iter().collect::<Vec<_>>(), vec![MetaValue::U16(7), MetaValue::U16(9)]);
        assert_eq!(arr.get(2), None);
    }
}
