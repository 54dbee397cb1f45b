//! Helpers shared by the CLI tests: running `saguaro` with stdin, measuring a run's peak RSS,
//! and fingerprinting folders to prove that nothing was written.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn saguaro(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_saguaro")).args(args).output().expect("run saguaro")
}

/// What one run of `saguaro` did.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit status (None when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident memory of the process (0 where it cannot be measured).
    pub peak_rss_kb: u64,
    pub elapsed: Duration,
}

/// Runs `saguaro args` with `stdin`.
pub fn run(args: &[&str], stdin: &str) -> Run {
    run_bytes(args, stdin.as_bytes())
}

/// Runs `saguaro args` with `stdin` and measures its peak RSS and wall time.
///
/// The peak comes from `wait4`, but not of a child of this process: a child spawned by a
/// process inherits that process's own peak RSS (vfork shares the memory until exec, and
/// the kernel keeps the larger peak), and a test process that built a 50 MB request has a big
/// one. So a fresh copy of this test binary (running only the `rss_helper` test, which holds
/// no big buffer) spawns saguaro with stdin, stdout and stderr in files and reports the result
/// in a file. Each test file that uses this declares `#[test] fn rss_helper() { common::rss_helper() }`.
pub fn run_measured(args: &[&str], stdin: &str) -> Run {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("saguaro-rss-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stdin"), stdin).unwrap();
    std::fs::write(dir.join("args"), args.join("\u{1f}")).unwrap();
    let start = Instant::now();
    let helper = Command::new(std::env::current_exe().unwrap())
        .args(["rss_helper", "--exact", "--nocapture", "--test-threads", "1", "-q"])
        .env(HELPER_ENV, &dir)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let result = std::fs::read_to_string(dir.join("result"))
        .unwrap_or_else(|_| panic!("the RSS helper failed: {}", String::from_utf8_lossy(&helper.stderr)));
    let mut parts = result.split_whitespace();
    let code = parts.next().and_then(|c| c.parse().ok());
    let peak_rss_kb = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let read = |name: &str| String::from_utf8_lossy(&std::fs::read(dir.join(name)).unwrap_or_default()).into_owned();
    let run = Run { code, stdout: read("stdout"), stderr: read("stderr"), peak_rss_kb, elapsed };
    let _ = std::fs::remove_dir_all(&dir);
    run
}

const HELPER_ENV: &str = "SAGUARO_TEST_RSS_HELPER";

/// The `rss_helper` test: in a helper process (see [`run_measured`]) runs saguaro and writes
/// `exit-code peak-rss-kb` to `result`; in a normal test run, checks that measuring works.
pub fn rss_helper() {
    let Some(dir) = std::env::var_os(HELPER_ENV).map(PathBuf::from) else {
        let r = run_measured(&["--version"], "");
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(r.stdout.starts_with("saguaro "), "{r:?}");
        #[cfg(target_os = "linux")]
        assert!(r.peak_rss_kb > 0 && r.peak_rss_kb < 64 << 10, "{r:?}");
        return;
    };
    let args_text = std::fs::read_to_string(dir.join("args")).unwrap();
    let args: Vec<&str> = if args_text.is_empty() { Vec::new() } else { args_text.split('\u{1f}').collect() };
    let mut child = Command::new(env!("CARGO_BIN_EXE_saguaro"))
        .args(&args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .stdin(std::fs::File::open(dir.join("stdin")).unwrap())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let (code, rss) = wait(&mut child);
    std::fs::write(dir.join("result"), format!("{} {rss}", code.map_or("signal".to_string(), |c| c.to_string()))).unwrap();
}

/// Runs `saguaro args`, feeding `stdin` from a thread (the child may stop reading early) and
/// collecting the child's peak RSS from `wait4`.
pub fn run_bytes(args: &[&str], stdin: &[u8]) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_saguaro"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run saguaro");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that refuses its input early closes the pipe: not a test failure.
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let mut stderr = Vec::new();
    let _ = err.read_to_end(&mut stderr);
    let stdout = reader.join().unwrap();
    let (code, peak_rss_kb) = wait(&mut child);
    let _ = writer.join();
    Run {
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        peak_rss_kb,
        elapsed: start.elapsed(),
    }
}

/// Reaps the child with `wait4` for its resource usage: (exit code, peak RSS in KiB).
#[cfg(target_os = "linux")]
fn wait(child: &mut std::process::Child) -> (Option<i32>, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct of integers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (std's Child has not waited on it, and is
    // never asked to afterwards); `status` and `usage` are valid, exclusive pointers to locals
    // that outlive the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None };
    (code, usage.ru_maxrss as u64)
}

#[cfg(not(target_os = "linux"))]
fn wait(child: &mut std::process::Child) -> (Option<i32>, u64) {
    (child.wait().expect("wait").code(), 0)
}

/// A fresh, empty folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saguaro-bad-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every entry under `dir` (not following symlinks) with a hash of its contents (files), its
/// target (symlinks) or nothing (folders): equal fingerprints mean nothing was written.
pub fn files_digest(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            if meta.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().hash(&mut h);
            } else if meta.is_dir() {
                stack.push(p.clone());
            } else {
                std::fs::read(&p).unwrap().hash(&mut h);
            }
            out.insert(p, h.finish());
        }
    }
    out
}
