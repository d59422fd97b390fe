//! Direct mode's at-least-once guard. EventBridge may deliver one event more than once, so
//! every task it starts first *claims* the object: a conditional create
//! (`If-None-Match: *`, object_store's `PutMode::Create`) of a marker under the output
//! prefix, named after bucket/key/version-or-ETag. The first task's create succeeds; any
//! other sees the marker exists and exits 0 without running.
//!
//! The marker is `BASE.nbpipe/claims/SHA256`, BASE being the output template cut at its first
//! placeholder (`s3://out/runs/{run_id}/` → `s3://out/runs/`), and holds the object's identity
//! and the claiming run's id as JSON. Local outputs (tests, mounted folders) use an exclusive
//! file create, the same guarantee on one machine.

use nbpipe_project::run::TriggerObject;
use nbpipe_store::object_store::{self, ObjectStore, PutMode, PutOptions, PutPayload};
use nbpipe_store::Location;
use sha2::{Digest, Sha256};

use crate::DeployError;

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This run claimed the object: go on.
    Claimed {
        /// The marker written.
        marker: String,
    },
    /// Another run already claimed it: do nothing.
    Taken {
        /// The marker that exists.
        marker: String,
    },
}

/// The object's identity: `bucket/key/VERSION`, else `bucket/key/ETAG`, else
/// `bucket/key/@EVENT_TIME` (CloudTrail events of unversioned buckets carry neither), else
/// `bucket/key`.
pub fn identity(t: &TriggerObject) -> String {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(|s| s.trim_matches('"'))
            .filter(|s| !s.is_empty() && *s != "null")
            .map(str::to_string)
    };
    let which = given(&t.version)
        .map(|v| format!("v:{v}"))
        .or_else(|| given(&t.etag).map(|e| format!("e:{e}")))
        .or_else(|| given(&t.event_time).map(|e| format!("@{e}")));
    match which {
        Some(w) => format!("{}/{}/{w}", t.bucket, t.key),
        None => format!("{}/{}", t.bucket, t.key),
    }
}

/// The marker of `trigger` for runs written to `output` (a template or a prefix).
pub fn marker(output: &str, trigger: &TriggerObject) -> String {
    let base = output.split('{').next().unwrap_or(output);
    let base = match base.rfind('/') {
        Some(i) => &base[..=i],
        None => "",
    };
    let hash = hex(&Sha256::digest(identity(trigger).as_bytes()));
    format!("{base}.nbpipe/claims/{hash}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Claim `trigger` for the run `run_id` writing to `output`.
pub async fn claim(
    output: &str,
    trigger: &TriggerObject,
    run_id: Option<&str>,
) -> Result<Claim, DeployError> {
    let marker = marker(output, trigger);
    let body = serde_json::to_vec_pretty(&serde_json::json!({
        "identity": identity(trigger),
        "uri": trigger.uri,
        "run_id": run_id,
        "claimed_at": chrono::Utc::now().to_rfc3339(),
    }))
    .unwrap_or_default();
    let failed = |message: String| DeployError::Claim {
        marker: marker.clone(),
        message,
    };
    match Location::parse(&marker)? {
        Location::Remote { store, path, .. } => {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match store
                .object_store()
                .put_opts(&path, PutPayload::from(body), opts)
                .await
            {
                Ok(_) => Ok(Claim::Claimed { marker }),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(Claim::Taken { marker }),
                Err(e) => Err(failed(e.to_string())),
            }
        }
        Location::Local(p) => {
            use std::io::Write;
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
            }
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
            {
                Ok(mut f) => {
                    f.write_all(&body).map_err(|e| failed(e.to_string()))?;
                    Ok(Claim::Claimed { marker })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Ok(Claim::Taken { marker })
                }
                Err(e) => Err(failed(e.to_string())),
            }
        }
        Location::Stdio => Err(failed("the output is stdout: nothing to claim in".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(version: Option<&str>, etag: Option<&str>) -> TriggerObject {
        TriggerObject {
            bucket: "in".into(),
            key: "a/b.csv".into(),
            uri: "s3://in/a/b.csv".into(),
            version: version.map(str::to_string),
            etag: etag.map(str::to_string),
            event_time: Some("2026-12-03T10:00:00Z".into()),
            ..Default::default()
        }
    }

    #[test]
    fn identity_prefers_version_then_etag_then_event_time() {
        assert_eq!(identity(&t(Some("v1"), Some("\"e\""))), "in/a/b.csv/v:v1");
        assert_eq!(identity(&t(Some("null"), Some("\"e\""))), "in/a/b.csv/e:e");
        assert_eq!(
            identity(&t(Some(""), Some(""))),
            "in/a/b.csv/@2026-12-03T10:00:00Z"
        );
    }

    #[test]
    fn markers_live_under_the_output_prefix_before_any_placeholder() {
        let m = marker("s3://out/runs/{run_id}/", &t(Some("v1"), None));
        assert!(m.starts_with("s3://out/runs/.nbpipe/claims/"), "{m}");
        assert_eq!(m.len(), "s3://out/runs/.nbpipe/claims/".len() + 64);
        let other = marker("s3://out/runs/{run_id}/", &t(Some("v2"), None));
        assert_ne!(m, other);
    }

    #[tokio::test]
    async fn a_local_claim_is_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = format!("{}/runs/{{run_id}}/", dir.path().display());
        let first = claim(&out, &t(Some("v1"), None), Some("r1")).await.unwrap();
        assert!(matches!(first, Claim::Claimed { .. }), "{first:?}");
        let again = claim(&out, &t(Some("v1"), None), Some("r2")).await.unwrap();
        assert!(matches!(again, Claim::Taken { .. }), "{again:?}");
        let next = claim(&out, &t(Some("v2"), None), Some("r3")).await.unwrap();
        assert!(matches!(next, Claim::Claimed { .. }), "{next:?}");
    }
}
