//! Run context: values a notebook can declare in its parameters cell to learn about the run
//! (`run_id`, `trigger_bucket`, `trigger_key`, `trigger_uri`, `trigger_region`,
//! `trigger_path`, ...) without importing nbpipe.
//! A value is injected only into notebooks that declare it, and never over a value the user
//! or the project set explicitly.

use nbpipe_params::{Parameters, Value};
use serde_json::{json, Value as Json};

/// The object whose arrival started the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerObject {
    /// Bucket (or container) name.
    pub bucket: String,
    /// Object key, URL-decoded.
    pub key: String,
    /// Full URI, e.g. `s3://bucket/key`.
    pub uri: String,
    /// ETag, when known.
    pub etag: Option<String>,
    /// Version id, when the bucket is versioned.
    pub version: Option<String>,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// When the event happened (RFC 3339), when known.
    pub event_time: Option<String>,
    /// The object's region, when the notification says.
    pub region: Option<String>,
    /// A local file holding the object (a file dropped in `nbpipe serve`'s inbox).
    pub path: Option<String>,
}

impl TriggerObject {
    /// As recorded in `run.json`.
    pub fn to_json(&self) -> Json {
        json!({
            "bucket": self.bucket, "key": self.key, "uri": self.uri, "etag": self.etag,
            "version": self.version, "size": self.size, "event_time": self.event_time,
            "region": self.region, "path": self.path,
        })
    }

    /// From its [`to_json`](TriggerObject::to_json) form (what a container receives in
    /// `NBPIPE_TRIGGER`). `bucket`, `key` and `uri` are required.
    pub fn from_json(v: &Json) -> Result<TriggerObject, String> {
        let Json::Object(m) = v else {
            return Err("the trigger must be a JSON object".into());
        };
        let text = |k: &str| match m.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("trigger `{k}` must be a string, found {other}")),
        };
        let required = |k: &str| text(k)?.ok_or_else(|| format!("the trigger has no `{k}`"));
        let size = match m.get("size") {
            None | Some(Json::Null) => None,
            Some(n) => Some(
                n.as_u64()
                    .ok_or_else(|| format!("trigger `size` must be a byte count, found {n}"))?,
            ),
        };
        Ok(TriggerObject {
            bucket: required("bucket")?,
            key: required("key")?,
            uri: required("uri")?,
            etag: text("etag")?,
            version: text("version")?,
            size,
            event_time: text("event_time")?,
            region: text("region")?,
            path: text("path")?,
        })
    }
}

/// All context values for one step.
pub fn values(
    run_id: &str,
    step_id: &str,
    output_prefix: &str,
    trigger: Option<&TriggerObject>,
) -> Vec<(&'static str, Value)> {
    let opt = |v: Option<String>| v.map(Value::Str).unwrap_or(Value::None);
    let mut out = vec![
        ("run_id", Value::Str(run_id.into())),
        ("step_id", Value::Str(step_id.into())),
        ("run_output", Value::Str(output_prefix.into())),
    ];
    let t = trigger.cloned().unwrap_or_default();
    let present = trigger.is_some();
    let s = |v: String| if present { Value::Str(v) } else { Value::None };
    out.push(("trigger_bucket", s(t.bucket)));
    out.push(("trigger_key", s(t.key)));
    out.push(("trigger_uri", s(t.uri)));
    out.push(("trigger_etag", opt(t.etag)));
    out.push(("trigger_version", opt(t.version)));
    out.push((
        "trigger_size",
        t.size
            .map(|n| Value::Int(n.to_string()))
            .unwrap_or(Value::None),
    ));
    out.push(("trigger_event_time", opt(t.event_time)));
    out.push(("trigger_region", opt(t.region)));
    out.push(("trigger_path", opt(t.path)));
    out
}

/// Add the context values a notebook declares (and that are not already set).
pub fn inject(params: &mut Parameters, declared: &[String], context: Vec<(&'static str, Value)>) {
    for (name, value) in context {
        if declared.iter().any(|d| d == name) && params.get(name).is_none() {
            params.set(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_and_unset_names_are_injected() {
        let mut p = Parameters::new();
        p.set("trigger_key", Value::Str("user-set".into()));
        let t = TriggerObject {
            bucket: "b".into(),
            key: "in/a.csv".into(),
            uri: "s3://b/in/a.csv".into(),
            ..Default::default()
        };
        let declared = vec![
            "run_id".to_string(),
            "trigger_key".to_string(),
            "trigger_uri".to_string(),
        ];
        inject(&mut p, &declared, values("r1", "s", "runs/r1/", Some(&t)));
        assert_eq!(p.get("run_id"), Some(&Value::Str("r1".into())));
        assert_eq!(p.get("trigger_key"), Some(&Value::Str("user-set".into())));
        assert_eq!(
            p.get("trigger_uri"),
            Some(&Value::Str("s3://b/in/a.csv".into()))
        );
        assert_eq!(p.get("trigger_bucket"), None, "not declared");
    }

    #[test]
    fn triggers_round_trip_through_json() {
        let t = TriggerObject {
            bucket: "b".into(),
            key: "in/a b+ç.csv".into(),
            uri: "s3://b/in/a b+ç.csv".into(),
            etag: Some("\"abc\"".into()),
            version: None,
            size: Some(12),
            event_time: Some("2026-12-03T10:00:00Z".into()),
            region: Some("ap-southeast-2".into()),
            path: None,
        };
        assert_eq!(TriggerObject::from_json(&t.to_json()).unwrap(), t);
        assert!(
            TriggerObject::from_json(&json!({"bucket": "b", "key": "k"}))
                .unwrap_err()
                .contains("`uri`")
        );
        assert!(TriggerObject::from_json(
            &json!({"bucket": "b", "key": "k", "uri": "u", "size": -1})
        )
        .unwrap_err()
        .contains("size"));
        assert!(TriggerObject::from_json(&json!([1])).is_err());
    }

    #[test]
    fn without_a_trigger_the_values_are_none() {
        let mut p = Parameters::new();
        inject(
            &mut p,
            &["trigger_uri".to_string()],
            values("r", "s", "o", None),
        );
        assert_eq!(p.get("trigger_uri"), Some(&Value::None));
    }
}
