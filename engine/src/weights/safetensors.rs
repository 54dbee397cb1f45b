//! Safetensors checkpoints (single file or shards) read from bytes.
//!
//! Parsing and bounds checking are done by the `safetensors` crate; this module maps its
//! dtypes to ours and finds a tensor across shards. The host reads the files (or maps
//! them) and passes the bytes; the engine never touches the file system.

use std::collections::HashMap;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::{DType, RawTensor, TensorSource};
use crate::error::{Error, Result};

/// One checkpoint made of one or more safetensors shards.
pub struct SafetensorsSource<'a> {
    /// Parsed shards, each borrowing its bytes.
    shards: Vec<(String, SafeTensors<'a>)>,
    /// Tensor name -> index into `shards`.
    index: HashMap<String, usize>,
}

impl<'a> SafetensorsSource<'a> {
    /// Parses shards given as (file name, bytes). A tensor name appearing in two shards is
    /// an error: it would make the checkpoint ambiguous.
    pub fn new(shards: &[(String, &'a [u8])]) -> Result<Self> {
        let mut parsed = Vec::with_capacity(shards.len());
        let mut index = HashMap::new();
        for (i, (file, bytes)) in shards.iter().enumerate() {
            let st = SafeTensors::deserialize(bytes)
                .map_err(|e| Error::Format(format!("{file}: not a valid safetensors file: {e}")))?;
            for name in st.names() {
                if index.insert(name.to_string(), i).is_some() {
                    return Err(Error::Format(format!("{file}: tensor `{name}` appears in two shards")));
                }
            }
            parsed.push((file.clone(), st));
        }
        Ok(SafetensorsSource { shards: parsed, index })
    }

    /// All tensor names, sorted (for diagnostics and converters).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.index.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl TensorSource for SafetensorsSource<'_> {
    fn tensor(&self, name: &str) -> Result<Option<RawTensor<'_>>> {
        let Some(&shard) = self.index.get(name) else {
            return Ok(None);
        };
        let (file, st) = &self.shards[shard];
        let view = st
            .tensor(name)
            .map_err(|e| Error::Format(format!("{file}: tensor `{name}`: {e}")))?;
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(Error::Weights(format!(
                    "tensor `{name}` has dtype {other:?}; expected F32, F16 or BF16"
                )))
            }
        };
        let shape = view.shape().to_vec();
        // The crate checks that data length matches shape x dtype; check again, cheaply,
        // because everything downstream relies on it.
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::Format(format!("{file}: tensor `{name}` shape overflows")))?;
        if view.data().len() != expected {
            return Err(Error::Format(format!(
                "{file}: tensor `{name}` holds {} bytes, its shape needs {expected}",
                view.data().len()
            )));
        }
        Ok(Some(RawTensor { dtype, shape, bytes: std::borrow::Cow::Borrowed(view.data()) }))
    }
}

/// The shard file names listed by a `model.safetensors.index.json`, in first-seen order.
pub fn shard_files_from_index(index_json: &str) -> Result<Vec<String>> {
    let value: Value = serde_json::from_str(index_json)
        .map_err(|e| Error::Format(format!("model.safetensors.index.json is not valid JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Format("model.safetensors.index.json has no `weight_map` object".into()))?;
    let mut files: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::Format(format!("weight_map entry for `{tensor}` must be a file name"))
        })?;
        // Shards live beside the index: refuse paths that would leave the model folder.
        if file.is_empty() || file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(Error::Format(format!("weight_map entry for `{tensor}` names an invalid shard file `{file}`")));
        }
        if !files.iter().any(|f| f == file) {
            files.push(file.to_string());
        }
    }
    if files.is_empty() {
        return Err(Error::Format("model.safetensors.index.json lists no shards".into()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a safetensors file by hand: u64 header length, JSON header, data.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_f32_bf16_and_rejects_int() {
        let mut data = Vec::new();
        data.extend_from_slice(&1.5f32.to_le_bytes());
        data.extend_from_slice(&(-2.0f32).to_le_bytes());
        data.extend_from_slice(&half::bf16::from_f32(0.25).to_le_bytes());
        data.extend_from_slice(&7i64.to_le_bytes());
        let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},"c":{"dtype":"I64","shape":[1],"data_offsets":[10,18]}}"#;
        let bytes = file(header, &data);
        let src = SafetensorsSource::new(&[("m.safetensors".into(), &bytes)]).unwrap();
        assert_eq!(src.f32_tensor("a", &[2]).unwrap(), vec![1.5, -2.0]);
        assert_eq!(src.f32_tensor("b", &[1]).unwrap(), vec![0.25]);
        assert!(src.f32_tensor("a", &[1, 2]).unwrap_err().to_string().contains("shape"));
        assert!(src.f32_tensor("c", &[1]).unwrap_err().to_string().contains("dtype"));
        assert!(src.f32_tensor("zz", &[1]).unwrap_err().to_string().contains("missing tensor `zz`"));
    }

    #[test]
    fn truncated_files_are_errors() {
        let bytes = file(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0u8; 8]);
        for cut in 0..bytes.len() {
            assert!(SafetensorsSource::new(&[("m".into(), &bytes[..cut])]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn index_lists_shards_and_refuses_escapes() {
        let idx = r#"{"metadata":{},"weight_map":{"x":"a.safetensors","y":"b.safetensors","z":"a.safetensors"}}"#;
        assert_eq!(shard_files_from_index(idx).unwrap().len(), 2);
        assert!(shard_files_from_index(r#"{"weight_map":{"x":"../etc/passwd"}}"#).is_err());
        assert!(shard_files_from_index(r#"{"weight_map":{}}"#).is_err());
        assert!(shard_files_from_index("nope").is_err());
    }
}
