//! The one error type of the engine (docs/design.md §Errors): what went wrong, where, why.
//! Every surface maps it: the CLI prints it and exits 1, JS gets an `Error` with `code`,
//! the component returns it in a WIT `result`.

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the engine can report. Each variant carries a message that names the
/// offending field, tensor, file or value, so a user can act on it without a debugger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// config.json (or a manifest's config) is missing a field, has a malformed one, or
    /// describes a model we cannot run.
    #[error("invalid model config: {0}")]
    Config(String),
    /// A weight tensor is missing, has the wrong shape or dtype, or its bytes are bad.
    #[error("invalid weights: {0}")]
    Weights(String),
    /// A model file (safetensors, .cact, GGUF) is malformed: bad header, bounds, alignment.
    #[error("invalid model file: {0}")]
    Format(String),
    /// The caller's input is unusable: empty token list, token id out of range, bad request.
    #[error("invalid input: {0}")]
    Input(String),
    /// The context window is full.
    #[error("context full: {0}")]
    ContextFull(String),
    /// Reading a model from disk or the network failed (reported by hosts; the engine
    /// itself does no I/O).
    #[error("i/o error: {0}")]
    Io(String),
    /// The caller cancelled the operation.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// A stable machine-readable code for surfaces (JS `error.code`, WIT variant, JSON).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Weights(_) => "weights",
            Error::Format(_) => "format",
            Error::Input(_) => "input",
            Error::ContextFull(_) => "context_full",
            Error::Io(_) => "io",
            Error::Cancelled => "cancelled",
        }
    }
}
