//! Masking of secrets in API answers: variables whose name looks like a secret (password, token,
//! key, vault, ...) are shown as `$encrypted$`, as AWX does, whether they sit in a JSON object
//! (extra vars, inventory and host variables) or in `key=value` text (ad hoc module arguments).

use serde_json::{Map, Value};

/// What a masked value is shown as.
pub const MASK: &str = "$encrypted$";

/// Name fragments (lower case) that mark a variable as secret.
const SECRET_FRAGMENTS: &[&str] = &[
    "password", "passwd", "pass", "secret", "token", "key", "private", "vault",
];

/// Whether a variable called `name` holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_FRAGMENTS.iter().any(|f| lower.contains(f))
}

/// `value` with every secret-named member (at any depth) replaced by [`MASK`].
pub fn mask_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(mask_map(map)),
        Value::Array(items) => Value::Array(items.iter().map(mask_value).collect()),
        other => other.clone(),
    }
}

fn mask_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(k, v)| {
            let shown = if is_secret_name(k) && !v.is_null() {
                Value::String(MASK.into())
            } else {
                mask_value(v)
            };
            (k.clone(), shown)
        })
        .collect()
}

/// JSON object text with its secrets masked; text that is not JSON is returned unchanged.
pub fn mask_json_text(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => mask_value(&v).to_string(),
        _ => text.to_string(),
    }
}

/// `key=value` words (module arguments, INI host lines) with secret-named values masked.
/// Quoted values (`key="a b"`) are masked whole.
pub fn mask_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..word_start]);
        rest = &rest[word_start..];
        if rest.is_empty() {
            break;
        }
        let word_end = word_end(rest);
        let word = &rest[..word_end];
        match word.split_once('=') {
            Some((k, _)) if is_secret_name(k) && !k.is_empty() => {
                out.push_str(k);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(word),
        }
        rest = &rest[word_end..];
    }
    out
}

/// End of the word at the start of `s`: up to whitespace outside quotes.
fn word_end(s: &str) -> usize {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c.is_whitespace() => return i,
            None => {}
        }
    }
    s.len()
}

/// Inventory text (INI or YAML) with secret-named variables masked, line by line.
pub fn mask_inventory_text(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            // YAML `key: value`.
            if let Some((k, v)) = trimmed.split_once(':')
                && !k.contains(char::is_whitespace)
                && is_secret_name(k)
                && !v.trim().is_empty()
            {
                let indent = &line[..line.len() - trimmed.len()];
                return format!("{indent}{k}: {MASK}");
            }
            mask_key_values(line)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_members_are_masked_at_any_depth() {
        let v = json!({
            "ansible_password": "hunter2",
            "ansible_become_pass": "x",
            "db": {"api_token": "t", "host": "h"},
            "list": [{"ssh_private_key": "-----BEGIN"}],
            "vault_id": "v",
            "greeting": "hi",
        });
        let m = mask_value(&v);
        assert_eq!(m["ansible_password"], MASK);
        assert_eq!(m["ansible_become_pass"], MASK);
        assert_eq!(m["db"]["api_token"], MASK);
        assert_eq!(m["db"]["host"], "h");
        assert_eq!(m["list"][0]["ssh_private_key"], MASK);
        assert_eq!(m["vault_id"], MASK);
        assert_eq!(m["greeting"], "hi");
        assert!(!m.to_string().contains("hunter2"));
        assert!(!mask_json_text(&v.to_string()).contains("hunter2"));
        assert_eq!(mask_json_text("not json"), "not json");
    }

    #[test]
    fn key_value_text_is_masked() {
        assert_eq!(
            mask_key_values("name=bob password=\"s e c\" state=present"),
            "name=bob password=$encrypted$ state=present"
        );
        assert_eq!(mask_key_values("echo hi"), "echo hi");
        let inv = "[all]\nh1 ansible_host=1.2.3.4 ansible_password=hunter2\n\nall:\n  vars:\n    ansible_become_password: s3\n";
        let m = mask_inventory_text(inv);
        assert!(!m.contains("hunter2") && !m.contains("s3"), "{m}");
        assert!(m.contains("ansible_host=1.2.3.4"), "{m}");
    }
}
