//! Stop sequences matched across token boundaries, holding back text that may start one.

/// Holds back text that could start a stop sequence; finds the first complete one.
#[derive(Debug, Default)]
pub(super) struct StopMatcher {
    /// The request's stop sequences.
    stops: Vec<String>,
    /// Whether released text keeps the matched sequence (`include_stop_sequences`).
    include: bool,
    /// Text held back: it ends with the start of some stop sequence.
    pending: String,
}

impl StopMatcher {
    pub(super) fn new(stops: &[String], include: bool) -> Self {
        StopMatcher {
            stops: stops.to_vec(),
            include,
            pending: String::new(),
        }
    }

    /// Adds text; returns the text that can be released and whether a stop sequence matched
    /// (then nothing after it is ever released).
    pub(super) fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.pending.push_str(text);
        let hit = self
            .stops
            .iter()
            .filter_map(|s| {
                self.pending
                    .find(s.as_str())
                    .map(|at| (at, std::cmp::Reverse(s.len()), s))
            })
            .min();
        if let Some((at, _, stop)) = hit {
            let mut out = self.pending[..at].to_string();
            if self.include {
                out.push_str(stop);
            }
            self.pending.clear();
            return (out, true);
        }
        let mut hold = 0;
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if k > hold && s.is_char_boundary(k) && self.pending.ends_with(&s[..k]) {
                    hold = k;
                    break;
                }
            }
        }
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// Releases what is held (generation ended without a match).
    pub(super) fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], include: bool, pieces: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops, include);
        let mut out = Vec::new();
        for p in pieces {
            let (r, hit) = m.push(p);
            out.push(r);
            if hit {
                return (out, true, String::new());
            }
        }
        let rest = m.finish();
        (out, false, rest)
    }

    #[test]
    fn stop_sequences_match_across_pieces() {
        let (out, hit, _) = run(&["END"], false, &["abc E", "N", "Dxyz"]);
        assert!(hit);
        assert_eq!(out, vec!["abc ", "", ""]);
        assert_eq!(out.concat(), "abc ");
        let (out, hit, _) = run(&["END"], true, &["abc E", "ND"]);
        assert!(hit);
        assert_eq!(out.concat(), "abc END");
        // A false start is released once it cannot be a stop any more.
        let (out, hit, rest) = run(&["END"], false, &["abc EN", "x"]);
        assert!(!hit);
        assert_eq!((out.concat(), rest), ("abc ENx".to_string(), String::new()));
        // Held text comes back at the end.
        let (out, hit, rest) = run(&["END", "STOP"], false, &["x ST"]);
        assert!(!hit);
        assert_eq!((out.concat(), rest), ("x ".to_string(), "ST".to_string()));
        // The earliest match wins, then the longest.
        let (out, _, _) = run(&["bc", "abcd", "ab"], false, &["xxabcd"]);
        assert_eq!(out.concat(), "xx");
        // Multi-byte stop sequences are held on character boundaries.
        let (out, hit, _) = run(&["日本"], false, &["a日", "本b"]);
        assert!(hit);
        assert_eq!(out, vec!["a", ""]);
    }
}
