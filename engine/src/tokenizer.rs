//! The model's tokenizer: its own tokenizer.json (stored in the `.cact`) through Hugging Face's
//! `tokenizers` crate, so every detail of the real file (pre-tokenizer regex, merges, added
//! tokens) is honoured exactly as in Python; built with the pure-Rust regex backend so the same
//! code runs in WebAssembly.
//!
//! - [`Tokenizer::encode`] never adds special tokens: chat prompts come from the template, which
//!   writes `<|startoftext|>` itself (LFM2's tokenizer would add another one otherwise). Special
//!   tokens written in the text (`<|im_start|>`) become their ids, as in transformers.
//! - [`Tokenizer::encode_special`] adds them as the tokenizer's post-processor says (for a
//!   tokenizer made from a GGUF: BOS/EOS per `add_bos_token` / `add_eos_token`, llama-tokenize's
//!   output).
//! - [`Tokenizer::prompt_bos`]: the BOS id a chat prompt must start with, when
//!   tokenizer_config.json says `add_bos_token: true` (llama.cpp's rule for rendered templates:
//!   BOS is added unless the template already wrote it; LFM2's config says false).
//! - [`StreamDecoder`] turns generated ids into text pieces that never split a UTF-8 character:
//!   a piece is released only when the decoded text no longer ends in an incomplete sequence
//!   (U+FFFD); [`StreamDecoder::finish`] releases whatever is left.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::format::CactFile;

/// The special-token names of tokenizer_config.json that templates may read.
const SPECIAL_TOKEN_KEYS: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/// A loaded tokenizer and the special tokens of its tokenizer_config.json.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `(bos_token, "<|startoftext|>")`, ... as transformers' `special_tokens_map`.
    special_tokens: Vec<(String, String)>,
    /// Ids of added tokens marked special (skipped when decoding response text).
    special_ids: Vec<u32>,
    /// BOS id when tokenizer_config.json has `add_bos_token: true` and its `bos_token` is a token.
    prompt_bos: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab", &self.vocab_size()).field("special_tokens", &self.special_tokens).finish()
    }
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Input(format!("tokenizer: {what}: {e}"))
}

impl Tokenizer {
    /// Loads tokenizer.json bytes and, when given, tokenizer_config.json bytes.
    pub fn from_json(tokenizer_json: &[u8], tokenizer_config: Option<&[u8]>) -> Result<Self> {
        // `tokenizers` panics on some syntax errors (its component deserializers `expect` a
        // parse); a syntax check first turns those into errors. Panics it may still have on
        // well-formed hostile files are caught where unwinding exists (native hosts).
        serde_json::from_slice::<serde::de::IgnoredAny>(tokenizer_json)
            .map_err(|e| Error::Format(format!("tokenizer.json is not valid JSON: {e}")))?;
        let parsed = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(tokenizer_json))
            .map_err(|_| Error::Format("tokenizer.json could not be loaded (the tokenizer library panicked)".into()))?;
        let inner = parsed.map_err(|e| Error::Format(format!("tokenizer.json is not a valid tokenizer: {e}")))?;
        let mut special_tokens = Vec::new();
        let mut add_bos = false;
        if let Some(bytes) = tokenizer_config {
            let config: Value = serde_json::from_slice(bytes)
                .map_err(|e| Error::Format(format!("tokenizer_config.json is not valid JSON: {e}")))?;
            for key in SPECIAL_TOKEN_KEYS {
                let token = match config.get(key) {
                    Some(Value::String(s)) => Some(s.clone()),
                    // Older files store AddedToken objects: {"content": "<s>", ...}.
                    Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_string),
                    _ => None,
                };
                if let Some(t) = token {
                    special_tokens.push((key.to_string(), t));
                }
            }
            add_bos = config.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false);
        }
        let prompt_bos = if add_bos {
            let bos = special_tokens.iter().find(|(k, _)| k == "bos_token").map(|(_, t)| t.as_str());
            let id = bos.and_then(|t| inner.token_to_id(t));
            Some(id.ok_or_else(|| {
                Error::Format("tokenizer_config.json: add_bos_token is true but bos_token is missing or not a token".into())
            })?)
        } else {
            None
        };
        let mut special_ids: Vec<u32> =
            inner.get_added_tokens_decoder().into_iter().filter(|(_, t)| t.special).map(|(id, _)| id).collect();
        special_ids.sort_unstable();
        Ok(Tokenizer { inner, special_tokens, special_ids, prompt_bos })
    }

    /// The tokenizer stored in a model file (`tokenizer.json`, `tokenizer_config.json`).
    pub fn from_cact(file: &CactFile) -> Result<Self> {
        let json = file.file("tokenizer.json").ok_or_else(|| {
            Error::Format("the model file has no tokenizer.json (convert it from a folder that has one)".into())
        })?;
        Self::from_json(json, file.file("tokenizer_config.json"))
    }

    /// Token ids of `text`, special tokens in the text included, none added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, false).map_err(|e| tok_err("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` with the special tokens the tokenizer adds (its post-processor: BOS
    /// and/or EOS), special tokens in the text included.
    pub fn encode_special(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, true).map_err(|e| tok_err("encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The BOS id a chat prompt starts with (`add_bos_token: true` in tokenizer_config.json).
    pub fn prompt_bos(&self) -> Option<u32> {
        self.prompt_bos
    }

    /// A rendered chat prompt's ids: [`Tokenizer::encode`], with BOS put first when
    /// [`Tokenizer::prompt_bos`] asks for it and the template did not already write it (so a
    /// template starting with `{{ bos_token }}` never gives two).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        if let Some(bos) = self.prompt_bos {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Text of `ids`; `skip_special` drops special tokens (`<|im_end|>`, ...).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(|e| tok_err("decode", e))
    }

    /// The id of a token string (`"<|im_end|>"`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// True for added tokens marked special.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.binary_search(&id).is_ok()
    }

    /// `bos_token`, `eos_token`, ... of tokenizer_config.json, for the chat template.
    pub fn special_tokens(&self) -> &[(String, String)] {
        &self.special_tokens
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Incremental detokenization of generated ids (special tokens skipped).
///
/// Keeps a window `ids[prefix..]`: the text of `ids[prefix..read]` was already released; when the
/// text of the whole window is longer, starts with it and does not end in U+FFFD (an
/// incomplete UTF-8 sequence), the difference is released and the window moves on. Decoding
/// a window (not the whole output) keeps each step cheap and lets byte-level and
/// sentencepiece-style decoders handle word boundaries as they do for the full text.
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
    /// Everything released so far.
    released: String,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one id; returns the text it completes (often empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read], true)?;
        let now = tok.decode(&self.ids[self.prefix..], true)?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            if let Some(delta) = now.strip_prefix(before.as_str()) {
                let delta = delta.to_string();
                self.prefix = self.read;
                self.read = self.ids.len();
                self.released.push_str(&delta);
                return Ok(delta);
            }
            // The window re-spelled its start (a decoder that trims a leading space): compare
            // the whole text with what was released instead.
            let all = tok.decode(&self.ids, true)?;
            if let Some(delta) = all.strip_prefix(self.released.as_str()) {
                let delta = delta.to_string();
                self.prefix = self.ids.len();
                self.read = self.ids.len();
                self.released.push_str(&delta);
                return Ok(delta);
            }
        }
        Ok(String::new())
    }

    /// Releases what is left at the end of generation (an incomplete sequence becomes U+FFFD).
    pub fn finish(&mut self, tok: &Tokenizer) -> Result<String> {
        let all = tok.decode(&self.ids, true)?;
        let tail = match all.strip_prefix(self.released.as_str()) {
            Some(t) => t.to_string(),
            None => {
                // Only reachable with decoders whose output depends on later ids in ways the
                // window cannot see; release the window's unreleased text instead.
                let before = tok.decode(&self.ids[self.prefix..self.read], true)?;
                let now = tok.decode(&self.ids[self.prefix..], true)?;
                now.strip_prefix(before.as_str()).unwrap_or_default().to_string()
            }
        };
        self.released.push_str(&tail);
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(tail)
    }

    /// Everything released so far.
    pub fn released(&self) -> &str {
        &self.released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GPT-2's byte-to-character map of byte-level BPE.
    fn byte_chars() -> Vec<char> {
        let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        let mut map = vec![' '; 256];
        for (b, c) in bs.iter().zip(&cs) {
            map[*b as usize] = char::from_u32(*c).unwrap();
        }
        map
    }

    /// A byte-level BPE tokenizer with no merges (one token per byte) and `<|im_end|>` = 256.
    fn byte_tokenizer() -> Tokenizer {
        let chars = byte_chars();
        let vocab: serde_json::Map<String, Value> =
            chars.iter().enumerate().map(|(i, c)| (c.to_string(), Value::from(i))).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{"id": 256, "content": "<|im_end|>", "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": []}
        });
        let config = br#"{"bos_token": {"content": "<s>"}, "eos_token": "<|im_end|>", "chat_template": "x"}"#;
        Tokenizer::from_json(json.to_string().as_bytes(), Some(config)).unwrap()
    }

    #[test]
    fn encodes_bytes_and_special_tokens() {
        let tok = byte_tokenizer();
        assert_eq!(tok.vocab_size(), 257);
        assert_eq!(tok.token_id("<|im_end|>"), Some(256));
        assert!(tok.is_special(256) && !tok.is_special(65));
        assert_eq!(tok.encode("A<|im_end|>").unwrap(), vec![65, 256]);
        assert_eq!(tok.encode("é").unwrap().len(), 2);
        assert_eq!(tok.decode(&[65, 256], false).unwrap(), "A<|im_end|>");
        assert_eq!(tok.decode(&[65, 256], true).unwrap(), "A");
        let names: Vec<_> = tok.special_tokens().iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(names, ["bos_token=<s>", "eos_token=<|im_end|>"]);
        assert!(Tokenizer::from_json(b"{}", None).is_err());
        assert!(Tokenizer::from_json(b"not json", None).is_err());
        assert!(Tokenizer::from_json(json_min().as_bytes(), Some(b"[")).is_err());
    }

    fn json_min() -> String {
        byte_tokenizer().inner().to_string(false).unwrap()
    }

    #[test]
    fn prompt_bos_follows_add_bos_token() {
        let json = json_min();
        let cfg = br#"{"bos_token": "<|im_end|>", "add_bos_token": true}"#;
        let tok = Tokenizer::from_json(json.as_bytes(), Some(cfg)).unwrap();
        assert_eq!(tok.prompt_bos(), Some(256));
        assert_eq!(tok.encode_prompt("A").unwrap(), vec![256, 65]);
        // A template that already wrote BOS does not get a second one.
        assert_eq!(tok.encode_prompt("<|im_end|>A").unwrap(), vec![256, 65]);
        let bad = br#"{"bos_token": "<nope>", "add_bos_token": true}"#;
        let err = Tokenizer::from_json(json.as_bytes(), Some(bad)).unwrap_err().to_string();
        assert!(err.contains("bos_token"), "{err}");
        let tok = byte_tokenizer();
        assert_eq!(tok.prompt_bos(), None);
        assert_eq!(tok.encode_prompt("A").unwrap(), vec![65]);
    }

    #[test]
    fn streaming_holds_incomplete_characters() {
        let tok = byte_tokenizer();
        let text = "a日🌵é b";
        let ids = tok.encode(text).unwrap();
        let mut d = StreamDecoder::new();
        let pieces: Vec<String> = ids.iter().map(|&id| d.push(&tok, id).unwrap()).collect();
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')));
        // 日 is 3 bytes: two empty pieces, then the character.
        assert_eq!(&pieces[1..4], ["", "", "日"]);
        assert_eq!(d.finish(&tok).unwrap(), "");
        // An unfinished character comes out as U+FFFD at the end, never before.
        let mut d = StreamDecoder::new();
        let bytes = tok.encode("x🌵").unwrap();
        assert_eq!(d.push(&tok, bytes[0]).unwrap(), "x");
        assert_eq!(d.push(&tok, bytes[1]).unwrap(), "");
        assert_eq!(d.push(&tok, bytes[2]).unwrap(), "");
        assert_eq!(d.finish(&tok).unwrap(), "\u{FFFD}");
        assert_eq!(d.released(), "x\u{FFFD}");
    }
}
