//! A request's prompt tokens, with a prompt longer than the context refused at a cost that
//! follows the context rather than the input.

use serde_json::Value;

use super::ChatModel;
use crate::api::Request;
use crate::error::{Error, Result};

/// Bytes of prompt text tokenized at a time while counting a long prompt's tokens: the count
/// stops as soon as it passes the context, so memory and time follow the context, not the input.
const COUNT_CHUNK_BYTES: usize = 16 << 10;
/// Tokens a cut between two counting chunks may add (a token split in two, a merge lost).
/// Cuts are made before a space that starts a word, where pre-tokenizers split anyway, so
/// this is slack for unusual tokenizers.
const COUNT_SLACK_PER_CUT: usize = 8;
impl ChatModel {
    /// The prompt token ids of a request. A prompt longer than the context is an
    /// [`Error::ContextFull`], found at a cost that follows the context rather than the input
    /// (tokenizing a whole 50 MB prompt takes gigabytes and tens of seconds):
    /// - before rendering: at least [`ChatModel::min_tokens_per_message`] tokens per message, and
    ///   the user messages' text at one token per 2 x [`ChatModel::max_token_bytes`] bytes;
    /// - after rendering, at most one token per byte: a text no longer than the context fits;
    /// - at least one token per [`ChatModel::max_token_bytes`] bytes (halved, for normalizers
    ///   that shrink text): a text longer than that bound is refused without tokenizing;
    /// - otherwise the text is tokenized in chunks with a running count that stops as soon as
    ///   it passes the context; only a prompt that fits is then tokenized whole.
    pub fn prompt_tokens(&self, request: &Request, unix_seconds: Option<i64>) -> Result<Vec<u32>> {
        let context = self.model.config.max_position_embeddings;
        // Before rendering (which costs time and memory per message and per byte): the messages'
        // markers alone, and the user messages' text alone.
        let at_least = request
            .messages
            .len()
            .saturating_mul(self.min_tokens_per_message);
        if at_least > context {
            return Err(Error::ContextFull(format!(
                "the prompt has at least {at_least} tokens ({} messages of at least {} tokens each), the context holds {context}",
                request.messages.len(),
                self.min_tokens_per_message
            )));
        }
        if self.renders_user_text {
            let user_bytes: usize = request
                .messages
                .iter()
                .filter(|m| m.role == "user")
                .filter_map(|m| m.content.as_ref().and_then(Value::as_str))
                .map(str::len)
                .sum();
            let at_least = user_bytes / (2 * self.max_token_bytes);
            if at_least > context {
                return Err(Error::ContextFull(format!(
                    "the prompt has at least {at_least} tokens ({user_bytes} bytes of user text), the context holds {context}"
                )));
            }
        }
        let text = self.render(request, unix_seconds)?;
        // Short prompts are tokenized once, below; long ones are counted in chunks first.
        if text.len() > context && text.len() > COUNT_CHUNK_BYTES {
            let at_least = text.len() / (2 * self.max_token_bytes);
            if at_least > context {
                return Err(Error::ContextFull(format!(
                    "the prompt has at least {at_least} tokens ({} bytes of text), the context holds {context}",
                    text.len()
                )));
            }
            let mut counted = 0usize;
            let mut rest = text.as_str();
            let mut cuts = 0usize;
            while !rest.is_empty() {
                let cut = count_chunk_end(rest, COUNT_CHUNK_BYTES);
                counted += self.tokenizer.encode(&rest[..cut])?.len();
                rest = &rest[cut..];
                if !rest.is_empty() {
                    cuts += 1;
                }
                if counted > context + cuts * COUNT_SLACK_PER_CUT {
                    return Err(Error::ContextFull(format!(
                        "the prompt has more than {context} tokens ({counted} in its first {} of {} bytes), the context holds {context}",
                        text.len() - rest.len(),
                        text.len()
                    )));
                }
            }
        }
        self.tokenizer.encode_prompt(&text)
    }
}

/// Where to end a counting chunk of at most about `max` bytes of `text`: before a space that
/// follows a non-space and precedes a non-space (a word boundary every pre-tokenizer keeps),
/// else at a character boundary.
fn count_chunk_end(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let bytes = text.as_bytes();
    let lo = max / 2;
    let word_start = (lo.max(1)..max).rev().find(|&i| {
        bytes[i] == b' '
            && !bytes[i - 1].is_ascii_whitespace()
            && i + 1 < bytes.len()
            && !bytes[i + 1].is_ascii_whitespace()
    });
    if let Some(i) = word_start {
        return i;
    }
    let mut i = max;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_chunks_end_before_a_word_or_on_a_character_boundary() {
        assert_eq!(count_chunk_end("short", 16), 5);
        let text = "aaaa bbbb cccc dddd";
        let cut = count_chunk_end(text, 12);
        assert_eq!(&text[cut..], " cccc dddd");
        // Double spaces are not cut (pre-tokenizers group whitespace runs).
        let text = "aaaaaa  bbbbbbbbb";
        assert_eq!(count_chunk_end(text, 12), 12);
        // No space at all: the last character boundary at or before the limit.
        let text = "ééééééééé";
        let cut = count_chunk_end(text, 7);
        assert_eq!(cut, 6);
        assert!(text.is_char_boundary(cut));
    }
}
