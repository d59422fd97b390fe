//! `secrets:`, values a run needs that must never be written anywhere: each key is the name
//! of the environment variable the notebook reads (`os.environ["DB_PASSWORD"]`), each value
//! says where the value comes from:
//!
//! - an ARN (or `{aws: ARN}`, optionally with `json_key: KEY`): an AWS Secrets Manager secret
//!   or SSM Parameter Store parameter, which `nbpipe deploy aws` and the ECS executor hand to
//!   ECS as the container's `secrets` and which a local run fetches itself;
//! - `{env: VAR}`: an environment variable of the process that runs the project (`nbpipe run`,
//!   `nbpipe serve`);
//! - `{file: PATH}`: a file, relative to the project's folder (one trailing newline dropped).
//!
//! Only reads and checks names and sources; fetching values is [`crate::secrets`]'s job.

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::yaml::{Kind, Map, Node};

/// Keys a secret's mapping form may have: one source, and `json_key` beside `aws`.
const SOURCE_KEYS: &[&str] = &["aws", "env", "file", "json_key"];

/// One `secrets:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The environment variable the value appears as (`DB_PASSWORD`).
    pub name: String,
    /// Where the value comes from.
    pub source: SecretSource,
    /// The key path it was written at (`secrets.DB_PASSWORD`,
    /// `regions.eu-west-1.secrets.DB_PASSWORD`), for messages.
    pub key: String,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource {
    /// An AWS Secrets Manager secret or SSM Parameter Store parameter, by ARN.
    Aws(AwsArn),
    /// An environment variable of the process running the project.
    Env(String),
    /// A file (absolute: resolved against the project's folder); one trailing newline is
    /// not part of the value.
    File(std::path::PathBuf),
}

impl std::fmt::Display for SecretSource {
    /// The source as a message names it (`environment variable `X``), never a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Aws(a) => match &a.json_key {
                Some(k) => write!(f, "`{}` (JSON key `{k}`)", a.arn),
                None => write!(f, "`{}`", a.arn),
            },
            SecretSource::Env(v) => write!(f, "environment variable `{v}`"),
            SecretSource::File(p) => write!(f, "file `{}`", p.display()),
        }
    }
}

/// A parsed AWS ARN of a secret or parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsArn {
    /// The ARN as written.
    pub arn: String,
    /// `secretsmanager` or `ssm`.
    pub service: String,
    /// The ARN's region (`eu-west-1`).
    pub region: String,
    /// The account id.
    pub account: String,
    /// For a Secrets Manager secret holding a JSON object: the field to use.
    pub json_key: Option<String>,
}

impl Secret {
    /// The ARN, for the sources that have one.
    pub fn arn(&self) -> Option<&AwsArn> {
        match &self.source {
            SecretSource::Aws(a) => Some(a),
            _ => None,
        }
    }

    /// What ECS's `valueFrom` takes for an AWS source: the ARN, or for a JSON key of a
    /// Secrets Manager secret `ARN:KEY::` (ECS's own syntax for one field).
    pub fn ecs_value_from(&self) -> Option<String> {
        let a = self.arn()?;
        Some(match &a.json_key {
            Some(k) => format!("{}:{k}::", a.arn),
            None => a.arn.clone(),
        })
    }
}

/// An AWS ARN's parts: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
pub fn split_arn(arn: &str) -> Option<[&str; 5]> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(region), Some(account), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!partition.is_empty() && !service.is_empty() && !res.is_empty())
        .then_some([partition, service, region, account, res])
}

/// Whether `name` can be an environment variable the platform sets for us.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Read a `secrets:` mapping at `path` (absent or null: none).
pub(super) fn secrets(ctx: &Ctx<'_>, node: Option<&Node>, path: &str) -> Result<Vec<Secret>> {
    let Some(node) = node.filter(|n| !n.is_null()) else {
        return Ok(Vec::new());
    };
    let m = ctx.map_any(node, path)?;
    let mut out = Vec::new();
    for (k, v) in &m.entries {
        let name = k.scalar().unwrap_or_default().to_string();
        let key = join(path, &name);
        if !valid_name(&name) {
            return Err(ctx.error(
                k.loc,
                &key,
                ErrorKind::Value,
                format!(
                    "`{key}`: `{name}` is not an environment variable name (letters, digits \
                     and `_`, not starting with a digit); a secret's name is the variable the \
                     notebook reads"
                ),
            ));
        }
        let upper = name.to_ascii_uppercase();
        if upper.starts_with("NBPIPE_") || upper.starts_with("AWS_") {
            return Err(ctx.error(
                k.loc,
                &key,
                ErrorKind::Value,
                format!(
                    "`{key}`: names starting with `NBPIPE_` or `AWS_` are reserved for the \
                     container contract and the platform's credentials"
                ),
            ));
        }
        let source = source(ctx, v, &key)?;
        out.push(Secret { name, source, key });
    }
    Ok(out)
}

/// One secret's source: a bare ARN or a mapping naming one source.
fn source(ctx: &Ctx<'_>, v: &Node, key: &str) -> Result<SecretSource> {
    let Kind::Map(_) = &v.kind else {
        return aws(ctx, v, key, None);
    };
    let sm: &Map = ctx.map(v, key, SOURCE_KEYS)?;
    let named: Vec<&str> = ["aws", "env", "file"]
        .into_iter()
        .filter(|k| sm.get(k).is_some())
        .collect();
    let [kind] = named[..] else {
        return Err(ctx.error(
            v.loc,
            key,
            ErrorKind::Value,
            format!(
                "`{key}` names one source: an ARN, `{{aws: ARN}}`, `{{env: VARIABLE}}` or \
                 `{{file: PATH}}`{}",
                if named.is_empty() {
                    String::new()
                } else {
                    format!(" (it names {})", super::ctx::backticked(&named))
                }
            ),
        ));
    };
    let json_key = match sm.get("json_key") {
        Some(n) if kind == "aws" => {
            let k = ctx.string(n, &join(key, "json_key"))?;
            if k.is_empty() || k.contains(':') {
                return Err(ctx.error(
                    n.loc,
                    &join(key, "json_key"),
                    ErrorKind::Value,
                    format!(
                        "`{}` is the name of a field of the secret's JSON object: not empty, \
                         without `:`",
                        join(key, "json_key")
                    ),
                ));
            }
            Some(k)
        }
        Some(n) => {
            return Err(ctx.error(
                n.loc,
                &join(key, "json_key"),
                ErrorKind::Value,
                format!(
                    "`{}` picks a field of a Secrets Manager secret; it goes with `aws`, not \
                     `{kind}`",
                    join(key, "json_key")
                ),
            ))
        }
        None => None,
    };
    let node = sm.get(kind).unwrap_or(v);
    let at = join(key, kind);
    match kind {
        "aws" => aws(ctx, node, &at, json_key),
        "env" => {
            let var = ctx.string(node, &at)?;
            if !valid_name(&var) {
                return Err(ctx.error(
                    node.loc,
                    &at,
                    ErrorKind::Value,
                    format!("`{at}`: `{var}` is not an environment variable name"),
                ));
            }
            Ok(SecretSource::Env(var))
        }
        _ => {
            let path = ctx.string(node, &at)?;
            if path.trim().is_empty() {
                return Err(ctx.error(
                    node.loc,
                    &at,
                    ErrorKind::Value,
                    format!("`{at}` is a path (relative to the project's folder), not empty"),
                ));
            }
            Ok(SecretSource::File(ctx.dir.join(path)))
        }
    }
}

fn aws(ctx: &Ctx<'_>, node: &Node, key: &str, json_key: Option<String>) -> Result<SecretSource> {
    let arn = ctx.string(node, key)?;
    let mut parsed = aws_arn(&arn).map_err(|why| {
        // Not even ARN-shaped: it may be the value itself, which must not be echoed.
        let msg = if arn.starts_with("arn:") {
            format!("`{key}`: `{arn}` {why}")
        } else {
            format!(
                "`{key}`: the value {why}; a secret's value never goes in `nbpipe.yaml`: \
                 name where it comes from (`{{env: VARIABLE}}`, `{{file: PATH}}` or an ARN)"
            )
        };
        ctx.error(node.loc, key, ErrorKind::Value, msg)
    })?;
    if json_key.is_some() && parsed.service != "secretsmanager" {
        return Err(ctx.error(
            node.loc,
            key,
            ErrorKind::Value,
            format!("`{key}`: `json_key` picks a field of a Secrets Manager secret, not of an SSM parameter"),
        ));
    }
    parsed.json_key = json_key;
    Ok(SecretSource::Aws(parsed))
}

fn aws_arn(arn: &str) -> std::result::Result<AwsArn, String> {
    let why = "is not the ARN of a Secrets Manager secret \
               (`arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME`) or an SSM parameter \
               (`arn:aws:ssm:REGION:ACCOUNT:parameter/NAME`)";
    let [_, service, region, account, resource] = split_arn(arn).ok_or(why)?;
    let ok = match service {
        "secretsmanager" => resource.starts_with("secret:"),
        "ssm" => resource.starts_with("parameter/"),
        _ => false,
    };
    if !ok || region.is_empty() || account.is_empty() {
        return Err(why.into());
    }
    if !super::regions::valid_region(region) {
        return Err(format!(
            "names region `{region}`, which is not an AWS region name"
        ));
    }
    Ok(AwsArn {
        arn: arn.to_string(),
        service: service.to_string(),
        region: region.to_string(),
        account: account.to_string(),
        json_key: None,
    })
}
