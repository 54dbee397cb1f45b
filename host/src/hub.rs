//! Downloading LFM2 models from the Hugging Face hub (the first half of `saguaro pull`).
//!
//! [`download_model`] fetches what Saguaro needs from a model repository into the hub's
//! cache (the layout shared with Python's `huggingface_hub`:
//! `<cache>/models--OWNER--NAME/{blobs,refs,snapshots}`) and returns the snapshot folder,
//! which then holds:
//!
//! - `config.json` (required);
//! - `model.safetensors`, or `model.safetensors.index.json` and every shard it names;
//! - `tokenizer.json`, `tokenizer_config.json`, `generation_config.json` and
//!   `chat_template.jinja` when the repository has them.
//!
//! It uses the `hf-hub` crate's synchronous (ureq) client. The requests are the hub's:
//! `GET {endpoint}/api/models/{repo}/revision/{rev}` once, to pin the revision to a commit and
//! list the repository's files, then for each file not already cached
//! `GET {endpoint}/{repo}/resolve/{commit}/{file}` with `Range: bytes=0-0` (metadata:
//! `x-repo-commit`, `etag`/`x-linked-etag`, `content-range`, following the hub's redirect to
//! its CDN for large files) and again with `Range: bytes=N-` for the body (resuming a
//! `.part` file left by an interrupted download).
//!
//! Downloading at the pinned commit (as `huggingface_hub.snapshot_download` does) means a
//! branch that moves during the download cannot mix files from two commits.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use saguaro_engine::weights::safetensors::shard_files_from_index;
use saguaro_engine::{Error, Result};

/// The public Hugging Face hub, used unless `HF_ENDPOINT` / [`HubOptions::endpoint`] says
/// otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The model configuration: always downloaded, the repository must have it.
pub const CONFIG_FILE: &str = "config.json";
/// Weights in one file.
pub const SINGLE_WEIGHTS_FILE: &str = "model.safetensors";
/// Index of sharded weights (its `weight_map` names the shard files).
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// Downloaded when the repository has them; their absence is fine.
pub const OPTIONAL_FILES: [&str; 4] =
    ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"];

/// Retries (resuming where the download stopped) after a file body download fails midway.
const BODY_RETRIES: usize = 3;

/// Where and how to reach the hub. [`HubOptions::from_env`] reads the usual `HF_*`
/// variables; tests and embedders fill the fields directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubOptions {
    /// Base URL of the hub, e.g. `https://huggingface.co` or a mirror. `None`:
    /// [`DEFAULT_ENDPOINT`].
    pub endpoint: Option<String>,
    /// Access token sent as `Authorization: Bearer <token>` (private and gated repositories).
    pub token: Option<String>,
    /// The hub cache folder (what `HF_HUB_CACHE` names: it holds the `models--*` folders).
    /// `None`: the default from the environment (`HF_HUB_CACHE`, `$HF_HOME/hub`,
    /// `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Show a progress bar per downloaded file on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
    /// Make no network request: use only what is already in the cache (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

impl HubOptions {
    /// Options from the process environment; see [`HubOptions::from_lookup`].
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Options from environment-style variables looked up with `get` (empty values count as
    /// unset), following `huggingface_hub`:
    ///
    /// - `HF_ENDPOINT`: the hub URL;
    /// - `HF_TOKEN`: the access token; otherwise the token file written by
    ///   `huggingface-cli login` (`HF_TOKEN_PATH`, default `$HF_HOME/token`);
    /// - `HF_HUB_CACHE`: the cache folder; otherwise `$HF_HOME/hub`, where `HF_HOME` defaults
    ///   to `$XDG_CACHE_HOME/huggingface`, then `~/.cache/huggingface` (`HOME`, or
    ///   `USERPROFILE` on Windows);
    /// - `HF_HUB_OFFLINE`: `1`/`true`/`yes`/`on` for offline mode;
    /// - `HF_HUB_DISABLE_PROGRESS_BARS`: the same values turn the progress bars off
    ///   (they are on otherwise).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |key: &str| get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").or_else(|| var("USERPROFILE")).map(|h| Path::new(&h).join(".cache")))
                .map(|cache| cache.join("huggingface"))
        });
        let cache_dir = var("HF_HUB_CACHE").map(PathBuf::from).or_else(|| hf_home.as_ref().map(|h| h.join("hub")));
        let token = var("HF_TOKEN").or_else(|| {
            let path = var("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| hf_home.as_ref().map(|h| h.join("token")))?;
            let text = std::fs::read_to_string(path).ok()?;
            Some(text.trim().to_string()).filter(|t| !t.is_empty())
        });
        HubOptions {
            endpoint: var("HF_ENDPOINT").map(|e| e.trim_end_matches('/').to_string()),
            token,
            cache_dir,
            progress: !var("HF_HUB_DISABLE_PROGRESS_BARS").is_some_and(|v| truthy(&v)),
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
        }
    }

    /// The hub URL these options use, without a trailing `/`.
    pub fn endpoint_url(&self) -> &str {
        self.endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
    }
}

fn truthy(value: &str) -> bool {
    ["1", "true", "yes", "on"].iter().any(|t| value.eq_ignore_ascii_case(t))
}

/// Downloads the files Saguaro needs from the model repository `repo_id` (`OWNER/NAME`) at
/// `revision` (a branch, tag or commit; default `main`) and returns the local snapshot
/// folder holding them (see the module docs for its contents).
///
/// Files already in the cache for the revision's commit are not downloaded again. If the hub
/// cannot be reached but the revision is fully cached, the cached snapshot is returned
/// (with a warning when `opts.progress`). With `opts.offline` no request is made.
///
/// Errors: [`Error::Input`] for a malformed `repo_id`, `revision` or endpoint (checked before
/// any request); [`Error::Format`] for an index naming a shard that is not a plain file name;
/// [`Error::Io`] for everything else (hub unreachable, not found, access denied, not cached
/// in offline mode, disk errors).
pub fn download_model(repo_id: &str, revision: Option<&str>, opts: &HubOptions) -> Result<PathBuf> {
    validate_repo_id(repo_id)?;
    let revision = revision.unwrap_or("main");
    validate_revision(revision)?;
    let endpoint = validated_endpoint(opts)?;
    let cache_dir = match &opts.cache_dir {
        Some(dir) => dir.clone(),
        None => HubOptions::from_env().cache_dir.ok_or_else(|| {
            Error::Io("cannot locate the Hugging Face cache folder: set HF_HUB_CACHE or HF_HOME".into())
        })?,
    };
    let token = opts.token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
    let cache = RepoCache::new(&cache_dir, repo_id);
    let ctx = Ctx { endpoint: &endpoint, repo_id, revision, token_sent: token.is_some(), cache_dir: &cache_dir };

    if opts.offline {
        return cache.complete_snapshot(revision).map_err(|why| {
            Error::Io(format!(
                "offline mode (HF_HUB_OFFLINE) is on and {repo_id} at revision `{revision}` is not in the \
                 Hugging Face cache at {}: {why}. Turn offline mode off (unset HF_HUB_OFFLINE) to download it",
                cache_dir.display()
            ))
        });
    }

    let api = ApiBuilder::from_cache(Cache::new(cache_dir.clone()))
        .with_endpoint(endpoint.clone())
        .with_token(token)
        .with_progress(opts.progress)
        .with_retries(BODY_RETRIES)
        .build()
        .map_err(|e| Error::Io(format!("cannot set up the Hugging Face hub client: {e}")))?;

    // Pin the revision to a commit and list the repository's files.
    let info_repo = api.repo(Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string()));
    let info = match guarded(&ctx, None, || info_repo.info()) {
        Ok(info) => info,
        Err(Failure::Unreachable(detail)) => {
            if let Ok(dir) = cache.complete_snapshot(revision) {
                if opts.progress {
                    eprintln!(
                        "warning: could not reach the Hugging Face hub at {endpoint} ({detail}); \
                         using the cached copy of {repo_id} at revision `{revision}`"
                    );
                }
                return Ok(dir);
            }
            return Err(ctx.error(Failure::Unreachable(detail), None));
        }
        Err(failure) => return Err(ctx.error(failure, None)),
    };
    let commit = info.sha.as_str();
    if !is_safe_commit(commit) {
        return Err(Error::Io(format!(
            "the hub at {endpoint} answered with an invalid commit id `{}` for {repo_id} at revision `{revision}`",
            printable(commit)
        )));
    }
    let remote: BTreeSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    if !remote.contains(CONFIG_FILE) {
        return Err(Error::Io(format!(
            "{repo_id} at revision `{revision}` has no {CONFIG_FILE}: it is not a Hugging Face \
             transformers model repository"
        )));
    }
    let weights = if remote.contains(SINGLE_WEIGHTS_FILE) {
        SINGLE_WEIGHTS_FILE
    } else if remote.contains(WEIGHTS_INDEX_FILE) {
        WEIGHTS_INDEX_FILE
    } else {
        return Err(Error::Io(format!(
            "{repo_id} at revision `{revision}` has neither {SINGLE_WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE}: \
             Saguaro needs safetensors weights"
        )));
    };

    let files_repo = api.repo(Repo::with_revision(repo_id.to_string(), RepoType::Model, commit.to_string()));
    let snapshot = cache.snapshot_dir(commit);
    let commit_ref_existed = cache.ref_path(commit).exists();
    let fetch_all = || -> Result<()> {
        let mut wanted: Vec<&str> = vec![CONFIG_FILE, weights];
        wanted.extend(OPTIONAL_FILES.iter().copied().filter(|f| remote.contains(f)));
        for file in &wanted {
            fetch(&ctx, &files_repo, &snapshot, file)?;
        }
        if weights == WEIGHTS_INDEX_FILE {
            let index_path = snapshot.join(WEIGHTS_INDEX_FILE);
            let index = std::fs::read_to_string(&index_path)
                .map_err(|e| Error::Io(format!("{}: {e}", index_path.display())))?;
            for shard in shard_files_from_index(&index)? {
                if !is_plain_file_name(&shard) {
                    return Err(Error::Format(format!(
                        "{WEIGHTS_INDEX_FILE} of {repo_id} names an invalid shard file `{}`",
                        printable(&shard)
                    )));
                }
                if !remote.contains(shard.as_str()) {
                    return Err(Error::Io(format!(
                        "repository or file not found: {WEIGHTS_INDEX_FILE} of {repo_id} at revision \
                         `{revision}` names the shard {shard}, which the repository does not have"
                    )));
                }
                fetch(&ctx, &files_repo, &snapshot, &shard)?;
            }
        }
        Ok(())
    };
    let fetched = fetch_all();
    // hf-hub recorded a ref named after the commit (it downloaded "at revision <commit>");
    // the hub cache only keeps refs for branch and tag names.
    if !commit_ref_existed {
        let _ = std::fs::remove_file(cache.ref_path(commit));
    }
    fetched?;
    if revision != commit {
        Cache::new(cache_dir.clone())
            .repo(Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.to_string()))
            .create_ref(commit)
            .map_err(|e| Error::Io(format!("{}: {e}", cache.ref_path(revision).display())))?;
    }
    Ok(snapshot)
}

/// Downloads `file` into `snapshot` unless it is already there.
fn fetch(ctx: &Ctx, repo: &ApiRepo, snapshot: &Path, file: &str) -> Result<()> {
    let target = snapshot.join(file);
    if target.is_file() {
        return Ok(());
    }
    if target.symlink_metadata().is_ok() {
        // A dangling link (its blob was deleted): hf-hub would refuse to replace it.
        std::fs::remove_file(&target).map_err(|e| Error::Io(format!("{}: {e}", target.display())))?;
    }
    let path = guarded(ctx, Some(file), || repo.download(file)).map_err(|f| ctx.error(f, Some(file)))?;
    if path != target {
        return Err(Error::Io(format!(
            "the hub at {} answered with a different commit for {file} of {} than the one it listed ({}): \
             try again",
            ctx.endpoint,
            ctx.repo_id,
            snapshot.file_name().unwrap_or_default().to_string_lossy()
        )));
    }
    Ok(())
}

/// The cache folder of one model repository: `<cache>/models--OWNER--NAME`.
struct RepoCache {
    root: PathBuf,
}

impl RepoCache {
    fn new(cache_dir: &Path, repo_id: &str) -> Self {
        RepoCache { root: cache_dir.join(format!("models--{}", repo_id.replace('/', "--"))) }
    }

    fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    fn ref_path(&self, revision: &str) -> PathBuf {
        self.root.join("refs").join(revision)
    }

    /// The cached snapshot of `revision` if it holds a loadable model (config + all weight
    /// files); otherwise why not.
    fn complete_snapshot(&self, revision: &str) -> std::result::Result<PathBuf, String> {
        let commit = if is_commit_hash(revision) && self.snapshot_dir(revision).is_dir() {
            revision.to_string()
        } else {
            let ref_path = self.ref_path(revision);
            let text =
                std::fs::read_to_string(&ref_path).map_err(|_| "nothing cached for this revision".to_string())?;
            let commit = text.trim().to_string();
            if !is_safe_commit(&commit) {
                return Err(format!("{} holds no valid commit id", ref_path.display()));
            }
            commit
        };
        let dir = self.snapshot_dir(&commit);
        let mut missing = Vec::new();
        if !dir.join(CONFIG_FILE).is_file() {
            missing.push(CONFIG_FILE.to_string());
        }
        // Check the weights the loader will use: the index (and its shards) if present.
        let index_path = dir.join(WEIGHTS_INDEX_FILE);
        if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| format!("{}: {e}", index_path.display()))?;
            let shards = shard_files_from_index(&text).map_err(|e| format!("{}: {e}", index_path.display()))?;
            for shard in shards {
                if !is_plain_file_name(&shard) || !dir.join(&shard).is_file() {
                    missing.push(printable(&shard));
                }
            }
        } else if !dir.join(SINGLE_WEIGHTS_FILE).is_file() {
            missing.push(format!("{SINGLE_WEIGHTS_FILE} (or {WEIGHTS_INDEX_FILE} and its shards)"));
        }
        if missing.is_empty() {
            Ok(dir)
        } else {
            Err(format!("commit {commit} is cached without {}", missing.join(", ")))
        }
    }
}

/// A failed hub request, sorted by what the user can do about it.
enum Failure {
    /// No HTTP answer: DNS, connection refused, TLS, reset, timeout.
    Unreachable(String),
    /// An HTTP error status.
    Status { code: u16, url: String, error_code: Option<String>, message: Option<String> },
    /// Anything else (bad answer, disk error), already phrased.
    Other(String),
}

/// What a request was about, for error messages.
struct Ctx<'a> {
    endpoint: &'a str,
    repo_id: &'a str,
    revision: &'a str,
    token_sent: bool,
    cache_dir: &'a Path,
}

/// Runs an hf-hub call, turning its errors (and any panic on an unexpected answer) into a
/// [`Failure`].
fn guarded<T>(
    ctx: &Ctx,
    file: Option<&str>,
    call: impl FnOnce() -> std::result::Result<T, ApiError>,
) -> std::result::Result<T, Failure> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(classify(ctx, file, e)),
        Err(_) => Err(Failure::Other(format!(
            "the hub client failed on an unexpected answer from {} while fetching {}",
            ctx.endpoint,
            file.unwrap_or("the repository information")
        ))),
    }
}

fn classify(ctx: &Ctx, file: Option<&str>, err: ApiError) -> Failure {
    let what = file.unwrap_or("the repository information");
    match err {
        ApiError::RequestError(e) => {
            let detail = e.to_string();
            match e.into_response() {
                Some(response) => Failure::Status {
                    code: response.status(),
                    url: response.get_url().to_string(),
                    error_code: response.header("x-error-code").map(printable),
                    message: response.header("x-error-message").map(printable),
                },
                None => Failure::Unreachable(detail),
            }
        }
        ApiError::TooManyRetries(inner) => classify(ctx, file, *inner),
        ApiError::MissingHeader(h) | ApiError::InvalidHeader(h) => Failure::Other(format!(
            "the server at {} does not answer like a Hugging Face hub (header `{h}` missing or invalid \
             when fetching {what}); check HF_ENDPOINT",
            ctx.endpoint
        )),
        ApiError::ParseIntError(_) => Failure::Other(format!(
            "the server at {} sent an invalid Content-Range when fetching {what}; check HF_ENDPOINT",
            ctx.endpoint
        )),
        ApiError::IoError(e) => Failure::Other(match file {
            Some(file) => format!(
                "downloading {file} of {} into {} failed: {e} (run the command again to resume)",
                ctx.repo_id,
                ctx.cache_dir.display()
            ),
            None => format!("the hub at {} sent unreadable repository information: {e}", ctx.endpoint),
        }),
        ApiError::InvalidResume => Failure::Other(format!(
            "the partial download of {what} in {} is corrupt: delete the `*.part` files under its \
             models--* folder and try again",
            ctx.cache_dir.display()
        )),
        ApiError::LockAcquisition(lock) => Failure::Other(format!(
            "another process is downloading {what} (lock file {}): wait for it or delete the lock file",
            lock.display()
        )),
        #[allow(unreachable_patterns)]
        other => Failure::Other(format!("fetching {what} from {} failed: {other}", ctx.endpoint)),
    }
}

impl Ctx<'_> {
    fn error(&self, failure: Failure, file: Option<&str>) -> Error {
        let Ctx { endpoint, repo_id, revision, .. } = *self;
        let subject = match file {
            Some(file) => format!("{file} in {repo_id} at revision `{revision}`"),
            None => format!("{repo_id} at revision `{revision}`"),
        };
        Error::Io(match failure {
            Failure::Unreachable(detail) => format!(
                "could not reach the Hugging Face hub at {endpoint} ({detail}). Check the network \
                 connection; or set HF_ENDPOINT to a hub mirror you can reach; or set HF_HUB_OFFLINE=1 \
                 to use only models already in the cache ({}); or download the model files by hand \
                 ({CONFIG_FILE}, {SINGLE_WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE} and its shards, \
                 tokenizer files) and use their folder instead",
                self.cache_dir.display()
            ),
            Failure::Status { code, url, error_code, message } => {
                let hub_says = message.map(|m| format!(": {m}")).unwrap_or_default();
                match code {
                    404 => {
                        let which = match error_code.as_deref() {
                            Some("RevisionNotFound") => format!("revision `{revision}` of {repo_id}"),
                            Some("EntryNotFound") if file.is_some() => subject,
                            Some("RepoNotFound") => repo_id.to_string(),
                            _ => subject,
                        };
                        format!("repository or file not found: {which} (HTTP 404 from {url}{hub_says})")
                    }
                    401 | 403 if self.token_sent => format!(
                        "access denied to {subject} (HTTP {code} from {url}{hub_says}): the access token \
                         (HF_TOKEN) was not accepted for this repository. Check that it is valid and can \
                         read {repo_id}; for a gated model, accept its terms at {endpoint}/{repo_id} first"
                    ),
                    401 | 403 => format!(
                        "access denied to {subject} (HTTP {code} from {url}{hub_says}): the repository is \
                         private or gated, or does not exist. Check the repository id, and set HF_TOKEN to \
                         a Hugging Face access token that can read it"
                    ),
                    429 => format!(
                        "the hub at {endpoint} is rate-limiting requests (HTTP 429 from {url}){hub_says}: \
                         wait a little and try again, or set HF_TOKEN"
                    ),
                    _ => format!("the hub at {endpoint} answered HTTP {code} for {url}{hub_says}"),
                }
            }
            Failure::Other(message) => message,
        })
    }
}

fn validated_endpoint(opts: &HubOptions) -> Result<String> {
    let endpoint = opts.endpoint_url();
    let rest = endpoint.strip_prefix("https://").or_else(|| endpoint.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if !host_ok {
        return Err(Error::Input(format!(
            "invalid Hugging Face hub endpoint `{}` (HF_ENDPOINT): expected an http:// or https:// URL",
            printable(endpoint)
        )));
    }
    Ok(endpoint.to_string())
}

/// `OWNER/NAME` with the hub's rules: letters, digits, `-`, `_`, `.`; each part starts and
/// ends with a letter or digit; no `--` or `..`; at most 96 characters.
fn validate_repo_id(repo_id: &str) -> Result<()> {
    let part_ok = |p: &str| {
        let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        ends_ok(p.chars().next())
            && ends_ok(p.chars().next_back())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let parts: Vec<&str> = repo_id.split('/').collect();
    let ok = repo_id.len() <= 96
        && parts.len() == 2
        && parts.iter().all(|p| part_ok(p))
        && !repo_id.contains("--")
        && !repo_id.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "invalid model repository id `{}`: expected OWNER/NAME (letters, digits, `-`, `_`, `.`), \
             e.g. LiquidAI/LFM2-350M",
            printable(repo_id)
        )))
    }
}

/// A branch, tag or commit: letters, digits, `-`, `_`, `.`, `/` (as in `refs/pr/1`), with no
/// empty, `.` or `..` path component and no leading `-`.
fn validate_revision(revision: &str) -> Result<()> {
    let ok = !revision.is_empty()
        && revision.len() <= 255
        && !revision.starts_with('-')
        && !revision.contains("..")
        && revision.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && revision.split('/').all(|p| !p.is_empty() && p != ".");
    if ok {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "invalid revision `{}`: expected a branch, tag or commit id (letters, digits, `-`, `_`, `.`, `/`)",
            printable(revision)
        )))
    }
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A commit id that is safe as a single path component.
fn is_safe_commit(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A file name with no directory part (`model-00001-of-00002.safetensors`).
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.chars().any(|c| matches!(c, '/' | '\\' | ':') || c.is_control())
        && Path::new(name).components().count() == 1
}

/// Text from a remote or the user, shortened and with control characters escaped.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(200).flat_map(char::escape_debug).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for good in ["LiquidAI/LFM2-350M", "a/b", "user_1/model.v2", "Org/LFM2-1.2B-GGUF"] {
            assert!(validate_repo_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "gpt2",
            "a/b/c",
            "/abs/path",
            "owner/..",
            "../x",
            "a/.b",
            "a/b.",
            "a--b/c",
            "a/b..c",
            "C:\\x/y",
            "a /b",
            "a/b\n",
            "-a/b",
            "a/",
        ] {
            assert!(matches!(validate_repo_id(bad), Err(Error::Input(_))), "{bad:?}");
        }
    }

    #[test]
    fn revisions() {
        for good in ["main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"] {
            assert!(validate_revision(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/../b", "/abs", "a//b", "a/", "./a", "-x", "a b", "a\\b", "a..b"] {
            assert!(matches!(validate_revision(bad), Err(Error::Input(_))), "{bad:?}");
        }
    }

    #[test]
    fn plain_file_names() {
        assert!(is_plain_file_name("model-00001-of-00003.safetensors"));
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/x", "C:x", "a\0b"] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
}
