//! `saguaro serve`: the arguments of the OpenAI-compatible server (host/src/server).

use std::path::PathBuf;

use clap::Args;
use saguaro_engine::Result;
use saguaro_host::server::{serve as run_server, ServerConfig};

use super::args::ThreadArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model: a .cact file or a Hugging Face folder with tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// The model's name in /v1/models and in responses (default: the file or folder name).
    #[arg(long)]
    alias: Option<String>,
    /// Address to listen on (loopback by default: nothing outside this machine can connect).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 = any free port; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests generating at once, each with its own session (KV cache) over the shared model.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Requests that may wait for a free slot; beyond that the server answers 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Context length of each session (default: the model's).
    #[arg(long)]
    ctx: Option<usize>,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health (default:
    /// $SAGUARO_API_KEY, which other users cannot read from the process list).
    #[arg(long)]
    api_key: Option<String>,
    /// Largest request body accepted (413 beyond).
    #[arg(long, default_value_t = 8 << 20)]
    max_body_bytes: usize,
    #[command(flatten)]
    threads: ThreadArgs,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    run_server(ServerConfig {
        model: args.model,
        alias: args.alias,
        host: args.host,
        port: args.port,
        parallel: args.parallel,
        queue: args.queue,
        ctx: args.ctx,
        api_key: args.api_key.or_else(|| std::env::var("SAGUARO_API_KEY").ok()).filter(|k| !k.is_empty()),
        max_body_bytes: args.max_body_bytes,
        threads: args.threads.threads,
        decode_threads: args.threads.decode_threads,
    })
}
