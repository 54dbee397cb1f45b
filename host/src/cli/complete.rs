//! `saguaro complete`: the chat API from the command line. Reads a request (the JSON of
//! saguaro_engine::api) from a file or stdin and prints the response JSON on one line.
//!
//! A failed request (bad JSON, unknown role, a prompt over the context, a model that cannot be
//! loaded, ...) prints `{"success": false, "error": ...}` on stdout all the same, `error: ...`
//! on stderr, and exits with status 1. `--stream` first prints one JSON line per generated
//! token (`token_id`, `text`, ...). `--engine component` runs the request inside the WASI
//! component (see [`super::args::EngineArgs`]): the same lines, timings aside.
//!
//! `complete` passes the request through as it is: missing options take the engine's defaults
//! (saguaro_engine::api::Options::resolve), as on every other surface.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use clap::Args;
use saguaro_engine::session::Session;
use saguaro_engine::{Error, Response, Result};
use saguaro_host::runtime::{host_hooks, verify_if};

use super::args::{EngineArgs, ThreadArgs};
use super::print::{failure_error, print_line};

#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// Model: a .cact file or a Hugging Face folder with tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// Request JSON file, or `-` for stdin.
    #[arg(long, default_value = "-")]
    request: String,
    /// Print each generated token as a JSON line before the response.
    #[arg(long)]
    stream: bool,
    /// Largest request accepted, in bytes (larger ones are refused before they are read whole).
    #[arg(long, value_name = "BYTES", default_value_t = saguaro_engine::api::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    #[command(flatten)]
    threads: ThreadArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Reads the request, refusing it as soon as it passes `limit` bytes (memory stays bounded
/// whatever is sent).
fn read_request(source: &str, limit: usize) -> Result<String> {
    let too_big = |what: &str| {
        Error::Input(format!(
            "the request ({what}) is more than {limit} bytes; raise the limit with --max-request-bytes if it is meant to be this large"
        ))
    };
    let mut bytes = Vec::new();
    let take = limit as u64 + 1;
    if source == "-" {
        std::io::stdin().lock().take(take).read_to_end(&mut bytes).map_err(|e| Error::Io(format!("stdin: {e}")))?;
        if bytes.len() > limit {
            return Err(too_big("stdin"));
        }
    } else {
        let path = Path::new(source);
        if path.is_dir() {
            return Err(Error::Input(format!("--request {source} is a folder, not a request JSON file")));
        }
        let file = std::fs::File::open(path).map_err(|e| Error::Io(format!("{source}: {e}")))?;
        file.take(take).read_to_end(&mut bytes).map_err(|e| Error::Io(format!("{source}: {e}")))?;
        if bytes.len() > limit {
            return Err(too_big(source));
        }
    }
    String::from_utf8(bytes).map_err(|e| Error::Input(format!("the request is not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

pub fn complete(args: CompleteArgs) -> Result<()> {
    let response = (|| -> Result<Response> {
        let text = read_request(&args.request, args.max_request_bytes)?;
        if args.engine.is_component()? {
            verify_if(args.threads.verify, &args.model)?;
            return complete_component(&args, &text);
        }
        let chat = args.threads.options().load_chat(&args.model)?;
        let mut session = Session::new(chat).with_hooks(host_hooks());
        session.max_request_bytes = args.max_request_bytes;
        let cancel = AtomicBool::new(false);
        let mut write_error = None;
        let r = session.complete_json(
            &text,
            |event| {
                if args.stream {
                    let line = serde_json::to_string(event).unwrap_or_default();
                    if let Err(e) = print_line(&line) {
                        write_error = Some(e);
                        return false;
                    }
                }
                true
            },
            &cancel,
        );
        match write_error {
            Some(e) => Err(e),
            None => Ok(r),
        }
    })()
    .unwrap_or_else(|e| Response::failure(&e));
    print_line(&response.to_json())?;
    if response.success {
        Ok(())
    } else {
        // The JSON above is the answer; the error line and status 1 are for scripts.
        Err(failure_error(&response))
    }
}

/// `complete --engine component`: the request runs inside the component (streamed through
/// its pull API with `--stream`); the response JSON is the guest's, printed the native way.
#[cfg(feature = "component")]
fn complete_component(args: &CompleteArgs, request: &str) -> Result<Response> {
    let mut model = args.engine.load_component(&args.model)?;
    let mut session = model.session()?;
    let json = if args.stream {
        let mut write_error = None;
        let json = session.complete_streaming(request, |event| {
            let line = serde_json::to_string(event).unwrap_or_default();
            match print_line(&line) {
                Ok(()) => true,
                Err(e) => {
                    write_error = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = write_error {
            return Err(e);
        }
        json
    } else {
        session.complete(request)?
    };
    serde_json::from_str(&json).map_err(|e| Error::Io(format!("the component's response is not valid response JSON: {e}")))
}

#[cfg(not(feature = "component"))]
fn complete_component(_: &CompleteArgs, _: &str) -> Result<Response> {
    Err(super::args::unavailable())
}
