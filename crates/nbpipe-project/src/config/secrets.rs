//! `secrets:`, values a run needs that must never be written anywhere: each key is the name
//! of the environment variable the notebook reads (`os.environ["DB_PASSWORD"]`), each value
//! says where the value comes from. Today one source exists — an AWS Secrets Manager secret
//! or SSM Parameter Store parameter, written as its ARN (or `{aws: ARN}`) — which
//! `nbpipe deploy aws` hands to ECS as the container's `secrets` (ECS reads the value, nbpipe
//! never does). The mapping form leaves room for the other sources of issue 11 (an
//! environment variable of the server, a file) as further keys beside `aws`.
//!
//! Only reads and checks names and ARNs; fetching values is the platform's job.

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::yaml::{Kind, Map, Node};

/// Source kinds a secret's mapping form may name (one per secret).
const SOURCE_KEYS: &[&str] = &["aws"];

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
}

impl Secret {
    /// The ARN, for the sources that have one.
    pub fn arn(&self) -> Option<&AwsArn> {
        match &self.source {
            SecretSource::Aws(a) => Some(a),
        }
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
        let (arn_node, arn_key) = match &v.kind {
            Kind::Map(_) => {
                let sm: &Map = ctx.map(v, &key, SOURCE_KEYS)?;
                match sm.get("aws") {
                    Some(a) if sm.entries.len() == 1 => (a, join(&key, "aws")),
                    _ => {
                        return Err(ctx.error(
                            v.loc,
                            &key,
                            ErrorKind::Value,
                            format!(
                                "`{key}` names one source: an ARN, or `{{aws: ARN}}` (the only \
                                 source today)"
                            ),
                        ))
                    }
                }
            }
            _ => (v, key.clone()),
        };
        let arn = ctx.string(arn_node, &arn_key)?;
        let parsed = aws_arn(&arn).map_err(|why| {
            ctx.error(
                arn_node.loc,
                &arn_key,
                ErrorKind::Value,
                format!("`{arn_key}`: `{arn}` {why}"),
            )
        })?;
        out.push(Secret {
            name,
            source: SecretSource::Aws(parsed),
            key,
        });
    }
    Ok(out)
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
    })
}
