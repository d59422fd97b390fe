//! What every trigger produces: an [`ObjectEvent`] ("this object landed") or a scheduled or
//! manual request, turned into a [`RunRequest`] for one project.
//!
//! Owns the identity of an event ([`ObjectEvent::dedup_key`]): the same object version
//! delivered twice (SQS at-least-once, a webhook retried, a poll overlapping a notification)
//! must map to the same key, so the queue can run it exactly once.

use serde::{Deserialize, Serialize};

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// S3 notification (or EventBridge event) read from an SQS queue.
    Sqs,
    /// Notification pushed to `POST /hooks/s3`.
    Webhook,
    /// Found by polling a prefix.
    Poll,
    /// A file in a watched local folder.
    LocalDir,
    /// A cron schedule fired.
    Schedule,
    /// `POST /api/runs` or the UI's "run now".
    Api,
}

/// An object that was created (the only kind of event that starts runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEvent {
    /// Bucket (for a local folder: the folder's path).
    pub bucket: String,
    /// Object key, URL-decoded (`+` is a space, `%2F` a slash).
    pub key: String,
    /// ETag without quotes, when known.
    pub etag: Option<String>,
    /// Version id, when the bucket is versioned.
    pub version_id: Option<String>,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// S3's per-key ordering token (hex, compare as zero-padded strings).
    pub sequencer: Option<String>,
    /// When the event happened (RFC 3339), when known.
    pub event_time: Option<String>,
    /// e.g. `ObjectCreated:Put`, `Object Created`.
    pub event_name: String,
    /// Which trigger delivered it.
    pub source: Source,
}

impl ObjectEvent {
    /// The URI of the object, e.g. `s3://bucket/key`.
    pub fn uri(&self) -> String {
        match self.source {
            Source::LocalDir => format!("{}/{}", self.bucket.trim_end_matches('/'), self.key),
            _ => format!("s3://{}/{}", self.bucket, self.key),
        }
    }

    /// Identity of this object version: the same version seen twice has the same key.
    /// Uses the version id when present, else the ETag, else the sequencer, else the size and
    /// event time. The version id `null` (what S3 reports for objects written while a bucket
    /// was unversioned, and what moto sends for every object of an unversioned bucket) is
    /// shared by every overwrite, so it does not identify a version: the ETag does.
    pub fn dedup_key(&self) -> String {
        let version = self
            .version_id
            .as_ref()
            .filter(|v| v.as_str() != "null")
            .map(|v| format!("v:{v}"))
            .or_else(|| self.etag.as_ref().map(|e| format!("e:{e}")))
            .or_else(|| self.sequencer.as_ref().map(|s| format!("s:{s}")))
            .unwrap_or_else(|| {
                format!(
                    "t:{}:{}",
                    self.size.map(|s| s.to_string()).unwrap_or_default(),
                    self.event_time.clone().unwrap_or_default()
                )
            });
        format!("{}\u{0}{}\u{0}{version}", self.bucket, self.key)
    }
}

/// A request to run one project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    /// Project name (as configured in the server).
    pub project: String,
    /// The object that triggered it, if any.
    pub trigger: Option<ObjectEvent>,
    /// Parameters over the project's defaults (JSON object).
    pub parameters: serde_json::Value,
    /// Exactly-once identity: requests with the same key run once. `None` always runs.
    pub dedup_key: Option<String>,
    /// Human-readable origin, e.g. `s3 incoming/a.csv`, `schedule 0 6 * * *`, `api`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(version: Option<&str>, etag: Option<&str>) -> ObjectEvent {
        ObjectEvent {
            bucket: "b".into(),
            key: "in/a.csv".into(),
            etag: etag.map(Into::into),
            version_id: version.map(Into::into),
            size: Some(3),
            sequencer: None,
            event_time: None,
            event_name: "ObjectCreated:Put".into(),
            source: Source::Sqs,
        }
    }

    #[test]
    fn same_version_same_key_and_new_version_new_key() {
        assert_eq!(
            ev(None, Some("x")).dedup_key(),
            ev(None, Some("x")).dedup_key()
        );
        assert_ne!(
            ev(None, Some("x")).dedup_key(),
            ev(None, Some("y")).dedup_key()
        );
        assert_ne!(
            ev(Some("1"), Some("x")).dedup_key(),
            ev(Some("2"), Some("x")).dedup_key()
        );
        // The delivery channel does not change identity.
        let mut a = ev(None, Some("x"));
        a.source = Source::Webhook;
        assert_eq!(a.dedup_key(), ev(None, Some("x")).dedup_key());
    }

    #[test]
    fn null_version_id_falls_back_to_the_etag() {
        assert_ne!(
            ev(Some("null"), Some("x")).dedup_key(),
            ev(Some("null"), Some("y")).dedup_key()
        );
        assert_eq!(
            ev(Some("null"), Some("x")).dedup_key(),
            ev(None, Some("x")).dedup_key()
        );
    }
}
