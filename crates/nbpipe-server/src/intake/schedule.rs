//! Cron schedules with an IANA time zone.
//!
//! A [`Schedule`] is evaluated on the wall clock of its zone (UTC when none is given) by
//! `croner`, with its daylight-saving rules: a fixed time that does not exist on a
//! spring-forward day (02:30 in Europe/Paris on the last Sunday of March) fires at the first
//! instant after the gap (03:00 local), once; a fixed time that happens twice on a fall-back
//! day fires once, at the first of the two; interval patterns (`*/15 * * * *`) fire on real
//! elapsed time through both transitions.
//!
//! Each fire time has an identity, `schedule:<project>:<fire time in UTC, RFC 3339>`, used as
//! the run request's dedup key: a restart that recomputes the same slot, or two servers that
//! share a queue, cannot run it twice.
//!
//! Must not: sleep or own a loop (the server's scheduler calls [`Schedule::next_after`] and
//! [`Schedule::due`]), or decide catch-up policy beyond what [`Schedule::due`] documents.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::Cron;

use super::IntakeError;
use crate::event::RunRequest;
use nbpipe_project::config::{Project, Trigger};

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    expression: String,
    tz: Tz,
}

impl Schedule {
    /// Parse `cron` (5 fields, 6 with leading seconds, 7 with a trailing year, or `@daily`-style
    /// nicknames, as `nbpipe.yaml` accepts) in `timezone` (an IANA name; `None` is UTC).
    pub fn new(cron: &str, timezone: Option<&str>) -> Result<Schedule, IntakeError> {
        let err = |reason: String| IntakeError::Schedule {
            cron: cron.to_string(),
            reason,
        };
        let parsed = Cron::from_str(cron).map_err(|e| err(e.to_string()))?;
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name)
                .map_err(|_| err(format!("unknown timezone `{name}` (use an IANA name)")))?,
        };
        Ok(Schedule {
            cron: parsed,
            expression: cron.to_string(),
            tz,
        })
    }

    /// The schedules of a project's `schedule` triggers, in file order.
    pub fn from_project(project: &Project) -> Result<Vec<Schedule>, IntakeError> {
        project
            .triggers
            .iter()
            .filter_map(|t| match t {
                Trigger::Schedule { cron, timezone } => {
                    Some(Schedule::new(cron, timezone.as_deref()))
                }
                Trigger::S3 { .. } => None,
            })
            .collect()
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone it is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `t`; `None` if there is none (a pattern that can
    /// never match again, e.g. a past year).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest fire time in `(last, now]`, if any: what to run now when the scheduler
    /// last fired (or last checked) at `last`. Missed slots are coalesced into this one: after
    /// a day of downtime an hourly schedule runs once, not 24 times.
    pub fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if now <= last {
            return None;
        }
        let local_now = now.with_timezone(&self.tz);
        let latest = self
            .cron
            .find_previous_occurrence(&local_now, true)
            .ok()?
            .with_timezone(&Utc);
        (latest > last).then_some(latest)
    }

    /// The identity of the slot at `fire`: `schedule:<project>:<RFC 3339 UTC, seconds>`.
    pub fn fire_id(project: &str, fire: DateTime<Utc>) -> String {
        format!(
            "schedule:{project}:{}",
            fire.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    /// The run request for the slot at `fire`.
    pub fn request(&self, project: &str, fire: DateTime<Utc>) -> RunRequest {
        let zone = if self.tz == Tz::UTC {
            String::new()
        } else {
            format!(" ({})", self.tz.name())
        };
        RunRequest {
            project: project.to_string(),
            trigger: None,
            parameters: serde_json::Value::Object(Default::default()),
            dedup_key: Some(Schedule::fire_id(project, fire)),
            reason: format!("schedule {}{zone}", self.expression),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = s.next_after(t).unwrap();
            out.push(t.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
        out
    }

    #[test]
    fn utc_by_default_and_strictly_after() {
        let s = Schedule::new("0 6 * * *", None).unwrap();
        assert_eq!(s.timezone(), Tz::UTC);
        assert_eq!(
            s.next_after(utc("2024-05-02T05:59:59Z")),
            Some(utc("2024-05-02T06:00:00Z"))
        );
        // Exactly at a fire time: the next one.
        assert_eq!(
            s.next_after(utc("2024-05-02T06:00:00Z")),
            Some(utc("2024-05-03T06:00:00Z"))
        );
    }

    #[test]
    fn paris_morning_job_follows_the_offset_through_both_transitions() {
        let s = Schedule::new("0 6 * * *", Some("Europe/Paris")).unwrap();
        // Spring forward on 2024-03-31: 06:00 is 05:00 UTC before, 04:00 UTC after.
        assert_eq!(
            fires(&s, "2024-03-29T12:00:00Z", 3),
            [
                "2024-03-30T05:00:00Z",
                "2024-03-31T04:00:00Z",
                "2024-04-01T04:00:00Z"
            ]
        );
        // Fall back on 2024-10-27.
        assert_eq!(
            fires(&s, "2024-10-25T12:00:00Z", 3),
            [
                "2024-10-26T04:00:00Z",
                "2024-10-27T05:00:00Z",
                "2024-10-28T05:00:00Z"
            ]
        );
    }

    #[test]
    fn paris_time_in_the_spring_gap_fires_once_after_it() {
        // 02:30 does not exist on 2024-03-31 in Paris (02:00 → 03:00).
        let s = Schedule::new("30 2 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            fires(&s, "2024-03-29T12:00:00Z", 3),
            [
                "2024-03-30T01:30:00Z", // 02:30 CET
                "2024-03-31T01:00:00Z", // 03:00 CEST, the first instant after the gap
                "2024-04-01T00:30:00Z", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn paris_time_in_the_autumn_overlap_fires_once() {
        // 02:30 happens twice on 2024-10-27 (03:00 CEST → 02:00 CET).
        let s = Schedule::new("30 2 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            fires(&s, "2024-10-26T12:00:00Z", 2),
            [
                "2024-10-27T00:30:00Z", // 02:30 CEST, the first of the two
                "2024-10-28T01:30:00Z", // the next day, 02:30 CET
            ]
        );
    }

    #[test]
    fn interval_job_keeps_real_time_through_the_overlap() {
        let s = Schedule::new("0 * * * *", Some("Europe/Paris")).unwrap();
        // Hourly through the fall-back hour: every UTC hour, none skipped or doubled.
        assert_eq!(
            fires(&s, "2024-10-26T23:30:00Z", 4),
            [
                "2024-10-27T00:00:00Z",
                "2024-10-27T01:00:00Z",
                "2024-10-27T02:00:00Z",
                "2024-10-27T03:00:00Z"
            ]
        );
    }

    #[test]
    fn due_coalesces_missed_slots_and_is_empty_between_slots() {
        let s = Schedule::new("0 * * * *", None).unwrap();
        let last = utc("2024-05-02T06:00:00Z");
        assert_eq!(s.due(last, utc("2024-05-02T06:59:59Z")), None);
        assert_eq!(
            s.due(last, utc("2024-05-02T07:00:00Z")),
            Some(utc("2024-05-02T07:00:00Z"))
        );
        assert_eq!(
            s.due(last, utc("2024-05-03T09:30:00Z")),
            Some(utc("2024-05-03T09:00:00Z"))
        );
        assert_eq!(s.due(last, last), None);
    }

    #[test]
    fn fire_identity_is_stable_per_slot() {
        let s = Schedule::new("0 6 * * 1-5", Some("Europe/Paris")).unwrap();
        let fire = s.next_after(utc("2024-05-02T00:00:00Z")).unwrap();
        assert_eq!(
            Schedule::fire_id("churn", fire),
            "schedule:churn:2024-05-02T04:00:00Z"
        );
        // Recomputed after a "restart": same slot, same identity.
        let again = Schedule::new("0 6 * * 1-5", Some("Europe/Paris"))
            .unwrap()
            .next_after(utc("2024-05-02T03:59:00Z"))
            .unwrap();
        assert_eq!(
            s.request("churn", fire).dedup_key,
            s.request("churn", again).dedup_key
        );
        let req = s.request("churn", fire);
        assert_eq!(req.reason, "schedule 0 6 * * 1-5 (Europe/Paris)");
        assert!(req.trigger.is_none());
    }

    #[test]
    fn nicknames_seconds_and_errors() {
        let s = Schedule::new("@daily", None).unwrap();
        assert_eq!(
            s.next_after(utc("2024-05-02T10:00:00Z")),
            Some(utc("2024-05-03T00:00:00Z"))
        );
        let s = Schedule::new("30 0 6 * * *", None).unwrap();
        assert_eq!(
            s.next_after(Utc.with_ymd_and_hms(2024, 5, 2, 0, 0, 0).unwrap()),
            Some(utc("2024-05-02T06:00:30Z"))
        );
        assert!(matches!(
            Schedule::new("61 * * * *", None),
            Err(IntakeError::Schedule { .. })
        ));
        assert!(matches!(
            Schedule::new("0 6 * * *", Some("Mars/Olympus")),
            Err(IntakeError::Schedule { .. })
        ));
    }
}
