//! `POST /hooks/git`: push notifications from GitHub, GitLab and Gitea (and Forgejo, which
//! speaks Gitea's), verified before anything else is read.
//!
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, event in
//!   `X-GitHub-Event` (`push`, `ping`).
//! - Gitea / Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`, event
//!   in `X-Gitea-Event` (`push`).
//! - GitLab: `X-Gitlab-Token: <the secret>` (compared in constant time), event in
//!   `X-Gitlab-Event` (`Push Hook`).
//!
//! A verified push names a branch (`ref: refs/heads/<branch>`) and its repository's
//! addresses (GitHub, Gitea: `repository.clone_url`, `ssh_url`, `git_url`, `html_url`;
//! GitLab: `project.git_http_url`, `git_ssh_url`, `web_url`); the server then fetches and
//! deploys what the branch points to in that repository — never a commit taken from the
//! body.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Why a hook request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    /// No provider's signature or token header.
    #[error(
        "no signature: expected `X-Hub-Signature-256` (GitHub), `X-Gitea-Signature` (Gitea, \
         Forgejo) or `X-Gitlab-Token` (GitLab)"
    )]
    Unsigned,
    /// The signature or token does not match the configured secret.
    #[error("the {0} signature does not match the webhook secret")]
    BadSignature(&'static str),
    /// Signed, but not a push body.
    #[error("not a push event: {0}")]
    NotPush(String),
}

/// A verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A push to `branch` (`None`: a tag or another ref).
    Push {
        /// The provider.
        provider: &'static str,
        /// The branch pushed to.
        branch: Option<String>,
        /// The addresses the body gives for the repository pushed to (may be empty).
        repositories: Vec<String>,
    },
    /// A provider's test delivery (`ping`).
    Ping,
}

fn hmac_hex_matches(secret: &str, body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies `body` against `secret` by whichever provider's header is present, then reads the
/// event.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &str) -> Result<Hook, HookError> {
    let (provider, event) = if let Some(sig) = header(headers, "x-hub-signature-256") {
        let hex_sig = sig.strip_prefix("sha256=").unwrap_or("");
        if !hmac_hex_matches(secret, body, hex_sig) {
            return Err(HookError::BadSignature("GitHub"));
        }
        (
            "github",
            header(headers, "x-github-event").unwrap_or("push"),
        )
    } else if let Some(sig) =
        header(headers, "x-gitea-signature").or_else(|| header(headers, "x-forgejo-signature"))
    {
        if !hmac_hex_matches(secret, body, sig) {
            return Err(HookError::BadSignature("Gitea"));
        }
        (
            "gitea",
            header(headers, "x-gitea-event")
                .or_else(|| header(headers, "x-forgejo-event"))
                .unwrap_or("push"),
        )
    } else if let Some(token) = header(headers, "x-gitlab-token") {
        if !crate::api::tokens_equal(token, secret) {
            return Err(HookError::BadSignature("GitLab"));
        }
        (
            "gitlab",
            header(headers, "x-gitlab-event").unwrap_or("Push Hook"),
        )
    } else {
        return Err(HookError::Unsigned);
    };
    if event == "ping" {
        return Ok(Hook::Ping);
    }
    if !matches!(event, "push" | "Push Hook") {
        return Err(HookError::NotPush(format!(
            "`{event}` events are not handled"
        )));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| HookError::NotPush(format!("the body is not JSON: {e}")))?;
    let r = v
        .get("ref")
        .and_then(Value::as_str)
        .ok_or_else(|| HookError::NotPush("no `ref` in the body".into()))?;
    let mut repositories = Vec::new();
    for (object, keys) in [
        (
            "repository",
            &[
                "clone_url",
                "ssh_url",
                "git_url",
                "html_url",
                "git_http_url",
                "git_ssh_url",
                "url",
                "homepage",
            ][..],
        ),
        (
            "project",
            &[
                "git_http_url",
                "git_ssh_url",
                "web_url",
                "http_url",
                "ssh_url",
            ][..],
        ),
    ] {
        for key in keys {
            if let Some(u) = v
                .get(object)
                .and_then(|o| o.get(key))
                .and_then(Value::as_str)
            {
                if !u.is_empty() && !repositories.iter().any(|r| r == u) {
                    repositories.push(u.to_owned());
                }
            }
        }
    }
    Ok(Hook::Push {
        provider,
        branch: r.strip_prefix("refs/heads/").map(str::to_owned),
        repositories,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/staging","after":"0123"}"#;

    #[test]
    fn each_provider_is_verified_by_its_own_header() {
        let gh = format!("sha256={}", sign("s3cret", BODY));
        let h = headers(&[("x-hub-signature-256", &gh), ("x-github-event", "push")]);
        assert_eq!(
            verify(&h, BODY, "s3cret"),
            Ok(Hook::Push {
                provider: "github",
                branch: Some("staging".into()),
                repositories: vec![],
            })
        );
        let gitea = sign("s3cret", BODY);
        let h = headers(&[("x-gitea-signature", &gitea), ("x-gitea-event", "push")]);
        assert!(matches!(
            verify(&h, BODY, "s3cret"),
            Ok(Hook::Push {
                provider: "gitea",
                ..
            })
        ));
        let h = headers(&[
            ("x-gitlab-token", "s3cret"),
            ("x-gitlab-event", "Push Hook"),
        ]);
        assert!(matches!(
            verify(&h, BODY, "s3cret"),
            Ok(Hook::Push {
                provider: "gitlab",
                ..
            })
        ));
        let h = headers(&[("x-hub-signature-256", &gh), ("x-github-event", "ping")]);
        assert_eq!(verify(&h, BODY, "s3cret"), Ok(Hook::Ping));
        // The repository's addresses, as each provider names them.
        let github = br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://h/a/b.git","ssh_url":"git@h:a/b.git","html_url":"https://h/a/b"}}"#;
        let sig = format!("sha256={}", sign("s3cret", github));
        let h = headers(&[("x-hub-signature-256", &sig)]);
        let Ok(Hook::Push { repositories, .. }) = verify(&h, github, "s3cret") else {
            panic!("not a push");
        };
        assert_eq!(
            repositories,
            ["https://h/a/b.git", "git@h:a/b.git", "https://h/a/b"]
        );
        let gitlab = br#"{"ref":"refs/heads/main","project":{"git_http_url":"https://h/a/b.git","git_ssh_url":"git@h:a/b.git","web_url":"https://h/a/b"}}"#;
        let h = headers(&[("x-gitlab-token", "s3cret")]);
        let Ok(Hook::Push { repositories, .. }) = verify(&h, gitlab, "s3cret") else {
            panic!("not a push");
        };
        assert_eq!(
            repositories,
            ["https://h/a/b.git", "git@h:a/b.git", "https://h/a/b"]
        );
        // A tag push names no branch.
        let tag = br#"{"ref":"refs/tags/v1"}"#;
        let h = headers(&[("x-gitlab-token", "s3cret")]);
        assert!(matches!(
            verify(&h, tag, "s3cret"),
            Ok(Hook::Push { branch: None, .. })
        ));
    }

    #[test]
    fn wrong_or_missing_signatures_are_refused() {
        let other = format!("sha256={}", sign("other", BODY));
        let h = headers(&[("x-hub-signature-256", &other)]);
        assert_eq!(
            verify(&h, BODY, "s3cret"),
            Err(HookError::BadSignature("GitHub"))
        );
        // The body was changed after signing.
        let gh = format!("sha256={}", sign("s3cret", BODY));
        let h = headers(&[("x-hub-signature-256", &gh)]);
        let tampered = br#"{"ref":"refs/heads/main","after":"0123"}"#;
        assert_eq!(
            verify(&h, tampered, "s3cret"),
            Err(HookError::BadSignature("GitHub"))
        );
        let h = headers(&[("x-gitea-signature", "zz-not-hex")]);
        assert_eq!(
            verify(&h, BODY, "s3cret"),
            Err(HookError::BadSignature("Gitea"))
        );
        let h = headers(&[("x-gitlab-token", "s3cre")]);
        assert_eq!(
            verify(&h, BODY, "s3cret"),
            Err(HookError::BadSignature("GitLab"))
        );
        assert_eq!(
            verify(&HeaderMap::new(), BODY, "s3cret"),
            Err(HookError::Unsigned)
        );
        let h = headers(&[
            ("x-gitlab-token", "s3cret"),
            ("x-gitlab-event", "Issue Hook"),
        ]);
        assert!(matches!(
            verify(&h, BODY, "s3cret"),
            Err(HookError::NotPush(_))
        ));
    }
}
