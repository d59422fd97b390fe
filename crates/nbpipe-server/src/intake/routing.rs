//! Which projects an object event starts, and whether its key is safe to take in.
//!
//! A [`Route`] is one project's S3 trigger (`trigger: s3:` or the short form's
//! `S3TriggerBucket`/`S3TriggerKeyPrefix`/`S3TriggerKeySuffix`, which `nbpipe-project` already
//! folds into [`Trigger::S3`]). [`match_event`] returns every route whose bucket is the event's,
//! whose prefix starts the key and whose suffix (if any) ends it — after the key passed
//! [`check_key`]: an object key is later used to name files in a run's workspace, so a key that
//! could name a path outside it (`..` segments, a leading `/`, NUL), or is longer than S3 allows
//! (1024 bytes), never matches. Keys ending in `/` are "folder" markers (what consoles create)
//! and never match either.
//!
//! Per-key ordering by S3's `sequencer` is not decided here but by the queue, in the same
//! transaction as the enqueue (see [`crate::queue::Enqueued::Superseded`]), so it survives
//! restarts and holds across servers sharing a database.
//!
//! Must not: parse notification bodies or talk to stores.

use nbpipe_project::config::{Project, Trigger};
use percent_encoding::percent_decode_str;

use crate::event::{ObjectEvent, RunRequest};

/// S3's limit on key length, in bytes (UTF-8).
pub const MAX_KEY_BYTES: usize = 1024;

/// One project's S3 trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The project to run.
    pub project: String,
    /// The bucket (an inbox folder stands for its bucket; another watched folder: its path).
    pub bucket: String,
    /// The key prefix (`""`: the whole bucket).
    pub prefix: String,
    /// The key suffix, e.g. `.csv`.
    pub suffix: Option<String>,
}

impl Route {
    /// A route for `project`.
    pub fn new(
        project: impl Into<String>,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        suffix: Option<&str>,
    ) -> Route {
        Route {
            project: project.into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            suffix: suffix.filter(|s| !s.is_empty()).map(str::to_string),
        }
    }

    /// The routes of a project's S3 triggers, in file order.
    pub fn from_project(project: &Project) -> Vec<Route> {
        project
            .triggers
            .iter()
            .filter_map(|t| match t {
                Trigger::S3 {
                    bucket,
                    prefix,
                    suffix,
                } => Some(Route::new(
                    project.key(),
                    bucket.clone(),
                    prefix.clone(),
                    suffix.as_deref(),
                )),
                Trigger::Schedule { .. } => None,
            })
            .collect()
    }

    /// Whether this route takes `event` (bucket, prefix, suffix; the key is not checked here:
    /// see [`match_event`]).
    pub fn matches(&self, event: &ObjectEvent) -> bool {
        event.bucket == self.bucket
            && event.key.starts_with(&self.prefix)
            && self
                .suffix
                .as_deref()
                .is_none_or(|s| event.key.ends_with(s))
    }

    /// The run request for `event` on this route. Its dedup key is the project plus the
    /// event's [`ObjectEvent::dedup_key`], so the same object version runs each matching
    /// project once, however often it is delivered.
    pub fn request(&self, event: &ObjectEvent) -> RunRequest {
        let kind = match event.source {
            crate::event::Source::LocalDir => "file",
            _ => "s3",
        };
        RunRequest {
            project: self.project.clone(),
            trigger: Some(event.clone()),
            parameters: serde_json::Value::Object(Default::default()),
            dedup_key: Some(format!("{}\u{0}{}", self.project, event.dedup_key())),
            reason: format!("{kind} {}", event.key),
        }
    }
}

/// The routes of every project's S3 triggers.
pub fn routes<'a>(projects: impl IntoIterator<Item = &'a Project>) -> Vec<Route> {
    projects.into_iter().flat_map(Route::from_project).collect()
}

/// The routes `event` matches, in order; none when its key fails [`check_key`] or is a folder
/// marker (ends in `/`).
pub fn match_event<'a>(routes: &'a [Route], event: &ObjectEvent) -> Vec<&'a Route> {
    if check_key(&event.key).is_err() || event.key.ends_with('/') {
        return Vec::new();
    }
    routes.iter().filter(|r| r.matches(event)).collect()
}

/// The run requests for `event`: one per matching route (see [`Route::request`]).
pub fn requests(routes: &[Route], event: &ObjectEvent) -> Vec<RunRequest> {
    match_event(routes, event)
        .into_iter()
        .map(|r| r.request(event))
        .collect()
}

/// Why an object key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("the key is empty")]
    Empty,
    /// Longer than S3's 1024 bytes.
    #[error("the key is {0} bytes long (at most 1024)")]
    TooLong(usize),
    /// Contains a NUL character.
    #[error("the key contains a NUL character")]
    Nul,
    /// Starts with `/`.
    #[error("the key is an absolute path")]
    Absolute,
    /// Has a `..` segment.
    #[error("the key has a `..` segment")]
    ParentSegment,
    /// Its URL-decoding is not UTF-8.
    #[error("the decoded key is not UTF-8")]
    InvalidUtf8,
}

/// Check that `key` (already decoded) can never name a path outside a workspace: not empty,
/// at most [`MAX_KEY_BYTES`], no NUL, not absolute, no `..` segment (`\` counts as a
/// separator too, for keys written on Windows).
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    if key.contains('\0') {
        return Err(KeyError::Nul);
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(KeyError::Absolute);
    }
    if key.split(['/', '\\']).any(|segment| segment == "..") {
        return Err(KeyError::ParentSegment);
    }
    Ok(())
}

/// Decode a key from an S3 notification: `+` is a space, then `%XX` escapes are decoded (so
/// `%2B` is a literal `+` and `%2F` a `/`). The result must be UTF-8.
pub fn decode_key(raw: &str) -> Result<String, KeyError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| KeyError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Source;

    fn ev(bucket: &str, key: &str) -> ObjectEvent {
        ObjectEvent {
            bucket: bucket.into(),
            key: key.into(),
            etag: Some("e".into()),
            version_id: None,
            size: Some(1),
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
    fn prefix_suffix_and_bucket_select_routes() {
        let routes = vec![
            Route::new("sales", "incoming", "sales/", Some(".csv")),
            Route::new("all", "incoming", "", None),
            Route::new("other", "elsewhere", "sales/", None),
            Route::new("empty-suffix", "incoming", "sales/", Some("")),
        ];
        let names = |e: &ObjectEvent| -> Vec<String> {
            match_event(&routes, e)
                .iter()
                .map(|r| r.project.clone())
                .collect()
        };
        assert_eq!(
            names(&ev("incoming", "sales/q1.csv")),
            ["sales", "all", "empty-suffix"]
        );
        assert_eq!(
            names(&ev("incoming", "sales/q1.json")),
            ["all", "empty-suffix"]
        );
        assert_eq!(names(&ev("incoming", "salesq1.csv")), ["all"]);
        assert_eq!(names(&ev("elsewhere", "sales/q1.csv")), ["other"]);
        assert!(names(&ev("nope", "sales/q1.csv")).is_empty());
    }

    #[test]
    fn escaping_keys_never_match() {
        let routes = vec![Route::new("all", "b", "", None)];
        let long = "a".repeat(1025);
        for key in [
            "",
            "../etc/passwd",
            "in/../../x",
            "in/..",
            "..",
            "/etc/passwd",
            "\\windows",
            "in\\..\\x",
            "a\0b",
            long.as_str(),
            "folder/",
        ] {
            assert!(match_event(&routes, &ev("b", key)).is_empty(), "{key:?}");
        }
        // Dots that are not a `..` segment are fine.
        for key in ["a..b", "in/.hidden", "in/...", "in/./a", &"a".repeat(1024)] {
            assert_eq!(match_event(&routes, &ev("b", key)).len(), 1, "{key:?}");
        }
    }

    #[test]
    fn check_key_says_why() {
        assert_eq!(check_key(""), Err(KeyError::Empty));
        assert_eq!(check_key("a/../b"), Err(KeyError::ParentSegment));
        assert_eq!(check_key("/a"), Err(KeyError::Absolute));
        assert_eq!(check_key("a\0"), Err(KeyError::Nul));
        assert_eq!(check_key(&"é".repeat(513)), Err(KeyError::TooLong(1026)));
        assert_eq!(check_key("in/a b.csv"), Ok(()));
    }

    #[test]
    fn decode_key_handles_plus_and_percent() {
        assert_eq!(decode_key("a+b").unwrap(), "a b");
        assert_eq!(decode_key("incoming%2Fa.csv").unwrap(), "incoming/a.csv");
        assert_eq!(decode_key("a%2Bb").unwrap(), "a+b");
        assert_eq!(decode_key("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode_key("100%").unwrap(), "100%");
        assert_eq!(decode_key("%2E%2E%2Fx").unwrap(), "../x");
        assert_eq!(decode_key("%FF"), Err(KeyError::InvalidUtf8));
        // Decoded, a `..` escape is caught by the key check.
        let e = ev("b", &decode_key("%2E%2E%2Fx").unwrap());
        assert!(match_event(&[Route::new("p", "b", "", None)], &e).is_empty());
    }

    #[test]
    fn route_request_dedups_per_project_and_version() {
        let r1 = Route::new("a", "b", "", None);
        let r2 = Route::new("c", "b", "", None);
        let e = ev("b", "in/x.csv");
        let q1 = r1.request(&e);
        assert_eq!(q1.project, "a");
        assert_eq!(q1.reason, "s3 in/x.csv");
        assert_eq!(q1.trigger.as_ref(), Some(&e));
        assert_eq!(q1.dedup_key, r1.request(&e).dedup_key);
        assert_ne!(q1.dedup_key, r2.request(&e).dedup_key);
        let newer = ObjectEvent {
            etag: Some("f".into()),
            ..e.clone()
        };
        assert_ne!(q1.dedup_key, r1.request(&newer).dedup_key);
        assert_eq!(requests(&[r1, r2], &e).len(), 2);
    }
}
