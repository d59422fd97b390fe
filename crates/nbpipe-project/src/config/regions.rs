//! `regions:`, where a project is deployed on AWS: each key is a region (`eu-west-1`) and says
//! what that region's copy of the project reads and writes — its trigger bucket/prefix/suffix,
//! its output prefix, its ECS cluster, network and secrets — so data never leaves its region.
//!
//! Checks made here, with the key's location: region names, buckets, subnets and security
//! groups, and whatever an ARN written *inside* a region says about that region (a secret or
//! cluster of another region is refused). Checks that combine a region with top-level
//! defaults (a top-level secret ARN, the top-level trigger bucket used by two regions) are
//! made by `nbpipe deploy aws` when it resolves one region. An S3 bucket's region cannot be
//! known offline: only two regions naming the same bucket is caught.

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::secrets::Secret;
use super::yaml::{Map, Node};

/// Keys of a region's settings.
const REGION_KEYS: &[&str] = &[
    "trigger",
    "output",
    "cluster",
    "subnets",
    "security_groups",
    "assign_public_ip",
    "secrets",
];
const TRIGGER_KEYS: &[&str] = &["bucket", "prefix", "suffix"];

/// One `regions:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegionConfig {
    /// The region (`eu-west-1`).
    pub name: String,
    /// `trigger`, the bucket/prefix/suffix watched in this region (default: the project's
    /// S3 trigger).
    pub trigger: Option<S3Location>,
    /// `output`, the `s3://` output template in this region (default: the project's
    /// `output`).
    pub output: Option<String>,
    /// `cluster`, an ECS cluster name or ARN (default: `deploy.cluster`, else one made by the
    /// stack).
    pub cluster: Option<String>,
    /// `subnets` the tasks run in (awsvpc).
    pub subnets: Vec<String>,
    /// `security_groups` of the tasks.
    pub security_groups: Vec<String>,
    /// `assign_public_ip` (default false: the subnets need a NAT or VPC endpoints to reach
    /// ECR, S3 and CloudWatch Logs).
    pub assign_public_ip: Option<bool>,
    /// `secrets`, added to (and overriding by name) the top-level `secrets:`.
    pub secrets: Vec<Secret>,
}

/// A bucket and the part of it a trigger watches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix (`""`: the whole bucket).
    pub prefix: String,
    /// The key suffix (`.csv`).
    pub suffix: Option<String>,
}

/// Whether `name` looks like an AWS region (`eu-west-1`, `us-gov-east-1`, `cn-north-1`).
pub fn valid_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// The bucket of an `s3://bucket/…` URI.
pub fn s3_bucket_of(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("s3://")?;
    let bucket = rest.split('/').next().unwrap_or(rest);
    (!bucket.is_empty()).then_some(bucket)
}

pub(super) fn regions(ctx: &Ctx<'_>, top: &Map) -> Result<Vec<RegionConfig>> {
    let Some(node) = top.get("regions").filter(|n| !n.is_null()) else {
        return Ok(Vec::new());
    };
    let m = ctx.map_any(node, "regions")?;
    let mut out: Vec<RegionConfig> = Vec::new();
    // bucket → (key path, region) of each bucket named in a region.
    let mut buckets: Vec<(String, String, String)> = Vec::new();
    for (k, v) in &m.entries {
        let name = k.scalar().unwrap_or_default().to_string();
        let path = join("regions", &name);
        if !valid_region(&name) {
            return Err(ctx.error(
                k.loc,
                &path,
                ErrorKind::Value,
                format!("`{path}`: `{name}` is not an AWS region name (e.g. `eu-west-1`)"),
            ));
        }
        let mut r = RegionConfig {
            name: name.clone(),
            ..Default::default()
        };
        if !v.is_null() {
            let rm = ctx.map(v, &path, REGION_KEYS)?;
            let get = |key: &str| rm.get(key).filter(|n| !n.is_null());
            if let Some(t) = get("trigger") {
                let tp = join(&path, "trigger");
                let tm = ctx.map(t, &tp, TRIGGER_KEYS)?;
                let Some(b) = tm.get("bucket").filter(|n| !n.is_null()) else {
                    return Err(ctx.error(
                        t.loc,
                        &join(&tp, "bucket"),
                        ErrorKind::MissingKey,
                        format!("`{tp}` has no `bucket:`"),
                    ));
                };
                let bp = join(&tp, "bucket");
                let bucket = super::trigger::s3_bucket(ctx, b, &bp)?;
                note_bucket(ctx, &mut buckets, b, &bucket, &bp, &name)?;
                r.trigger = Some(S3Location {
                    bucket,
                    prefix: ctx.opt_string(tm, &tp, "prefix")?.unwrap_or_default(),
                    suffix: ctx.opt_string(tm, &tp, "suffix")?,
                });
            }
            if let Some(o) = get("output") {
                let op = join(&path, "output");
                let s = ctx.string(o, &op)?;
                let Some(bucket) = s3_bucket_of(&s) else {
                    return Err(ctx.error(
                        o.loc,
                        &op,
                        ErrorKind::Value,
                        format!(
                            "`{op}` `{s}` must be an `s3://bucket/prefix/` URI: a task on \
                             Fargate has no disk that outlives it"
                        ),
                    ));
                };
                note_bucket(ctx, &mut buckets, o, bucket, &op, &name)?;
                r.output = Some(s);
            }
            if let Some(c) = get("cluster") {
                let cp = join(&path, "cluster");
                let s = ctx.string(c, &cp)?;
                super::deploy::check_cluster(ctx, c, &cp, &s, Some(&name))?;
                r.cluster = Some(s);
            }
            r.subnets = ids(ctx, get("subnets"), &join(&path, "subnets"), "subnet-")?;
            r.security_groups = ids(
                ctx,
                get("security_groups"),
                &join(&path, "security_groups"),
                "sg-",
            )?;
            if let Some(n) = get("assign_public_ip") {
                r.assign_public_ip = Some(ctx.boolean(n, &join(&path, "assign_public_ip"))?);
            }
            let sp = join(&path, "secrets");
            r.secrets = super::secrets::secrets(ctx, get("secrets"), &sp)?;
            if let Some(sn) = get("secrets") {
                let sm = ctx.map_any(sn, &sp)?;
                for s in &r.secrets {
                    let Some(arn) = s.arn().filter(|a| a.region != name) else {
                        continue;
                    };
                    let at = sm.get(&s.name).unwrap_or(sn);
                    return Err(ctx.error(
                        at.loc,
                        &s.key,
                        ErrorKind::Value,
                        format!(
                            "`{}` is in region `{}`, not `{name}`: ECS reads a task's secrets \
                             in the task's own region; use a replica of the secret in `{name}`",
                            s.key, arn.region
                        ),
                    ));
                }
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Record that `path` (in `region`) names `bucket`; a bucket another region names is refused.
fn note_bucket(
    ctx: &Ctx<'_>,
    seen: &mut Vec<(String, String, String)>,
    node: &Node,
    bucket: &str,
    path: &str,
    region: &str,
) -> Result<()> {
    if let Some((_, other_path, other_region)) =
        seen.iter().find(|(b, _, r)| b == bucket && r != region)
    {
        return Err(ctx.error(
            node.loc,
            path,
            ErrorKind::Value,
            format!(
                "`{path}` names bucket `{bucket}`, which `{other_path}` uses in \
                 `{other_region}`: a bucket lives in one region, and data must not cross \
                 regions"
            ),
        ));
    }
    seen.push((bucket.to_string(), path.to_string(), region.to_string()));
    Ok(())
}

/// A list of AWS resource ids starting with `prefix` (`subnet-`, `sg-`).
fn ids(ctx: &Ctx<'_>, node: Option<&Node>, path: &str, prefix: &str) -> Result<Vec<String>> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (id, n) in ctx.strings(node, path)? {
        let ok = id.strip_prefix(prefix).is_some_and(|h| {
            (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !ok {
            return Err(ctx.error(
                n.loc,
                path,
                ErrorKind::Value,
                format!(
                    "`{path}` item `{id}` is not an id like `{prefix}0123abcd` (`{prefix}` and 8 \
                     or 17 hexadecimal digits)"
                ),
            ));
        }
        out.push(id);
    }
    Ok(out)
}
