//! Model bytes held in place (docs/design.md §Bytes): a memory map on native hosts, a buffer
//! in linear memory in WebAssembly. Weights are views into these bytes, never copies.

use std::sync::Arc;

use crate::error::{Error, Result};

/// The bytes of a whole model file, shared by every weight view into it.
pub type Blob = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// Alignment every blob must have so that f32 tensors (at 64-byte file offsets) can be
/// read as `&[f32]` in place.
pub const BLOB_ALIGN: usize = 8;

/// A range of a blob: one tensor's data or scales.
#[derive(Clone)]
pub struct ByteRange {
    blob: Blob,
    start: usize,
    len: usize,
}

impl ByteRange {
    /// A view of `blob[start..start+len]`; the range must lie inside the blob.
    pub fn new(blob: Blob, start: usize, len: usize) -> Result<Self> {
        let total = (*blob).as_ref().len();
        match start.checked_add(len) {
            Some(end) if end <= total => Ok(ByteRange { blob, start, len }),
            _ => Err(Error::Format(format!("range {start}+{len} is outside the {total}-byte file"))),
        }
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &(*self.blob).as_ref()[self.start..self.start + self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes as f32 values. The format guarantees 4-byte alignment (64-byte offsets in
    /// an 8-byte aligned blob) and a length multiple of 4; both are checked when the
    /// model is opened, so this cannot fail afterwards.
    #[inline]
    pub fn as_f32(&self) -> &[f32] {
        bytemuck::cast_slice(self.bytes())
    }
}

impl std::fmt::Debug for ByteRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteRange({}..{})", self.start, self.start + self.len)
    }
}

/// An owned byte buffer aligned to 8 bytes: for model files read into memory (WebAssembly,
/// tests, in-memory conversion), where a plain `Vec<u8>` guarantees no alignment.
#[derive(Clone, Default)]
pub struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    /// A zero-filled buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        AlignedBytes { words: vec![0u64; len.div_ceil(8)], len }
    }

    /// Copies `bytes` into an aligned buffer.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut out = Self::zeroed(bytes.len());
        out.as_mut_slice().copy_from_slice(bytes);
        out
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[..self.len]
    }

    /// Makes the buffer a shareable blob.
    pub fn into_blob(self) -> Blob {
        Arc::new(self)
    }
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

/// Checks that a blob can hold tensors read in place.
pub fn check_blob_alignment(blob: &Blob) -> Result<()> {
    let ptr = (**blob).as_ref().as_ptr() as usize;
    if !ptr.is_multiple_of(BLOB_ALIGN) {
        return Err(Error::Format(format!(
            "model bytes start at an address not aligned to {BLOB_ALIGN} bytes; load them into an AlignedBytes buffer"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_bounds_checked_and_aligned_buffers_work() {
        let mut buf = AlignedBytes::zeroed(12);
        buf.as_mut_slice()[4..8].copy_from_slice(&1.5f32.to_le_bytes());
        let blob = buf.into_blob();
        check_blob_alignment(&blob).unwrap();
        let r = ByteRange::new(blob.clone(), 4, 4).unwrap();
        assert_eq!(r.as_f32(), &[1.5]);
        assert!(ByteRange::new(blob.clone(), 8, 5).is_err());
        assert!(ByteRange::new(blob, usize::MAX, 2).is_err());
    }
}
