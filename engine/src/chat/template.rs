//! The model's own chat template, rendered with MiniJinja the way transformers renders it.
//!
//! transformers (`apply_chat_template`) compiles the template in a sandboxed Jinja2 environment
//! with `trim_blocks` and `lstrip_blocks`, the `loopcontrols` extension, its own `{% generation %}`
//! tag, `tojson` = Python's `json.dumps` (no HTML escaping), and the globals `raise_exception`
//! and `strftime_now`; it passes `messages`, `tools`, `documents`, `add_generation_prompt` and the
//! tokenizer's special tokens (`bos_token`, `eos_token`, ...). This environment does the same:
//!
//! - `{% generation %}` / `{% endgeneration %}` (which only mark assistant text for training
//!   masks) are rewritten to `{% if true %}` / `{% endif %}`, keeping their whitespace control;
//! - `tojson` and `string` are Python's (see [`super::pyfmt`]), `{{ x }}` prints Python's `str(x)`;
//! - Python string/dict methods (`.get`, `.items`, `.split`, `.endswith`, ...) come from
//!   minijinja-contrib's `pycompat`;
//! - `strftime_now(fmt)` formats the instant the caller passes in [`TemplateVars::unix_seconds`]
//!   (UTC; the engine has no clock of its own) with the usual `%Y %m %d %H %M %S %y %b %B %a %A %j
//!   %p %I %e %%` directives; `raise_exception(msg)` fails the render with `msg`;
//! - rendering runs on fuel (a bounded number of instructions) so a hostile template in a model
//!   file cannot hang the host.

use minijinja::value::{Kwargs, Rest, Value, ValueKind};
use minijinja::{Environment, ErrorKind, State};
use serde::Deserialize;

use super::pyfmt::{json_dumps, py_str, DumpOptions};
use crate::error::{Error, Result};

/// Instructions one render may execute (far above any real template: LFM2's renders a long
/// conversation in a few thousand).
const FUEL: u64 = 50_000_000;
/// The context variable carrying the caller's clock into `strftime_now`.
const NOW_VAR: &str = "__saguaro_unix_seconds";

/// Values besides `messages`/`tools` that a template reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateVars {
    /// `bos_token`, `eos_token`, `pad_token`, `unk_token`, ... from tokenizer_config.json.
    pub special_tokens: Vec<(String, String)>,
    /// The instant `strftime_now` formats (seconds since 1970, UTC); 0 when unknown.
    pub unix_seconds: Option<i64>,
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

/// Replaces transformers' `{% generation %}` / `{% endgeneration %}` tags by `{% if true %}` /
/// `{% endif %}` with the same whitespace-control markers.
pub fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("%}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let (open_ws, body) = match inner.strip_prefix(['-', '+']) {
            Some(b) => (&inner[..1], b),
            None => ("", inner),
        };
        let (body, close_ws) = match body.strip_suffix(['-', '+']) {
            Some(b) => (b, &body[b.len()..]),
            None => (body, ""),
        };
        match body.trim() {
            "generation" => out.push_str(&format!("{{%{open_ws} if true {close_ws}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{open_ws} endif {close_ws}%}}")),
            _ => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn template_error(e: minijinja::Error) -> Error {
    // The detailed display names the line and the construct that failed.
    let mut msg = e.to_string();
    if let Some(detail) = e.detail() {
        if !msg.contains(detail) {
            msg = format!("{msg}: {detail}");
        }
    }
    Error::Input(format!("chat template: {msg}"))
}

/// `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)` as transformers
/// defines it (positional arguments in that order, or keywords).
fn tojson_filter(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let names = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > names.len() {
        return Err(minijinja::Error::new(ErrorKind::TooManyArguments, "tojson takes at most 4 arguments"));
    }
    let mut slots: [Option<Value>; 4] = Default::default();
    for (i, a) in args.iter().enumerate() {
        slots[i] = Some(a.clone());
    }
    for (i, name) in names.iter().enumerate() {
        if kwargs.has(name) {
            slots[i] = Some(kwargs.get::<Value>(name)?);
        }
    }
    kwargs.assert_all_used()?;
    let mut opts = DumpOptions::default();
    if let Some(v) = &slots[0] {
        opts.ensure_ascii = v.is_true();
    }
    if let Some(v) = slots[1].as_ref().filter(|v| !v.is_none() && !v.is_undefined()) {
        opts.indent = Some(match v.kind() {
            ValueKind::String => v.as_str().unwrap_or_default().to_string(),
            ValueKind::Number => " ".repeat(v.as_i64().unwrap_or(0).clamp(0, 64) as usize),
            _ => return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: indent must be an int or a string")),
        });
    }
    if let Some(v) = slots[2].as_ref().filter(|v| !v.is_none() && !v.is_undefined()) {
        let parts: Vec<Value> = v.try_iter()?.collect();
        match parts.as_slice() {
            [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                opts.separators = Some((a.as_str().unwrap_or_default().into(), b.as_str().unwrap_or_default().into()))
            }
            _ => return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: separators must be two strings")),
        }
    }
    if let Some(v) = &slots[3] {
        opts.sort_keys = v.is_true();
    }
    json_dumps(value, &opts)
        .map(Value::from)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))
}

fn string_filter(value: &Value) -> Value {
    if value.kind() == ValueKind::String {
        value.clone()
    } else {
        Value::from(py_str(value))
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("raise_exception: {message}")))
}

fn strftime_now(state: &State, format: String) -> String {
    let secs = state.lookup(NOW_VAR).and_then(|v| v.as_i64()).unwrap_or(0);
    strftime(secs, &format)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a (year, month, day).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `time.strftime(format)` of a UTC instant, for the common directives (others are copied).
pub fn strftime(unix_seconds: i64, format: &str) -> String {
    const MONTHS: [&str; 12] =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs % 3600 / 60, secs % 60);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = (days + 3).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('I') => out.push_str(&format!("{:02}", if hh % 12 == 0 { 12 } else { hh % 12 })),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('b') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl ChatTemplate {
    /// Compiles `source` (a Jinja chat template).
    pub fn new(source: &str) -> Result<Self> {
        Self::with_fuel(source, FUEL)
    }

    /// Compiles `source` with a limit of `fuel` instructions per render.
    pub fn with_fuel(source: &str, fuel: u64) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(template_error)?;
        env.set_syntax(syntax);
        env.set_fuel(Some(fuel));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out, _state, value| {
            let text = if value.kind() == ValueKind::String { value.as_str().unwrap_or_default().to_string() } else { py_str(value) };
            out.write_str(&text).map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "write failed"))
        });
        env.add_filter("tojson", tojson_filter);
        env.add_filter("string", string_filter);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", rewrite_generation_tags(source)).map_err(template_error)?;
        Ok(ChatTemplate { env, source: source.to_string() })
    }

    /// The template source as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template reads `tool_calls` (otherwise assistant tool calls are written into
    /// the message content, see [`super::template_messages`]).
    pub fn reads_tool_calls(&self) -> bool {
        self.source.contains("tool_calls")
    }

    /// True when the template reads `tools` (lists the declared tools itself; otherwise a
    /// model without tool-call tokens gets the engine's instructions, see
    /// [`super::json_calls`]).
    pub fn reads_tools(&self) -> bool {
        self.source.contains("tools")
    }

    /// Renders `messages` (JSON objects) and `tools` (`None` renders as Python's None).
    pub fn render(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&[serde_json::Value]>,
        add_generation_prompt: bool,
        vars: &TemplateVars,
    ) -> Result<String> {
        let to_value = |v: serde_json::Value| -> Result<Value> {
            Value::deserialize(v).map_err(|e| Error::Input(format!("chat template input: {e}")))
        };
        let mut ctx = std::collections::BTreeMap::<String, Value>::new();
        for (k, v) in &vars.special_tokens {
            ctx.insert(k.clone(), Value::from(v.as_str()));
        }
        ctx.insert("messages".into(), to_value(serde_json::Value::Array(messages.to_vec()))?);
        ctx.insert(
            "tools".into(),
            match tools {
                Some(t) => to_value(serde_json::Value::Array(t.to_vec()))?,
                None => Value::from(()),
            },
        );
        ctx.insert("documents".into(), Value::from(()));
        ctx.insert("add_generation_prompt".into(), Value::from(add_generation_prompt));
        ctx.insert(NOW_VAR.into(), Value::from(vars.unix_seconds.unwrap_or(0)));
        let tmpl = self.env.get_template("chat").map_err(template_error)?;
        tmpl.render(Value::from(ctx)).map_err(template_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, messages: serde_json::Value) -> Result<String> {
        let t = ChatTemplate::new(src)?;
        let msgs = messages.as_array().unwrap().clone();
        t.render(&msgs, None, true, &TemplateVars { special_tokens: vec![("bos_token".into(), "<s>".into())], unix_seconds: Some(0) })
    }

    #[test]
    fn generation_tags_become_ifs() {
        assert_eq!(
            rewrite_generation_tags("a{%- generation -%}b{% endgeneration %}c{%- if x -%}{%+ generation%}"),
            "a{%- if true -%}b{% endif %}c{%- if x -%}{%+ if true %}"
        );
        let out = render("{{ bos_token }}{% for m in messages %}{%- generation -%} {{ m.content }} {%- endgeneration -%}{% endfor %}", json!([{"content": "x"}])).unwrap();
        assert_eq!(out, "<s>x");
    }

    #[test]
    fn python_semantics() {
        let out = render(
            r#"{{ messages[0].a | tojson }}|{{ messages[0].a | string }}|{{ messages[0].b }}|{{ none }}|{{ messages[0].get("zz", "d") }}|{% for k, v in messages[0].items() %}{{ k }}{% endfor %}|{{ "a,b".split(",")[-1] }}|{{ messages[0].a | tojson(indent=1) }}"#,
            json!([{"a": [1, 2.0, true, null, "é"], "b": false}]),
        )
        .unwrap();
        assert_eq!(out, "[1, 2.0, true, null, \"é\"]|[1, 2.0, True, None, 'é']|False|None|d|ab|b|[\n 1,\n 2.0,\n true,\n null,\n \"é\"\n]");
    }

    #[test]
    fn errors_are_reported_not_panics() {
        assert!(ChatTemplate::new("{% if %}").is_err());
        let e = render("{{ raise_exception('nope') }}", json!([])).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let t = ChatTemplate::with_fuel("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", 100_000).unwrap();
        let e = t.render(&[], None, true, &TemplateVars::default()).unwrap_err();
        assert!(e.to_string().contains("fuel"), "{e}");
    }

    #[test]
    fn strftime_formats_utc() {
        assert_eq!(strftime(0, "%Y-%m-%d %H:%M:%S %a %A %b %B %j %y %I%p %%"), "1970-01-01 00:00:00 Thu Thursday Jan January 001 70 12AM %");
        assert_eq!(strftime(1_748_779_200, "%Y-%m-%d %H:%M %d %b %Y %j"), "2025-06-01 12:00 01 Jun 2025 152");
        assert_eq!(strftime(951_782_400, "%Y-%m-%d %A"), "2000-02-29 Tuesday");
        assert_eq!(strftime(-86_400, "%Y-%m-%d"), "1969-12-31");
    }
}
