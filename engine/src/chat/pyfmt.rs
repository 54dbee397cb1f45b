//! Python's spelling of values, for chat templates written against Jinja2 in Python.
//!
//! Hugging Face renders chat templates with Python's Jinja2, where `tojson` is
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
//! (transformers overrides Jinja's HTML-escaping filter) and `{{ x }}` / `x | string` are
//! Python's `str(x)`. MiniJinja spells values the Rust way (`true`, `none`, `1e16`), so the
//! template environment ([`super::template`]) installs these functions instead:
//!
//! - [`json_dumps`]: `json.dumps` with `ensure_ascii`, `indent`, `separators`, `sort_keys`.
//!   Defaults give `", "` and `": "` separators; with an indent the item separator is `","`.
//!   Strings escape `"`, `\`, control characters (`\n`, `\t`, ... or `\u00XX`, lowercase hex)
//!   and, with `ensure_ascii`, everything outside printable ASCII (UTF-16 surrogate pairs).
//! - [`py_str`] / [`py_repr`]: `str()` / `repr()` of None, booleans, numbers, strings, lists
//!   and dicts (`['a', 1, True]`, `{'k': None}`).
//! - [`py_float_repr`]: `repr(float)`: the shortest round-trip digits, fixed notation for
//!   decimal exponents in [-4, 16) (`100.0`, `0.0001`), otherwise `1e+16`, `1e-07`.

use minijinja::value::{Value, ValueKind};

/// Options of `json.dumps`.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    pub ensure_ascii: bool,
    /// `None`: one line. `Some(s)`: newline and `s` repeated per nesting level.
    pub indent: Option<String>,
    /// `(item_separator, key_separator)`; default `(", ", ": ")`, or `(",", ": ")` with an indent.
    pub separators: Option<(String, String)>,
    pub sort_keys: bool,
}

/// `repr(x)` of a Python float.
pub fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` gives the shortest digits that round-trip: "-1.5e300", "1e-7", "0e0".
    let sci = format!("{:e}", x);
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(&e.to_string());
    }
    out
}

/// A float as `json.dumps` writes it (`NaN`, `Infinity` for the non-finite ones).
fn json_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity".into() } else { "-Infinity".into() }
    } else {
        py_float_repr(x)
    }
}

/// A string as `json.dumps` quotes it.
pub fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn number_string(v: &Value) -> Option<String> {
    if v.is_integer() {
        // i64, u64 and 128-bit integers all print their decimal digits.
        return Some(v.to_string());
    }
    f64::try_from(v.clone()).ok().map(json_float)
}

/// A dict key as `json.dumps` converts it (keys must be str, int, float, bool or None).
fn json_key(k: &Value) -> Result<String, String> {
    match k.kind() {
        ValueKind::String => Ok(k.as_str().unwrap_or_default().to_string()),
        ValueKind::Bool => Ok(if k.is_true() { "true" } else { "false" }.into()),
        ValueKind::None => Ok("null".into()),
        ValueKind::Number => number_string(k).ok_or_else(|| "bad number key".to_string()),
        _ => Err(format!("keys must be str, int, float, bool or None, not {}", k.kind())),
    }
}

/// `json.dumps(value, ...)`.
pub fn json_dumps(value: &Value, opts: &DumpOptions) -> Result<String, String> {
    let (item_sep, key_sep) = match &opts.separators {
        Some((a, b)) => (a.clone(), b.clone()),
        None if opts.indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let mut out = String::new();
    dump(value, opts, &item_sep, &key_sep, 0, &mut out)?;
    Ok(out)
}

/// Nesting deeper than this is refused (against hostile inputs overflowing the stack).
const MAX_DEPTH: usize = 512;

fn newline_indent(opts: &DumpOptions, level: usize, out: &mut String) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(ind);
        }
    }
}

fn dump(v: &Value, opts: &DumpOptions, item_sep: &str, key_sep: &str, level: usize, out: &mut String) -> Result<(), String> {
    if level > MAX_DEPTH {
        return Err("value nested too deeply".into());
    }
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number_string(v).ok_or("unsupported number")?),
        ValueKind::String => json_string(v.as_str().unwrap_or_default(), opts.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter().map_err(|e| e.to_string())?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline_indent(opts, level + 1, out);
                dump(item, opts, item_sep, key_sep, level + 1, out)?;
            }
            newline_indent(opts, level, out);
            out.push(']');
        }
        ValueKind::Map => {
            let mut pairs = Vec::new();
            for k in v.try_iter().map_err(|e| e.to_string())? {
                let item = v.get_item(&k).map_err(|e| e.to_string())?;
                pairs.push((json_key(&k)?, item));
            }
            if opts.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if pairs.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (k, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline_indent(opts, level + 1, out);
                json_string(k, opts.ensure_ascii, out);
                out.push_str(key_sep);
                dump(item, opts, item_sep, key_sep, level + 1, out)?;
            }
            newline_indent(opts, level, out);
            out.push('}');
        }
        ValueKind::Undefined => return Err("Object of type Undefined is not JSON serializable".into()),
        other => return Err(format!("Object of type {other} is not JSON serializable")),
    }
    Ok(())
}

/// True when Python's `str.isprintable()` is false for `c` (approximately: control, format,
/// separator characters other than the ASCII space, and unassigned surrogates).
fn py_unprintable(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || matches!(u, 0xA0 | 0xAD | 0x1680 | 0x2000..=0x200F | 0x2028..=0x202F | 0x205F..=0x2064 | 0x3000 | 0xFEFF)
        || (0xE000..=0xF8FF).contains(&u)
}

/// `repr(s)` of a Python string.
pub fn py_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_unprintable(c) => {
                let u = c as u32;
                if u < 0x100 {
                    out.push_str(&format!("\\x{u:02x}"));
                } else if u < 0x10000 {
                    out.push_str(&format!("\\u{u:04x}"));
                } else {
                    out.push_str(&format!("\\U{u:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn repr_into(v: &Value, level: usize, out: &mut String) {
    if level > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else if let Ok(f) = f64::try_from(v.clone()) {
                out.push_str(&py_float_repr(f));
            } else {
                out.push_str(&v.to_string());
            }
        }
        ValueKind::String => py_str_repr(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = v.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr_into(&item, level + 1, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = v.try_iter() {
                for (i, k) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr_into(&k, level + 1, out);
                    out.push_str(": ");
                    repr_into(&v.get_item(&k).unwrap_or_default(), level + 1, out);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// `repr(value)`.
pub fn py_repr(v: &Value) -> String {
    let mut out = String::new();
    repr_into(v, 0, &mut out);
    out
}

/// `str(value)`: strings as they are, everything else as `repr` (undefined is empty, as
/// Jinja2's `Undefined` prints).
pub fn py_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        ValueKind::Undefined => String::new(),
        _ => py_repr(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(json: &str) -> Value {
        let j: serde_json::Value = serde_json::from_str(json).unwrap();
        serde::Deserialize::deserialize(j).unwrap()
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (0.5, "0.5"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345.6, "123456789012345.6"),
            (1e-7, "1e-07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e300, "1.5e+300"),
            (2.5e-300, "2.5e-300"),
            (-3.25, "-3.25"),
            (f64::INFINITY, "inf"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn dumps_matches_python_defaults() {
        let val = v(r#"{"b": [1, 2.5, true, null, "x"], "a": {"é": "\n\"\\\u0001\u007f"}, "e": [], "f": {}}"#);
        assert_eq!(
            json_dumps(&val, &DumpOptions::default()).unwrap(),
            "{\"b\": [1, 2.5, true, null, \"x\"], \"a\": {\"é\": \"\\n\\\"\\\\\\u0001\u{7f}\"}, \"e\": [], \"f\": {}}"
        );
        let ascii = DumpOptions { ensure_ascii: true, ..Default::default() };
        assert_eq!(json_dumps(&v(r#"["é🌵\u007f"]"#), &ascii).unwrap(), r#"["\u00e9\ud83c\udf35\u007f"]"#);
        let sorted = DumpOptions { sort_keys: true, separators: Some((",".into(), ":".into())), ..Default::default() };
        assert_eq!(json_dumps(&v(r#"{"b": 1, "a": [1, 2]}"#), &sorted).unwrap(), r#"{"a":[1,2],"b":1}"#);
    }

    #[test]
    fn dumps_with_indent() {
        let opts = DumpOptions { indent: Some("  ".into()), ..Default::default() };
        assert_eq!(
            json_dumps(&v(r#"{"a": [1, {"b": null}], "c": []}"#), &opts).unwrap(),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": []\n}"
        );
    }

    #[test]
    fn str_and_repr_match_python() {
        assert_eq!(py_str(&v(r#"["stage", "it's", 1, 2.0, true, null, {"k": false}]"#)), r#"['stage', "it's", 1, 2.0, True, None, {'k': False}]"#);
        assert_eq!(py_str(&v(r#""plain""#)), "plain");
        assert_eq!(py_str(&v("true")), "True");
        assert_eq!(py_str(&v("null")), "None");
        assert_eq!(py_str(&v("1e16")), "1e+16");
        assert_eq!(py_repr(&v(r#""a'b\"c\n\u00a0""#)), r#"'a\'b"c\n\xa0'"#);
        assert_eq!(py_str(&Value::UNDEFINED), "");
    }
}
