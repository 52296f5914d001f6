//! Recognising JSON text that Python's `json.dumps` (default options) would write unchanged.
//!
//! `ansible-runner process` stores each event as `json.dumps(json.loads(line))`. When the line
//! came from Python's own `json.dumps`, as a real worker's lines do, that round trip is the
//! identity, so the line can be stored as it is instead of being serialized again (which is
//! both slower and, with `serde_json`'s sorted maps, less faithful). [`dumps_form`] says whether
//! a line is in that form; anything it does not recognise is left to the serializer.
//!
//! The form: `", "` and `": "` separators and no other whitespace outside strings; strings of
//! printable ASCII with `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f` and lowercase `\uXXXX` for
//! everything else; integers without `-0`; floats exactly as Python's `repr`; no key repeated
//! in an object (Python keeps one of them), checked by counting against the parsed value.

use serde_json::{Map, Value};

/// `line` without surrounding JSON whitespace, when it is exactly what `json.dumps(parsed)`
/// would produce; `parsed` must be what `line` parsed to.
pub(crate) fn dumps_form<'a>(line: &'a [u8], parsed: &Map<String, Value>) -> Option<&'a [u8]> {
    let start = line.iter().position(|b| !is_ws(*b))?;
    let end = line.iter().rposition(|b| !is_ws(*b))? + 1;
    let text = &line[start..end];
    let mut scan = Scanner {
        text,
        at: 0,
        keys: 0,
    };
    scan.value(0)?;
    (scan.at == text.len() && scan.keys == count_keys_in_map(parsed)).then_some(text)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Deeper nesting than this is left to the serializer (serde_json refuses beyond 128 anyway).
const MAX_DEPTH: usize = 128;

struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    keys: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, expected: &[u8]) -> Option<()> {
        let end = self.at.checked_add(expected.len())?;
        (self.text.get(self.at..end)? == expected).then(|| self.at = end)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string(),
            b't' => self.eat(b"true"),
            b'f' => self.eat(b"false"),
            b'n' => self.eat(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        self.at += 1;
        if self.eat(b"}").is_some() {
            return Some(());
        }
        loop {
            self.string()?;
            self.eat(b": ")?;
            self.value(depth + 1)?;
            self.keys += 1;
            match self.peek()? {
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => self.eat(b", ")?,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.at += 1;
        if self.eat(b"]").is_some() {
            return Some(());
        }
        loop {
            self.value(depth + 1)?;
            match self.peek()? {
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => self.eat(b", ")?,
            }
        }
    }

    fn string(&mut self) -> Option<()> {
        self.eat(b"\"")?;
        loop {
            let rest = self.text.get(self.at..)?;
            // Plain printable ASCII runs are the common case.
            let run = rest
                .iter()
                .position(|&b| !(b' '..=b'~').contains(&b) || b == b'"' || b == b'\\')?;
            self.at += run;
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(());
                }
                b'\\' => self.escape()?,
                _ => return None,
            }
        }
    }

    fn escape(&mut self) -> Option<()> {
        let kind = *self.text.get(self.at + 1)?;
        if matches!(kind, b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f') {
            self.at += 2;
            return Some(());
        }
        if kind != b'u' {
            return None;
        }
        let hex = self.text.get(self.at + 2..self.at + 6)?;
        let mut unit = 0u32;
        for &h in hex {
            let digit = match h {
                b'0'..=b'9' => h - b'0',
                b'a'..=b'f' => h - b'a' + 10,
                _ => return None,
            };
            unit = unit * 16 + u32::from(digit);
        }
        // Printable ASCII is written as itself, and these five have short escapes.
        let short = matches!(unit, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d);
        if (0x20..0x7f).contains(&unit) || short {
            return None;
        }
        self.at += 6;
        Some(())
    }

    fn number(&mut self) -> Option<()> {
        let rest = &self.text[self.at..];
        let len = rest
            .iter()
            .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
            .unwrap_or(rest.len());
        let token = &rest[..len];
        self.at += len;
        let digits = token.strip_prefix(b"-").unwrap_or(token);
        if digits.iter().all(u8::is_ascii_digit) {
            // An integer: Python keeps it exactly, except that `-0` becomes `0`.
            let leading_zero = digits.len() > 1 && digits[0] == b'0';
            return (!digits.is_empty() && !leading_zero && token != b"-0").then_some(());
        }
        let text = std::str::from_utf8(token).ok()?;
        let value: f64 = text.parse().ok()?;
        (python_float_repr(value)?.as_bytes() == token).then_some(())
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional for decimal exponents
/// -4..16 (with `.0` when integral), otherwise `d.ddde+XX` with at least two exponent digits.
fn python_float_repr(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    let sci = format!("{:e}", value.abs());
    let (mantissa, exp) = sci.split_once('e')?;
    let exp: i32 = exp.parse().ok()?;
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if value.is_sign_negative() {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
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
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    Some(out)
}

fn count_keys_in_map(map: &Map<String, Value>) -> usize {
    map.len() + map.values().map(count_keys).sum::<usize>()
}

fn count_keys(value: &Value) -> usize {
    match value {
        Value::Object(map) => count_keys_in_map(map),
        Value::Array(items) => items.iter().map(count_keys).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str) -> bool {
        let parsed: Value = serde_json::from_str(line).unwrap();
        dumps_form(line.as_bytes(), parsed.as_object().unwrap()).is_some()
    }

    #[test]
    fn python_dumps_output_is_recognised() {
        // Each of these is byte for byte what Python 3's json.dumps writes for it.
        for line in [
            r#"{}"#,
            r#"{"a": 1, "b": [1, 2, {"c": null}], "d": true, "e": false, "f": []}"#,
            r#"{"z": 1, "a": 2}"#,
            r#"{"s": "tab\tnl\ncr\rq\"bs\\ \b\f \u0001 \u007f caf\u00e9 \ud83d\ude00 /"}"#,
            r#"{"f": 0.024735, "g": 1.0, "h": -2.5, "i": 1e-05, "j": 1e+16, "k": 123456789012345.6}"#,
            r#"{"l": 0.0001, "m": 1.5e-07, "n": -0.0, "o": 1e+100, "p": 9007199254740993}"#,
            r#"{"big": 123456789012345678901234567890, "neg": -7}"#,
        ] {
            assert!(check(line), "{line}");
        }
        let parsed = serde_json::json!({"a": 1});
        assert_eq!(
            dumps_form(b" {\"a\": 1}\r", parsed.as_object().unwrap()),
            Some(&b"{\"a\": 1}"[..])
        );
    }

    #[test]
    fn anything_python_would_rewrite_is_refused() {
        for line in [
            r#"{"a":1}"#,
            r#"{"a": 1,"b": 2}"#,
            r#"{ "a": 1}"#,
            r#"{"a": [1,2]}"#,
            r#"{"a": "\/"}"#,
            r#"{"a": "\u0041"}"#,
            r#"{"a": "\u000a"}"#,
            r#"{"a": "\u00E9"}"#,
            "{\"a\": \"caf\u{e9}\"}",
            "{\"a\": \"\u{7f}\"}",
            r#"{"a": 1.50}"#,
            r#"{"a": 1E5}"#,
            r#"{"a": 0.00001}"#,
            r#"{"a": 1e16}"#,
            r#"{"a": 1e-5}"#,
            r#"{"a": 10000000000000000.0}"#,
            r#"{"a": -0}"#,
            r#"{"a": 0.1000000000000000055511151231257827}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"o": {"k": 1, "k": 1}}"#,
        ] {
            assert!(!check(line), "{line}");
        }
    }
}
