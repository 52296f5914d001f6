//! A minimal reader of Server-Sent Events, enough for the coordinator's live job stream.

/// One SSE message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The `event:` field.
    pub event: String,
    /// The `data:` lines joined with newlines.
    pub data: String,
    /// The `id:` field.
    pub id: Option<String>,
}

/// Splits a byte stream into messages.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    current: Message,
    has_data: bool,
}

impl Parser {
    /// Feeds bytes; returns the messages completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Message> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.current));
                    self.has_data = false;
                }
                self.current = Message::default();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
                None => (line.clone(), String::new()),
            };
            match field.as_str() {
                "event" => self.current.event = value,
                "id" => self.current.id = Some(value),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(&value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_anywhere() {
        let text = b": keep-alive\n\nevent: status\ndata: {\"a\":1}\n\nevent: job_event\nid: 3\ndata: x\ndata: y\n\n";
        for chunk in [1, 2, 5, 100] {
            let mut p = Parser::default();
            let mut got = Vec::new();
            for c in text.chunks(chunk) {
                got.extend(p.push(c));
            }
            assert_eq!(got.len(), 2, "chunk {chunk}");
            assert_eq!(got[0].event, "status");
            assert_eq!(got[0].data, "{\"a\":1}");
            assert_eq!(got[1].id.as_deref(), Some("3"));
            assert_eq!(got[1].data, "x\ny");
        }
    }
}
