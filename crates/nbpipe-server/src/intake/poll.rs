//! Polling a prefix on an object store: for stores that cannot send notifications
//! (SeaweedFS, many S3-compatible services) or where nobody may configure them.
//!
//! [`PrefixPoller`] takes a URL `scheme://bucket/prefix` that `nbpipe-store` understands (`s3://`
//! with `AWS_ENDPOINT_URL` for any S3-compatible store, `gs://`, `az://`) and the store
//! configuration. Every [`PollOptions::interval`] it lists everything under the prefix — the
//! prefix is a plain string prefix of the key (`sales/2024-` works), listed recursively — in
//! one paginated listing that carries each object's ETag (one request per 1000 keys, instead
//! of a `HEAD` per object), and emits the objects whose (key, ETag) it has not seen, oldest
//! first. Folder markers (keys ending in `/`) are skipped.
//!
//! Durable: the seen-set (key → ETag of every object present) is saved in the
//! [`CursorStore`] under `poll:<url>`, only after the [`EventSink`] accepted the events.
//! Objects deleted meanwhile are forgotten; an object overwritten with new content has a new
//! ETag and is emitted again.
//!
//! Limits: one listing holds the whole prefix in memory; the store's listing must return
//! ETags (S3 does); `object_store` refuses keys it cannot represent as paths (empty or `..`
//! segments), which makes the listing fail (reported, retried with back-off).
//!
//! Must not: read object contents, or write to the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use nbpipe_store::object_store::path::Path as ObjectPath;
use nbpipe_store::{Location, RemoteStore, StoreConfig};
use serde::{Deserialize, Serialize};

use super::notify::clean_etag;
use super::{CursorStore, EventSink, Existing, IntakeError};
use crate::event::{ObjectEvent, Source};

/// How to poll.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// Time between listings (default 30 s).
    pub interval: Duration,
    /// What to do with objects present before the first poll ever (no saved cursor).
    pub existing: Existing,
}

impl Default for PollOptions {
    fn default() -> PollOptions {
        PollOptions {
            interval: Duration::from_secs(30),
            existing: Existing::Emit,
        }
    }
}

/// The saved cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    v: u32,
    seen: BTreeMap<String, String>,
}

/// A polled prefix.
pub struct PrefixPoller {
    url: String,
    bucket: String,
    prefix: String,
    store: Arc<RemoteStore>,
    options: PollOptions,
    state: Option<State>,
}

impl std::fmt::Debug for PrefixPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixPoller")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PrefixPoller {
    /// Poll `url` (`s3://bucket/prefix`), reaching the store with `config`.
    pub fn new(
        url: &str,
        config: &StoreConfig,
        options: PollOptions,
    ) -> Result<PrefixPoller, IntakeError> {
        let err = |reason: String| IntakeError::Store {
            url: url.to_string(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err("not a `scheme://bucket/prefix` URL".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(err("no bucket in the URL".into()));
        }
        // Any location in the bucket gives the bucket's store.
        let location = Location::parse_with(&format!("{scheme}://{bucket}/"), config)
            .map_err(|e| err(e.to_string()))?;
        let store = location
            .remote_store()
            .cloned()
            .ok_or_else(|| err("not an object store URL (a local folder is `LocalDir`)".into()))?;
        Ok(PrefixPoller {
            url: url.to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            store,
            options,
            state: None,
        })
    }

    /// The bucket its events carry.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix polled.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The name of its cursor: `poll:<url>`.
    pub fn cursor_name(&self) -> String {
        format!("poll:{}", self.url)
    }

    /// Time between listings.
    pub fn interval(&self) -> Duration {
        self.options.interval
    }

    /// List once: submit objects not seen before, then save the cursor. Returns how many events
    /// were submitted. On a sink error nothing is recorded; the same objects come next time.
    pub async fn poll_once(
        &mut self,
        cursor: &dyn CursorStore,
        sink: &dyn EventSink,
    ) -> Result<usize, IntakeError> {
        let name = self.cursor_name();
        let first_ever = super::load_state(&mut self.state, cursor, &name).await?;

        let listing = self.list().await?;
        let state = self.state.as_mut().expect("loaded above");
        let skip = first_ever && self.options.existing == Existing::Skip;

        let mut events: Vec<(Option<chrono::DateTime<chrono::Utc>>, ObjectEvent)> = Vec::new();
        let mut now_seen = BTreeMap::new();
        for meta in listing {
            let key = meta.location.as_ref().to_string();
            if !key.starts_with(&self.prefix) || key.ends_with('/') {
                continue;
            }
            let etag = meta.e_tag.as_deref().map(clean_etag).unwrap_or_else(|| {
                format!("m-{}-{}", meta.size, meta.last_modified.timestamp_millis())
            });
            if !skip && state.seen.get(&key) != Some(&etag) {
                let time = (meta.last_modified.timestamp() != 0).then_some(meta.last_modified);
                events.push((
                    time,
                    ObjectEvent {
                        bucket: self.bucket.clone(),
                        key: key.clone(),
                        etag: Some(etag.clone()),
                        version_id: meta.version.clone(),
                        size: Some(meta.size),
                        sequencer: None,
                        event_time: time
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                        event_name: "ObjectCreated:Poll".into(),
                        source: Source::Poll,
                        region: None,
                        report_id: None,
                        path: None,
                    },
                ));
            }
            now_seen.insert(key, etag);
        }
        if events.is_empty() && now_seen == state.seen && !first_ever {
            return Ok(0);
        }
        events.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
        let events: Vec<ObjectEvent> = events.into_iter().map(|(_, e)| e).collect();
        let n = events.len();
        if !events.is_empty() {
            sink.submit(events).await?;
        }
        state.seen = now_seen;
        state.v = 1;
        super::save_state(cursor, &name, &*state).await?;
        Ok(n)
    }

    /// Poll every interval until `shutdown` resolves; a failed poll is passed to `on_error`
    /// and retried with back-off.
    pub async fn run(
        mut self,
        cursor: &dyn CursorStore,
        sink: &dyn EventSink,
        shutdown: impl std::future::Future<Output = ()>,
        on_error: impl Fn(&IntakeError),
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut failures = 0;
        loop {
            let polled = self.poll_once(cursor, sink).await;
            let wait = super::next_poll_in(polled, self.options.interval, &mut failures, &on_error);
            if super::sleep_or_shutdown(wait, &mut shutdown).await {
                return;
            }
        }
    }

    /// Every object under the directory part of the prefix (filtered by the caller).
    async fn list(&self) -> Result<Vec<nbpipe_store::object_store::ObjectMeta>, IntakeError> {
        let dir = match self.prefix.rfind('/') {
            Some(i) => &self.prefix[..i],
            None => "",
        };
        let dir = (!dir.is_empty())
            .then(|| ObjectPath::parse(dir).unwrap_or_else(|_| ObjectPath::from(dir)));
        self.store
            .object_store()
            .list(dir.as_ref())
            .try_collect()
            .await
            .map_err(|e| IntakeError::Store {
                url: self.url.clone(),
                reason: e.to_string(),
            })
    }
}
