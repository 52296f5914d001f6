//! Reading ansible-runner streams in tests: decode a whole stream (panicking with the stream's
//! text if it is not well-formed), and pick out its final status and its output.

use meshrun_shared::runner_stream::{DecoderLimits, Frame, StreamDecoder};
use serde_json::Value;

/// Every frame of a complete stream; panics if it is not well-formed or is cut.
pub fn frames(stream: &[u8]) -> Vec<Frame> {
    let mut d = StreamDecoder::new(DecoderLimits::default());
    let mut out = Vec::new();
    d.push(stream, &mut |f| {
        out.push(f);
        Ok::<(), ()>(())
    })
    .unwrap_or_else(|e| panic!("bad stream: {e:?}\n{}", String::from_utf8_lossy(stream)));
    d.finish()
        .unwrap_or_else(|e| panic!("cut stream: {e}\n{}", String::from_utf8_lossy(stream)));
    out
}

/// The last status line, as a JSON object (`["status"]` is the status).
pub fn last_status(frames: &[Frame]) -> Value {
    frames
        .iter()
        .rev()
        .find_map(|f| match f {
            Frame::Status(m) => Some(Value::Object(m.clone())),
            _ => None,
        })
        .expect("a status line")
}

/// The events' stdout, one event per line.
pub fn events_stdout(frames: &[Frame]) -> String {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Event(m) => m.get("stdout").and_then(Value::as_str).map(str::to_string),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
