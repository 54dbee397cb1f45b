//! Streaming `.cact` writer: plan every tensor's dtype and shape first (so offsets are
//! known and the manifest can precede the data), then write tensors one at a time. Peak
//! memory is one tensor, not the model.

use std::collections::HashMap;
use std::io::Write;

use serde_json::Value;

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use super::{
    checksum_count, expected_data_bytes, ChecksumTable, Layout, Manifest, Span, TensorDType, TensorEntry, ALIGNMENT,
    CHECKSUM_ALGORITHM, HEADER_BYTES, MAGIC, VERSION,
};
use crate::error::{Error, Result};

/// A tensor the writer will receive later.
#[derive(Debug, Clone)]
pub struct TensorPlan {
    pub name: String,
    pub dtype: TensorDType,
    pub shape: Vec<u64>,
}

impl TensorPlan {
    fn layout(&self) -> Layout {
        if self.dtype.quant_kind().is_some() {
            Layout::R16k4
        } else {
            Layout::Plain
        }
    }
}

/// Writes a `.cact` file to any byte sink, in order: header, manifest, auxiliary files,
/// then each planned tensor via [`CactWriter::write_tensor`], then the checksum table. Every
/// region is hashed as it goes out, so the table costs no second pass over the data.
pub struct CactWriter<W: Write> {
    out: W,
    /// Bytes written so far.
    pos: u64,
    tensors: Vec<TensorEntry>,
    next: usize,
    file_len: u64,
    table: ChecksumTable,
    /// Hash of the header and manifest, then of each tensor written so far.
    hashes: Vec<u64>,
    /// Hashes of the auxiliary files, in byte order of their names (they end the table).
    file_hashes: Vec<u64>,
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGNMENT as u64) * ALIGNMENT as u64
}

impl<W: Write> CactWriter<W> {
    /// Lays out the file and writes everything up to the first tensor.
    pub fn begin(
        out: W,
        config: Value,
        generation_config: Option<Value>,
        chat_template: Option<String>,
        files: &[(String, Vec<u8>)],
        producer: Option<Value>,
        plan: &[TensorPlan],
    ) -> Result<Self> {
        // The manifest's size depends on the offsets it contains and the offsets on its
        // size: compute with a placeholder data offset, then fix the point.
        let mut data_offset = 0u64;
        // Recorded so that readers need not guess the family from the config.
        let model_type = config.get("model_type").and_then(Value::as_str);
        let architecture = crate::config::Architecture::from_model_type(model_type).ok().map(|a| a.name().to_string());
        let (manifest_text, entries, file_spans, table, file_len) = loop {
            let mut cursor = data_offset;
            let mut file_spans = HashMap::new();
            for (name, bytes) in files {
                file_spans.insert(name.clone(), Span { offset: cursor, length: bytes.len() as u64 });
                cursor = align_up(cursor + bytes.len() as u64);
            }
            let mut entries = Vec::with_capacity(plan.len());
            for p in plan {
                let layout = p.layout();
                let (data_len, scale_len) = expected_data_bytes(p.dtype, layout, &p.shape).ok_or_else(|| {
                    Error::Input(format!("tensor `{}`: {} is not possible for shape {:?}", p.name, p.dtype.name(), p.shape))
                })?;
                let data = Span { offset: cursor, length: data_len };
                cursor = align_up(cursor + data_len);
                let scales = scale_len.map(|len| {
                    let s = Span { offset: cursor, length: len };
                    cursor = align_up(cursor + len);
                    s
                });
                entries.push(TensorEntry { name: p.name.clone(), dtype: p.dtype, shape: p.shape.clone(), layout, data, scales });
            }
            let table = ChecksumTable {
                algorithm: CHECKSUM_ALGORITHM.to_string(),
                offset: cursor,
                length: checksum_count(plan.len(), files.len()) * 8,
            };
            cursor = align_up(cursor + table.length);
            let manifest = Manifest {
                config: config.clone(),
                architecture: architecture.clone(),
                generation_config: generation_config.clone(),
                chat_template: chat_template.clone(),
                files: file_spans.clone(),
                producer: producer.clone(),
                tensors: entries.clone(),
                checksums: Some(table.clone()),
            };
            let text = serde_json::to_string(&manifest).map_err(|e| Error::Input(format!("manifest: {e}")))?;
            let needed = align_up(HEADER_BYTES as u64 + text.len() as u64);
            if needed == data_offset {
                break (text, entries, file_spans, table, cursor);
            }
            data_offset = needed.max(data_offset);
        };

        let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let file_hashes = sorted.iter().map(|(_, bytes)| xxh3_64(bytes)).collect();
        let hashes = Vec::with_capacity(plan.len() + 1);
        let mut w = CactWriter { out, pos: 0, tensors: entries, next: 0, file_len, table, hashes, file_hashes };
        let mut header = [0u8; HEADER_BYTES];
        header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..8].copy_from_slice(&VERSION.to_le_bytes());
        header[8..12].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(ALIGNMENT as u32).to_le_bytes());
        header[16..24].copy_from_slice(&(HEADER_BYTES as u64).to_le_bytes());
        header[24..32].copy_from_slice(&(manifest_text.len() as u64).to_le_bytes());
        header[32..40].copy_from_slice(&data_offset.to_le_bytes());
        header[40..48].copy_from_slice(&file_len.to_le_bytes());
        let mut head = Xxh3::new();
        head.update(&header);
        head.update(manifest_text.as_bytes());
        w.hashes.push(head.digest());
        w.put(&header)?;
        w.put(manifest_text.as_bytes())?;
        for (name, bytes) in files {
            w.pad_to(file_spans[name].offset)?;
            w.put(bytes)?;
        }
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|e| Error::Io(format!("writing model file: {e}")))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, offset: u64) -> Result<()> {
        if offset < self.pos {
            return Err(Error::Io("writer position ran past a planned offset".into()));
        }
        let zeros = [0u8; ALIGNMENT];
        while self.pos < offset {
            let n = ((offset - self.pos) as usize).min(ALIGNMENT);
            self.put(&zeros[..n])?;
        }
        Ok(())
    }

    /// The name of the tensor expected next, if any.
    pub fn next_tensor(&self) -> Option<&TensorEntry> {
        self.tensors.get(self.next)
    }

    /// Writes the next planned tensor: its data bytes and, for q8/q4, its scale bytes.
    pub fn write_tensor(&mut self, name: &str, data: &[u8], scales: Option<&[u8]>) -> Result<()> {
        let entry = self
            .tensors
            .get(self.next)
            .cloned()
            .ok_or_else(|| Error::Input(format!("tensor `{name}` was not planned")))?;
        if entry.name != name {
            return Err(Error::Input(format!("expected tensor `{}` next, got `{name}`", entry.name)));
        }
        if data.len() as u64 != entry.data.length || scales.map(|s| s.len() as u64) != entry.scales.map(|s| s.length) {
            return Err(Error::Input(format!("tensor `{name}`: byte sizes do not match its plan")));
        }
        let mut hash = Xxh3::new();
        self.pad_to(entry.data.offset)?;
        self.put(data)?;
        hash.update(data);
        if let (Some(span), Some(bytes)) = (entry.scales, scales) {
            self.pad_to(span.offset)?;
            self.put(bytes)?;
            hash.update(bytes);
        }
        self.hashes.push(hash.digest());
        self.next += 1;
        Ok(())
    }

    /// Checks that every planned tensor was written, writes the checksum table, pads to the
    /// planned length and returns the sink.
    pub fn finish(mut self) -> Result<W> {
        if let Some(missing) = self.tensors.get(self.next) {
            return Err(Error::Input(format!("tensor `{}` was planned but never written", missing.name)));
        }
        self.pad_to(self.table.offset)?;
        let table: Vec<u8> = self.hashes.iter().chain(&self.file_hashes).flat_map(|h| h.to_le_bytes()).collect();
        debug_assert_eq!(table.len() as u64, self.table.length);
        self.put(&table)?;
        self.pad_to(self.file_len)?;
        self.out.flush().map_err(|e| Error::Io(format!("writing model file: {e}")))?;
        Ok(self.out)
    }
}
