//! Tool calls in the model's output.
//!
//! LFM2 writes calls between `<|tool_call_start|>` and `<|tool_call_end|>`, Pythonic by default:
//!
//! ```text
//! [get_weather(city="Paris", days=3), set_alarm(time='7:00', repeat=[1, 2], opts={"loud": True}), ping()]
//! ```
//!
//! or JSON when its system prompt asks for it: `[{"name": "get_weather", "arguments": {"city":
//! "Paris"}}]` (also a single object, `"parameters"` for `"arguments"`, the OpenAI
//! `{"function": {...}}` wrapper, and `arguments` given as a JSON string).
//!
//! [`parse_tool_calls`] is a hand-written recursive-descent parser for the subset of Python
//! literals a call uses, so argument values keep their types (serde_json values):
//! - strings with `"` or `'` quotes (also triple-quoted, `r`/`u` prefixes, adjacent literals
//!   concatenated) and Python's escapes (`\n \t \r \\ \' \" \a \b \f \v \0`, octal, `\xhh`,
//!   `\uXXXX` with surrogate pairs, `\UXXXXXXXX`; unknown escapes keep their backslash);
//! - integers (also `0x`/`0o`/`0b`, `_` separators) and floats (`1.5`, `.5`, `1e-3`; must be
//!   finite), with a sign;
//! - `True`/`False`/`None` and `true`/`false`/`null`;
//! - lists `[...]`, tuples `(...)` (become arrays; `(x)` is just `x`), dicts `{k: v}` (keys are
//!   strings, or numbers/booleans/None written as JSON keys);
//! - keyword arguments only (`f(1)` is reported: a positional argument has no name).
//!
//! Nesting is limited to [`MAX_DEPTH`]. Every failure is an error message naming the byte
//! offset; nothing here panics on any input (fuzzed with proptest).

use serde_json::{Map, Number, Value};

use crate::api::FunctionCall;

/// Deepest nesting of lists/dicts/tuples accepted.
pub const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

type PResult<T> = Result<T, String>;

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser { s, b: s.as_bytes(), i: 0, depth: 0 }
    }

    fn err<T>(&self, what: &str) -> PResult<T> {
        let found = match self.s[self.i..].chars().next() {
            Some(c) => format!("`{c}`"),
            None => "the end".to_string(),
        };
        Err(format!("{what} at byte {} (found {found})", self.i))
    }

    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> PResult<()> {
        self.ws();
        if self.eat(c) {
            Ok(())
        } else {
            self.err(&format!("expected `{}`", c as char))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(&format!("nesting deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn ident(&mut self) -> Option<&'a str> {
        let start = self.i;
        if !self.peek().is_some_and(is_ident_start) {
            return None;
        }
        while self.peek().is_some_and(is_ident_char) {
            self.i += 1;
        }
        Some(&self.s[start..self.i])
    }

    /// A dotted function name (`tools.get_weather`).
    fn name(&mut self) -> PResult<String> {
        self.ws();
        let mut name = match self.ident() {
            Some(n) => n.to_string(),
            None => return self.err("expected a function name"),
        };
        while self.peek() == Some(b'.') && self.b.get(self.i + 1).copied().is_some_and(is_ident_start) {
            self.i += 1;
            name.push('.');
            name.push_str(self.ident().unwrap_or_default());
        }
        Ok(name)
    }

    /// `name(kw=value, ...)`.
    fn call(&mut self) -> PResult<FunctionCall> {
        let name = self.name()?;
        self.expect(b'(')?;
        let mut arguments = Map::new();
        loop {
            self.ws();
            if self.eat(b')') {
                break;
            }
            let start = self.i;
            let Some(key) = self.ident() else {
                return self.err(&format!("expected a keyword argument of `{name}` (positional arguments have no name)"));
            };
            self.ws();
            if !self.eat(b'=') {
                self.i = start;
                return self.err(&format!("expected `name=value` in the arguments of `{name}`"));
            }
            let value = self.value()?;
            if arguments.insert(key.to_string(), value).is_some() {
                self.i = start;
                return self.err(&format!("argument `{key}` of `{name}` is given twice"));
            }
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b')') {
                break;
            }
            return self.err(&format!("expected `,` or `)` in the arguments of `{name}`"));
        }
        Ok(FunctionCall { name, arguments })
    }

    fn value(&mut self) -> PResult<Value> {
        self.ws();
        match self.peek() {
            None => self.err("expected a value"),
            Some(b'[') => {
                self.i += 1;
                self.enter()?;
                let items = self.items(b']')?;
                self.depth -= 1;
                Ok(Value::Array(items))
            }
            Some(b'(') => {
                self.i += 1;
                self.enter()?;
                // `(x)` is x; `(x,)` and `(x, y)` are tuples.
                self.ws();
                if self.eat(b')') {
                    self.depth -= 1;
                    return Ok(Value::Array(Vec::new()));
                }
                let first = self.value()?;
                self.ws();
                if self.eat(b')') {
                    self.depth -= 1;
                    return Ok(first);
                }
                if !self.eat(b',') {
                    return self.err("expected `,` or `)` in a tuple");
                }
                let mut items = vec![first];
                items.extend(self.items(b')')?);
                self.depth -= 1;
                Ok(Value::Array(items))
            }
            Some(b'{') => {
                self.i += 1;
                self.enter()?;
                let map = self.dict()?;
                self.depth -= 1;
                Ok(Value::Object(map))
            }
            Some(b'"' | b'\'') => self.strings(),
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' => self.number(),
            Some(c) if is_ident_start(c) => {
                let start = self.i;
                let word = self.ident().unwrap_or_default();
                match word {
                    "True" | "true" => Ok(Value::Bool(true)),
                    "False" | "false" => Ok(Value::Bool(false)),
                    "None" | "null" => Ok(Value::Null),
                    // String prefixes: r"..", u"..", R'..'
                    "r" | "R" | "u" | "U" if matches!(self.peek(), Some(b'"' | b'\'')) => {
                        self.i = start;
                        self.strings()
                    }
                    _ => {
                        self.i = start;
                        self.err("expected a value (a string, number, True/False/None, list or dict)")
                    }
                }
            }
            Some(_) => self.err("expected a value"),
        }
    }

    /// Comma-separated values up to `close` (trailing comma allowed).
    fn items(&mut self, close: u8) -> PResult<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value()?);
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(close) {
                return Ok(items);
            }
            return self.err(&format!("expected `,` or `{}`", close as char));
        }
    }

    fn dict(&mut self) -> PResult<Map<String, Value>> {
        let mut map = Map::new();
        loop {
            self.ws();
            if self.eat(b'}') {
                return Ok(map);
            }
            let key = match self.value()? {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_string(),
                _ => return self.err("dict keys must be strings, numbers, booleans or None"),
            };
            self.expect(b':')?;
            let value = self.value()?;
            map.insert(key, value);
            self.ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Ok(map);
            }
            return self.err("expected `,` or `}` in a dict");
        }
    }

    /// One or more adjacent string literals, concatenated.
    fn strings(&mut self) -> PResult<Value> {
        let mut out = self.string()?;
        loop {
            let save = self.i;
            self.ws();
            let prefixed = matches!(self.peek(), Some(b'r' | b'R' | b'u' | b'U'))
                && matches!(self.b.get(self.i + 1), Some(b'"' | b'\''));
            if matches!(self.peek(), Some(b'"' | b'\'')) || prefixed {
                out.push_str(&self.string()?);
            } else {
                self.i = save;
                return Ok(Value::String(out));
            }
        }
    }

    fn string(&mut self) -> PResult<String> {
        let mut raw = false;
        if let Some(b'r' | b'R') = self.peek() {
            raw = true;
            self.i += 1;
        } else if let Some(b'u' | b'U') = self.peek() {
            self.i += 1;
        }
        let Some(q) = self.peek().filter(|c| matches!(c, b'"' | b'\'')) else {
            return self.err("expected a string");
        };
        let triple = self.b.get(self.i + 1) == Some(&q) && self.b.get(self.i + 2) == Some(&q);
        self.i += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let Some(c) = self.s[self.i..].chars().next() else {
                return self.err("unterminated string");
            };
            if c as u32 == q as u32 {
                if !triple {
                    self.i += 1;
                    return Ok(out);
                }
                if self.b.get(self.i + 1) == Some(&q) && self.b.get(self.i + 2) == Some(&q) {
                    self.i += 3;
                    return Ok(out);
                }
            }
            if c == '\n' && !triple {
                return self.err("newline in a string");
            }
            if c == '\\' {
                if raw {
                    // r"..": the backslash stays, and it still protects the next character.
                    self.i += 1;
                    out.push('\\');
                    if let Some(n) = self.s[self.i..].chars().next() {
                        out.push(n);
                        self.i += n.len_utf8();
                    }
                    continue;
                }
                self.escape(&mut out)?;
                continue;
            }
            out.push(c);
            self.i += c.len_utf8();
        }
    }

    fn hex(&mut self, n: usize) -> PResult<u32> {
        let Some(digits) = self.s.get(self.i..self.i + n) else {
            return self.err(&format!("expected {n} hex digits"));
        };
        if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
            return self.err(&format!("expected {n} hex digits"));
        }
        self.i += n;
        u32::from_str_radix(digits, 16).map_err(|e| e.to_string())
    }

    fn escape(&mut self, out: &mut String) -> PResult<()> {
        self.i += 1; // the backslash
        let Some(c) = self.s[self.i..].chars().next() else {
            return self.err("unterminated escape");
        };
        self.i += c.len_utf8();
        match c {
            '\n' => {}
            '\\' | '\'' | '"' => out.push(c),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '0'..='7' => {
                let mut v = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            self.i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
            }
            'x' => {
                let v = self.hex(2)?;
                out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
            }
            'u' => {
                let v = self.hex(4)?;
                if (0xD800..0xDC00).contains(&v) && self.s[self.i..].starts_with("\\u") {
                    let save = self.i;
                    self.i += 2;
                    let lo = self.hex(4)?;
                    if (0xDC00..0xE000).contains(&lo) {
                        let cp = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                        out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        return Ok(());
                    }
                    self.i = save;
                }
                out.push(char::from_u32(v).unwrap_or('\u{FFFD}'));
            }
            'U' => {
                let v = self.hex(8)?;
                match char::from_u32(v) {
                    Some(ch) => out.push(ch),
                    None => return self.err("invalid \\U code point"),
                }
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        Ok(())
    }

    fn number(&mut self) -> PResult<Value> {
        let start = self.i;
        let mut text = String::new();
        if let Some(c @ (b'-' | b'+')) = self.peek() {
            if c == b'-' {
                text.push('-');
            }
            self.i += 1;
            self.ws();
        }
        // 0x / 0o / 0b integers.
        if self.peek() == Some(b'0') {
            if let Some(radix) = match self.b.get(self.i + 1) {
                Some(b'x' | b'X') => Some(16),
                Some(b'o' | b'O') => Some(8),
                Some(b'b' | b'B') => Some(2),
                _ => None,
            } {
                self.i += 2;
                let ds = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                    self.i += 1;
                }
                let digits: String = self.s[ds..self.i].chars().filter(|c| *c != '_').collect();
                let v = i128::from_str_radix(&digits, radix).map_err(|_| format!("bad integer at byte {start}"))?;
                let v = if text.starts_with('-') { -v } else { v };
                return int_value(v).ok_or_else(|| format!("integer out of range at byte {start}"));
            }
        }
        let mut is_float = false;
        let mut digits = 0;
        let push_digits = |p: &mut Parser, text: &mut String| {
            let mut n = 0;
            while let Some(c) = p.peek() {
                if c.is_ascii_digit() {
                    text.push(c as char);
                    n += 1;
                } else if c != b'_' || !p.b.get(p.i + 1).is_some_and(u8::is_ascii_digit) || n == 0 {
                    break;
                }
                p.i += 1;
            }
            n
        };
        digits += push_digits(self, &mut text);
        if self.peek() == Some(b'.') {
            is_float = true;
            self.i += 1;
            text.push('.');
            digits += push_digits(self, &mut text);
        }
        if digits == 0 {
            self.i = start;
            return self.err("expected a number");
        }
        if let Some(b'e' | b'E') = self.peek() {
            let save = self.i;
            self.i += 1;
            let mut exp = String::from("e");
            if let Some(c @ (b'-' | b'+')) = self.peek() {
                exp.push(c as char);
                self.i += 1;
            }
            if push_digits(self, &mut exp) > 0 {
                text.push_str(&exp);
                is_float = true;
            } else {
                self.i = save;
            }
        }
        if !is_float {
            let trimmed = text.trim_start_matches('-');
            if trimmed.len() > 1 && trimmed.starts_with('0') && trimmed.bytes().any(|c| c != b'0') {
                self.i = start;
                return self.err("integers cannot have leading zeros");
            }
            if let Ok(v) = text.parse::<i128>() {
                if let Some(v) = int_value(v) {
                    return Ok(v);
                }
            }
        }
        let f: f64 = text.parse().map_err(|_| format!("bad number at byte {start}"))?;
        match Number::from_f64(f) {
            Some(n) if f.is_finite() => Ok(Value::Number(n)),
            _ => Err(format!("number out of range at byte {start}")),
        }
    }
}

fn int_value(v: i128) -> Option<Value> {
    if let Ok(i) = i64::try_from(v) {
        Some(Value::Number(i.into()))
    } else if let Ok(u) = u64::try_from(v) {
        Some(Value::Number(u.into()))
    } else {
        None
    }
}

/// A JSON-style call object: `{"name", "arguments"|"parameters"}` or `{"function": {...}}`.
fn call_from_object(obj: &Map<String, Value>) -> PResult<FunctionCall> {
    let func = match obj.get("function") {
        Some(Value::Object(f)) => f,
        _ => obj,
    };
    let name = match func.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err("a JSON tool call needs a string `name`".into()),
    };
    let args = func.get("arguments").or_else(|| func.get("parameters"));
    let arguments = match args {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ if s.trim().is_empty() => Map::new(),
            _ => return Err(format!("tool call `{name}`: `arguments` is a string that is not a JSON object")),
        },
        Some(_) => return Err(format!("tool call `{name}`: `arguments` must be an object")),
    };
    Ok(FunctionCall { name, arguments })
}

/// Parses the text between `<|tool_call_start|>` and `<|tool_call_end|>`: a Pythonic call list
/// (`[f(a=1), g()]`, brackets optional) or JSON call objects (`[{"name": ..., "arguments":
/// {...}}]` or one object).
pub fn parse_tool_calls(text: &str) -> Result<Vec<FunctionCall>, String> {
    let mut p = Parser::new(text);
    p.ws();
    let json_like = match p.peek() {
        Some(b'{') => true,
        Some(b'[') => {
            let mut q = Parser::new(text);
            q.i = p.i + 1;
            q.ws();
            q.peek() == Some(b'{')
        }
        _ => false,
    };
    let calls = if json_like {
        let value = p.value()?;
        let objs = match &value {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            single => vec![single],
        };
        let mut calls = Vec::new();
        for o in objs {
            match o {
                Value::Object(m) => calls.push(call_from_object(m)?),
                _ => return Err("a JSON tool call must be an object".into()),
            }
        }
        calls
    } else {
        let bracketed = p.eat(b'[');
        let mut calls = Vec::new();
        loop {
            p.ws();
            if bracketed && p.eat(b']') {
                break;
            }
            if !bracketed && p.peek().is_none() {
                break;
            }
            calls.push(p.call()?);
            p.ws();
            if p.eat(b',') {
                continue;
            }
            if bracketed {
                p.expect(b']')?;
            }
            break;
        }
        calls
    };
    p.ws();
    if p.i != text.len() {
        return p.err("unexpected text after the tool calls");
    }
    if calls.is_empty() {
        return Err("empty tool call list".into());
    }
    Ok(calls)
}

/// The outcome of parsing one tool-call block and checking it against the declared tools.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCallOutcome {
    pub calls: Vec<FunctionCall>,
    pub errors: Vec<String>,
}

/// Parses `text` and keeps the calls whose name is in `declared`; everything else is an error
/// message (the text is quoted, shortened to 200 characters).
pub fn parse_and_check(text: &str, declared: &[String]) -> ToolCallOutcome {
    let mut out = ToolCallOutcome::default();
    match parse_tool_calls(text) {
        Ok(calls) => {
            for c in calls {
                if declared.contains(&c.name) {
                    out.calls.push(c);
                } else if declared.is_empty() {
                    out.errors.push(format!("tool call `{}`: no tools were declared in the request", c.name));
                } else {
                    out.errors.push(format!(
                        "tool call `{}` names no declared tool (declared: {})",
                        c.name,
                        declared.join(", ")
                    ));
                }
            }
        }
        Err(e) => {
            out.errors.push(format!("malformed tool call: {e}: `{}`", super::json_calls::shorten(text)));
        }
    }
    out
}

/// A value written as LFM2 writes a Pythonic argument: JSON strings and numbers,
/// `True`/`False`/`None`, lists and dicts with the same rules.
pub fn py_literal(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::new();
            super::pyfmt::json_string(s, false, &mut out);
            out
        }
        Value::Array(items) => format!("[{}]", items.iter().map(py_literal).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| {
                    let mut key = String::new();
                    super::pyfmt::json_string(k, false, &mut key);
                    format!("{key}: {}", py_literal(v))
                })
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// `<|tool_call_start|>[f(a=1), ...]<|tool_call_end|>` for calls in the OpenAI form of
/// [`crate::api::normalize_tool_call`].
pub fn render_pythonic_calls(calls: &[Value], start: &str, end: &str) -> String {
    let rendered: Vec<String> = calls
        .iter()
        .map(|c| {
            let f = &c["function"];
            let args: Vec<String> = f["arguments"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", py_literal(v))).collect())
                .unwrap_or_default();
            format!("{}({})", f["name"].as_str().unwrap_or_default(), args.join(", "))
        })
        .collect();
    format!("{start}[{}]{end}", rendered.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn one(text: &str) -> FunctionCall {
        let mut calls = parse_tool_calls(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(calls.len(), 1);
        calls.remove(0)
    }

    #[test]
    fn pythonic_calls_with_typed_values() {
        let calls = parse_tool_calls(r#"[f(a=1, b="x", c=[1, 2], d={"k": true}), g()]"#).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "f");
        assert_eq!(Value::Object(calls[0].arguments.clone()), json!({"a": 1, "b": "x", "c": [1, 2], "d": {"k": true}}));
        assert_eq!(calls[1], FunctionCall { name: "g".into(), arguments: Map::new() });

        let c = one(r#"get_status(id="12345", n=3, ratio=-0.5, big=1e3, t=True, f=False, n2=None, tup=(1, 'a'), one=(7), empty=(), hexa=0x1F, sep=1_000, neg=-7, esc='it\'s "q"\n\u00e9\U0001F335\x41', raw=r'\d+', cat="a" 'b', nested=[[{"x": [None]}]], trailing=[1, 2,],)"#);
        assert_eq!(
            Value::Object(c.arguments),
            json!({"id": "12345", "n": 3, "ratio": -0.5, "big": 1000.0, "t": true, "f": false, "n2": null,
                   "tup": [1, "a"], "one": 7, "empty": [], "hexa": 31, "sep": 1000, "neg": -7,
                   "esc": "it's \"q\"\né🌵A", "raw": "\\d+", "cat": "ab", "nested": [[{"x": [null]}]], "trailing": [1, 2]})
        );
        // Without brackets, dotted names, whitespace and newlines, triple quotes, surrogate pairs.
        let calls = parse_tool_calls("  ns.tool_a( x = '''multi\nline''' ) ,\n other-tool(y=\"\\ud83c\\udf35\", z={1: 2, True: None})  ").unwrap();
        assert_eq!(calls[0].name, "ns.tool_a");
        assert_eq!(calls[0].arguments["x"], json!("multi\nline"));
        assert_eq!(calls[1].name, "other-tool");
        assert_eq!(Value::Object(calls[1].arguments.clone()), json!({"y": "🌵", "z": {"1": 2, "true": null}}));
    }

    #[test]
    fn json_calls() {
        let calls = parse_tool_calls(r#"[{"name": "search", "arguments": {"query": "saguaro", "limit": 3, "safe": true, "lang": null}}, {"name": "g", "parameters": {}}]"#).unwrap();
        assert_eq!(calls[0].name, "search");
        assert_eq!(Value::Object(calls[0].arguments.clone()), json!({"query": "saguaro", "limit": 3, "safe": true, "lang": null}));
        assert_eq!(calls[1].name, "g");
        let c = one(r#"{"function": {"name": "f", "arguments": "{\"a\": [1.5]}"}}"#);
        assert_eq!(Value::Object(c.arguments), json!({"a": [1.5]}));
    }

    #[test]
    fn malformed_calls_are_errors() {
        for bad in [
            "", "[]", "[f(]", "[f(a=)]", "[f(1)]", "[f(a=1, a=2)]", "[f(a=1) g()]", "[f(a=\"x)]", "[f(a=1e999)]",
            "[f(a=[1, 2)]", "[f(a={1: })]", "f", "[1]", "[{\"arguments\": {}}]", "[{\"name\": \"f\", \"arguments\": 3}]",
            "[f(a=01)]", "[f(a=0x)]", "[f(a=\"\\x4\")]", "[f(a=\"\\U00110000\")]", "[f(a=undefined_name)]", "[f(a=1)] trailing",
        ] {
            assert!(parse_tool_calls(bad).is_err(), "{bad:?} parsed");
        }
        let deep = format!("[f(a={}{})]", "[".repeat(100), "]".repeat(100));
        assert!(parse_tool_calls(&deep).unwrap_err().contains("nesting"));
    }

    #[test]
    fn names_are_checked() {
        let declared = vec!["get_weather".to_string()];
        let out = parse_and_check(r#"[get_weather(city="Paris"), launch(x=1)]"#, &declared);
        assert_eq!(out.calls.len(), 1);
        assert_eq!(out.errors.len(), 1);
        assert!(out.errors[0].contains("launch"));
        let out = parse_and_check("[oops(", &declared);
        assert!(out.calls.is_empty() && out.errors[0].starts_with("malformed tool call"));
        let out = parse_and_check("[f()]", &[]);
        assert!(out.errors[0].contains("no tools were declared"));
    }

    #[test]
    fn rendered_calls_parse_back() {
        let call = json!({"type": "function", "function": {"name": "f", "arguments": {"s": "q\"\\\n", "n": -1.5, "b": true, "z": null, "l": [1, {"k": "v"}]}}});
        let text = render_pythonic_calls(std::slice::from_ref(&call), "<s>", "</s>");
        assert_eq!(text, r#"<s>[f(s="q\"\\\n", n=-1.5, b=True, z=None, l=[1, {"k": "v"}])]</s>"#);
        let inner = text.trim_start_matches("<s>").trim_end_matches("</s>");
        let parsed = one(inner);
        assert_eq!(Value::Object(parsed.arguments), call["function"]["arguments"]);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            let _ = parse_tool_calls(&s);
            let _ = parse_and_check(&s, &["f".to_string()]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let s = String::from_utf8_lossy(&b);
            let _ = parse_tool_calls(&s);
        }

        #[test]
        fn valid_calls_round_trip(args in prop::collection::btree_map("[a-z_]{1,6}", arb_value(), 0..5)) {
            let arguments: Map<String, Value> = args.into_iter().collect();
            let call = json!({"type": "function", "function": {"name": "tool_x", "arguments": Value::Object(arguments.clone())}});
            let text = render_pythonic_calls(&[call], "", "");
            let parsed = parse_tool_calls(&text).unwrap();
            prop_assert_eq!(parsed.len(), 1);
            // Floats print as their shortest form and parse back to the same f64.
            prop_assert_eq!(Value::Object(parsed[0].arguments.clone()), Value::Object(arguments));
        }

        #[test]
        fn mutated_valid_calls_never_panic(cut in 0usize..200, insert in ".{0,3}", pos in 0usize..200) {
            let base = r#"[get_weather(city="Paris", days=3, opts={"a": [1, 2.5, True, None], 'b': 'x\'y'}), ping()]"#;
            let mut s: Vec<char> = base.chars().collect();
            let cut = cut % (s.len() + 1);
            s.truncate(cut.max(pos % (s.len() + 1)));
            let p = pos % (s.len() + 1);
            for (k, c) in insert.chars().enumerate() {
                s.insert(p + k, c);
            }
            let text: String = s.into_iter().collect();
            let _ = parse_tool_calls(&text);
        }
    }
}
