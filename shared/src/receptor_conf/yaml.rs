//! Loading YAML the way receptor reads its config file.
//!
//! receptor decodes `receptor.conf` with go-yaml v2, which follows YAML 1.1: a plain `0660` is the
//! octal number 432, plain `yes`/`on`/`y` are booleans, and underscores inside plain numbers are
//! ignored. yaml-rust2 resolves plain scalars by YAML 1.2 rules instead, so this module takes only
//! its event stream (which keeps each scalar's style) and resolves plain scalars itself, the way
//! go-yaml v2 does when it decodes into untyped values. Number syntax follows Go's `strconv`
//! (prefixes `0x`, `0o`, `0b`, a leading `0` for octal, `_` separators).
//!
//! Deliberately refused, although go-yaml accepts them: anchors and aliases (a config never needs
//! them, and they allow exponential expansion), tags other than `!!str`, `<<` merge keys,
//! non-string map keys, duplicate keys (go-yaml silently keeps the last) and a second document
//! (go-yaml silently ignores it).

use std::collections::HashSet;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::ConfError;
use super::model::YamlValue;

/// Deepest nesting of lists and maps accepted; real configs use three levels.
pub(crate) const MAX_DEPTH: usize = 32;

/// A loaded YAML node and the line (from 1) where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

/// The shape of a loaded node. Scalars are already resolved.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Scalar(YamlValue),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    /// Drops line numbers, keeping the value.
    pub fn to_value(&self) -> YamlValue {
        match &self.kind {
            Kind::Scalar(v) => v.clone(),
            Kind::Seq(items) => YamlValue::List(items.iter().map(Node::to_value).collect()),
            Kind::Map(entries) => YamlValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// A short description of what this node is, for error messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar(v) => v.describe(),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a map".to_string(),
        }
    }
}

struct Loader<'a> {
    parser: Parser<std::str::Chars<'a>>,
}

/// Loads the single document in `text`; `None` when the stream holds no document at all.
pub(crate) fn load(text: &str) -> Result<Option<Node>, ConfError> {
    check_printable(text)?;
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
    };
    loader.expect_stream_start()?;
    let (event, mark) = loader.next()?;
    let root = match event {
        Event::StreamEnd => return Ok(None),
        Event::DocumentStart => {
            let (event, mark) = loader.next()?;
            loader.node(event, mark, 0)?
        }
        other => return Err(unexpected(&other, mark)),
    };
    loader.expect_document_end()?;
    match loader.next()? {
        (Event::StreamEnd, _) => Ok(Some(root)),
        (_, mark) => Err(unsupported(mark, "more than one YAML document")),
    }
}

/// YAML streams may not hold control characters raw (go-yaml refuses them too); a BOM may only
/// open the stream.
fn check_printable(text: &str) -> Result<(), ConfError> {
    let allowed = |(i, c): &(usize, char)| match *c {
        '\t' | '\n' | '\r' | '\u{85}' => true,
        '\u{feff}' => *i == 0,
        c => !(c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c) || c == '\u{fffe}' || c == '\u{ffff}'),
    };
    let Some((i, c)) = text.char_indices().find(|ic| !allowed(ic)) else {
        return Ok(());
    };
    let before = &text[..i];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    Err(ConfError::Syntax {
        line,
        col,
        message: format!(
            "character U+{:04X} may not appear raw in YAML; escape it inside double quotes",
            u32::from(c)
        ),
    })
}

impl Loader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), ConfError> {
        self.parser.next_token().map_err(|e| ConfError::Syntax {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })
    }

    fn expect_stream_start(&mut self) -> Result<(), ConfError> {
        match self.next()? {
            (Event::StreamStart, _) => Ok(()),
            (other, mark) => Err(unexpected(&other, mark)),
        }
    }

    fn expect_document_end(&mut self) -> Result<(), ConfError> {
        match self.next()? {
            (Event::DocumentEnd, _) => Ok(()),
            (other, mark) => Err(unexpected(&other, mark)),
        }
    }

    fn node(&mut self, event: Event, mark: Marker, depth: usize) -> Result<Node, ConfError> {
        if depth > MAX_DEPTH {
            return Err(ConfError::TooDeep {
                line: mark.line(),
                max: MAX_DEPTH,
            });
        }
        let kind = match event {
            Event::Scalar(text, style, anchor, tag) => {
                no_anchor(anchor, mark)?;
                Kind::Scalar(scalar(text, style, tag.as_ref(), mark)?)
            }
            Event::SequenceStart(anchor, tag) => {
                no_anchor(anchor, mark)?;
                no_tag(tag.as_ref(), mark)?;
                Kind::Seq(self.seq(depth)?)
            }
            Event::MappingStart(anchor, tag) => {
                no_anchor(anchor, mark)?;
                no_tag(tag.as_ref(), mark)?;
                Kind::Map(self.map(depth)?)
            }
            Event::Alias(_) => return Err(unsupported(mark, "aliases (`*name`)")),
            other => return Err(unexpected(&other, mark)),
        };
        Ok(Node {
            line: mark.line(),
            kind,
        })
    }

    fn seq(&mut self, depth: usize) -> Result<Vec<Node>, ConfError> {
        let mut items = Vec::new();
        loop {
            let (event, mark) = self.next()?;
            if matches!(event, Event::SequenceEnd) {
                return Ok(items);
            }
            items.push(self.node(event, mark, depth + 1)?);
        }
    }

    fn map(&mut self, depth: usize) -> Result<Vec<(String, Node)>, ConfError> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        // A set, not a scan of `entries`: a hostile map may have a hundred thousand keys.
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let (event, mark) = self.next()?;
            if matches!(event, Event::MappingEnd) {
                return Ok(entries);
            }
            let key = self.key(event, mark)?;
            if !seen.insert(key.clone()) {
                return Err(ConfError::DuplicateKey {
                    line: mark.line(),
                    key: key.chars().take(80).collect(),
                });
            }
            let (event, vmark) = self.next()?;
            entries.push((key, self.node(event, vmark, depth + 1)?));
        }
    }

    fn key(&mut self, event: Event, mark: Marker) -> Result<String, ConfError> {
        let Event::Scalar(text, style, anchor, tag) = event else {
            return Err(ConfError::NonStringKey {
                line: mark.line(),
                found: "a list or map".to_string(),
            });
        };
        no_anchor(anchor, mark)?;
        if style == TScalarStyle::Plain && text == "<<" {
            return Err(unsupported(mark, "merge keys (`<<`)"));
        }
        match scalar(text, style, tag.as_ref(), mark)? {
            YamlValue::String(s) => Ok(s),
            other => Err(ConfError::NonStringKey {
                line: mark.line(),
                found: other.describe(),
            }),
        }
    }
}

fn scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<YamlValue, ConfError> {
    match tag {
        None if style == TScalarStyle::Plain => Ok(resolve_plain(&text)),
        None => Ok(YamlValue::String(text)),
        Some(t) if is_str_tag(t) => Ok(YamlValue::String(text)),
        Some(_) => Err(unsupported(mark, "tags other than `!!str`")),
    }
}

fn is_str_tag(tag: &Tag) -> bool {
    tag.suffix == "str" && (tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!")
}

fn no_anchor(anchor: usize, mark: Marker) -> Result<(), ConfError> {
    if anchor == 0 {
        Ok(())
    } else {
        Err(unsupported(mark, "anchors (`&name`)"))
    }
}

fn no_tag(tag: Option<&Tag>, mark: Marker) -> Result<(), ConfError> {
    match tag {
        None => Ok(()),
        Some(_) => Err(unsupported(mark, "tags on lists and maps")),
    }
}

fn unsupported(mark: Marker, what: &'static str) -> ConfError {
    ConfError::Unsupported {
        line: mark.line(),
        what,
    }
}

fn unexpected(event: &Event, mark: Marker) -> ConfError {
    ConfError::Syntax {
        line: mark.line(),
        col: mark.col() + 1,
        message: format!("unexpected YAML event {event:?}"),
    }
}

/// Resolves a plain (unquoted) scalar as go-yaml v2 does when decoding into an untyped value.
///
/// Timestamps are not special: go-yaml hands them to untyped targets as the original string.
pub(crate) fn resolve_plain(s: &str) -> YamlValue {
    let Some(&first) = s.as_bytes().first() else {
        return YamlValue::Null;
    };
    let may_be_special = matches!(
        first,
        b'+' | b'-' | b'0'
            ..=b'9'
                | b'.'
                | b'~'
                | b'y'
                | b'Y'
                | b'n'
                | b'N'
                | b't'
                | b'T'
                | b'f'
                | b'F'
                | b'o'
                | b'O'
    );
    if !may_be_special {
        return YamlValue::String(s.to_string());
    }
    if let Some(v) = keyword(s) {
        return v;
    }
    let resolved = match first {
        b'.' => go_parse_float(s).map(YamlValue::Float),
        b'+' | b'-' | b'0'..=b'9' => resolve_number(s),
        _ => None,
    };
    resolved.unwrap_or_else(|| YamlValue::String(s.to_string()))
}

fn keyword(s: &str) -> Option<YamlValue> {
    let v = match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            YamlValue::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            YamlValue::Bool(false)
        }
        "~" | "null" | "Null" | "NULL" => YamlValue::Null,
        ".nan" | ".NaN" | ".NAN" => YamlValue::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => YamlValue::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => YamlValue::Float(f64::NEG_INFINITY),
        _ => return None,
    };
    Some(v)
}

fn resolve_number(s: &str) -> Option<YamlValue> {
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(i) = go_parse_int(&plain) {
        return Some(YamlValue::Int(i128::from(i)));
    }
    if let Some(u) = go_parse_uint(&plain) {
        return Some(YamlValue::Int(i128::from(u)));
    }
    if yaml_float_syntax(&plain) {
        return go_parse_float(&plain).map(YamlValue::Float);
    }
    None
}

/// go-yaml's test for a float: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn yaml_float_syntax(s: &str) -> bool {
    let b = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = int_digits;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if int_digits == 0 && frac == 0 {
            return false;
        }
        i += frac;
    } else if int_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

/// Go's rule for `_` in number literals: only between digits, or after a base prefix.
fn underscores_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let (mut prev, rest, hex) = match s {
        [b'0', p, rest @ ..] if matches!(p.to_ascii_lowercase(), b'b' | b'o' | b'x') => {
            (b'0', rest, p.eq_ignore_ascii_case(&b'x'))
        }
        _ => (b'^', s, false),
    };
    for &c in rest {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            prev = b'0';
        } else if c == b'_' {
            if prev != b'0' {
                return false;
            }
            prev = b'_';
        } else {
            if prev == b'_' {
                return false;
            }
            prev = b'!';
        }
    }
    prev != b'_'
}

/// Go's `strconv.ParseUint(s, 0, 64)`: no sign; `0x`, `0o`, `0b` or a bare leading `0` (octal).
pub(crate) fn go_parse_uint(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    let (radix, digits) = match bytes {
        [] => return None,
        [b'0', p, _, ..] if matches!(p.to_ascii_lowercase(), b'b' | b'o' | b'x') => {
            let radix = match p.to_ascii_lowercase() {
                b'b' => 2,
                b'o' => 8,
                _ => 16,
            };
            (radix, &s[2..])
        }
        [b'0', ..] => (8, &s[1..]),
        _ => (10, s),
    };
    let mut value: u64 = 0;
    let mut underscores = false;
    for c in digits.chars() {
        if c == '_' {
            underscores = true;
            continue;
        }
        let d = c.to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(d))?;
    }
    if underscores && !underscores_ok(s) {
        return None;
    }
    Some(value)
}

/// Go's `strconv.ParseInt(s, 0, 64)`: an optional sign, then [`go_parse_uint`].
pub(crate) fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(rest)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input; `inf`, `infinity` and `nan` in any case.
///
/// Hexadecimal floats (`0x1p-2`) are refused: go-yaml never produces them from a plain scalar,
/// so they could only come from a quoted string in a float field, which nobody writes.
pub(crate) fn go_parse_float(s: &str) -> Option<f64> {
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest.eq_ignore_ascii_case("inf") || rest.eq_ignore_ascii_case("infinity") {
        return Some(sign * f64::INFINITY);
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if !decimal_float_syntax(rest) || (rest.contains('_') && !underscores_ok(rest)) {
        return None;
    }
    let digits: String = rest.chars().filter(|&c| c != '_').collect();
    let v: f64 = digits.parse().ok()?;
    // Go reports overflow as an error, and go-yaml then keeps the text as a string.
    v.is_finite().then_some(sign * v)
}

/// Go's decimal float literal: digits (with `_`), optional `.` and digits, optional exponent;
/// at least one mantissa digit.
fn decimal_float_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    let is_digit = |c: &&u8| c.is_ascii_digit() || **c == b'_';
    let int_len = b.iter().take_while(is_digit).count();
    let mut i = int_len;
    let mut mantissa_digits = b[..i].iter().filter(|c| c.is_ascii_digit()).count();
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_len = b[i..].iter().take_while(is_digit).count();
        mantissa_digits += b[i..i + frac_len]
            .iter()
            .filter(|c| c.is_ascii_digit())
            .count();
        i += frac_len;
    }
    if mantissa_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_len = b[i..].iter().take_while(is_digit).count();
        if !b[i..i + exp_len].iter().any(|c| c.is_ascii_digit()) {
            return false;
        }
        i += exp_len;
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What go-yaml v2.4.0 decodes each plain scalar to, recorded by running it (Go program that
    /// unmarshals `- <scalar>` into `[]interface{}`); `s` = string, `n` = null.
    const GO_YAML_V2_TRUTH: &[(&str, &str)] = &[
        ("0660", "int 432"),
        ("660", "int 660"),
        ("0o660", "int 432"),
        ("0O660", "int 432"),
        ("0x1b0", "int 432"),
        ("0X1B0", "int 432"),
        ("0b101", "int 5"),
        ("-0b101", "int -5"),
        ("4_20", "int 420"),
        ("1__0", "int 10"),
        ("0_660", "int 432"),
        ("08", "float 8"),
        ("09.5", "float 9.5"),
        ("0x", "s"),
        ("0o", "s"),
        ("0", "int 0"),
        ("-0", "int 0"),
        ("+12", "int 12"),
        ("-12", "int -12"),
        ("9223372036854775807", "int 9223372036854775807"),
        ("9223372036854775808", "int 9223372036854775808"),
        ("18446744073709551615", "int 18446744073709551615"),
        ("18446744073709551616", "float 1.8446744073709552e+19"),
        ("-9223372036854775808", "int -9223372036854775808"),
        ("-9223372036854775809", "float -9.223372036854776e+18"),
        ("1e3", "float 1000"),
        ("1E3", "float 1000"),
        ("1.", "float 1"),
        (".5", "float 0.5"),
        ("+.5", "float 0.5"),
        ("-.5e-3", "float -0.0005"),
        ("1e", "s"),
        ("1e400", "s"),
        ("1.5.5", "s"),
        ("1:30", "s"),
        ("2001-12-14", "s"),
        ("2001-12-14T21:59:43Z", "s"),
        (".", "s"),
        ("._5", "s"),
        (".5_0", "float 0.5"),
        ("+", "s"),
        ("y", "bool true"),
        ("Y", "bool true"),
        ("yes", "bool true"),
        ("YES", "bool true"),
        ("yEs", "s"),
        ("on", "bool true"),
        ("ON", "bool true"),
        ("n", "bool false"),
        ("no", "bool false"),
        ("off", "bool false"),
        ("Off", "bool false"),
        ("true", "bool true"),
        ("False", "bool false"),
        ("t", "s"),
        ("f", "s"),
        ("~", "n"),
        ("null", "n"),
        ("Null", "n"),
        ("NULL", "n"),
        ("nULL", "s"),
        (".inf", "float +Inf"),
        ("-.Inf", "float -Inf"),
        ("+.INF", "float +Inf"),
        (".nan", "float NaN"),
        ("inf", "s"),
        ("nan", "s"),
        ("0x1p-2", "s"),
        ("1_000.5", "float 1000.5"),
        ("_1", "s"),
        ("tonode", "s"),
        ("/etc/receptor/x.pem", "s"),
        ("exec1:27199", "s"),
    ];

    fn summary(v: &YamlValue) -> String {
        match v {
            YamlValue::Null => "n".to_string(),
            YamlValue::Bool(b) => format!("bool {b}"),
            YamlValue::Int(i) => format!("int {i}"),
            YamlValue::Float(f) if f.is_nan() => "float NaN".to_string(),
            YamlValue::Float(f) if f.is_infinite() => {
                format!("float {}Inf", if *f > 0.0 { "+" } else { "-" })
            }
            YamlValue::Float(f) => format!("float {f}"),
            YamlValue::String(_) => "s".to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn plain_scalars_resolve_like_go_yaml_v2() {
        for (input, expected) in GO_YAML_V2_TRUTH {
            let got = resolve_plain(input);
            match (expected.strip_prefix("float "), &got) {
                (Some(want), YamlValue::Float(f)) if f.is_finite() => {
                    assert_eq!(*f, want.parse::<f64>().unwrap(), "{input:?}")
                }
                _ => assert_eq!(summary(&got), *expected, "{input:?}"),
            }
        }
        assert_eq!(resolve_plain("-"), YamlValue::String("-".into()));
    }

    #[test]
    fn go_int_parsing_matches_strconv() {
        assert_eq!(go_parse_int("0660"), Some(432));
        assert_eq!(go_parse_int("0o660"), Some(432));
        assert_eq!(go_parse_int("0x1b0"), Some(432));
        assert_eq!(go_parse_int("0_660"), Some(432));
        assert_eq!(go_parse_int("0x_1b0"), Some(432));
        assert_eq!(go_parse_int("+0b11"), Some(3));
        assert_eq!(go_parse_int("-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "",
            "+",
            "-",
            "0x",
            "08",
            "1__0",
            "_1",
            "1_",
            "0_",
            "0x_",
            "1 ",
            " 1",
            "1.0",
            "0b2",
            "9223372036854775808",
            "--1",
            "+-1",
            "١",
        ] {
            assert_eq!(go_parse_int(bad), None, "{bad:?}");
        }
        assert_eq!(go_parse_uint("18446744073709551615"), Some(u64::MAX));
        assert_eq!(go_parse_uint("18446744073709551616"), None);
        assert_eq!(go_parse_uint("+1"), None);
    }

    #[test]
    fn go_float_parsing_matches_strconv() {
        // Recorded from strconv.ParseFloat in Go 1.26.
        assert_eq!(go_parse_float("1_000.5"), Some(1000.5));
        assert_eq!(go_parse_float("1_0"), Some(10.0));
        assert_eq!(go_parse_float(".5_0"), Some(0.5));
        assert_eq!(go_parse_float("1."), Some(1.0));
        assert_eq!(go_parse_float("+.5"), Some(0.5));
        assert_eq!(go_parse_float("Infinity"), Some(f64::INFINITY));
        assert_eq!(go_parse_float("+INF"), Some(f64::INFINITY));
        assert!(go_parse_float("nan").is_some_and(f64::is_nan));
        for bad in [
            "1__0.5", "_1.5", "1e", "", ".", "e5", "1e400", "1.5x", " 1", "0x1p-2",
        ] {
            assert_eq!(go_parse_float(bad), None, "{bad:?}");
        }
    }

    fn load_ok(text: &str) -> YamlValue {
        load(text).unwrap().unwrap().to_value()
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let v = load_ok("- '0660'\n- \"yes\"\n- !!str 12\n- |\n  0660\n");
        assert_eq!(
            v,
            YamlValue::List(vec![
                YamlValue::String("0660".into()),
                YamlValue::String("yes".into()),
                YamlValue::String("12".into()),
                YamlValue::String("0660\n".into()),
            ])
        );
    }

    #[test]
    fn empty_input_has_no_document() {
        assert!(load("").unwrap().is_none());
        assert!(load("# only a comment\n").unwrap().is_none());
        assert_eq!(load_ok("---\n"), YamlValue::Null);
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        let cases = [
            ("- &a x\n- *a\n", "anchors"),
            ("- !!int 3\n", "tags"),
            ("- !foo {a: 1}\n", "tags"),
            ("- {<<: {a: 1}}\n", "merge keys"),
            ("- a\n---\n- b\n", "more than one YAML document"),
        ];
        for (text, what) in cases {
            let err = load(text).unwrap_err();
            assert!(err.to_string().contains(what), "{text:?}: {err}");
        }
    }

    #[test]
    fn refuses_duplicate_and_non_string_keys() {
        let err = load("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(
            matches!(&err, ConfError::DuplicateKey { line: 3, key } if key == "a"),
            "{err:?}"
        );
        let err = load("yes: 1\n").unwrap_err();
        assert!(err.to_string().contains("boolean"), "{err}");
        let err = load("1: a\n").unwrap_err();
        assert!(
            matches!(err, ConfError::NonStringKey { line: 1, .. }),
            "{err:?}"
        );
        let err = load("? [a]\n: b\n").unwrap_err();
        assert!(matches!(err, ConfError::NonStringKey { .. }), "{err:?}");
        // Quoted keys are strings.
        assert!(load("'1': a\n").is_ok());
    }

    #[test]
    fn bounds_nesting_depth() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 5), "]".repeat(MAX_DEPTH + 5));
        let err = load(&deep).unwrap_err();
        assert!(matches!(err, ConfError::TooDeep { .. }), "{err:?}");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = load("- a\n - b: [\n").unwrap_err();
        assert!(matches!(err, ConfError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().contains("line"), "{err}");
        for garbage in [
            "\u{0}\u{1}",
            "- \"unterminated\n",
            "{a: 1",
            "- [a, b\n",
            "- node:\n\tid: x\n",
        ] {
            assert!(load(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn large_hostile_maps_and_lists_load_quickly() {
        let keys: Vec<String> = (0..60_000).map(|i| format!("k{i}: 1")).collect();
        let text = format!("- ws-peer: {{{}}}\n", keys.join(", "));
        let start = std::time::Instant::now();
        assert!(load(&text).is_ok());
        let items = "- x\n".repeat(200_000);
        assert!(load(&items).is_ok());
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn records_lines() {
        let root = load("---\n- a\n- b: 1\n").unwrap().unwrap();
        let Kind::Seq(items) = root.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[0].line, 2);
        assert_eq!(items[1].line, 3);
    }
}
