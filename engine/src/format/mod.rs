//! The `.cact` model file: one file with a header, a JSON manifest and aligned tensor data,
//! read in place. `docs/format.md` is the specification; this module implements exactly
//! that document. The reader validates everything before any use (docs/design.md §Errors).

mod writer;

pub use writer::{CactWriter, TensorPlan};

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::quant::{QuantKind, QuantShape};
use crate::storage::{check_blob_alignment, Blob, ByteRange};

/// `CACT` read as a little-endian u32 (bytes 43 41 43 54).
pub const MAGIC: u32 = 0x5443_4143;
/// The format version this code reads and writes.
pub const VERSION: u32 = 1;
/// Size of the fixed header.
pub const HEADER_BYTES: usize = 64;
/// Alignment of every tensor and file blob written by Saguaro (cache lines, AVX-512).
pub const ALIGNMENT: usize = 64;
/// Smallest alignment a reader accepts.
pub const MIN_ALIGNMENT: usize = 32;
/// Upper bound on the manifest size (it holds no tensor data), against hostile headers.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// Element type and encoding of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorDType {
    F32,
    F16,
    Bf16,
    /// INT8, groups of 32, f16 scales.
    Q8,
    /// INT4, groups of 32, f16 scales.
    Q4,
}

impl TensorDType {
    pub fn quant_kind(self) -> Option<QuantKind> {
        match self {
            TensorDType::Q8 => Some(QuantKind::Q8),
            TensorDType::Q4 => Some(QuantKind::Q4),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TensorDType::F32 => "f32",
            TensorDType::F16 => "f16",
            TensorDType::Bf16 => "bf16",
            TensorDType::Q8 => "q8",
            TensorDType::Q4 => "q4",
        }
    }
}

/// How a tensor's elements are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Row-major, no padding (f32, f16, bf16).
    Plain,
    /// Quantized, rows in blocks of 16, 4 k interleaved (see [`crate::quant`]).
    R16k4,
}

/// A byte range of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub offset: u64,
    pub length: u64,
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Hugging Face name, e.g. `model.layers.0.conv.in_proj.weight`.
    pub name: String,
    pub dtype: TensorDType,
    /// Logical shape (HF order); quantized tensors are 2-D `[rows, cols]`.
    pub shape: Vec<u64>,
    pub layout: Layout,
    /// The elements (quantized values for q8/q4).
    pub data: Span,
    /// f16 scales of q8/q4 tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scales: Option<Span>,
}

/// The name of the only checksum algorithm: XXH3, 64-bit, seed 0.
pub const CHECKSUM_ALGORITHM: &str = "xxh3-64";

/// Where a file's checksum table is (docs/format.md, "Checksums"). The table is one
/// little-endian u64 per region, in this order: the bytes before the end of the manifest
/// (header and manifest), each tensor of `tensors` in order (its data bytes, then its scale
/// bytes), then each auxiliary file in byte order of its name. Files written before checksums
/// existed have no table and stay readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksumTable {
    /// [`CHECKSUM_ALGORITHM`].
    pub algorithm: String,
    pub offset: u64,
    pub length: u64,
}

/// The number of table entries for `tensors` tensors and `files` auxiliary files.
pub fn checksum_count(tensors: usize, files: usize) -> u64 {
    1 + tensors as u64 + files as u64
}

/// What [`CactFile::verify_checksums`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumReport {
    /// Regions hashed (header and manifest, tensors, files).
    pub regions: usize,
    /// Regions whose hash differs from the table: `header and manifest`, `tensor `name``,
    /// `file `name``.
    pub mismatches: Vec<String>,
}

/// The JSON manifest that follows the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model's config.json, as the Hugging Face checkpoint had it.
    pub config: Value,
    /// The model family (`lfm2`, `llama`, `gemma3`): which tensors the file holds and which
    /// forward pass runs them. Absent in files written before other families existed, which
    /// are LFM2 (their config's `model_type` says so too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// generation_config.json, when the source had one.
    #[serde(default)]
    pub generation_config: Option<Value>,
    /// The chat template (Jinja source), when known.
    #[serde(default)]
    pub chat_template: Option<String>,
    /// Auxiliary files stored verbatim (tokenizer.json, tokenizer_config.json, ...).
    #[serde(default)]
    pub files: HashMap<String, Span>,
    /// What the file was made from and how (informational).
    #[serde(default)]
    pub producer: Option<Value>,
    /// The tensor table, in file order.
    pub tensors: Vec<TensorEntry>,
    /// The checksum table (absent in files written before checksums existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<ChecksumTable>,
}

/// Expected number of data bytes of a tensor, or None on overflow / bad shape.
pub fn expected_data_bytes(dtype: TensorDType, layout: Layout, shape: &[u64]) -> Option<(u64, Option<u64>)> {
    let numel = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
    match (dtype, layout) {
        (TensorDType::F32, Layout::Plain) => Some((numel.checked_mul(4)?, None)),
        (TensorDType::F16 | TensorDType::Bf16, Layout::Plain) => Some((numel.checked_mul(2)?, None)),
        (TensorDType::Q8 | TensorDType::Q4, Layout::R16k4) => {
            if shape.len() != 2 {
                return None;
            }
            let qs = QuantShape::new(usize::try_from(shape[0]).ok()?, usize::try_from(shape[1]).ok()?)?;
            let kind = dtype.quant_kind()?;
            Some((qs.data_bytes(kind) as u64, Some(qs.scale_bytes() as u64)))
        }
        _ => None,
    }
}

/// A validated `.cact` file over its bytes.
#[derive(Clone)]
pub struct CactFile {
    blob: Blob,
    pub version: u32,
    pub manifest: Manifest,
    index: HashMap<String, usize>,
    /// End of the manifest: the first checksum region is `[0, manifest_end)`.
    manifest_end: u64,
}

impl std::fmt::Debug for CactFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CactFile").field("version", &self.version).field("tensors", &self.manifest.tensors.len()).finish()
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// True when the bytes start with the `.cact` magic.
pub fn is_cact(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && read_u32(bytes, 0) == MAGIC
}

impl CactFile {
    /// Parses and validates a `.cact` file held in `blob`.
    pub fn parse(blob: Blob) -> Result<CactFile> {
        check_blob_alignment(&blob)?;
        let bytes: &[u8] = (*blob).as_ref();
        let file_len = bytes.len() as u64;
        if bytes.len() < HEADER_BYTES {
            return Err(Error::Format(format!("file is {} bytes, shorter than the {HEADER_BYTES}-byte header", bytes.len())));
        }
        let magic = read_u32(bytes, 0);
        if magic != MAGIC {
            return Err(Error::Format(format!("bad magic {magic:#010x}: not a .cact file (expected \"CACT\")")));
        }
        let version = read_u32(bytes, 4);
        if version != VERSION {
            return Err(Error::Format(format!(
                "format version {version} is not supported (this build reads version {VERSION})"
            )));
        }
        let header_bytes = read_u32(bytes, 8) as u64;
        let alignment = read_u32(bytes, 12) as u64;
        let manifest_offset = read_u64(bytes, 16);
        let manifest_length = read_u64(bytes, 24);
        let data_offset = read_u64(bytes, 32);
        let declared_len = read_u64(bytes, 40);
        if header_bytes != HEADER_BYTES as u64 {
            return Err(Error::Format(format!("header size {header_bytes} is not {HEADER_BYTES}")));
        }
        if !alignment.is_power_of_two() || alignment < MIN_ALIGNMENT as u64 || alignment > 1 << 16 {
            return Err(Error::Format(format!("alignment {alignment} must be a power of two in 32..=65536")));
        }
        if declared_len != file_len {
            return Err(Error::Format(format!(
                "file is {file_len} bytes but its header says {declared_len} (truncated or padded?)"
            )));
        }
        if manifest_offset < HEADER_BYTES as u64 || manifest_length > MAX_MANIFEST_BYTES {
            return Err(Error::Format(format!("manifest at {manifest_offset} of {manifest_length} bytes is invalid")));
        }
        let manifest_end = checked_end(manifest_offset, manifest_length, file_len, "manifest")?;
        if data_offset < manifest_end || !data_offset.is_multiple_of(alignment) || data_offset > file_len {
            return Err(Error::Format(format!("data offset {data_offset} is invalid")));
        }
        let manifest_bytes = &bytes[manifest_offset as usize..manifest_end as usize];
        let manifest_text = std::str::from_utf8(manifest_bytes)
            .map_err(|_| Error::Format("manifest is not UTF-8".into()))?;
        let manifest: Manifest = serde_json::from_str(manifest_text)
            .map_err(|e| Error::Format(format!("manifest is not valid: {e}")))?;

        // Every range: inside the data section, aligned, not overlapping another.
        let mut ranges: Vec<(u64, u64, String)> = Vec::new();
        let mut index = HashMap::new();
        for (i, t) in manifest.tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(Error::Format(format!("tensor `{}` appears twice", t.name)));
            }
            if t.shape.is_empty() || t.shape.len() > 4 || t.shape.contains(&0) {
                return Err(Error::Format(format!("tensor `{}` has invalid shape {:?}", t.name, t.shape)));
            }
            let (want_data, want_scales) = expected_data_bytes(t.dtype, t.layout, &t.shape).ok_or_else(|| {
                Error::Format(format!(
                    "tensor `{}`: dtype {} with layout {:?} and shape {:?} is not valid",
                    t.name,
                    t.dtype.name(),
                    t.layout,
                    t.shape
                ))
            })?;
            if t.data.length != want_data {
                return Err(Error::Format(format!(
                    "tensor `{}` has {} data bytes, its dtype and shape need {want_data}",
                    t.name, t.data.length
                )));
            }
            match (want_scales, t.scales) {
                (Some(want), Some(s)) if s.length == want => ranges.push((s.offset, s.length, format!("{} scales", t.name))),
                (None, None) => {}
                _ => return Err(Error::Format(format!("tensor `{}` has missing or wrong-sized scales", t.name))),
            }
            ranges.push((t.data.offset, t.data.length, t.name.clone()));
        }
        for (name, span) in &manifest.files {
            ranges.push((span.offset, span.length, format!("file {name}")));
        }
        if let Some(table) = &manifest.checksums {
            if table.algorithm != CHECKSUM_ALGORITHM {
                return Err(Error::Format(format!(
                    "checksum algorithm `{}` is not supported (this build reads {CHECKSUM_ALGORITHM})",
                    table.algorithm
                )));
            }
            let want = checksum_count(manifest.tensors.len(), manifest.files.len()) * 8;
            if table.length != want {
                return Err(Error::Format(format!(
                    "the checksum table has {} bytes; {} tensors and {} files need {want}",
                    table.length,
                    manifest.tensors.len(),
                    manifest.files.len()
                )));
            }
            ranges.push((table.offset, table.length, "checksum table".to_string()));
        }
        for (offset, length, what) in &ranges {
            if *offset < data_offset || offset % alignment != 0 {
                return Err(Error::Format(format!("{what}: offset {offset} is outside the data section or not {alignment}-aligned")));
            }
            checked_end(*offset, *length, file_len, what)?;
        }
        ranges.sort_unstable_by_key(|r| r.0);
        for pair in ranges.windows(2) {
            if pair[0].0 + pair[0].1 > pair[1].0 {
                return Err(Error::Format(format!("{} overlaps {}", pair[0].2, pair[1].2)));
            }
        }
        Ok(CactFile { blob, version, manifest, index, manifest_end })
    }

    /// The table entry of a tensor.
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.index.get(name).map(|&i| &self.manifest.tensors[i])
    }

    /// A view of a (validated) span.
    pub fn range(&self, span: Span) -> ByteRange {
        ByteRange::new(self.blob.clone(), span.offset as usize, span.length as usize)
            .expect("spans were validated against the file length")
    }

    /// The bytes of an auxiliary file (e.g. `tokenizer.json`).
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        let span = self.manifest.files.get(name)?;
        Some(&(*self.blob).as_ref()[span.offset as usize..(span.offset + span.length) as usize])
    }

    /// True when the file carries a checksum table.
    pub fn has_checksums(&self) -> bool {
        self.manifest.checksums.is_some()
    }

    /// Hashes every region and compares it with the checksum table. An error when the file has
    /// no table (written before checksums existed): its data cannot be verified.
    pub fn verify_checksums(&self) -> Result<ChecksumReport> {
        let table = self.manifest.checksums.as_ref().ok_or_else(|| {
            Error::Format(
                "the file has no checksums (written by a saguaro older than the checksum table): \
                 its structure is valid but its data cannot be verified; convert it again to add them"
                    .into(),
            )
        })?;
        let bytes: &[u8] = (*self.blob).as_ref();
        let stored = &bytes[table.offset as usize..(table.offset + table.length) as usize];
        let stored: Vec<u64> =
            stored.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let computed = region_hashes(bytes, &self.manifest, self.manifest_end);
        let mismatches: Vec<String> =
            computed.iter().zip(&stored).filter(|((_, got), want)| got != *want).map(|((what, _), _)| what.clone()).collect();
        Ok(ChecksumReport { regions: computed.len(), mismatches })
    }

    /// [`CactFile::verify_checksums`] as one result: an error naming the damaged regions.
    pub fn check_integrity(&self) -> Result<usize> {
        let report = self.verify_checksums()?;
        match report.mismatches.as_slice() {
            [] => Ok(report.regions),
            bad => {
                let shown: Vec<&str> = bad.iter().take(3).map(String::as_str).collect();
                let more = if bad.len() > 3 { format!(" and {} more", bad.len() - 3) } else { String::new() };
                Err(Error::Format(format!(
                    "checksum mismatch in {}{more}: the file is damaged (download or convert it again)",
                    shown.join(", ")
                )))
            }
        }
    }

    /// Total size of the file.
    pub fn len(&self) -> usize {
        (*self.blob).as_ref().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The hash of each checksum region of a validated file, in table order, with its name.
fn region_hashes(bytes: &[u8], manifest: &Manifest, manifest_end: u64) -> Vec<(String, u64)> {
    use xxhash_rust::xxh3::{xxh3_64, Xxh3};
    let slice = |s: &Span| &bytes[s.offset as usize..(s.offset + s.length) as usize];
    let mut out = Vec::with_capacity(checksum_count(manifest.tensors.len(), manifest.files.len()) as usize);
    out.push(("header and manifest".to_string(), xxh3_64(&bytes[..manifest_end as usize])));
    for t in &manifest.tensors {
        let mut h = Xxh3::new();
        h.update(slice(&t.data));
        if let Some(s) = &t.scales {
            h.update(slice(s));
        }
        out.push((format!("tensor `{}`", t.name), h.digest()));
    }
    let mut files: Vec<(&String, &Span)> = manifest.files.iter().collect();
    files.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (name, span) in files {
        out.push((format!("file `{name}`"), xxh3_64(slice(span))));
    }
    out
}

fn checked_end(offset: u64, length: u64, file_len: u64, what: &str) -> Result<u64> {
    match offset.checked_add(length) {
        Some(end) if end <= file_len => Ok(end),
        _ => Err(Error::Format(format!("{what}: range {offset}+{length} runs past the end of the {file_len}-byte file"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::AlignedBytes;

    /// A small file: two f32 tensors and one auxiliary file.
    fn small_file() -> Vec<u8> {
        let plan = [
            TensorPlan { name: "a".into(), dtype: TensorDType::F32, shape: vec![3] },
            TensorPlan { name: "b".into(), dtype: TensorDType::F32, shape: vec![2, 2] },
        ];
        let files = [("tokenizer.json".to_string(), b"{}".to_vec())];
        let mut w = CactWriter::begin(Vec::new(), serde_json::json!({"x": 1}), None, None, &files, None, &plan).unwrap();
        w.write_tensor("a", bytemuck::cast_slice(&[1.0f32, 2.0, 3.0]), None).unwrap();
        w.write_tensor("b", bytemuck::cast_slice(&[4.0f32, 5.0, 6.0, 7.0]), None).unwrap();
        w.finish().unwrap()
    }

    fn parse(bytes: &[u8]) -> Result<CactFile> {
        CactFile::parse(AlignedBytes::copy_from(bytes).into_blob())
    }

    #[test]
    fn written_files_verify_and_a_flipped_bit_is_named() {
        let bytes = small_file();
        let file = parse(&bytes).unwrap();
        assert!(file.has_checksums());
        assert_eq!(file.verify_checksums().unwrap(), ChecksumReport { regions: 4, mismatches: vec![] });
        assert_eq!(file.check_integrity().unwrap(), 4);

        // One bit of tensor `b`'s data.
        let b = file.entry("b").unwrap().data;
        let mut bad = bytes.clone();
        bad[b.offset as usize + 5] ^= 0x10;
        let file = parse(&bad).unwrap();
        assert_eq!(file.verify_checksums().unwrap().mismatches, vec!["tensor `b`".to_string()]);
        let err = file.check_integrity().unwrap_err().to_string();
        assert!(err.contains("checksum mismatch in tensor `b`"), "{err}");

        // One bit of the auxiliary file, then one of the stored table itself.
        let span = file.manifest.files["tokenizer.json"];
        let mut bad = bytes.clone();
        bad[span.offset as usize] ^= 1;
        assert_eq!(parse(&bad).unwrap().verify_checksums().unwrap().mismatches, vec!["file `tokenizer.json`".to_string()]);
        let table = file.manifest.checksums.clone().unwrap();
        let mut bad = bytes.clone();
        bad[table.offset as usize] ^= 1;
        assert_eq!(parse(&bad).unwrap().verify_checksums().unwrap().mismatches, vec!["header and manifest".to_string()]);
    }

    /// The same file as a writer without checksums made it: the manifest without `checksums`
    /// (same length, so every offset stays valid), the table's bytes left as zero padding.
    fn without_checksums(bytes: &[u8]) -> Vec<u8> {
        let file = parse(bytes).unwrap();
        let table = file.manifest.checksums.clone().unwrap();
        let len = read_u64(bytes, 24) as usize;
        let text = std::str::from_utf8(&bytes[HEADER_BYTES..HEADER_BYTES + len]).unwrap();
        let mut manifest: Value = serde_json::from_str(text).unwrap();
        manifest.as_object_mut().unwrap().remove("checksums");
        let mut new_text = serde_json::to_string(&manifest).unwrap();
        assert!(new_text.len() <= len);
        new_text.push_str(&" ".repeat(len - new_text.len()));
        let mut out = bytes.to_vec();
        out[HEADER_BYTES..HEADER_BYTES + len].copy_from_slice(new_text.as_bytes());
        out[table.offset as usize..(table.offset + table.length) as usize].fill(0);
        out
    }

    #[test]
    fn files_without_checksums_stay_readable() {
        let old = without_checksums(&small_file());
        let file = parse(&old).unwrap();
        assert!(!file.has_checksums());
        assert_eq!(file.range(file.entry("a").unwrap().data).as_f32(), &[1.0, 2.0, 3.0]);
        let err = file.verify_checksums().unwrap_err().to_string();
        assert!(err.contains("no checksums"), "{err}");
    }

    #[test]
    fn a_bad_checksum_table_is_refused() {
        let bytes = small_file();
        let file = parse(&bytes).unwrap();
        let len = read_u64(&bytes, 24) as usize;
        let text = std::str::from_utf8(&bytes[HEADER_BYTES..HEADER_BYTES + len]).unwrap().to_string();
        let table = file.manifest.checksums.clone().unwrap();
        for (from, to, needle) in [
            ("\"xxh3-64\"".to_string(), "\"md5-064\"".to_string(), "not supported"),
            (format!("\"length\":{}", table.length), format!("\"length\":{}", table.length - 8), "checksum table has"),
            (format!("\"offset\":{}", table.offset), format!("\"offset\":{}", table.offset + 64), "checksum table"),
        ] {
            assert_eq!(from.len(), to.len(), "{to}");
            assert!(text.contains(&from), "{from}");
            let mut bad = bytes.clone();
            bad[HEADER_BYTES..HEADER_BYTES + len].copy_from_slice(text.replacen(&from, &to, 1).as_bytes());
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{to}: {err}");
        }
    }
}
