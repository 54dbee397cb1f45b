//! `saguaro_host::hub::download_model` against a tiny in-process HTTP/1.1 server on
//! 127.0.0.1 that answers like the Hugging Face hub:
//!
//! - `GET /api/models/{owner}/{name}/revision/{rev}`: `{"id", "sha", "siblings": [{"rfilename"}]}`;
//! - `GET|HEAD /{owner}/{name}/resolve/{rev}/{file}`: small files answered directly (206 for a
//!   `Range`, with `Content-Range`, `ETag`, `X-Repo-Commit`); `*.safetensors` ("LFS" files)
//!   answered with a 302 to an absolute `/cdn/{etag}` URL plus `X-Linked-Etag`,
//!   `X-Linked-Size` and `X-Repo-Commit`, like the hub's redirect to its CDN;
//! - 404 with `X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound`, 401 when a
//!   repository requires a token and the `Authorization: Bearer` header is missing or wrong.
//!
//! Every test gets its own server and cache folder and passes `HubOptions` explicitly (no
//! environment variables are read or written, except by `from_env_matches_the_process_environment`,
//! which only reads them).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use saguaro_host::engine::Error;
use saguaro_host::hub::{download_model, HubOptions};

// ---------------------------------------------------------------------------------------------
// Fixture repositories

const SHA_HYBRID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
const SHA_SHARDED_BRANCH: &str = "b2c3d4e5f60718293a4b5c6d7e8f9012345678a1";
const SHA_PR: &str = "c3d4e5f60718293a4b5c6d7e8f9012345678a1b2";
const SHA_SHARDED: &str = "d4e5f60718293a4b5c6d7e8f9012345678a1b2c3";
const SHA_PRIVATE: &str = "e5f60718293a4b5c6d7e8f9012345678a1b2c3d4";
const SHA_EVIL: &str = "f60718293a4b5c6d7e8f9012345678a1b2c3d4e5";
const SHA_BROKEN: &str = "0718293a4b5c6d7e8f9012345678a1b2c3d4e5f6";
const TOKEN: &str = "hf_s3cretT0ken";

/// Extra (in-memory) files the hybrid repository has besides its fixture folder.
const TOKENIZER_JSON: &[u8] = br#"{"version":"1.0","model":{"type":"BPE","vocab":{}}}"#;
const TOKENIZER_CONFIG: &[u8] = br#"{"bos_token":"<|startoftext|>","eos_token":"<|im_end|>"}"#;
const CHAT_TEMPLATE: &[u8] =
    b"{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

/// Every file of a fixture folder (including reference.json, which must not be downloaded).
fn fixture_files(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(fixture_dir(name))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[derive(Clone)]
struct Commit {
    sha: &'static str,
    files: Vec<(String, Vec<u8>)>,
}

#[derive(Clone)]
struct MockRepo {
    /// Branch / tag names and the commit they point to.
    refs: Vec<(&'static str, &'static str)>,
    commits: Vec<Commit>,
    token: Option<&'static str>,
    /// Answer `*.safetensors` with a 302 that has no Location (a broken hub).
    broken_redirect: bool,
}

impl MockRepo {
    fn commit(&self, rev: &str) -> Option<&Commit> {
        let sha = self.refs.iter().find(|(name, _)| *name == rev).map(|(_, sha)| *sha).unwrap_or(rev);
        self.commits.iter().find(|c| c.sha == sha)
    }
}

fn hybrid_files() -> Vec<(String, Vec<u8>)> {
    let mut files = fixture_files("hybrid-gqa");
    files.push(("tokenizer.json".into(), TOKENIZER_JSON.to_vec()));
    files.push(("tokenizer_config.json".into(), TOKENIZER_CONFIG.to_vec()));
    files.push(("chat_template.jinja".into(), CHAT_TEMPLATE.to_vec()));
    files.push(("README.md".into(), b"# tiny hybrid\n".to_vec()));
    files
}

fn repos() -> BTreeMap<String, MockRepo> {
    let mut repos = BTreeMap::new();
    repos.insert(
        "LiquidAI/tiny-hybrid".to_string(),
        MockRepo {
            refs: vec![("main", SHA_HYBRID), ("sharded", SHA_SHARDED_BRANCH), ("refs/pr/1", SHA_PR)],
            commits: vec![
                Commit { sha: SHA_HYBRID, files: hybrid_files() },
                Commit { sha: SHA_SHARDED_BRANCH, files: fixture_files("sharded-allattn") },
                Commit { sha: SHA_PR, files: fixture_files("hybrid-gqa") },
            ],
            token: None,
            broken_redirect: false,
        },
    );
    repos.insert(
        "LiquidAI/tiny-sharded".to_string(),
        MockRepo {
            refs: vec![("main", SHA_SHARDED)],
            commits: vec![Commit { sha: SHA_SHARDED, files: fixture_files("sharded-allattn") }],
            token: None,
            broken_redirect: false,
        },
    );
    repos.insert(
        "private-org/tiny".to_string(),
        MockRepo {
            refs: vec![("main", SHA_PRIVATE)],
            commits: vec![Commit { sha: SHA_PRIVATE, files: fixture_files("hybrid-gqa") }],
            token: Some(TOKEN),
            broken_redirect: false,
        },
    );
    let config = std::fs::read(fixture_dir("sharded-allattn").join("config.json")).unwrap();
    let evil_index = br#"{"metadata":{},"weight_map":{"model.embed_tokens.weight":"../escape.safetensors"}}"#;
    repos.insert(
        "evil/shards".to_string(),
        MockRepo {
            refs: vec![("main", SHA_EVIL)],
            commits: vec![Commit {
                sha: SHA_EVIL,
                files: vec![
                    ("config.json".into(), config),
                    ("model.safetensors.index.json".into(), evil_index.to_vec()),
                    ("../escape.safetensors".into(), b"escaped".to_vec()),
                ],
            }],
            token: None,
            broken_redirect: false,
        },
    );
    repos.insert(
        "broken/hub".to_string(),
        MockRepo {
            refs: vec![("main", SHA_BROKEN)],
            commits: vec![Commit { sha: SHA_BROKEN, files: fixture_files("hybrid-gqa") }],
            token: None,
            broken_redirect: true,
        },
    );
    repos
}

// ---------------------------------------------------------------------------------------------
// The mock hub

#[derive(Debug, Clone)]
struct Logged {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
}

struct State {
    repos: BTreeMap<String, MockRepo>,
    /// Blob content by etag, for the `/cdn/` URLs.
    blobs: BTreeMap<String, Vec<u8>>,
    log: Mutex<Vec<Logged>>,
}

/// An HTTP/1.1 server on 127.0.0.1 for one test: a thread per connection (at most
/// `MAX_CONNECTIONS`), stopped and joined when dropped.
struct MockHub {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

const MAX_CONNECTIONS: usize = 64;

impl MockHub {
    fn start() -> MockHub {
        // hf-hub's ureq 2 client takes its proxy from these variables and ignores NO_PROXY, so
        // with one set the requests to 127.0.0.1 would go to the proxy instead of this server.
        let proxies: Vec<&str> = ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
            .into_iter()
            .filter(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
            .collect();
        assert!(
            proxies.is_empty(),
            "unset {proxies:?} to run these tests: hf-hub would send 127.0.0.1 requests to the proxy"
        );
        let repos = repos();
        let mut blobs = BTreeMap::new();
        for repo in repos.values() {
            for commit in &repo.commits {
                for (_, bytes) in &commit.files {
                    blobs.insert(etag(bytes), bytes.clone());
                }
            }
        }
        let state = Arc::new(State { repos, blobs, log: Mutex::new(Vec::new()) });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let opened = AtomicUsize::new(0);
                let mut workers = Vec::new();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if opened.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        continue; // dropped: closes the connection
                    }
                    let (state, stop) = (state.clone(), stop.clone());
                    workers.push(std::thread::spawn(move || serve_connection(stream, addr, &state, &stop)));
                }
                for worker in workers {
                    let _ = worker.join();
                }
            })
        };
        MockHub { addr, state, stop, accept: Some(accept) }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn options(&self, cache: &Path) -> HubOptions {
        HubOptions {
            endpoint: Some(self.endpoint()),
            token: None,
            cache_dir: Some(cache.to_path_buf()),
            progress: false,
            offline: false,
        }
    }

    fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// A content hash standing in for the hub's git / sha256 etags (FNV-1a, two seeds).
fn etag(bytes: &[u8]) -> String {
    let fnv = |seed: u64| bytes.iter().fold(seed, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    format!("{:016x}{:016x}{:08x}", fnv(0xcbf29ce484222325), fnv(0x84222325cbf29ce4), bytes.len())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }
    fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    fn body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }
    fn error(status: u16, code: &str, message: &str) -> Response {
        Response::new(status)
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
            .header("Content-Type", "application/json")
            .body(format!("{{\"error\":\"{message}\"}}").into_bytes())
    }
}

fn serve_connection(mut stream: TcpStream, addr: SocketAddr, state: &State, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Read one request head (GET/HEAD: no body).
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            if stop.load(Ordering::SeqCst) || buf.len() > 64 * 1024 {
                return;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(_) => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_string();
        let path = request_line.next().unwrap_or("").to_string();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let close = headers.get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        state.log.lock().unwrap().push(Logged { method: method.clone(), path: path.clone(), headers: headers.clone() });

        let response = route(state, addr, &method, &path, &headers);
        let mut out = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
        for (name, value) in &response.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if method != "HEAD" {
            bytes.extend_from_slice(&response.body);
        }
        if stream.write_all(&bytes).and_then(|_| stream.flush()).is_err() || close {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Whatever",
    }
}

/// Serves `bytes`, honouring `Range: bytes=S-E` / `bytes=S-`.
fn serve_bytes(bytes: &[u8], headers: &BTreeMap<String, String>) -> Response {
    let len = bytes.len();
    let range = headers.get("range").and_then(|r| r.strip_prefix("bytes=")).and_then(|r| {
        let (start, end) = r.split_once('-')?;
        let start: usize = start.parse().ok()?;
        let end: usize = if end.is_empty() { len.saturating_sub(1) } else { end.parse().ok()? };
        Some((start, end.min(len.saturating_sub(1))))
    });
    match range {
        None => Response::new(200).header("Accept-Ranges", "bytes").body(bytes.to_vec()),
        Some((start, _)) if start >= len => Response::new(416).header("Content-Range", format!("bytes */{len}")),
        Some((start, end)) => Response::new(206)
            .header("Accept-Ranges", "bytes")
            .header("Content-Range", format!("bytes {start}-{end}/{len}"))
            .body(bytes[start..=end].to_vec()),
    }
}

fn route(state: &State, addr: SocketAddr, method: &str, path: &str, headers: &BTreeMap<String, String>) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::new(405);
    }
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();

    // The CDN: no auth, just bytes by etag.
    if let ["cdn", tag] = seg.as_slice() {
        return match state.blobs.get(*tag) {
            Some(bytes) => serve_bytes(bytes, headers),
            None => Response::error(404, "EntryNotFound", "no such blob"),
        };
    }

    let (repo_id, rev, file, api) = match seg.as_slice() {
        ["api", "models", owner, name, "revision", rev] => (format!("{owner}/{name}"), rev.to_string(), None, true),
        [owner, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            (format!("{owner}/{name}"), rev.to_string(), Some(file.join("/")), false)
        }
        _ => return Response::error(404, "NotFound", "no such route"),
    };
    let Some(repo) = state.repos.get(&repo_id) else {
        return Response::error(404, "RepoNotFound", "Repository not found");
    };
    if let Some(token) = repo.token {
        if headers.get("authorization").map(String::as_str) != Some(&format!("Bearer {token}")) {
            return Response::error(401, "RepoNotFound", "Invalid credentials in Authorization header");
        }
    }
    let Some(commit) = repo.commit(&rev) else {
        return Response::error(404, "RevisionNotFound", "Invalid rev id");
    };
    if api {
        let siblings: Vec<serde_json::Value> =
            commit.files.iter().map(|(name, _)| serde_json::json!({ "rfilename": name })).collect();
        let body = serde_json::json!({ "_id": "x", "id": repo_id, "sha": commit.sha, "siblings": siblings });
        return Response::new(200).header("Content-Type", "application/json").body(body.to_string().into_bytes());
    }
    let file = file.unwrap_or_default();
    let Some((_, bytes)) = commit.files.iter().find(|(name, _)| *name == file) else {
        return Response::error(404, "EntryNotFound", "Entry not found");
    };
    let tag = etag(bytes);
    if file.ends_with(".safetensors") {
        let response = Response::new(302)
            .header("X-Repo-Commit", commit.sha)
            .header("X-Linked-Etag", format!("\"{tag}\""))
            .header("X-Linked-Size", bytes.len().to_string())
            .header("ETag", format!("\"pointer-{tag}\""));
        if repo.broken_redirect {
            return response;
        }
        return response.header("Location", format!("http://{addr}/cdn/{tag}?expires=1"));
    }
    let mut response = serve_bytes(bytes, headers);
    response.headers.push(("X-Repo-Commit".into(), commit.sha.into()));
    response.headers.push(("ETag".into(), format!("\"{tag}\"")));
    response
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh folder under the system temp dir, deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "saguaro-hub-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io_message(result: saguaro_host::engine::Result<PathBuf>) -> String {
    match result {
        Err(Error::Io(message)) => {
            eprintln!("error: {message}");
            message
        }
        other => panic!("expected an Error::Io, got {other:?}"),
    }
}

/// The snapshot folder holds exactly `expected` (name, bytes) and nothing else.
fn assert_snapshot(dir: &Path, expected: &[(&str, Vec<u8>)]) {
    for (name, bytes) in expected {
        let got = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *bytes, "{name} differs from the served file");
    }
    let mut present: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    present.sort();
    let mut wanted: Vec<String> = expected.iter().map(|(n, _)| n.to_string()).collect();
    wanted.sort();
    assert_eq!(present, wanted, "files in {}", dir.display());
}

fn read_fixture(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir(dir).join(name)).unwrap()
}

fn sharded_expected() -> Vec<(&'static str, Vec<u8>)> {
    [
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
    ]
    .into_iter()
    .map(|n| (n, read_fixture("sharded-allattn", n)))
    .collect()
}

/// An http URL on 127.0.0.1 where nothing listens: a port the OS just handed out and took back.
fn closed_port_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn snapshot_path(cache: &Path, repo: &str, sha: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--"))).join("snapshots").join(sha)
}

fn read_ref(cache: &Path, repo: &str, rev: &str) -> String {
    std::fs::read_to_string(cache.join(format!("models--{}", repo.replace('/', "--"))).join("refs").join(rev)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn downloads_single_file_model_byte_identical() {
    let hub = MockHub::start();
    let cache = TempDir::new("single");
    let dir = download_model("LiquidAI/tiny-hybrid", None, &hub.options(cache.path())).unwrap();
    assert_eq!(dir, snapshot_path(cache.path(), "LiquidAI/tiny-hybrid", SHA_HYBRID));
    assert_snapshot(
        &dir,
        &[
            ("config.json", read_fixture("hybrid-gqa", "config.json")),
            ("generation_config.json", read_fixture("hybrid-gqa", "generation_config.json")),
            ("model.safetensors", read_fixture("hybrid-gqa", "model.safetensors")),
            ("tokenizer.json", TOKENIZER_JSON.to_vec()),
            ("tokenizer_config.json", TOKENIZER_CONFIG.to_vec()),
            ("chat_template.jinja", CHAT_TEMPLATE.to_vec()),
        ],
    );
    assert_eq!(read_ref(cache.path(), "LiquidAI/tiny-hybrid", "main"), SHA_HYBRID);
    // Only a ref for the branch, not for the commit it was downloaded at.
    let refs = cache.path().join("models--LiquidAI--tiny-hybrid/refs");
    let refs: Vec<_> = std::fs::read_dir(refs).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(refs, ["main"]);

    let requests = hub.requests();
    assert_eq!(requests[0].path, "/api/models/LiquidAI/tiny-hybrid/revision/main");
    assert!(requests.iter().all(|r| !r.path.contains("reference.json") && !r.path.contains("README")));
    assert!(requests.iter().any(|r| r.path.starts_with("/cdn/")), "large files go through the redirect");
    assert!(requests.iter().all(|r| !r.headers.contains_key("authorization")), "no token was given");
    assert!(requests.iter().all(|r| r.method == "GET"));
    // hf-hub asks for metadata with a one-byte range, then for the body from an offset.
    let config_ranges: Vec<Option<&str>> = requests
        .iter()
        .filter(|r| r.path.ends_with("/config.json"))
        .map(|r| r.headers.get("range").map(String::as_str))
        .collect();
    assert_eq!(config_ranges, [Some("bytes=0-0"), Some("bytes=0-")]);

    // A second pull finds everything cached: one request (the revision lookup), same folder.
    let before = hub.requests().len();
    let again = download_model("LiquidAI/tiny-hybrid", Some("main"), &hub.options(cache.path())).unwrap();
    assert_eq!(again, dir);
    assert_eq!(hub.requests().len(), before + 1);
}

#[test]
fn downloads_sharded_model_with_every_shard() {
    let hub = MockHub::start();
    let cache = TempDir::new("sharded");
    // Progress bars on: indicatif hides them when stderr is not a terminal.
    let opts = HubOptions { progress: true, ..hub.options(cache.path()) };
    let dir = download_model("LiquidAI/tiny-sharded", None, &opts).unwrap();
    assert_eq!(dir, snapshot_path(cache.path(), "LiquidAI/tiny-sharded", SHA_SHARDED));
    assert_snapshot(&dir, &sharded_expected());
    // The loader accepts what was downloaded.
    assert_eq!(saguaro_host::loader::safetensors_files(&dir).unwrap().len(), 3);
}

#[test]
fn revision_other_than_main() {
    let hub = MockHub::start();
    let cache = TempDir::new("revision");
    let repo = "LiquidAI/tiny-hybrid";

    let dir = download_model(repo, Some("sharded"), &hub.options(cache.path())).unwrap();
    assert_eq!(dir, snapshot_path(cache.path(), repo, SHA_SHARDED_BRANCH));
    assert_snapshot(&dir, &sharded_expected());
    assert_eq!(read_ref(cache.path(), repo, "sharded"), SHA_SHARDED_BRANCH);
    assert!(hub.requests().iter().any(|r| r.path == format!("/{repo}/resolve/{SHA_SHARDED_BRANCH}/config.json")));

    // A revision with a slash is sent escaped and stored as nested refs.
    let dir = download_model(repo, Some("refs/pr/1"), &hub.options(cache.path())).unwrap();
    assert_eq!(dir, snapshot_path(cache.path(), repo, SHA_PR));
    assert!(hub.requests().iter().any(|r| r.path == format!("/api/models/{repo}/revision/refs%2Fpr%2F1")));
    assert_eq!(read_ref(cache.path(), repo, "refs/pr/1"), SHA_PR);
    assert_snapshot(
        &dir,
        &["config.json", "generation_config.json", "model.safetensors"].map(|n| (n, read_fixture("hybrid-gqa", n))),
    );

    // A commit id works too and adds no ref.
    let dir = download_model(repo, Some(SHA_HYBRID), &hub.options(cache.path())).unwrap();
    assert_eq!(dir, snapshot_path(cache.path(), repo, SHA_HYBRID));
    assert!(dir.join("tokenizer.json").is_file());
    assert!(!cache.path().join("models--LiquidAI--tiny-hybrid/refs").join(SHA_HYBRID).exists());
}

#[test]
fn missing_repository_revision_or_bad_index_give_clear_errors() {
    let hub = MockHub::start();
    let cache = TempDir::new("missing");
    let message = io_message(download_model("LiquidAI/does-not-exist", None, &hub.options(cache.path())));
    assert!(message.starts_with("repository or file not found: LiquidAI/does-not-exist"), "{message}");

    let message =
        io_message(download_model("LiquidAI/tiny-hybrid", Some("no-such-branch"), &hub.options(cache.path())));
    assert!(message.starts_with("repository or file not found: revision `no-such-branch`"), "{message}");

    // A shard name that would leave the snapshot folder is refused before it is requested.
    match download_model("evil/shards", None, &hub.options(cache.path())) {
        Err(Error::Format(message)) => assert!(message.contains("../escape.safetensors"), "{message}"),
        other => panic!("expected a Format error, got {other:?}"),
    }
    assert!(hub.requests().iter().all(|r| !r.path.contains("escape")));
    assert!(!cache.path().join("models--evil--shards/escape.safetensors").exists());
    assert!(!cache.path().join("models--evil--shards/refs").join(SHA_EVIL).exists(), "no ref left for the commit");

    // A hub answer hf-hub cannot handle (a redirect without Location) is an error, not a panic.
    let message = io_message(download_model("broken/hub", None, &hub.options(cache.path())));
    assert!(message.contains("unexpected answer") && message.contains("model.safetensors"), "{message}");
}

#[test]
fn token_is_sent_as_bearer_and_required_by_private_repo() {
    let hub = MockHub::start();
    let cache = TempDir::new("token");
    let repo = "private-org/tiny";

    let message = io_message(download_model(repo, None, &hub.options(cache.path())));
    assert!(message.contains("HTTP 401") && message.contains("set HF_TOKEN"), "{message}");

    let wrong = HubOptions { token: Some("hf_wrong".into()), ..hub.options(cache.path()) };
    let message = io_message(download_model(repo, None, &wrong));
    assert!(
        message.contains("HTTP 401") && message.contains("HF_TOKEN") && message.contains("not accepted"),
        "{message}"
    );

    let start = hub.requests().len();
    let right = HubOptions { token: Some(TOKEN.into()), ..hub.options(cache.path()) };
    let dir = download_model(repo, None, &right).unwrap();
    assert_snapshot(
        &dir,
        &["config.json", "generation_config.json", "model.safetensors"].map(|n| (n, read_fixture("hybrid-gqa", n))),
    );
    let requests = hub.requests();
    let authed: Vec<&Logged> = requests[start..].iter().filter(|r| !r.path.starts_with("/cdn/")).collect();
    assert!(authed.len() >= 4);
    for r in authed {
        assert_eq!(r.headers.get("authorization").map(String::as_str), Some("Bearer hf_s3cretT0ken"), "{}", r.path);
    }
}

#[test]
fn unreachable_endpoint_fails_fast_with_offline_advice() {
    let endpoint = closed_port_endpoint();
    let cache = TempDir::new("closed");
    let opts = HubOptions {
        endpoint: Some(endpoint.clone()),
        token: None,
        cache_dir: Some(cache.path().to_path_buf()),
        progress: false,
        offline: false,
    };
    let start = Instant::now();
    let message = io_message(download_model("LiquidAI/tiny-hybrid", None, &opts));
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(message.starts_with(&format!("could not reach the Hugging Face hub at {endpoint}")), "{message}");
    for hint in ["HF_ENDPOINT", "HF_HUB_OFFLINE", "by hand"] {
        assert!(message.contains(hint), "{hint} in {message}");
    }
}

#[test]
fn offline_mode_uses_only_the_cache() {
    let hub = MockHub::start();
    let cache = TempDir::new("offline");
    let repo = "LiquidAI/tiny-sharded";
    let offline = HubOptions { offline: true, ..hub.options(cache.path()) };

    let message = io_message(download_model(repo, None, &offline));
    assert!(message.contains("HF_HUB_OFFLINE") && message.contains("not in the"), "{message}");
    assert!(hub.requests().is_empty(), "offline mode made a request");

    let online_dir = download_model(repo, None, &hub.options(cache.path())).unwrap();
    let count = hub.requests().len();
    assert_eq!(download_model(repo, None, &offline).unwrap(), online_dir);
    assert_eq!(download_model(repo, Some(SHA_SHARDED), &offline).unwrap(), online_dir);
    assert_eq!(hub.requests().len(), count, "offline mode made a request");
    let message = io_message(download_model(repo, Some("other-branch"), &offline));
    assert!(message.contains("not in the"), "{message}");

    // A missing shard makes the cached copy incomplete.
    std::fs::remove_file(online_dir.join("model-00002-of-00003.safetensors")).unwrap();
    let message = io_message(download_model(repo, None, &offline));
    assert!(message.contains("model-00002-of-00003.safetensors"), "{message}");
    // Online, only that shard is fetched again.
    let count = hub.requests().len();
    download_model(repo, None, &hub.options(cache.path())).unwrap();
    let new: Vec<String> = hub.requests()[count..].iter().map(|r| r.path.clone()).collect();
    assert!(
        new.iter().all(|p| p.starts_with("/api/") || p.contains("model-00002") || p.starts_with("/cdn/")),
        "{new:?}"
    );
    assert_snapshot(&online_dir, &sharded_expected());

    // When the hub is unreachable, a fully cached revision is still served.
    drop(hub);
    let closed = HubOptions { endpoint: Some(closed_port_endpoint()), offline: false, ..offline.clone() };
    assert_eq!(download_model(repo, None, &closed).unwrap(), online_dir);
}

#[test]
fn invalid_arguments_are_rejected_before_any_request() {
    let hub = MockHub::start();
    let cache = TempDir::new("invalid");
    let opts = hub.options(cache.path());
    for repo in ["", "gpt2", "../etc/passwd", "/abs/path", "owner/..", "a/b/c", "a--b/c", "owner/name\n"] {
        match download_model(repo, None, &opts) {
            Err(Error::Input(message)) => assert!(message.contains("repository id"), "{message}"),
            other => panic!("{repo:?}: expected an Input error, got {other:?}"),
        }
    }
    for rev in ["", "../main", "a/../b", "/abs", "a b", "a\\b"] {
        match download_model("LiquidAI/tiny-hybrid", Some(rev), &opts) {
            Err(Error::Input(message)) => assert!(message.contains("revision"), "{message}"),
            other => panic!("{rev:?}: expected an Input error, got {other:?}"),
        }
    }
    let bad_endpoint = HubOptions { endpoint: Some("ftp://example.com".into()), ..opts.clone() };
    assert!(matches!(download_model("LiquidAI/tiny-hybrid", None, &bad_endpoint), Err(Error::Input(_))));
    assert!(hub.requests().is_empty());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "nothing written to the cache");
}

#[test]
fn options_from_environment_variables() {
    let home = TempDir::new("env");
    std::fs::create_dir_all(home.path().join("hfhome")).unwrap();
    std::fs::write(home.path().join("hfhome/token"), "hf_fromfile\n").unwrap();
    let vars = |pairs: &[(&str, &str)]| {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |key: &str| map.get(key).cloned()
    };
    let hf_home = home.path().join("hfhome");
    let hf_home = hf_home.to_str().unwrap();

    let opts = HubOptions::from_lookup(vars(&[
        ("HF_ENDPOINT", "http://127.0.0.1:8080/"),
        ("HF_TOKEN", "hf_abc"),
        ("HF_HOME", hf_home),
        ("HF_HUB_OFFLINE", "1"),
    ]));
    assert_eq!(opts.endpoint.as_deref(), Some("http://127.0.0.1:8080"));
    assert_eq!(opts.token.as_deref(), Some("hf_abc"));
    assert_eq!(opts.cache_dir, Some(Path::new(hf_home).join("hub")));
    assert!(opts.offline && opts.progress);

    // HF_HUB_CACHE wins over HF_HOME; the token falls back to $HF_HOME/token.
    let opts = HubOptions::from_lookup(vars(&[
        ("HF_HOME", hf_home),
        ("HF_HUB_CACHE", "/somewhere/hub-cache"),
        ("HF_HUB_OFFLINE", "0"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "true"),
        ("HF_ENDPOINT", ""),
    ]));
    assert_eq!(opts.cache_dir, Some(PathBuf::from("/somewhere/hub-cache")));
    assert_eq!(opts.token.as_deref(), Some("hf_fromfile"));
    assert_eq!(opts.endpoint, None);
    assert_eq!(opts.endpoint_url(), "https://huggingface.co");
    assert!(!opts.offline && !opts.progress);

    // Defaults from HOME.
    let opts = HubOptions::from_lookup(vars(&[("HOME", "/home/someone")]));
    assert_eq!(opts.cache_dir, Some(PathBuf::from("/home/someone/.cache/huggingface/hub")));
    assert_eq!(opts.token, None);
    let opts = HubOptions::from_lookup(vars(&[("HOME", "/home/someone"), ("XDG_CACHE_HOME", "/xdg")]));
    assert_eq!(opts.cache_dir, Some(PathBuf::from("/xdg/huggingface/hub")));

    // from_env is from_lookup over the process environment (read only, never modified here).
    assert_eq!(HubOptions::from_env(), HubOptions::from_lookup(|k| std::env::var(k).ok()));
}

// ---------------------------------------------------------------------------------------------
// The `saguaro pull` command end to end

fn saguaro(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_saguaro"));
    cmd.args(args);
    for var in ["HF_ENDPOINT", "HF_TOKEN", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn pull_downloads_and_converts_to_a_working_cact() {
    let hub = MockHub::start();
    let dir = TempDir::new("pull");
    let out = dir.path().join("tiny-int8.cact");
    let env = [("HF_ENDPOINT", hub.endpoint()), ("HF_HUB_CACHE", dir.path().join("cache").display().to_string())];
    let run = saguaro(&["pull", "LiquidAI/tiny-hybrid", "-o", out.to_str().unwrap(), "--quant", "int8", "--quiet"], &env);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..4], b"CACT");

    // Same tokens as converting the fixture folder directly.
    let local = dir.path().join("local.cact");
    let conv = saguaro(&["convert", fixture_dir("hybrid-gqa").to_str().unwrap(), "-o", local.to_str().unwrap(), "--quant", "int8", "--quiet"], &[]);
    assert!(conv.status.success());
    let gen = |m: &Path| {
        let o = saguaro(&["generate", "--model", m.to_str().unwrap(), "--tokens", "5,6,7,8", "--max-tokens", "8", "--json"], &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert_eq!(gen(&out), gen(&local));
    // The tokenizer files and chat template from the repository travel inside the .cact.
    let file = saguaro_host::engine::format::CactFile::parse(saguaro_host::loader::map_file(&out).unwrap()).unwrap();
    assert_eq!(file.file("tokenizer.json"), Some(TOKENIZER_JSON));
    assert!(file.manifest.chat_template.as_deref().unwrap().contains("im_start"));
}

#[test]
fn pull_offline_is_a_clear_error() {
    let dir = TempDir::new("pull-offline");
    let env = [("HF_ENDPOINT", closed_port_endpoint()), ("HF_HUB_CACHE", dir.path().display().to_string())];
    let out = dir.path().join("x.cact");
    let run = saguaro(&["pull", "LiquidAI/LFM2-350M", "-o", out.to_str().unwrap(), "--quiet"], &env);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could not reach the Hugging Face hub"), "{stderr}");
    assert!(!out.exists());
}
