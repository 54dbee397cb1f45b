//! `saguaro serve`: an OpenAI-compatible HTTP server (the wire API of OpenAI's and llama.cpp's
//! servers) over one memory-mapped model.
//!
//! - `POST /v1/chat/completions`: messages through the model's chat template; tools, tool
//!   calls, `stream` (Server-Sent Events in OpenAI's chunk format ending with `data: [DONE]`).
//! - `POST /v1/completions`: a raw prompt, no template.
//! - `GET /v1/models`, `GET /health` (also without the `/v1` prefix, as llama.cpp).
//!
//! HTTP is axum over hyper on tokio; generation runs on blocking threads, one engine session
//! per running request (see [`pool`] for scheduling, the queue, prefix reuse and cancellation).
//! Translation between OpenAI's JSON and the engine's request/response is in [`openai`];
//! errors take OpenAI's shape ([`error`]). Every bad request is a 4xx with a JSON error body.
//!
//! Where OpenAI and llama.cpp differ or the issue is silent, llama.cpp's server is followed:
//! any `model` name is accepted (and echoed back); `max_tokens` defaults to the model's
//! generation_config.json `max_new_tokens` (else 512) rather than the whole context; a missing
//! or negative `seed` means a random one (reported in `saguaro.seed`); string prompts of
//! `/v1/completions` get the BOS token; `top_k`, `min_p` and `repetition_penalty` (or
//! `repeat_penalty`) are accepted beside OpenAI's fields. Refused with a 400 rather than
//! silently ignored: `n` > 1, `logprobs`, non-empty `logit_bias`, non-zero `presence_penalty` /
//! `frequency_penalty`, non-text content parts, several or token-id prompts, `echo`, `suffix`;
//! and unsupported JSON Schema keywords. `response_format` json_object/json_schema becomes
//! `options.json_schema` and `tool_choice` passes through: the engine's constrained decoding
//! (engine/src/constrain.rs) masks tokens so the output parses (a build without it would refuse
//! both with a 400, see [`openai::Caps`]). No CORS headers: a web
//! page on another origin cannot drive a local server through a visitor's browser.

pub mod error;
pub mod openai;
pub mod pool;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use saguaro_engine::chat::ChatTemplate;
use saguaro_engine::session::ChatModel;
use saguaro_engine::{Error, Response, Result};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use error::ApiError;
use openai::{Caps, Chunks, Endpoint, Meta};
use pool::{Msg, Pool};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A .cact file or a Hugging Face folder with tokenizer.json.
    pub model: PathBuf,
    /// The model's name in `/v1/models` and responses (default: the file or folder name).
    pub alias: Option<String>,
    pub host: String,
    /// 0 picks a free port (printed on stderr).
    pub port: u16,
    /// Requests generating at once.
    pub parallel: usize,
    /// Requests waiting for a slot beyond `parallel` before new ones get 503.
    pub queue: usize,
    /// Context length per session (default and maximum: the model's).
    pub ctx: Option<usize>,
    /// Clients must send `Authorization: Bearer <key>` (not for /health).
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    /// Prefill threads (0 = all cores) and decode threads per request.
    pub threads: usize,
    pub decode_threads: usize,
}

/// State shared by the handlers.
struct App {
    pool: Arc<Pool>,
    caps: Caps,
    model_id: String,
    context: usize,
    api_key: Option<Vec<u8>>,
    max_body: usize,
    created: u64,
    counter: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A JSON body with a status.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Loads the model and builds the shared state.
fn build(config: &ServerConfig) -> Result<App> {
    if config.parallel == 0 {
        return Err(Error::Input("--parallel must be at least 1".into()));
    }
    let mut model = crate::load_model(&config.model)?;
    model.set_threads(crate::threads::make_threads(config.threads, config.decode_threads)?);
    let max = model.config.max_position_embeddings;
    if let Some(ctx) = config.ctx {
        if ctx == 0 || ctx > max {
            return Err(Error::Input(format!("--ctx {ctx} must be between 1 and the model's context, {max}")));
        }
        // Sessions stop (finish_reason length) and refuse prompts at this many positions; the
        // KV cache grows with use, so a smaller context bounds each session's memory.
        model.config.max_position_embeddings = ctx;
    }
    let context = model.config.max_position_embeddings;
    let model = Arc::new(model);
    let chat = ChatModel::new(Arc::clone(&model))?;
    let mut raw = Arc::try_unwrap(ChatModel::new(model)?).map_err(|_| Error::Io("the raw model is shared".into()))?;
    raw.template = ChatTemplate::new(openai::RAW_TEMPLATE)?;
    let model_id = config.alias.clone().unwrap_or_else(|| {
        config.model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| config.model.display().to_string())
    });
    let pool = Pool::new(chat, Arc::new(raw), crate::runtime::host_hooks(), config.parallel, config.queue);
    Ok(App {
        pool: Arc::new(pool),
        caps: Caps::detect(),
        model_id,
        context,
        api_key: config.api_key.as_ref().map(|k| k.as_bytes().to_vec()),
        max_body: config.max_body_bytes,
        created: unix_now(),
        counter: AtomicU64::new(0),
    })
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .fallback(|| async { ApiError::not_found("no such endpoint (see /v1/chat/completions, /v1/completions, /v1/models, /health)") })
        .method_not_allowed_fallback(|| async {
            ApiError { kind: "invalid_request_error", ..ApiError::invalid(None, "method not allowed on this endpoint").with_status(StatusCode::METHOD_NOT_ALLOWED) }
        })
        .layer(middleware::from_fn_with_state(Arc::clone(&app), auth))
        .with_state(app)
}

/// Runs the server until SIGINT or SIGTERM.
pub fn serve(config: ServerConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Connections and JSON are light; generation runs on blocking threads.
        .worker_threads(2)
        .thread_name("saguaro-http")
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start the async runtime: {e}")))?;
    let app = Arc::new(build(&config)?);
    runtime.block_on(async move {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| Error::Io(format!("cannot listen on {addr}: {e}")))?;
        let local: SocketAddr = listener.local_addr().map_err(|e| Error::Io(format!("{addr}: {e}")))?;
        if !local.ip().is_loopback() && app.api_key.is_none() {
            eprintln!("saguaro serve: warning: listening on {local} without --api-key: anyone who can reach it can use it");
        }
        eprintln!(
            "saguaro serve: listening on http://{local} (model {}, context {}, {} parallel, queue {}{})",
            app.model_id,
            app.context,
            config.parallel,
            config.queue,
            if app.api_key.is_some() { ", API key required" } else { "" }
        );
        axum::serve(listener, router(app))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Error::Io(format!("server: {e}")))
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("saguaro serve: shutting down");
}

/// `--api-key`: every endpoint but /health needs `Authorization: Bearer <key>`, compared in
/// constant time (subtle) so response timing does not leak how much of a guess was right.
async fn auth(State(app): State<Arc<App>>, request: HttpRequest, next: Next) -> HttpResponse {
    if let Some(key) = &app.api_key {
        if !matches!(request.uri().path(), "/health" | "/v1/health") {
            let given = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(key)));
            if !ok {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    next.run(request).await
}

async fn health(State(app): State<Arc<App>>) -> HttpResponse {
    let stats = &app.pool.stats;
    let processing = stats.processing.load(Ordering::Relaxed);
    json_response(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "slots_idle": app.pool.parallel().saturating_sub(processing),
            "slots_processing": processing,
            "requests_served": stats.served.load(Ordering::Relaxed),
            "requests_cancelled": stats.cancelled.load(Ordering::Relaxed),
            "tokens_generated": stats.generated.load(Ordering::Relaxed),
        }),
    )
}

async fn models(State(app): State<Arc<App>>) -> HttpResponse {
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": [{
            "id": app.model_id, "object": "model", "created": app.created, "owned_by": "saguaro",
            "saguaro": {"context": app.context, "parallel": app.pool.parallel(),
                        "json_schema": app.caps.json_schema, "tool_choice": app.caps.tool_choice},
        }]}),
    )
}

async fn chat_completions(State(app): State<Arc<App>>, body: Body) -> HttpResponse {
    generate(app, body, Endpoint::Chat).await.unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(app): State<Arc<App>>, body: Body) -> HttpResponse {
    generate(app, body, Endpoint::Text).await.unwrap_or_else(IntoResponse::into_response)
}

/// Reads the body, refusing more than `limit` bytes (413) as soon as they arrive.
async fn read_body(body: Body, limit: usize) -> std::result::Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::invalid(None, format!("the request body is larger than {limit} bytes (--max-body-bytes)"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            .with_code("request_too_large")
    };
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(None, format!("cannot read the request body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A failed engine response as an error answer.
fn failure(r: &Response) -> ApiError {
    ApiError::from_engine(r.error_code.as_deref(), r.error.as_deref().unwrap_or("the request failed"))
}

async fn generate(app: Arc<App>, body: Body, endpoint: Endpoint) -> std::result::Result<HttpResponse, ApiError> {
    let bytes = read_body(body, app.max_body).await?;
    let obj = openai::parse_body(&bytes)?;
    let t = openai::translate(&obj, endpoint, app.caps)?;
    let raw = endpoint == Endpoint::Text;
    let chat = if raw { &app.pool.raw } else { &app.pool.chat };
    // Option values checked against the model's defaults: a 400 before the request queues.
    t.request.options.resolve(&chat.defaults)?;

    let ticket = app.pool.admit()?;
    let permit = app.pool.slot().await?;
    let mut job = app.pool.run(t.request, raw, t.stream, ticket, permit);
    let n = app.counter.fetch_add(1, Ordering::Relaxed);
    let created = unix_now();
    let prefix = if raw { "cmpl" } else { "chatcmpl" };
    let meta = Meta { id: format!("{prefix}-{created:x}{n:06x}"), created, model: t.model.unwrap_or_else(|| app.model_id.clone()), seed: t.seed };

    if !t.stream {
        // `job` (and its cancel flag) lives in this future: if the client disconnects, hyper
        // drops the future and the worker stops at its next step.
        while let Some(msg) = job.rx.recv().await {
            if let Msg::Done(r) = msg {
                if !r.success {
                    return Err(failure(&r));
                }
                let body = if raw { openai::text_completion(&meta, &r) } else { openai::chat_completion(&meta, &r) };
                return Ok(json_response(StatusCode::OK, &body));
            }
        }
        return Err(ApiError::internal("the generation ended without a response"));
    }

    // Streaming: errors found when the request starts (a prompt over the context, a template
    // that rejects the messages) still get a status and a JSON body; after `Started` the
    // status line is sent and the events follow.
    match job.rx.recv().await {
        Some(Msg::Started) => {}
        Some(Msg::Done(r)) if !r.success => return Err(failure(&r)),
        _ => return Err(ApiError::internal("the generation ended before it started")),
    }
    let chunks = Chunks { meta, endpoint, include_usage: t.include_usage };
    let first = chunks.role();
    let events = futures_util::stream::unfold(Some((job, chunks, first)), |state| async move {
        let (mut job, chunks, first) = state?;
        if let Some(first) = first {
            return Some((Ok::<_, Infallible>(Bytes::from(first)), Some((job, chunks, None))));
        }
        loop {
            match job.rx.recv().await {
                Some(Msg::Token(e)) if !e.text.is_empty() => {
                    let text = chunks.text(&e.text);
                    return Some((Ok(Bytes::from(text)), Some((job, chunks, None))));
                }
                Some(Msg::Token(_)) | Some(Msg::Started) => continue,
                Some(Msg::Done(r)) => {
                    let last = if r.success { chunks.end(&r) } else { chunks.error(&failure(&r)) };
                    return Some((Ok(Bytes::from(last)), None));
                }
                None => {
                    let e = ApiError::internal("the generation ended without a response");
                    return Some((Ok(Bytes::from(chunks.error(&e))), None));
                }
            }
        }
    });
    let mut response = HttpResponse::new(Body::from_stream(events));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
