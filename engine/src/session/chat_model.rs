//! [`ChatModel`]: a loaded model with everything chat needs from its file (tokenizer, chat
//! template, generation defaults, stop ids, tool-call format), and rendering a request with it.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::api::{GenerationDefaults, Request, ToolChoice};
use crate::chat::{self, ChatTemplate, TemplateVars, ToolFormat, LFM2_TEMPLATE};
use crate::constrain::ConstraintVocab;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// A model ready for chat: tokenizer, template, defaults and stop ids, shared by sessions.
#[derive(Debug)]
pub struct ChatModel {
    pub model: Arc<Model>,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub defaults: GenerationDefaults,
    /// Ids that end generation.
    pub eos_ids: Vec<u32>,
    pub tool_call_start: Option<u32>,
    pub tool_call_end: Option<u32>,
    /// How the model writes tool calls: between the two ids above when it has both, else the
    /// JSON convention of [`chat::json_calls`].
    pub tool_format: ToolFormat,
    /// UTF-8 length of the longest token string of the vocabulary (added tokens included): no
    /// token stands for more bytes of text, so a text of n bytes has at least n / this tokens.
    pub max_token_bytes: usize,
    /// Fewest tokens the chat template adds for each message (its role markers), measured when
    /// the model is loaded; 0 when the template does not render every message on its own (it
    /// merges or skips messages, or refuses the probe conversations). A request with n messages
    /// has at least n times this many prompt tokens, known before rendering anything.
    pub min_tokens_per_message: usize,
    /// The template writes a user message's text into the prompt (checked when the model is
    /// loaded): then the bytes of the user messages' text bound the prompt's tokens from below
    /// before rendering.
    pub renders_user_text: bool,
    /// The vocabulary as a token trie for constrained decoding, built by the first request
    /// that needs it (tens of milliseconds for 65k tokens; most requests never do).
    constraint_vocab: OnceLock<Result<Arc<ConstraintVocab>>>,
}

/// See [`ChatModel::min_tokens_per_message`]: for each role, the tokens that a second and a
/// third empty message of that role add to the rendered conversation; the least of all.
fn min_tokens_per_message(template: &ChatTemplate, tokenizer: &Tokenizer) -> usize {
    let vars = TemplateVars {
        special_tokens: tokenizer.special_tokens().to_vec(),
        unix_seconds: None,
    };
    let mut least = usize::MAX;
    for role in ["system", "user", "assistant", "tool"] {
        let mut counts = [0usize; 3];
        for (n, count) in counts.iter_mut().enumerate() {
            let messages = vec![serde_json::json!({"role": role, "content": ""}); n + 1];
            let tokens = template
                .render(&messages, None, false, &vars)
                .and_then(|text| tokenizer.encode(&text));
            match tokens {
                Ok(ids) => *count = ids.len(),
                Err(_) => return 0,
            }
        }
        least = least
            .min(counts[1].saturating_sub(counts[0]))
            .min(counts[2].saturating_sub(counts[1]));
    }
    if least == usize::MAX {
        0
    } else {
        least
    }
}

/// See [`ChatModel::renders_user_text`].
fn renders_user_text(template: &ChatTemplate, tokenizer: &Tokenizer) -> bool {
    const PROBE: &str = "saguaro probe: 7f3a9c";
    let vars = TemplateVars {
        special_tokens: tokenizer.special_tokens().to_vec(),
        unix_seconds: None,
    };
    let messages = [serde_json::json!({"role": "user", "content": PROBE})];
    template
        .render(&messages, None, true, &vars)
        .is_ok_and(|text| text.contains(PROBE))
}

/// The chat template of a model file: the manifest's, else tokenizer_config.json's
/// `chat_template` (a string, or a list of named templates: `default` or the first), else LFM2's.
fn template_source(model: &Model) -> Result<String> {
    if let Some(t) = &model.file.manifest.chat_template {
        return Ok(t.clone());
    }
    if let Some(bytes) = model.file.file("tokenizer_config.json") {
        let cfg: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Format(format!("tokenizer_config.json is not valid JSON: {e}")))?;
        match cfg.get("chat_template") {
            Some(Value::String(s)) => return Ok(s.clone()),
            Some(Value::Array(list)) => {
                let named = |n: &str| {
                    list.iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
                };
                if let Some(t) = named("default")
                    .or_else(|| list.first())
                    .and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                {
                    return Ok(t.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(LFM2_TEMPLATE.to_string())
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .into_iter()
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

impl ChatModel {
    /// Reads the tokenizer, template and defaults from the model's file.
    pub fn new(model: Arc<Model>) -> Result<Arc<ChatModel>> {
        let tokenizer = Tokenizer::from_cact(&model.file)?;
        let template = ChatTemplate::new(&template_source(&model)?)?;
        let gen_config = model.file.manifest.generation_config.as_ref();
        let defaults = GenerationDefaults::from_generation_config(gen_config);
        let mut eos_ids = model.config.eos_token_ids.clone();
        eos_ids.extend(ids_of(gen_config.and_then(|g| g.get("eos_token_id"))));
        eos_ids.extend(tokenizer.token_id("<|im_end|>"));
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let tool_call_start = tokenizer.token_id(chat::TOOL_CALL_START);
        let tool_call_end = tokenizer.token_id(chat::TOOL_CALL_END);
        let tool_format = if tool_call_start.is_some() && tool_call_end.is_some() {
            ToolFormat::Markers
        } else {
            ToolFormat::Json
        };
        let max_token_bytes = tokenizer
            .inner()
            .get_vocab(true)
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(1)
            .max(1);
        let min_tokens_per_message = min_tokens_per_message(&template, &tokenizer);
        let renders_user_text = renders_user_text(&template, &tokenizer);
        Ok(Arc::new(ChatModel {
            model,
            tokenizer,
            template,
            defaults,
            eos_ids,
            tool_call_start,
            tool_call_end,
            tool_format,
            max_token_bytes,
            min_tokens_per_message,
            renders_user_text,
            constraint_vocab: OnceLock::new(),
        }))
    }

    /// The vocabulary prepared for constrained decoding (built on first use, then shared).
    pub fn constraint_vocab(&self) -> Result<Arc<ConstraintVocab>> {
        self.constraint_vocab
            .get_or_init(|| {
                ConstraintVocab::from_tokenizer(
                    &self.tokenizer,
                    self.model.config.vocab_size,
                    &self.eos_ids,
                    self.tool_call_start,
                    self.tool_call_end,
                )
                .map(Arc::new)
            })
            .clone()
    }

    /// The prompt text of a request (the template rendered with a generation prompt).
    pub fn render(&self, request: &Request, unix_seconds: Option<i64>) -> Result<String> {
        request.validate()?;
        let mut messages = chat::template_messages_for(
            &request.messages,
            self.template.reads_tool_calls(),
            self.tool_format,
        )?;
        let mut tools = request.tools.as_deref();
        if self.json_tool_calls(request)? && !self.template.reads_tools() {
            // The template cannot list the tools: the engine's instructions do (chat::json_calls).
            chat::json_calls::add_instructions(&mut messages, tools.unwrap_or_default());
            tools = None;
        }
        let vars = TemplateVars {
            special_tokens: self.tokenizer.special_tokens().to_vec(),
            unix_seconds,
        };
        self.template.render(&messages, tools, true, &vars)
    }

    /// Whether this request's answer may hold `{"tool_calls": ...}` calls: a model without
    /// tool-call tokens, tools declared and not refused by `tool_choice: "none"`.
    pub fn json_tool_calls(&self, request: &Request) -> Result<bool> {
        Ok(self.tool_format == ToolFormat::Json
            && request.tools.as_ref().is_some_and(|t| !t.is_empty())
            && request.tool_choice()? != ToolChoice::None)
    }
}
