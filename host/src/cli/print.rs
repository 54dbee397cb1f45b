//! Output shared by several commands: stdout that tolerates a closed pipe, JSON lines, a
//! streamed chat answer, the sampling note of `chat` and `run`, and a failed response turned
//! back into the error that sets the exit status.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use saguaro_engine::session::{ChatModel, Session};
use saguaro_engine::{Error, Options, Request, Response, Result};
use serde::Serialize;

/// Writes output to stdout; a closed pipe (`saguaro info m.cact | head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io(format!("stdout: {e}"))),
        _ => Ok(()),
    }
}

/// One line of text on stdout.
pub fn print_line(text: &str) -> Result<()> {
    write_stdout(format!("{text}\n").as_bytes())
}

/// One line of JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_vec(value).map_err(|e| Error::Io(format!("JSON output: {e}")))?;
    text.push(b'\n');
    write_stdout(&text)
}

/// A failed response's error as the engine error it came from (for stderr and the exit status).
pub fn failure_error(r: &Response) -> Error {
    let msg = r.error.clone().unwrap_or_else(|| "request failed".into());
    let strip = |prefix: &str| msg.strip_prefix(prefix).unwrap_or(&msg).to_string();
    match r.error_code.as_deref() {
        Some("config") => Error::Config(strip("invalid model config: ")),
        Some("weights") => Error::Weights(strip("invalid weights: ")),
        Some("format") => Error::Format(strip("invalid model file: ")),
        Some("context_full") => Error::ContextFull(strip("context full: ")),
        Some("io") => Error::Io(strip("i/o error: ")),
        Some("cancelled") => Error::Cancelled,
        _ => Error::Input(strip("invalid input: ")),
    }
}

/// Streams one answer to stdout; returns the response.
pub fn answer(session: &mut Session, request: &Request) -> Result<Response> {
    let cancel = AtomicBool::new(false);
    let mut out = std::io::stdout().lock();
    let r = session.complete(
        request,
        |event| {
            let _ = out.write_all(event.text.as_bytes());
            let _ = out.flush();
            true
        },
        &cancel,
    );
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    if r.success {
        Ok(r)
    } else {
        Err(failure_error(&r))
    }
}

/// The one-line stderr note of `chat` and `run` when a preset is in effect: its name and the
/// sampling values the engine will use (the preset's, overridden by the command's flags).
pub fn preset_note(chat: &ChatModel, options: &Options) -> Result<Option<String>> {
    let Some(preset) = options.preset else { return Ok(None) };
    let s = options.resolve(&chat.defaults)?.sampling;
    Ok(Some(format!(
        "[sampling: preset {} (temperature {}, top_k {}, top_p {}, min_p {}, repetition_penalty {}); \
         --preset none for the model's own defaults]",
        preset.name(),
        s.temperature,
        s.top_k,
        s.top_p,
        s.min_p,
        s.repetition_penalty
    )))
}
