//! The tokenizer and chat template of a GGUF file (`tokenizer.ggml.*`, `tokenizer.chat_template`),
//! rebuilt as a Hugging Face `tokenizer.json` + `tokenizer_config.json`, so that the engine's
//! ordinary tokenizer path (the `tokenizers` crate) gives the ids llama.cpp gives for the same
//! file, and a `.cact` converted from a GGUF carries its own tokenizer.
//!
//! What llama.cpp does (src/llama-vocab.cpp, read for these facts) and how it is expressed here:
//!
//! - **`gpt2`** (byte-level BPE): text is cut by a list of regexes chosen by `tokenizer.ggml.pre`
//!   (each regex splits every piece into its matches and the gaps between them, both kept), each
//!   piece is mapped to GPT-2's byte characters, then merged by the rank of `tokenizer.ggml.merges`
//!   (lowest rank first, leftmost on ties). Here: a `Sequence` of `Split` pre-tokenizers
//!   (behaviour `Isolated`) and `ByteLevel` without its own regex, a `BPE` model with the merges in
//!   file order. Some pre-tokenizer types (`llama-bpe`, `lfm2`, ...) take a whole piece as one
//!   token when the vocabulary has it (`ignore_merges`) and add BOS by default.
//! - **`llama`** (SentencePiece BPE): a space is prepended to every run of plain text that starts
//!   the input or follows a special token (when `tokenizer.ggml.add_space_prefix`, default true),
//!   spaces become `▁`, then adjacent symbols are merged while their concatenation is a token,
//!   highest `tokenizer.ggml.scores` first; symbols that are no token become `<0xXX>` byte tokens.
//!   Here: normalizers `Prepend("▁")` + `Replace(" ", "▁")` (run on each piece between special
//!   tokens, as llama.cpp does), a `BPE` model with `byte_fallback` whose merges are every split
//!   `left + right = token` with both halves in the vocabulary, ordered by the token's score.
//! - **Special tokens**: tokens typed CONTROL, USER_DEFINED or UNKNOWN are matched in the text
//!   before anything else (added tokens, never normalized); CONTROL and UNKNOWN are `special`
//!   (dropped when decoding with special tokens skipped), USER_DEFINED are not.
//! - **BOS/EOS**: `tokenizer.ggml.{bos,eos,unknown,padding,eot,eom}_token_id` (an id outside the
//!   vocabulary is ignored, as llama.cpp does, falling back to its defaults: SentencePiece bos 1,
//!   eos 2, unk 0; BPE bos = eos = 11), `tokenizer.ggml.add_bos_token` / `add_eos_token` (defaults:
//!   SentencePiece adds BOS; BPE only for the llama3-style types). They become a
//!   `TemplateProcessing` post-processor (so `encode(text, add_special_tokens=true)` is
//!   `llama-tokenize`'s output) and `add_bos_token` / `add_eos_token` in tokenizer_config.json.
//!
//! Every metadata read is checked: a missing or mistyped key, an array shorter than the
//! vocabulary, duplicate token texts, a vocabulary or merge list over the caps: a clear
//! `Error::Format`, never a panic.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use saguaro_engine::Result;

use super::{format_err, GgufFile, MetaArray, MetaValue, ValueType};

/// Most tokens a vocabulary may have (real ones: 32k to 262k).
pub const MAX_TOKENS: usize = 1 << 22;
/// Most merges a BPE vocabulary may have (real ones: up to ~500k).
pub const MAX_MERGES: usize = 1 << 23;
/// SentencePiece tokens longer than this (bytes) get no merges derived (real pieces are at most
/// a few dozen bytes; deriving merges costs the square of the length).
pub const MAX_MERGEABLE_TOKEN_BYTES: usize = 512;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> Self {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            // llama.cpp maps every other value to "undefined" (an ordinary token).
            _ => TokenType::Undefined,
        }
    }

    /// Matched in the text before tokenization (llama.cpp's special-token cache).
    fn is_matched_first(self) -> bool {
        matches!(self, TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
    }
}

/// The vocabulary type of `tokenizer.ggml.model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VocabKind {
    /// `gpt2`: byte-level BPE with merges; `pre` is `tokenizer.ggml.pre` ("default" if absent).
    Bpe { pre: String },
    /// `llama`: SentencePiece BPE with scores and byte fallback.
    Spm,
}

/// The tokenizer files made from a GGUF's metadata.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    pub kind: VocabKind,
    /// A Hugging Face tokenizer.json.
    pub tokenizer_json: String,
    /// A tokenizer_config.json: special tokens, `add_bos_token`, `add_eos_token`, chat template.
    pub tokenizer_config: Value,
    /// `tokenizer.chat_template`, when present.
    pub chat_template: Option<String>,
    pub n_tokens: usize,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub unk_id: Option<u32>,
    /// Ids that end generation as llama.cpp sees them: eos, eot, eom and the tokens it recognises
    /// by their text (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, ...).
    pub eog_ids: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// Merges of the file that could not be kept (a half or the result missing from the
    /// vocabulary, or a repeated pair); llama.cpp keeps them but they cannot produce a token.
    pub skipped_merges: usize,
}

impl GgufTokenizer {
    /// A generation_config.json with the special ids (what `saguaro convert` stores).
    pub fn generation_config(&self) -> Value {
        let mut g = Map::new();
        if let Some(b) = self.bos_id {
            g.insert("bos_token_id".into(), b.into());
        }
        if !self.eog_ids.is_empty() {
            g.insert("eos_token_id".into(), self.eog_ids.clone().into());
        }
        if let Some(p) = self.pad_id {
            g.insert("pad_token_id".into(), p.into());
        }
        Value::Object(g)
    }

    /// The tokenizer.json and tokenizer_config.json bytes.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        vec![
            ("tokenizer.json".to_string(), self.tokenizer_json.as_bytes().to_vec()),
            ("tokenizer_config.json".to_string(), self.tokenizer_config.to_string().into_bytes()),
        ]
    }

    /// Loads the tokenizer into the engine.
    pub fn load(&self) -> Result<saguaro_engine::Tokenizer> {
        let config = self.tokenizer_config.to_string();
        saguaro_engine::Tokenizer::from_json(self.tokenizer_json.as_bytes(), Some(config.as_bytes()))
    }
}

/// How llama.cpp pre-tokenizes one `tokenizer.ggml.pre` type of `gpt2` vocabulary.
#[derive(Debug, Clone, Copy)]
struct PreSpec {
    regexes: &'static [&'static str],
    /// A piece that is a token as a whole is taken as is.
    ignore_merges: bool,
    /// BOS is added unless `tokenizer.ggml.add_bos_token` says otherwise.
    add_bos: bool,
    /// Without a `tokenizer.ggml.bos_token_id` there is no BOS (not the BPE default 11).
    no_default_bos: bool,
    /// llama.cpp's `clean_spaces` (detokenization cleanup), recorded as
    /// `clean_up_tokenization_spaces`.
    clean_spaces: bool,
}

// The regexes below are llama.cpp's, verbatim (its adaptations of the tokenizer.json patterns,
// e.g. `(?i:'s|...)` spelled out), so that the splits are the ones it makes.
const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const TEKKEN_RE: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_RE: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const SEED_CODER_RE: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
const BAILING_RE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const BLOOM_RE: &str = " ?[^(\\s|.,!?…。，、।۔،)]+";
const DEEPSEEK3_RES: [&str; 3] = [
    r"\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];

/// llama.cpp's pre-tokenizer for `tokenizer.ggml.pre`, or None for types not supported here.
fn pre_spec(pre: &str) -> Option<PreSpec> {
    let spec = |regexes: &'static [&'static str]| PreSpec {
        regexes,
        ignore_merges: false,
        add_bos: false,
        no_default_bos: false,
        clean_spaces: true,
    };
    Some(match pre {
        "default" => spec(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2_RE, r"\p{N}+", "[0-9][0-9][0-9]"]),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
        | "jina-v5-nano" => PreSpec { ignore_merges: true, add_bos: true, ..spec(&[LLAMA3_RE]) },
        "dbrx" | "smaug-bpe" => spec(&[LLAMA3_RE]),
        "chatglm-bpe" => PreSpec { no_default_bos: true, ..spec(&[LLAMA3_RE]) },
        "glm4" | "glm5" => PreSpec { no_default_bos: true, ignore_merges: true, ..spec(&[LLAMA3_RE]) },
        "deepseek-coder" => PreSpec {
            clean_spaces: false,
            ..spec(&["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+", r"\p{N}"])
        },
        "deepseek-v3" | "hunyuan-dense" | "joyai-llm" | "hy_v4" => {
            PreSpec { clean_spaces: false, ..spec(&DEEPSEEK3_RES) }
        }
        "falcon" => spec(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2_RE, "[0-9][0-9][0-9]"]),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
        | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4" => spec(&[GPT2_RE]),
        "trillion" | "granite-docling" => PreSpec { clean_spaces: false, ..spec(&[GPT2_RE]) },
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => spec(&[r"\p{N}", GPT2_RE]),
        "smollm" | "command-r" => PreSpec { clean_spaces: false, ..spec(&[r"\p{N}", GPT2_RE]) },
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
            PreSpec { clean_spaces: false, ..spec(&[QWEN2_RE]) }
        }
        "stablelm2" | "megrez" => spec(&[QWEN2_RE]),
        "qwen35" => PreSpec { clean_spaces: false, ..spec(&[QWEN35_RE]) },
        "poro-chat" => PreSpec { clean_spaces: false, ..spec(&[BLOOM_RE]) },
        "bloom" | "gpt3-finnish" => spec(&[BLOOM_RE]),
        "viking" => PreSpec { clean_spaces: false, ..spec(&[BLOOM_RE, r"\p{N}"]) },
        "tekken" => PreSpec { clean_spaces: false, ignore_merges: true, add_bos: true, ..spec(&[TEKKEN_RE]) },
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => {
            PreSpec { clean_spaces: false, ..spec(&[GPT4O_RE]) }
        }
        "seed-coder" => PreSpec { clean_spaces: false, ..spec(&[SEED_CODER_RE]) },
        "bailingmoe" | "bailingmoe2" | "llada-moe" => PreSpec { clean_spaces: false, ..spec(&[BAILING_RE]) },
        "grok-2" => PreSpec { clean_spaces: false, ..spec(&[QWEN2_RE]) },
        _ => return None,
    })
}

/// Texts llama.cpp treats as end of generation wherever they are in the vocabulary.
const EOG_TEXTS: [&str; 22] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Typed, bounds-checked reads of `tokenizer.*` metadata.
struct TokMeta<'f, 'a>(&'f GgufFile<'a>);

impl<'a> TokMeta<'_, 'a> {
    fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| format_err(format!("metadata `{key}` must be a UTF-8 string, found {:?}", v.value_type()))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| format_err(format!("metadata `{key}` must be a bool, found {:?}", v.value_type()))),
        }
    }

    /// A token id; like llama.cpp, an id outside the vocabulary is ignored (None).
    fn token_id(&self, key: &str, n_tokens: usize) -> Result<Option<u32>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => {
                let id = v.as_u64().ok_or_else(|| {
                    format_err(format!("metadata `{key}` must be a non-negative integer, found {v:?}"))
                })?;
                Ok(u32::try_from(id).ok().filter(|&id| (id as usize) < n_tokens))
            }
        }
    }

    fn array(&self, key: &str) -> Result<Option<&MetaArray<'a>>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(a)) => Ok(Some(a)),
            Some(v) => Err(format_err(format!("metadata `{key}` must be an array, found {:?}", v.value_type()))),
        }
    }

    /// An array of at least `n` numbers, as f64: integers, or (`floats`) f32/f64/i32 values.
    fn numbers(&self, key: &str, n: usize, floats: bool) -> Result<Option<Vec<f64>>> {
        let Some(a) = self.array(key)? else { return Ok(None) };
        let elem = a.elem_type();
        use ValueType::*;
        let ok = if floats {
            matches!(elem, F32 | F64 | I32)
        } else {
            matches!(elem, I8 | U8 | I16 | U16 | I32 | U32 | I64 | U64)
        };
        let want = if floats { "float" } else { "integer" };
        if !ok {
            return Err(format_err(format!("metadata `{key}` must be an array of {want} values, found {elem:?} elements")));
        }
        if a.len() < n {
            return Err(format_err(format!("metadata `{key}` has {} entries but the vocabulary has {n} tokens", a.len())));
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let v = a
                .get(i)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| format_err(format!("metadata `{key}`: entry {i} is not a number")))?;
            out.push(v);
        }
        Ok(Some(out))
    }

    /// An array of UTF-8 strings.
    fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(a) = self.array(key)? else { return Ok(None) };
        let MetaArray::Strings(items) = a else {
            return Err(format_err(format!("metadata `{key}` must be an array of strings, found {:?} elements", a.elem_type())));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                std::str::from_utf8(s).map_err(|_| format_err(format!("metadata `{key}`: entry {i} is not valid UTF-8")))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

/// One `Split` pre-tokenizer of a regex, pieces and gaps kept (llama.cpp's regex split).
fn split_isolated(regex: &str) -> Value {
    json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
}

fn added_token(id: usize, content: &str, special: bool) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": special})
}

/// A `TemplateProcessing` post-processor adding BOS and/or EOS, or null when neither is added.
fn post_processor(bos: Option<(u32, &str)>, eos: Option<(u32, &str)>) -> Value {
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let piece = |seq: &str, type_id: u32| {
        let mut items = Vec::new();
        if let Some((_, t)) = bos {
            items.push(json!({"SpecialToken": {"id": t, "type_id": type_id}}));
        }
        items.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
        if let Some((_, t)) = eos {
            items.push(json!({"SpecialToken": {"id": t, "type_id": type_id}}));
        }
        items
    };
    let single = piece("A", 0);
    let mut pair = single.clone();
    pair.extend(piece("B", 1));
    let mut specials = Map::new();
    for (id, t) in bos.into_iter().chain(eos) {
        specials.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}

impl<'a> GgufFile<'a> {
    /// The tokenizer of this file's `tokenizer.ggml.*` metadata (see the module docs).
    pub fn tokenizer(&self) -> Result<GgufTokenizer> {
        let meta = TokMeta(self);
        let model = meta
            .string("tokenizer.ggml.model")?
            .ok_or_else(|| format_err("metadata `tokenizer.ggml.model` is missing: the file has no tokenizer"))?;
        let kind = match model {
            "gpt2" => VocabKind::Bpe { pre: meta.string("tokenizer.ggml.pre")?.unwrap_or("default").to_string() },
            "llama" => VocabKind::Spm,
            other => {
                return Err(format_err(format!(
                    "tokenizer.ggml.model `{other}` is not supported (supported: `gpt2` byte-level BPE, `llama` SentencePiece BPE)"
                )))
            }
        };
        let pre = match &kind {
            VocabKind::Bpe { pre } => Some(pre_spec(pre).ok_or_else(|| {
                format_err(format!("tokenizer.ggml.pre `{pre}` is not a pre-tokenizer type saguaro knows"))
            })?),
            VocabKind::Spm => None,
        };

        // Tokens: empty texts are renamed as llama.cpp does; duplicates are refused (llama.cpp
        // asserts that every text is unique).
        let raw_tokens = meta
            .strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| format_err("metadata `tokenizer.ggml.tokens` is missing"))?;
        let n = raw_tokens.len();
        if n == 0 || n > MAX_TOKENS {
            return Err(format_err(format!("the vocabulary has {n} tokens (expected 1 to {MAX_TOKENS})")));
        }
        let tokens: Vec<std::borrow::Cow<'a, str>> = raw_tokens
            .iter()
            .enumerate()
            .map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]").into() } else { (*t).into() })
            .collect();
        let mut index: HashMap<&str, u32> = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            if let Some(prev) = index.insert(t.as_ref(), i as u32) {
                return Err(format_err(format!("tokens {prev} and {i} have the same text {t:?}")));
            }
        }
        let types: Vec<TokenType> = match meta.numbers("tokenizer.ggml.token_type", n, false)? {
            Some(v) => v.iter().map(|&t| TokenType::from_i64(t as i64)).collect(),
            None => vec![TokenType::Normal; n],
        };
        let scores: Vec<f32> = match meta.numbers("tokenizer.ggml.scores", n, true)? {
            Some(v) => v.iter().map(|&s| s as f32).collect(),
            None => vec![0.0; n],
        };

        // Special ids: defaults per vocabulary type, then the metadata.
        let in_vocab = |id: u32| ((id as usize) < n).then_some(id);
        let (mut bos, mut eos, mut unk) = match (&kind, pre) {
            (VocabKind::Spm, _) => (in_vocab(1), in_vocab(2), in_vocab(0)),
            (VocabKind::Bpe { .. }, Some(p)) if p.no_default_bos => (None, in_vocab(11), None),
            (VocabKind::Bpe { .. }, _) => (in_vocab(11), in_vocab(11), None),
        };
        bos = meta.token_id("tokenizer.ggml.bos_token_id", n)?.or(bos);
        eos = meta.token_id("tokenizer.ggml.eos_token_id", n)?.or(eos);
        unk = meta.token_id("tokenizer.ggml.unknown_token_id", n)?.or(unk);
        let pad = meta.token_id("tokenizer.ggml.padding_token_id", n)?;
        let eot = meta.token_id("tokenizer.ggml.eot_token_id", n)?;
        let eom = meta.token_id("tokenizer.ggml.eom_token_id", n)?;
        let (default_bos, default_eos) = match &kind {
            VocabKind::Spm => (true, false),
            VocabKind::Bpe { .. } => (pre.is_some_and(|p| p.add_bos), false),
        };
        let add_bos = meta.bool("tokenizer.ggml.add_bos_token")?.unwrap_or(default_bos);
        let add_eos = meta.bool("tokenizer.ggml.add_eos_token")?.unwrap_or(default_eos);
        if add_bos && bos.is_none() {
            return Err(format_err("tokenizer.ggml.add_bos_token is true but the file names no BOS token"));
        }
        if add_eos && eos.is_none() {
            return Err(format_err("tokenizer.ggml.add_eos_token is true but the file names no EOS token"));
        }
        let mut eog_ids: Vec<u32> = eos.into_iter().chain(eot).chain(eom).collect();
        eog_ids.extend(EOG_TEXTS.iter().filter_map(|t| index.get(t).copied()));
        eog_ids.sort_unstable();
        eog_ids.dedup();

        let text = |id: Option<u32>| id.map(|i| tokens[i as usize].as_ref());
        let chat_template = meta.string("tokenizer.chat_template")?.map(str::to_string);

        // The tokenizer.json.
        let added: Vec<Value> = (0..n)
            .filter(|&i| types[i].is_matched_first())
            .map(|i| added_token(i, &tokens[i], types[i] != TokenType::UserDefined))
            .collect();
        let vocab: Map<String, Value> = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), Value::from(i))).collect();
        let mut skipped_merges = 0usize;
        let (normalizer, pre_tokenizer, model, decoder, clean_spaces) = match (&kind, pre) {
            (VocabKind::Bpe { .. }, Some(p)) => {
                let merges = self.bpe_merges(&index, &mut skipped_merges)?;
                let mut pretoks: Vec<Value> = p.regexes.iter().map(|r| split_isolated(r)).collect();
                pretoks.push(json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}));
                let model = json!({
                    "type": "BPE", "dropout": null, "unk_token": text(unk), "continuing_subword_prefix": null,
                    "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                    "ignore_merges": p.ignore_merges, "vocab": vocab, "merges": merges,
                });
                let decoder = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
                (Value::Null, json!({"type": "Sequence", "pretokenizers": pretoks}), model, decoder, p.clean_spaces)
            }
            _ => {
                let add_space_prefix = meta.bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
                let merges = spm_merges(&tokens, &scores, &index);
                let mut norms = Vec::new();
                if add_space_prefix {
                    norms.push(json!({"type": "Prepend", "prepend": "▁"}));
                }
                norms.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"}));
                let model = json!({
                    "type": "BPE", "dropout": null, "unk_token": text(unk), "continuing_subword_prefix": null,
                    "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                    "vocab": vocab, "merges": merges,
                });
                let mut decoders = vec![
                    json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
                    json!({"type": "ByteFallback"}),
                    json!({"type": "Fuse"}),
                ];
                if add_space_prefix {
                    decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
                }
                (
                    json!({"type": "Sequence", "normalizers": norms}),
                    Value::Null,
                    model,
                    json!({"type": "Sequence", "decoders": decoders}),
                    false,
                )
            }
        };
        let bos_pair = bos.filter(|_| add_bos).map(|b| (b, tokens[b as usize].as_ref()));
        let eos_pair = eos.filter(|_| add_eos).map(|e| (e, tokens[e as usize].as_ref()));
        let tokenizer = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": normalizer, "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor(bos_pair, eos_pair), "decoder": decoder, "model": model,
        });
        let tokenizer_json = serde_json::to_string(&tokenizer)
            .map_err(|e| format_err(format!("cannot write the tokenizer as JSON: {e}")))?;

        let mut config = Map::new();
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        for (key, id) in [("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)] {
            if let Some(t) = text(id) {
                config.insert(key.into(), t.into());
            }
        }
        config.insert("add_bos_token".into(), add_bos.into());
        config.insert("add_eos_token".into(), add_eos.into());
        config.insert("clean_up_tokenization_spaces".into(), clean_spaces.into());
        if let Some(t) = &chat_template {
            config.insert("chat_template".into(), t.clone().into());
        }

        Ok(GgufTokenizer {
            kind,
            tokenizer_json,
            tokenizer_config: Value::Object(config),
            chat_template,
            n_tokens: n,
            bos_id: bos,
            eos_id: eos,
            pad_id: pad,
            unk_id: unk,
            eog_ids,
            add_bos,
            add_eos,
            skipped_merges,
        })
    }

    /// `tokenizer.ggml.merges` as `[left, right]` pairs in rank order. Like llama.cpp, a merge
    /// is cut at its first space after the first byte and a repeated pair keeps its first rank;
    /// merges that cannot produce a token (a half or the result not in the vocabulary) are
    /// counted in `skipped` and left out (the `tokenizers` BPE model refuses them).
    fn bpe_merges(&self, index: &HashMap<&str, u32>, skipped: &mut usize) -> Result<Vec<Value>> {
        let meta = TokMeta(self);
        let merges = meta
            .strings("tokenizer.ggml.merges")?
            .ok_or_else(|| format_err("metadata `tokenizer.ggml.merges` is missing (a `gpt2` tokenizer needs it)"))?;
        if merges.len() > MAX_MERGES {
            return Err(format_err(format!("tokenizer.ggml.merges has {} entries, more than {MAX_MERGES}", merges.len())));
        }
        let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(merges.len());
        let mut out = Vec::with_capacity(merges.len());
        for m in merges {
            // A byte search (llama.cpp's `find(' ', 1)`): the first byte may start a longer
            // character, and a space byte is always a character boundary.
            let cut = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            let Some(pos) = cut else {
                *skipped += 1;
                continue;
            };
            let (left, right) = (&m[..pos], &m[pos + 1..]);
            let whole = format!("{left}{right}");
            if !index.contains_key(left) || !index.contains_key(right) || !index.contains_key(whole.as_str()) {
                *skipped += 1;
                continue;
            }
            if !seen.insert((left, right)) {
                *skipped += 1;
                continue;
            }
            out.push(json!([left, right]));
        }
        Ok(out)
    }
}

/// The merges a SentencePiece BPE vocabulary implies: every `left + right = token` with both
/// halves tokens, ranked by the token's score (highest first; on equal scores, lower token id,
/// then shorter left half). llama.cpp merges the adjacent pair whose concatenation is the
/// best-scored token; the `tokenizers` BPE model merges the best-ranked pair: the same order.
fn spm_merges(tokens: &[std::borrow::Cow<'_, str>], scores: &[f32], index: &HashMap<&str, u32>) -> Vec<Value> {
    let mut found: Vec<(f32, u32, usize)> = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        if t.len() > MAX_MERGEABLE_TOKEN_BYTES {
            continue;
        }
        for (cut, _) in t.char_indices().skip(1) {
            if index.contains_key(&t[..cut]) && index.contains_key(&t[cut..]) {
                found.push((scores[id], id as u32, cut));
            }
        }
    }
    // Scores may be NaN in a hostile file: total_cmp orders them without panicking.
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    found
        .into_iter()
        .map(|(_, id, cut)| {
            let t = &tokens[id as usize];
            json!([&t[..cut], &t[cut..]])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pre-tokenizer type's regexes compile in the `tokenizers` crate (fancy-regex) and
    /// split as llama.cpp's regex split does: matches and the gaps between them both kept.
    #[test]
    fn every_pre_tokenizer_regex_compiles() {
        let names = [
            "default", "llama-bpe", "lfm2", "dbrx", "chatglm-bpe", "glm4", "deepseek-coder", "deepseek-v3", "falcon",
            "gpt-2", "trillion", "starcoder", "smollm", "qwen2", "stablelm2", "qwen35", "poro-chat", "bloom", "viking",
            "tekken", "gpt-4o", "seed-coder", "bailingmoe", "grok-2",
        ];
        for pre in names {
            let spec = pre_spec(pre).unwrap_or_else(|| panic!("{pre} missing"));
            let pretoks: Vec<Value> = spec.regexes.iter().map(|r| split_isolated(r)).collect();
            let json = json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
                "pre_tokenizer": {"type": "Sequence", "pretokenizers": pretoks}, "post_processor": null, "decoder": null,
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                          "vocab": {"a": 0}, "merges": []}
            });
            let tok = saguaro_engine::Tokenizer::from_json(json.to_string().as_bytes(), None);
            assert!(tok.is_ok(), "{pre}: {:?}", tok.err());
        }
        assert!(pre_spec("no-such-type").is_none());
    }
}
