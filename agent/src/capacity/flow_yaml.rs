//! A one-line YAML flow mapping writer, just enough for the worker-info line.
//!
//! ansible-runner prints its worker info with PyYAML's `safe_dump(default_flow_style=True)`,
//! and both PyYAML (YAML 1.1) and the coordinator's yaml-rust2 (YAML 1.2) must read ours back
//! to the same values. So a string is written plain only when it is printable ASCII, free of
//! flow indicators, and could not be taken for a null, bool, number or date under either
//! version; otherwise it is single-quoted, or double-quoted with escapes when it holds
//! anything a single-quoted scalar cannot (line breaks, control or non-ASCII characters).
//! Keys are written in sorted order, as `safe_dump` does.

use std::fmt::Write;

/// One value in the mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// A whole number.
    Int(u64),
    /// A number that may have a fraction (written by [`format_decimal`]).
    Decimal(f64),
    /// A string, quoted only when needed.
    Str(String),
    /// A flow sequence of strings.
    StrList(Vec<String>),
}

/// Renders `{key: value, ...}` with the keys sorted; no trailing newline.
pub fn render_mapping(entries: &[(&str, Value)]) -> String {
    let mut sorted: Vec<&(&str, Value)> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("{");
    for (i, (key, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&scalar(key));
        out.push_str(": ");
        match value {
            Value::Null => out.push_str("null"),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Decimal(x) => out.push_str(&format_decimal(*x)),
            Value::Str(s) => out.push_str(&scalar(s)),
            Value::StrList(items) => {
                out.push('[');
                for (j, item) in items.iter().enumerate() {
                    if j > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&scalar(item));
                }
                out.push(']');
            }
        }
    }
    out.push('}');
    out
}

/// A non-negative number as YAML: an integer when whole (as ansible-runner prints CPU
/// counts), else rounded *down* to three decimals so a capacity is never overstated.
/// Negative, NaN and infinite inputs are written as `0`.
pub fn format_decimal(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "0".to_string();
    }
    let rounded = x.round();
    if (x - rounded).abs() < 1e-9 && rounded < 9.0e15 {
        return format!("{}", rounded as u64);
    }
    let thousandths = (x * 1000.0 + 1e-6).floor();
    if thousandths.fract() == 0.0 && thousandths % 1000.0 == 0.0 {
        return format!("{}", (thousandths / 1000.0) as u64);
    }
    // `{}` on f64 prints the shortest representation: 1.5, 0.333, never an exponent here.
    format!("{}", thousandths / 1000.0)
}

/// A string scalar, plain when that is unambiguous, else quoted.
pub fn scalar(s: &str) -> String {
    if plain_is_safe(s) {
        s.to_string()
    } else if s.chars().all(|c| (' '..='~').contains(&c)) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        double_quoted(s)
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Whether `s` can be written as a plain scalar inside a flow mapping or sequence.
fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.starts_with(' ') || s.ends_with(' ') {
        return false;
    }
    if !s.chars().all(|c| (' '..='~').contains(&c)) {
        return false;
    }
    // Indicators that may not open a plain scalar (`-` is allowed by YAML when not followed
    // by a space, but refusing it costs nothing and avoids parser differences).
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    // Flow indicators end a plain scalar in flow context; PyYAML also quotes any `:`.
    if s.contains([',', '?', '[', ']', '{', '}', ':']) || s.contains(" #") {
        return false;
    }
    !resolves_to_non_string(s)
}

/// Whether YAML 1.1 (PyYAML) or YAML 1.2 core (yaml-rust2) would read plain `s` as
/// something other than a string. Errs on the side of "yes".
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "y", "n", "yes", "no", "true", "false", "on", "off", "=", "<<",
    ];
    if WORDS.contains(&s.to_ascii_lowercase().as_str()) {
        return true;
    }
    looks_numeric(s) || looks_like_date(s)
}

/// Integers in any base, floats with or without exponent, `.inf`/`.nan`, with optional sign
/// and YAML 1.1's `_` digit separators.
fn looks_numeric(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == ".inf" || lower == ".nan" {
        return true;
    }
    for (prefix, digit) in [
        ("0x", (|c: char| c.is_ascii_hexdigit()) as fn(char) -> bool),
        ("0o", |c: char| ('0'..='7').contains(&c)),
        ("0b", |c: char| c == '0' || c == '1'),
    ] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return !rest.is_empty() && rest.chars().all(|c| c == '_' || digit(c));
        }
    }
    let (mantissa, exponent) = match lower.find('e') {
        Some(i) => (&lower[..i], Some(&lower[i + 1..])),
        None => (lower.as_str(), None),
    };
    let mut dots = 0;
    let mut digits = 0;
    for c in mantissa.chars() {
        match c {
            '0'..='9' => digits += 1,
            '_' => {}
            '.' => dots += 1,
            _ => return false,
        }
    }
    if digits == 0 || dots > 1 {
        return false;
    }
    match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        }
    }
}

/// `YYYY-M-D...`: YAML 1.1 timestamps (PyYAML turns them into dates).
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_line_is_reproduced_byte_for_byte() {
        let line = render_mapping(&[
            (
                "uuid",
                Value::Str("a5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d".into()),
            ),
            ("runner_version", Value::Str("2.4.3".into())),
            ("mem_in_bytes", Value::Int(25276502016)),
            ("errors", Value::StrList(vec![])),
            ("cpu_count", Value::Decimal(2.0)),
        ]);
        let sample = include_str!("testdata/worker-info.exact.txt");
        assert_eq!(format!("{line}\n\n"), sample);
    }

    #[test]
    fn strings_that_read_as_other_types_are_quoted() {
        for s in [
            "",
            "~",
            "null",
            "Null",
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "N",
            "true",
            "FALSE",
            "2",
            "-3",
            "+7",
            "0x1F",
            "0o17",
            "0b101",
            "017",
            "1_000",
            "2.4",
            "1.",
            ".5",
            "1e3",
            "1.5E-3",
            ".inf",
            "-.INF",
            ".NaN",
            "2024-01-02",
            "=",
            "<<",
        ] {
            assert!(scalar(s).starts_with('\''), "{s:?} -> {}", scalar(s));
        }
    }

    #[test]
    fn ordinary_strings_stay_plain() {
        for s in [
            "2.4.3",
            "a5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d",
            "12345678-9ee6-4d16-bb5d-cfe1afb6427d",
            "podman",
            "host",
            "0.1.0",
            "podman not found at /usr/bin/podman",
            "2.19.14.dev0",
            "e",
        ] {
            assert_eq!(scalar(s), s);
        }
    }

    #[test]
    fn indicators_and_odd_characters_are_quoted_so_they_read_back() {
        assert_eq!(scalar("cannot run x: gone"), "'cannot run x: gone'");
        assert_eq!(scalar("it's, [odd] {x}"), "'it''s, [odd] {x}'");
        assert_eq!(scalar("a #b"), "'a #b'");
        assert_eq!(scalar("-x"), "'-x'");
        assert_eq!(scalar("*ref"), "'*ref'");
        assert_eq!(scalar(" lead"), "' lead'");
        assert_eq!(scalar("two\nlines\t\"q\" \\"), r#""two\nlines\t\"q\" \\""#);
        assert_eq!(
            scalar("caf\u{e9} \u{2603} \u{1F600}"),
            r#""caf\xE9 \u2603 \U0001F600""#
        );
        assert_eq!(scalar("bell\u{7}"), r#""bell\x07""#);
    }

    #[test]
    fn numbers_render_as_yaml_numbers() {
        assert_eq!(format_decimal(2.0), "2");
        assert_eq!(format_decimal(1.5), "1.5");
        assert_eq!(format_decimal(1.0 / 3.0), "0.333");
        assert_eq!(format_decimal(1.9999), "1.999");
        assert_eq!(format_decimal(0.9999999999), "1");
        assert_eq!(format_decimal(-1.0), "0");
        assert_eq!(format_decimal(f64::NAN), "0");
        assert_eq!(format_decimal(0.0004), "0");
    }

    #[test]
    fn keys_are_sorted_and_lists_and_nulls_render() {
        let line = render_mapping(&[
            ("b", Value::Null),
            ("a", Value::StrList(vec!["x: y".into(), "z".into()])),
        ]);
        assert_eq!(line, "{a: ['x: y', z], b: null}");
    }
}
