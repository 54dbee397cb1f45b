//! `ModelBuffer` and `Model`: loading a model file and the low-level calls.

use saguaro_engine::generate::GenerateOptions;
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::error::{from_js, js, js_u64, to_js};
use super::hooks::js_hooks;
use super::session::Session;
use crate::runtime;

/// A model file being received: `new ModelBuffer(len)` reserves the final aligned buffer once
/// (an `io` error when wasm32 cannot hold it), `write(offset, chunk)` copies each chunk in
/// place, `finish()` parses it into a [`Model`] (the buffer is consumed either way).
#[wasm_bindgen]
pub struct ModelBuffer {
    inner: runtime::ModelBuffer,
}

#[wasm_bindgen]
impl ModelBuffer {
    #[wasm_bindgen(constructor)]
    pub fn new(len: f64) -> Result<ModelBuffer, JsValue> {
        let len = js_u64(len, "the model size")?;
        Ok(ModelBuffer { inner: js(runtime::ModelBuffer::new(len))? })
    }

    /// Size of the file in bytes.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.inner.len() as f64
    }

    /// Copies `chunk` to `offset` (a chunk past the end is an `input` error).
    pub fn write(&mut self, offset: f64, chunk: &[u8]) -> Result<(), JsValue> {
        let offset = js_u64(offset, "the chunk offset")?;
        js(self.inner.write(offset, chunk))
    }

    /// Parses the file into a model (an `io` error if bytes are missing, `format`, `config`
    /// or `weights` if the file is bad). The buffer is consumed.
    pub fn finish(self) -> Result<Model, JsValue> {
        Ok(Model { rt: js(self.inner.finish())? })
    }
}

/// A loaded model.
#[wasm_bindgen]
pub struct Model {
    rt: runtime::Runtime,
}

/// Options of `generateTokens` (camelCase or snake_case names).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct GenerateOpts {
    #[serde(alias = "max_tokens")]
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    seed: Option<u64>,
    #[serde(alias = "stop_on_eos")]
    stop_on_eos: Option<bool>,
}

#[wasm_bindgen]
impl Model {
    /// Loads a model from a whole `.cact` file (copied once into an aligned buffer).
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, JsValue> {
        Ok(Model { rt: js(runtime::Runtime::from_bytes(bytes))? })
    }

    /// `{model_type, vocab_size, hidden_size, num_layers, max_position_embeddings, file_bytes,
    /// has_tokenizer, is_moe, kernels}`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        to_js(&self.rt.info())
    }

    /// Token ids of `text` (no special tokens added).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        js(self.rt.tokenize(text))
    }

    /// Text of `ids`; `skip_special` drops special tokens.
    pub fn detokenize(&self, ids: &[u32], skip_special: bool) -> Result<String, JsValue> {
        js(self.rt.detokenize(ids, skip_special))
    }

    /// Logits of every position of `ids` from a fresh state: `[ids.length * vocab]`, row-major.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>, JsValue> {
        js(self.rt.logits(ids))
    }

    /// New tokens after `ids` from a fresh state. `options`: `{maxTokens = 16, temperature = 0,
    /// seed = 0, stopOnEos = false}`. `on_token(id)` sees each new id; returning `false` stops
    /// early; an exception stops and is rethrown. When the context fills first, the tokens made
    /// so far are returned (fewer than `maxTokens`), not an error.
    #[wasm_bindgen(js_name = generateTokens)]
    pub fn generate_tokens(&self, ids: &[u32], options: JsValue, on_token: Option<js_sys::Function>) -> Result<Vec<u32>, JsValue> {
        let o: GenerateOpts =
            if options.is_undefined() || options.is_null() { GenerateOpts::default() } else { from_js(options, "generateTokens options")? };
        let d = GenerateOptions::default();
        let opts = GenerateOptions {
            max_tokens: o.max_tokens.unwrap_or(d.max_tokens),
            temperature: o.temperature.unwrap_or(d.temperature),
            seed: o.seed.unwrap_or(d.seed),
            stop_on_eos: o.stop_on_eos.unwrap_or(d.stop_on_eos),
        };
        js(saguaro_engine::api::check_temperature(opts.temperature))?;
        let mut thrown = None;
        let out = self.rt.generate_tokens(ids, &opts, |id| match &on_token {
            None => true,
            Some(f) => match f.call1(&JsValue::NULL, &JsValue::from(id)) {
                Ok(v) => v != JsValue::FALSE,
                Err(e) => {
                    thrown = Some(e);
                    false
                }
            },
        });
        if let Some(e) = thrown {
            return Err(e);
        }
        js(out)
    }

    /// A new chat session (an `input` error when the file has no tokenizer).
    pub fn session(&self) -> Result<Session, JsValue> {
        Ok(Session::new(js(self.rt.session(js_hooks()))?))
    }

    /// True when the model can chat (its file carries a tokenizer).
    #[wasm_bindgen(getter, js_name = canChat)]
    pub fn can_chat(&self) -> bool {
        self.rt.chat().is_ok()
    }
}
