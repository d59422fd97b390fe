//! Sending one message to one target, once: an HTTP POST (Slack or the signed generic
//! webhook, 10 s timeout) or an email over SMTP (lettre on tokio with rustls: STARTTLS or
//! TLS from the start, AUTH, a private CA from `ca_file`). Secrets are read from the
//! process environment at send time, by the names the target carries. Retrying is the
//! caller's: [`DeliveryError::is_permanent`] says when another attempt cannot help.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use lettre::message::{header::ContentType, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use nbpipe_project::NotifyKind;
use serde::{Deserialize, Serialize};

use crate::message::Message;
use crate::render;

/// How long one HTTP request or SMTP conversation may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a message goes: a self-contained copy of a `notify:` target (no secret values,
/// only the names of the variables holding them), stored with each queued delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// A Slack-compatible incoming webhook.
    Slack {
        /// Its URL.
        url: String,
    },
    /// The generic JSON webhook.
    Webhook {
        /// Its URL.
        url: String,
        /// The variable holding the signing key (unsigned when `None`).
        secret_env: Option<String>,
    },
    /// Email over SMTP.
    Email {
        /// Recipients.
        to: Vec<String>,
        /// Sender.
        from: String,
        /// Subject prefix (`[nbpipe]` when `None`).
        subject_prefix: Option<String>,
        /// SMTP host.
        host: String,
        /// SMTP port.
        port: u16,
        /// Upgrade with STARTTLS (required).
        starttls: bool,
        /// TLS from the first byte.
        tls: bool,
        /// AUTH user.
        username: Option<String>,
        /// The variable holding the AUTH password.
        password_env: Option<String>,
        /// Extra trusted CAs (PEM).
        ca_file: Option<PathBuf>,
    },
}

impl From<&NotifyKind> for Target {
    fn from(kind: &NotifyKind) -> Target {
        match kind {
            NotifyKind::Slack { url } => Target::Slack { url: url.clone() },
            NotifyKind::Webhook { url, secret_env } => Target::Webhook {
                url: url.clone(),
                secret_env: secret_env.clone(),
            },
            NotifyKind::Email(e) => Target::Email {
                to: e.to.clone(),
                from: e.from.clone(),
                subject_prefix: e.subject_prefix.clone(),
                host: e.smtp.host.clone(),
                port: e.smtp.port,
                starttls: e.smtp.starttls,
                tls: e.smtp.tls,
                username: e.smtp.username.clone(),
                password_env: e.smtp.password_env.clone(),
                ca_file: e.smtp.ca_file.clone(),
            },
        }
    }
}

impl Target {
    /// `slack`, `webhook` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Slack { .. } => "slack",
            Target::Webhook { .. } => "webhook",
            Target::Email { .. } => "email",
        }
    }

    /// Where it goes, safe to show (a webhook URL's path can be its secret — Slack's is —
    /// so only its scheme and host are shown): `https://hooks.slack.com`, `ops@x.org`.
    pub fn destination(&self) -> String {
        match self {
            Target::Slack { url } | Target::Webhook { url, .. } => origin(url),
            Target::Email { to, .. } => to.join(", "),
        }
    }
}

fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        None => String::new(),
    }
}

/// Why a delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A variable the target names is not set in this process's environment.
    #[error("environment variable `{0}` is not set (the target's secret)")]
    MissingSecret(String),
    /// The receiver answered with an error status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The request could not be made or got no answer.
    #[error("{0}")]
    Http(String),
    /// The email could not be built (bad address…).
    #[error("invalid email: {0}")]
    Email(String),
    /// The SMTP conversation failed.
    #[error("SMTP: {0}")]
    Smtp(String),
    /// The CA file could not be read.
    #[error("cannot read `ca_file` `{path}`: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl DeliveryError {
    /// Another attempt cannot succeed without someone changing something: the receiver
    /// refused the request (4xx other than 408 and 429), or the email is malformed.
    pub fn is_permanent(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            DeliveryError::Email(_) => true,
            _ => false,
        }
    }
}

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("nbpipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
}

fn secret(name: &str) -> Result<String, DeliveryError> {
    std::env::var(name).map_err(|_| DeliveryError::MissingSecret(name.to_string()))
}

/// Sends `msg` to `target` once. `delivery_id` identifies the delivery across retries
/// (the `X-Nbpipe-Delivery` header of webhooks, the email's `Message-ID`).
pub async fn deliver(
    target: &Target,
    msg: &Message,
    delivery_id: &str,
) -> Result<(), DeliveryError> {
    match target {
        Target::Slack { url } => {
            let body = serde_json::to_vec(&render::slack_payload(msg)).unwrap_or_default();
            post(url, body, Vec::new()).await
        }
        Target::Webhook { url, secret_env } => {
            let body = serde_json::to_vec(&render::json_body(msg)).unwrap_or_default();
            let mut headers = vec![
                (render::EVENT_HEADER, msg.event.as_str().to_string()),
                (render::DELIVERY_HEADER, delivery_id.to_string()),
            ];
            if let Some(name) = secret_env {
                let key = secret(name)?;
                let ts = chrono::Utc::now().timestamp();
                headers.push((render::TIMESTAMP_HEADER, ts.to_string()));
                headers.push((
                    render::SIGNATURE_HEADER,
                    render::signature(key.as_bytes(), ts, &body),
                ));
            }
            post(url, body, headers).await
        }
        Target::Email { .. } => send_email(target, msg, delivery_id).await,
    }
}

async fn post(
    url: &str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
) -> Result<(), DeliveryError> {
    let mut req = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(&format!(": {inner}"));
            src = inner.source();
        }
        DeliveryError::Http(s)
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(DeliveryError::Status {
        status: status.as_u16(),
        body: body.chars().take(200).collect(),
    })
}

async fn send_email(
    target: &Target,
    msg: &Message,
    delivery_id: &str,
) -> Result<(), DeliveryError> {
    let Target::Email {
        to,
        from,
        subject_prefix,
        host,
        port,
        starttls,
        tls,
        username,
        password_env,
        ca_file,
    } = target
    else {
        return Ok(());
    };
    let bad = |e: &dyn std::fmt::Display| DeliveryError::Email(e.to_string());
    let mut builder = lettre::Message::builder()
        .from(from.parse().map_err(|e| bad(&e))?)
        .subject(render::email_subject(msg, subject_prefix.as_deref()))
        .message_id(Some(format!("<{delivery_id}@nbpipe>")));
    for addr in to {
        builder = builder.to(addr.parse().map_err(|e| bad(&e))?);
    }
    let email = builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(msg.text()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(render::email_html(msg)),
                ),
        )
        .map_err(|e| bad(&e))?;
    let smtp_err = |e: &dyn std::fmt::Display| DeliveryError::Smtp(e.to_string());
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str()).port(*port);
    if *tls || *starttls {
        let mut params = TlsParameters::builder(host.clone());
        if let Some(path) = ca_file {
            let pem = tokio::fs::read(path)
                .await
                .map_err(|e| DeliveryError::CaFile {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| DeliveryError::CaFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            params = params.add_root_certificate(cert);
        }
        let params = params.build_rustls().map_err(|e| smtp_err(&e))?;
        transport = transport.tls(if *tls {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    if let Some(user) = username {
        let password = match password_env {
            Some(name) => secret(name)?,
            None => String::new(),
        };
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    let transport = transport.timeout(Some(SEND_TIMEOUT)).build();
    transport.send(email).await.map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(&format!(": {inner}"));
            src = inner.source();
        }
        smtp_err(&s)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_hide_webhook_paths() {
        let t = Target::Slack {
            url: "https://hooks.slack.com/services/T0/B0/secret".into(),
        };
        assert_eq!(t.destination(), "https://hooks.slack.com");
        let t = Target::Webhook {
            url: "http://user:pw@127.0.0.1:9/x?y".into(),
            secret_env: None,
        };
        assert_eq!(t.destination(), "http://127.0.0.1:9");
    }

    #[test]
    fn client_errors_are_permanent_but_throttling_is_not() {
        let s = |status| DeliveryError::Status {
            status,
            body: String::new(),
        };
        assert!(s(404).is_permanent());
        assert!(!s(429).is_permanent());
        assert!(!s(503).is_permanent());
        assert!(!DeliveryError::Http("refused".into()).is_permanent());
    }

    #[tokio::test]
    async fn a_missing_signing_key_fails_before_sending() {
        let t = Target::Webhook {
            url: "http://127.0.0.1:9/".into(),
            secret_env: Some("NBPIPE_TEST_SURELY_UNSET_KEY".into()),
        };
        let msg = Message::for_run("p", None, "r", "failed", None, None);
        let err = deliver(&t, &msg, "d1").await.unwrap_err();
        assert!(matches!(err, DeliveryError::MissingSecret(_)), "{err}");
    }
}
