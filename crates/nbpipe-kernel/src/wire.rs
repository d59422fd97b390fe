//! Lossless decoding of kernel messages.
//!
//! `jupyter-zmq-client` owns the sockets, framing and HMAC signing; incoming messages are
//! decoded here into plain JSON instead of `jupyter-protocol`'s typed structs, so that every
//! field a kernel sends (unknown MIME types, vendor metadata, odd payloads) reaches the output
//! notebook unchanged. Outgoing requests use the typed API.

use bytes::Bytes;
use serde_json::Value;

/// One message received from a kernel, as JSON.
#[derive(Debug, Clone)]
pub struct Msg {
    /// `header.msg_type`, e.g. `stream`, `execute_reply`.
    pub msg_type: String,
    /// `parent_header.msg_id`, empty when the message has no parent.
    pub parent_id: String,
    /// The full header.
    pub header: Value,
    /// Message metadata.
    pub metadata: Value,
    /// Message content.
    pub content: Value,
}

impl Msg {
    /// Decode the JSON frames (header, parent header, metadata, content) of a message.
    pub fn from_frames(jparts: &[Bytes]) -> Result<Msg, String> {
        let part = |i: usize, name: &str| -> Result<Value, String> {
            let bytes = jparts
                .get(i)
                .ok_or_else(|| format!("message has no {name} frame"))?;
            if bytes.is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON in {name}: {e}"))
        };
        let header = part(0, "header")?;
        let parent = part(1, "parent_header")?;
        let metadata = part(2, "metadata")?;
        let content = part(3, "content")?;
        let msg_type = header
            .get("msg_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let parent_id = parent
            .get("msg_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(Msg {
            msg_type,
            parent_id,
            header,
            metadata,
            content,
        })
    }

    /// A string field of the content, or "".
    pub fn str_field(&self, key: &str) -> &str {
        self.content.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_unknown_fields_verbatim() {
        let frames = vec![
            Bytes::from_static(br#"{"msg_type":"display_data","msg_id":"b"}"#),
            Bytes::from_static(br#"{"msg_id":"a"}"#),
            Bytes::from_static(b"{}"),
            Bytes::from_static(
                br#"{"data":{"application/x-vendor":{"k":[1,2]}},"metadata":{},"extra":1}"#,
            ),
        ];
        let m = Msg::from_frames(&frames).unwrap();
        assert_eq!(m.msg_type, "display_data");
        assert_eq!(m.parent_id, "a");
        assert_eq!(m.content["data"]["application/x-vendor"]["k"][1], 2);
        assert_eq!(m.content["extra"], 1);
    }

    #[test]
    fn missing_frames_are_an_error_not_a_panic() {
        assert!(Msg::from_frames(&[Bytes::from_static(b"{}")]).is_err());
        let bad = vec![Bytes::from_static(b"{"); 4];
        assert!(Msg::from_frames(&bad).is_err());
    }
}
