//! What every trigger produces: an [`ObjectEvent`] ("this object landed") or a scheduled or
//! manual request, turned into a [`RunRequest`] for one project.
//!
//! Owns the identity of an event ([`ObjectEvent::dedup_key`]): the same object version
//! delivered twice (SQS at-least-once, a webhook retried, a poll overlapping a notification)
//! must map to the same key, so the queue can run it exactly once. Also owns what S3's
//! `sequencer` means ([`ObjectEvent::sequence`], [`compare_sequencers`]): the order of events
//! for one key, which the queue enforces durably.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// Longest `sequencer` taken as an ordering token (S3 sends 16–18 hex digits).
pub const MAX_SEQUENCER_DIGITS: usize = 64;

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

impl Source {
    /// Its name as serialized (`sqs`, `webhook`, `poll`, `local_dir`, `schedule`, `api`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Sqs => "sqs",
            Source::Webhook => "webhook",
            Source::Poll => "poll",
            Source::LocalDir => "local_dir",
            Source::Schedule => "schedule",
            Source::Api => "api",
        }
    }
}

/// An object that was created (the only kind of event that starts runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectEvent {
    /// Bucket. A file in the local inbox (`INBOX/<bucket>/<key>`) carries the bucket it
    /// stands for; a file in any other watched folder carries the folder's path.
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
    /// The region the object lives in, when the notification says (`awsRegion`, EventBridge's
    /// `region`, CloudTrail's `detail.awsRegion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Identity of the *report* rather than of the object version: CloudTrail's `eventID`.
    /// Redeliveries of one report share it; used for dedup only when neither the version id
    /// nor the ETag is known (see [`ObjectEvent::dedup_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    /// The file on local disk holding the object, for files found in a watched folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl ObjectEvent {
    /// The URI of the object: `s3://bucket/key` (also for an inbox file, which stands for
    /// that object; its local file is [`ObjectEvent::path`]); for a file in a watched folder
    /// that is no inbox bucket, the file's path.
    pub fn uri(&self) -> String {
        if self.source == Source::LocalDir && self.bucket.starts_with('/') {
            return format!("{}/{}", self.bucket.trim_end_matches('/'), self.key);
        }
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Identity of this object version: the same version seen twice has the same key.
    /// Uses the version id when present, else the ETag, else the sequencer, else the report id
    /// (CloudTrail's `eventID`: redeliveries of one API call run once, but the same object
    /// version reported through another path is not recognised), else the size and event time. The version id `null` (what S3 reports for objects written while a bucket
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
            .or_else(|| self.report_id.as_ref().map(|r| format!("r:{r}")))
            .unwrap_or_else(|| {
                format!(
                    "t:{}:{}",
                    self.size.map(|s| s.to_string()).unwrap_or_default(),
                    self.event_time.clone().unwrap_or_default()
                )
            });
        format!("{}\u{0}{}\u{0}{version}", self.bucket, self.key)
    }

    /// This event's place in the order of its key's events: its `sequencer` as uppercase hex
    /// without leading zeros (so `0055AE…` and `55ae…` are the same place). `None` when it has
    /// no sequencer, or one that is not 1 to [`MAX_SEQUENCER_DIGITS`] hex digits — such an
    /// event is not ordered (it is taken like an event from a folder or a poll).
    pub fn sequence(&self) -> Option<String> {
        let raw = self.sequencer.as_deref()?.trim();
        if raw.is_empty()
            || raw.len() > MAX_SEQUENCER_DIGITS
            || !raw.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let digits = raw.trim_start_matches('0');
        Some(if digits.is_empty() {
            "0".to_string()
        } else {
            digits.to_ascii_uppercase()
        })
    }
}

/// Compare two S3 sequencers: hex strings of possibly different lengths, compared after
/// left-padding the shorter with zeros (case-insensitively). S3 only promises this order
/// between events for the same key.
pub fn compare_sequencers(a: &str, b: &str) -> Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{s:0>width$}").to_ascii_uppercase();
    pad(a).cmp(&pad(b))
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
            region: None,
            report_id: None,
            path: None,
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
    fn source_names_match_serde() {
        for s in [
            Source::Sqs,
            Source::Webhook,
            Source::Poll,
            Source::LocalDir,
            Source::Schedule,
            Source::Api,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
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

    #[test]
    fn sequencers_compare_after_zero_padding() {
        assert_eq!(compare_sequencers("0A", "9"), Ordering::Greater);
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "55AED6DCD90281E5"),
            Ordering::Equal
        );
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E6", "55AED6DCD90281E5"),
            Ordering::Greater
        );
        assert_eq!(compare_sequencers("ff", "FE"), Ordering::Greater);
        assert_eq!(compare_sequencers("100", "FF"), Ordering::Greater);
    }

    #[test]
    fn sequence_is_normalized_hex_or_nothing() {
        let with = |s: &str| ObjectEvent {
            sequencer: Some(s.into()),
            ..ev(None, Some("x"))
        };
        assert_eq!(
            with("0055aed6dcd90281e5").sequence().as_deref(),
            Some("55AED6DCD90281E5")
        );
        assert_eq!(with("000").sequence().as_deref(), Some("0"));
        assert_eq!(with("not-hex").sequence(), None);
        assert_eq!(with("").sequence(), None);
        assert_eq!(with(&"1".repeat(65)).sequence(), None);
        assert_eq!(ev(None, Some("x")).sequence(), None);
        // Normalized forms compare like the raw ones.
        let (a, b) = (
            with("00FF").sequence().unwrap(),
            with("100").sequence().unwrap(),
        );
        assert_eq!(compare_sequencers(&a, &b), Ordering::Less);
    }
}
