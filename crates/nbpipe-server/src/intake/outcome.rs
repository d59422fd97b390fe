//! What became of delivered events: [`Submitted`], the queue sink's account of one delivery
//! (runs queued, duplicates of runs already queued, events [`Superseded`] by a newer event for
//! the same object key), and [`IntakeCounters`], the process-wide counts behind `GET /metrics`.
//!
//! Must not: decide anything (the queue decides, in the enqueue transaction) or do I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::event::Source;

/// An event that was not run because an event with a higher S3 `sequencer` for the same
/// (project, bucket, key) had already been taken: it describes an older state of the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Superseded {
    /// The project it would have started.
    pub project: String,
    /// The event's bucket.
    pub bucket: String,
    /// The event's key.
    pub key: String,
    /// The event's sequencer, as received.
    pub sequencer: String,
    /// The newest sequencer taken for this key (uppercase hex, no leading zeros).
    pub newer_sequencer: String,
    /// The run started by that newer event.
    pub newer_run: String,
}

/// What one delivery of events became.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Submitted {
    /// New runs queued.
    pub queued: usize,
    /// Requests whose run was already queued (the same object version delivered again).
    pub duplicates: usize,
    /// Requests not queued because a newer event for the same key was taken first.
    pub superseded: Vec<Superseded>,
}

impl Submitted {
    /// Adds `other`'s counts and superseded events to these.
    pub fn merge(&mut self, other: Submitted) {
        self.queued += other.queued;
        self.duplicates += other.duplicates;
        self.superseded.extend(other.superseded);
    }
}

/// Counts of intake outcomes since this process started (Prometheus counters).
#[derive(Debug, Default)]
pub struct IntakeCounters {
    superseded: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl IntakeCounters {
    /// All zero.
    pub fn new() -> IntakeCounters {
        IntakeCounters::default()
    }

    /// Counts one event of `project` superseded on arrival through `source`.
    pub fn count_superseded(&self, project: &str, source: Source) {
        let mut map = self.superseded.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((project.to_string(), source.as_str()))
            .or_default() += 1;
    }

    /// `(project, source, count)` of superseded events, sorted.
    pub fn superseded(&self) -> Vec<(String, &'static str, u64)> {
        let map = self.superseded.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|((p, s), n)| (p.clone(), *s, *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_per_project_and_source() {
        let c = IntakeCounters::new();
        assert!(c.superseded().is_empty());
        c.count_superseded("b", Source::Sqs);
        c.count_superseded("a", Source::Webhook);
        c.count_superseded("b", Source::Sqs);
        assert_eq!(
            c.superseded(),
            [("a".to_string(), "webhook", 1), ("b".to_string(), "sqs", 2)]
        );
    }
}
