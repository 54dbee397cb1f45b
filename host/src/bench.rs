//! Measurements for `saguaro bench`: process memory from /proc and the machine's memory
//! read bandwidth (the ceiling decode speed is compared with).

use std::time::Instant;

/// Resident memory of this process, in bytes (Linux; zeros elsewhere).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    /// VmRSS: resident memory now.
    pub rss: u64,
    /// VmHWM: peak resident memory.
    pub peak_rss: u64,
    /// RssAnon: resident anonymous memory (heap, stacks): what the process allocated, as
    /// opposed to file pages of the memory-mapped model.
    pub rss_anon: u64,
    /// RssFile: resident file-backed pages (the mapped model, the binary).
    pub rss_file: u64,
}

/// Reads /proc/self/status.
pub fn memory() -> Memory {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return Memory::default() };
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Memory { rss: field("VmRSS:"), peak_rss: field("VmHWM:"), rss_anon: field("RssAnon:"), rss_file: field("RssFile:") }
}

/// Single-thread memory read bandwidth in bytes per second: the best of several passes
/// summing a buffer much larger than the caches (`bytes`, e.g. 1 GiB), read as four
/// interleaved streams (more loads in flight than one stream; measured best here).
pub fn read_bandwidth(bytes: usize, passes: usize) -> f64 {
    const STREAMS: usize = 4;
    let words = bytes / 8;
    let buf: Vec<u64> = (0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let per = words / STREAMS / 8 * 8;
    let parts: Vec<&[u64]> = (0..STREAMS).map(|s| &buf[s * per..(s + 1) * per]).collect();
    let mut best = 0.0f64;
    for _ in 0..passes {
        let start = Instant::now();
        // Independent wrapping-add accumulators per stream: trivially vectorised, so the
        // loop is bound by memory, not by arithmetic.
        let mut acc = [[0u64; 8]; STREAMS];
        let mut i = 0;
        while i + 8 <= per {
            for (a, p) in acc.iter_mut().zip(&parts) {
                for (x, &w) in a.iter_mut().zip(&p[i..i + 8]) {
                    *x = x.wrapping_add(w);
                }
            }
            i += 8;
        }
        std::hint::black_box(acc);
        let secs = start.elapsed().as_secs_f64();
        best = best.max((per * STREAMS * 8) as f64 / secs);
    }
    best
}

pub const MB: f64 = 1024.0 * 1024.0;
