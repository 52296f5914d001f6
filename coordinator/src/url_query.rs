//! Percent-encoding of URL query values, for the API's page links and the CLI's requests.

/// Percent-encodes `v` for use as a query value (everything but RFC 3986's unreserved bytes).
pub fn encode_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_bytes_are_escaped() {
        assert_eq!(super::encode_value("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
    }
}
