//! `notify:`, who hears about a project's runs: a list of targets (a Slack-compatible
//! incoming webhook, a generic signed JSON webhook, or email over SMTP), each with the events
//! it wants (`failure`, `success`, `recovery`) and how often repeated failures may reach it.
//! Only reads and checks the values; building and delivering messages is `nbpipe-notify`'s
//! job, queueing them `nbpipe serve`'s. Credentials are never written here: a target names
//! the server's environment variable that holds them (`secret_env`, `password_env`).

use std::path::PathBuf;
use std::time::Duration;

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::yaml::{Kind, Map, Node};

/// Keys of one `notify:` item.
const TARGET_KEYS: &[&str] = &["on", "slack", "webhook", "email", "rate_limit"];
/// The kinds of target; an item names exactly one.
const KINDS: &[&str] = &["slack", "webhook", "email"];
const SLACK_KEYS: &[&str] = &["url"];
const WEBHOOK_KEYS: &[&str] = &["url", "secret_env"];
const EMAIL_KEYS: &[&str] = &["to", "from", "subject_prefix", "smtp"];
const SMTP_KEYS: &[&str] = &[
    "host",
    "port",
    "starttls",
    "tls",
    "username",
    "password_env",
    "ca_file",
];

/// How long repeated failure messages of a project are held back per target unless
/// `rate_limit` says otherwise.
pub const DEFAULT_RATE_LIMIT: Duration = Duration::from_secs(15 * 60);

/// What happened to a run, as a target subscribes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// The run failed (in `nbpipe serve`: with no retry left).
    Failure,
    /// The run succeeded.
    Success,
    /// The run succeeded and the project's previous finished run had failed.
    Recovery,
}

impl NotifyEvent {
    /// The event's name as written in `on:`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Failure => "failure",
            NotifyEvent::Success => "success",
            NotifyEvent::Recovery => "recovery",
        }
    }

    /// The event named `s` in `on:`.
    pub fn parse(s: &str) -> Option<NotifyEvent> {
        match s {
            "failure" => Some(NotifyEvent::Failure),
            "success" => Some(NotifyEvent::Success),
            "recovery" => Some(NotifyEvent::Recovery),
            _ => None,
        }
    }
}

/// One `notify:` item.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyTarget {
    /// `on:`, the events sent to it (default `[failure, recovery]`).
    pub on: Vec<NotifyEvent>,
    /// Where messages go.
    pub kind: NotifyKind,
    /// `rate_limit:`, at most one failure message per this long for the project (the
    /// failures held back meanwhile are counted in a digest); `None` with `rate_limit: off`.
    /// Default [`DEFAULT_RATE_LIMIT`].
    pub rate_limit: Option<Duration>,
    /// Where it was written (`notify[0]`), which also identifies it.
    pub key: String,
}

/// Where a [`NotifyTarget`]'s messages go.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyKind {
    /// `slack: URL`, a Slack-compatible incoming webhook (`text` and `blocks`).
    Slack {
        /// The webhook URL.
        url: String,
    },
    /// `webhook: {url, secret_env}`, a generic JSON body, signed when `secret_env` is set.
    Webhook {
        /// The URL it is POSTed to.
        url: String,
        /// The server environment variable holding the HMAC-SHA256 key.
        secret_env: Option<String>,
    },
    /// `email: {to, from, smtp}`.
    Email(EmailTarget),
}

/// `email:`, messages sent over SMTP.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailTarget {
    /// `to`, one or more addresses.
    pub to: Vec<String>,
    /// `from`, the sender address.
    pub from: String,
    /// `subject_prefix` (default `[nbpipe]`).
    pub subject_prefix: Option<String>,
    /// `smtp`, the server.
    pub smtp: SmtpConfig,
}

/// `email.smtp`, how the mail server is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    /// `host`.
    pub host: String,
    /// `port` (default 587 with STARTTLS, 465 with `tls`, else 25).
    pub port: u16,
    /// `starttls`: upgrade the connection with STARTTLS and refuse to go on without it
    /// (default `true` unless `tls` is set).
    pub starttls: bool,
    /// `tls`: TLS from the first byte (SMTPS, port 465). Default `false`.
    pub tls: bool,
    /// `username` for SMTP AUTH.
    pub username: Option<String>,
    /// `password_env`, the server environment variable holding the password.
    pub password_env: Option<String>,
    /// `ca_file`, a PEM file of certificate authorities trusted besides the system's
    /// (resolved against the project directory).
    pub ca_file: Option<PathBuf>,
}

pub(super) fn notify(ctx: &Ctx<'_>, top: &Map) -> Result<Vec<NotifyTarget>> {
    let Some(node) = top.get("notify").filter(|n| !n.is_null()) else {
        return Ok(Vec::new());
    };
    let Kind::Seq(items) = &node.kind else {
        return Err(ctx.type_error(node, "notify", "a list of targets (`- slack: URL`, ...)"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| target(ctx, item, &format!("notify[{i}]")))
        .collect()
}

fn target(ctx: &Ctx<'_>, node: &Node, path: &str) -> Result<NotifyTarget> {
    let m = ctx.map(node, path, TARGET_KEYS)?;
    let kinds: Vec<&str> = KINDS
        .iter()
        .copied()
        .filter(|k| m.get(k).is_some())
        .collect();
    if kinds.len() != 1 {
        let message = if kinds.is_empty() {
            format!("`{path}` needs one of `slack`, `webhook` or `email`")
        } else {
            format!(
                "`{path}` names {}: write one target per item",
                kinds
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        };
        return Err(ctx.error(node.loc, path, ErrorKind::MissingKey, message));
    }
    let kind_key = kinds[0];
    let kind_node = m.get(kind_key).expect("present");
    let kind_path = join(path, kind_key);
    let kind = match kind_key {
        "slack" => NotifyKind::Slack {
            url: url_or_map(ctx, kind_node, &kind_path, SLACK_KEYS)?.0,
        },
        "webhook" => {
            let (url, map) = url_or_map(ctx, kind_node, &kind_path, WEBHOOK_KEYS)?;
            let secret_env = match map {
                Some(m) => env_name(ctx, m, &kind_path, "secret_env")?,
                None => None,
            };
            NotifyKind::Webhook { url, secret_env }
        }
        _ => NotifyKind::Email(email(ctx, kind_node, &kind_path)?),
    };
    let mut on = Vec::new();
    match m.get("on").filter(|n| !n.is_null()) {
        Some(n) => {
            for (name, item) in ctx.strings(n, &join(path, "on"))? {
                let Some(ev) = NotifyEvent::parse(&name) else {
                    return Err(ctx.error(
                        item.loc,
                        &join(path, "on"),
                        ErrorKind::Value,
                        format!(
                            "`{path}.on`: unknown event `{name}`; expected `failure`, `success` \
                             or `recovery`"
                        ),
                    ));
                };
                if !on.contains(&ev) {
                    on.push(ev);
                }
            }
            if on.is_empty() {
                return Err(ctx.error(
                    n.loc,
                    &join(path, "on"),
                    ErrorKind::Value,
                    format!("`{path}.on` must name at least one event"),
                ));
            }
        }
        None => on = vec![NotifyEvent::Failure, NotifyEvent::Recovery],
    }
    let rate_limit = match m.get("rate_limit").filter(|n| !n.is_null()) {
        Some(n) if matches!(&n.kind, Kind::Scalar { text, .. } if text.trim() == "off") => None,
        Some(n) => Some(ctx.duration(n, &join(path, "rate_limit"))?),
        None => Some(DEFAULT_RATE_LIMIT),
    };
    Ok(NotifyTarget {
        on,
        kind,
        rate_limit,
        key: path.to_string(),
    })
}

/// `KEY: URL` or `KEY: {url: URL, ...}`.
fn url_or_map<'n>(
    ctx: &Ctx<'_>,
    node: &'n Node,
    path: &str,
    keys: &[&str],
) -> Result<(String, Option<&'n Map>)> {
    let (url_node, map) = match &node.kind {
        Kind::Map(_) => {
            let m = ctx.map(node, path, keys)?;
            let Some(u) = m.get("url").filter(|n| !n.is_null()) else {
                return Err(ctx.error(
                    node.loc,
                    &join(path, "url"),
                    ErrorKind::MissingKey,
                    format!("`{path}` needs a `url`"),
                ));
            };
            (u, Some(m))
        }
        _ => (node, None),
    };
    let url_path = if map.is_some() {
        join(path, "url")
    } else {
        path.to_string()
    };
    let url = ctx.string(url_node, &url_path)?;
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.contains(char::is_whitespace)
    {
        return Err(ctx.error(
            url_node.loc,
            &url_path,
            ErrorKind::Value,
            format!("`{url_path}` must be an `http://` or `https://` URL, found `{url}`"),
        ));
    }
    Ok((url, map))
}

/// An environment variable's name at `key` (a credential's value is never written here).
fn env_name(ctx: &Ctx<'_>, m: &Map, path: &str, key: &str) -> Result<Option<String>> {
    let Some(n) = m.get(key).filter(|n| !n.is_null()) else {
        return Ok(None);
    };
    let p = join(path, key);
    let name = ctx.string(n, &p)?;
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ctx.error(
            n.loc,
            &p,
            ErrorKind::Value,
            format!(
                "`{p}` names the server's environment variable holding the secret (letters, \
                 digits and `_`), found `{name}`; never write the secret itself in nbpipe.yaml"
            ),
        ));
    }
    Ok(Some(name))
}

fn email(ctx: &Ctx<'_>, node: &Node, path: &str) -> Result<EmailTarget> {
    let m = ctx.map(node, path, EMAIL_KEYS)?;
    let required = |key: &str| {
        m.get(key).filter(|n| !n.is_null()).ok_or_else(|| {
            ctx.error(
                node.loc,
                &join(path, key),
                ErrorKind::MissingKey,
                format!("`{path}` needs `{key}`"),
            )
        })
    };
    let mut to = Vec::new();
    for (addr, n) in ctx.strings(required("to")?, &join(path, "to"))? {
        check_address(ctx, n, &join(path, "to"), &addr)?;
        to.push(addr);
    }
    let from_node = required("from")?;
    let from = ctx.string(from_node, &join(path, "from"))?;
    check_address(ctx, from_node, &join(path, "from"), &from)?;
    let subject_prefix = ctx.opt_string(m, path, "subject_prefix")?;
    let smtp_path = join(path, "smtp");
    let smtp_node = required("smtp")?;
    let s = ctx.map(smtp_node, &smtp_path, SMTP_KEYS)?;
    let host = match s.get("host").filter(|n| !n.is_null()) {
        Some(n) => ctx.string(n, &join(&smtp_path, "host"))?,
        None => {
            return Err(ctx.error(
                smtp_node.loc,
                &join(&smtp_path, "host"),
                ErrorKind::MissingKey,
                format!("`{smtp_path}` needs `host`"),
            ))
        }
    };
    let flag = |key: &str| -> Result<Option<bool>> {
        match s.get(key).filter(|n| !n.is_null()) {
            Some(n) => Ok(Some(ctx.boolean(n, &join(&smtp_path, key))?)),
            None => Ok(None),
        }
    };
    let tls = flag("tls")?.unwrap_or(false);
    let starttls = flag("starttls")?.unwrap_or(!tls);
    if tls && starttls {
        return Err(ctx.error(
            smtp_node.loc,
            &join(&smtp_path, "starttls"),
            ErrorKind::Value,
            format!(
                "`{smtp_path}`: `tls: true` (TLS from the start, port 465) and `starttls: true` \
                 exclude each other"
            ),
        ));
    }
    let port = match s.get("port").filter(|n| !n.is_null()) {
        Some(n) => match ctx.uint(n, &join(&smtp_path, "port"))? {
            p @ 1..=65535 => p as u16,
            _ => {
                return Err(ctx.error(
                    n.loc,
                    &join(&smtp_path, "port"),
                    ErrorKind::Value,
                    format!("`{smtp_path}.port` must be between 1 and 65535"),
                ))
            }
        },
        None if tls => 465,
        None if starttls => 587,
        None => 25,
    };
    let username = ctx.opt_string(s, &smtp_path, "username")?;
    let password_env = env_name(ctx, s, &smtp_path, "password_env")?;
    if password_env.is_some() && username.is_none() {
        return Err(ctx.error(
            smtp_node.loc,
            &join(&smtp_path, "username"),
            ErrorKind::MissingKey,
            format!("`{smtp_path}` has `password_env` but no `username`"),
        ));
    }
    let ca_file = match s.get("ca_file").filter(|n| !n.is_null()) {
        Some(n) => {
            let f = ctx.string(n, &join(&smtp_path, "ca_file"))?;
            let p = ctx.dir.join(&f);
            if !p.is_file() {
                return Err(ctx.error(
                    n.loc,
                    &join(&smtp_path, "ca_file"),
                    ErrorKind::Path,
                    format!("`{smtp_path}.ca_file`: `{f}` is not a file"),
                ));
            }
            Some(p)
        }
        None => None,
    };
    Ok(EmailTarget {
        to,
        from,
        subject_prefix,
        smtp: SmtpConfig {
            host,
            port,
            starttls,
            tls,
            username,
            password_env,
            ca_file,
        },
    })
}

fn check_address(ctx: &Ctx<'_>, node: &Node, path: &str, addr: &str) -> Result<()> {
    let bare = addr
        .rsplit_once('<')
        .map(|(_, a)| a.trim_end_matches('>'))
        .unwrap_or(addr)
        .trim();
    let ok = bare.split_once('@').is_some_and(|(l, d)| {
        !l.is_empty() && !d.is_empty() && !bare.contains(char::is_whitespace)
    });
    if ok {
        Ok(())
    } else {
        Err(ctx.error(
            node.loc,
            path,
            ErrorKind::Value,
            format!("`{path}`: `{addr}` is not an email address"),
        ))
    }
}
