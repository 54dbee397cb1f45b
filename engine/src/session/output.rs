//! Generated ids to response text: end-of-sequence ids, tool-call blocks (marker tokens or the
//! JSON convention's scanner), streaming detokenization and stop sequences.

use std::sync::Arc;

use super::stop::StopMatcher;
use super::ChatModel;
use crate::api::{FinishReason, FunctionCall};
use crate::chat::{self, json_calls::JsonCallScanner};
use crate::error::Result;
use crate::tokenizer::StreamDecoder;

/// What one generated token did to the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Response text released by this token.
    pub text: String,
    /// The token belongs to a tool call (markers included).
    pub in_tool_call: bool,
    /// `Stop` for an end-of-sequence id, `StopSequence` when a stop sequence matched.
    pub finish: Option<FinishReason>,
}

/// Turns generated ids into response text, tool calls and stop decisions: end-of-sequence ids,
/// tool-call blocks (parsed and checked against the declared tools), streaming detokenization
/// and stop sequences. [`Session::complete`] feeds it every sampled id.
#[derive(Debug)]
pub struct OutputProcessor {
    chat: Arc<ChatModel>,
    /// Names of the request's tools: a call of any other goes to `errors`.
    declared: Vec<String>,
    /// Ids to text, holding incomplete UTF-8 sequences.
    decoder: StreamDecoder,
    /// Holds back text that may start a stop sequence.
    stopper: StopMatcher,
    /// Inside `<|tool_call_start|>` ... `<|tool_call_end|>`.
    in_tool_call: bool,
    /// The ids of the open tool call's body (decoded and parsed when it closes).
    tool_ids: Vec<u32>,
    /// Finds a `{"tool_calls": ...}` answer (models without tool-call tokens; see
    /// [`ChatModel::json_tool_calls`]).
    json_calls: Option<JsonCallScanner>,
    /// Calls naming a declared tool.
    pub calls: Vec<FunctionCall>,
    /// Malformed calls and calls of undeclared tools.
    pub errors: Vec<String>,
}

impl OutputProcessor {
    pub fn new(
        chat: &Arc<ChatModel>,
        declared: Vec<String>,
        stop_sequences: &[String],
        include_stop_sequences: bool,
        json_calls: bool,
    ) -> Self {
        OutputProcessor {
            chat: Arc::clone(chat),
            declared,
            decoder: StreamDecoder::new(),
            stopper: StopMatcher::new(stop_sequences, include_stop_sequences),
            in_tool_call: false,
            tool_ids: Vec::new(),
            json_calls: json_calls.then(JsonCallScanner::new),
            calls: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn close_call(&mut self, closed: bool) -> Result<()> {
        let body = self.chat.tokenizer.decode(&self.tool_ids, false)?;
        let out = chat::parse_and_check(&body, &self.declared);
        self.calls.extend(out.calls);
        if closed {
            self.errors.extend(out.errors);
        } else {
            self.errors.push(format!(
                "tool call never closed with {}: `{body}`",
                chat::TOOL_CALL_END
            ));
        }
        self.in_tool_call = false;
        self.tool_ids.clear();
        Ok(())
    }

    /// Processes one generated id.
    pub fn push(&mut self, id: u32) -> Result<Step> {
        let chat = Arc::clone(&self.chat);
        if chat.eos_ids.contains(&id) {
            return Ok(Step {
                text: String::new(),
                in_tool_call: false,
                finish: Some(FinishReason::Stop),
            });
        }
        if self.in_tool_call {
            if Some(id) == chat.tool_call_end {
                self.close_call(true)?;
            } else {
                self.tool_ids.push(id);
            }
            return Ok(Step {
                text: String::new(),
                in_tool_call: true,
                finish: None,
            });
        }
        if Some(id) == chat.tool_call_start {
            self.in_tool_call = true;
            self.tool_ids.clear();
            return Ok(Step {
                text: String::new(),
                in_tool_call: true,
                finish: None,
            });
        }
        let piece = self.decoder.push(&chat.tokenizer, id)?;
        let (piece, in_tool_call) = self.scan_json_calls(piece);
        let (text, matched) = self.stopper.push(&piece);
        Ok(Step {
            text,
            in_tool_call,
            finish: matched.then_some(FinishReason::StopSequence),
        })
    }

    /// Passes decoded text through the `{"tool_calls": ...}` scanner, if the request has one:
    /// the text to pass on, and whether the piece belongs to a call block (parsed into calls
    /// and errors when it closes).
    fn scan_json_calls(&mut self, piece: String) -> (String, bool) {
        let Some(scanner) = &mut self.json_calls else {
            return (piece, false);
        };
        let scanned = scanner.push(&piece);
        if let Some(block) = scanned.call {
            match chat::json_calls::call_list(&block) {
                Ok(list) => {
                    let out = chat::parse_and_check(&list, &self.declared);
                    self.calls.extend(out.calls);
                    self.errors.extend(out.errors);
                }
                Err(e) => self.errors.push(format!(
                    "malformed tool call: {e}: `{}`",
                    chat::json_calls::shorten(&block)
                )),
            }
        }
        (scanned.text, scanned.in_call)
    }

    /// Ends the output: releases held text (unless a stop sequence matches in it: then the
    /// second value is true) and parses a tool call the model left open.
    pub fn finish(&mut self) -> Result<(String, bool)> {
        if self.in_tool_call {
            self.close_call(false)?;
        }
        let tail = self.decoder.finish(&self.chat.tokenizer)?;
        let (mut tail, _) = self.scan_json_calls(tail);
        if let Some(mut scanner) = self.json_calls.take() {
            match scanner.finish() {
                Ok(held) => tail.push_str(&held),
                Err(open) => self.errors.push(format!(
                    "tool call never closed (its JSON object is incomplete): `{}`",
                    chat::json_calls::shorten(&open)
                )),
            }
        }
        let (mut text, matched) = self.stopper.push(&tail);
        if !matched {
            text.push_str(&self.stopper.finish());
        }
        Ok((text, matched))
    }
}
