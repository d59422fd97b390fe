//! `deploy:`, how `nbpipe deploy aws` sets a project up on AWS: the trigger mode (`direct`,
//! an EventBridge rule starting an ECS task per object; `service`, a rule feeding an SQS queue
//! that `nbpipe serve` reads), which EventBridge events the rule matches (`object_created` or
//! `cloudtrail`), the task's IAM roles when the user brings their own, Fargate cpu/memory and
//! a shared ECS cluster. Only reads and checks the values; templates and stacks are
//! `nbpipe-deploy`'s job.

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::secrets::split_arn;
use super::yaml::{Map, Node};

/// Keys of `deploy:`.
const DEPLOY_KEYS: &[&str] = &[
    "mode",
    "trigger_source",
    "task_role",
    "execution_role",
    "cpu",
    "memory",
    "cluster",
];

/// Fargate's CPU sizes (units of 1/1024 vCPU) and, for each, its memory sizes in MiB:
/// (cpu, smallest, largest, step).
const FARGATE: &[(u32, u32, u32, u32)] = &[
    (256, 512, 2048, 512),
    (512, 1024, 4096, 1024),
    (1024, 2048, 8192, 1024),
    (2048, 4096, 16384, 1024),
    (4096, 8192, 30720, 1024),
    (8192, 16384, 61440, 4096),
    (16384, 32768, 122880, 8192),
];

/// The default Fargate task size: 1 vCPU, 2 GiB.
pub const DEFAULT_CPU: u32 = 1024;
/// See [`DEFAULT_CPU`].
pub const DEFAULT_MEMORY: u32 = 2048;

/// `deploy:`. Every field has a default (see each).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeployConfig {
    /// `mode`, what starts a run (default [`DeployMode::Direct`]).
    pub mode: DeployMode,
    /// `trigger_source`, the shape of the events the rule matches (default
    /// [`TriggerSource::ObjectCreated`]).
    pub trigger_source: TriggerSource,
    /// `task_role`, an IAM role ARN the task runs as (default: a role made per stack that
    /// may read the trigger prefix and write the output prefix, nothing else).
    pub task_role: Option<String>,
    /// `execution_role`, an IAM role ARN ECS uses to pull the image, write logs and read the
    /// secrets (default: a role made per stack with exactly that).
    pub execution_role: Option<String>,
    /// `cpu`, Fargate CPU units (256 … 16384; default [`DEFAULT_CPU`]).
    pub cpu: Option<u32>,
    /// `memory`, MiB (default [`DEFAULT_MEMORY`]); must suit `cpu` as Fargate requires.
    pub memory: Option<u32>,
    /// `cluster`, an existing ECS cluster (name or ARN) for every region that does not name
    /// its own (default: a cluster made per stack).
    pub cluster: Option<String>,
}

/// `deploy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeployMode {
    /// An EventBridge rule starts one ECS task per new object; no server.
    #[default]
    Direct,
    /// An EventBridge rule sends new objects to an SQS queue read by `nbpipe serve`.
    Service,
}

/// `deploy.trigger_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TriggerSource {
    /// S3's own EventBridge notifications (`Object Created`; switched on per bucket).
    #[default]
    ObjectCreated,
    /// CloudTrail data events (`AWS API Call via CloudTrail`).
    CloudTrail,
}

impl DeployMode {
    /// As written in `nbpipe.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployMode::Direct => "direct",
            DeployMode::Service => "service",
        }
    }
}

impl TriggerSource {
    /// As written in `nbpipe.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerSource::ObjectCreated => "object_created",
            TriggerSource::CloudTrail => "cloudtrail",
        }
    }
}

pub(super) fn deploy(ctx: &Ctx<'_>, top: &Map) -> Result<DeployConfig> {
    let mut d = DeployConfig::default();
    let Some(node) = top.get("deploy").filter(|n| !n.is_null()) else {
        return Ok(d);
    };
    let m = ctx.map(node, "deploy", DEPLOY_KEYS)?;
    let get = |key: &str| m.get(key).filter(|n| !n.is_null());
    if let Some(n) = get("mode") {
        d.mode = match ctx.string(n, "deploy.mode")?.as_str() {
            "direct" => DeployMode::Direct,
            "service" => DeployMode::Service,
            other => return Err(one_of(ctx, n, "deploy.mode", other, &["direct", "service"])),
        };
    }
    if let Some(n) = get("trigger_source") {
        d.trigger_source = match ctx.string(n, "deploy.trigger_source")?.as_str() {
            "object_created" => TriggerSource::ObjectCreated,
            "cloudtrail" => TriggerSource::CloudTrail,
            other => {
                return Err(one_of(
                    ctx,
                    n,
                    "deploy.trigger_source",
                    other,
                    &["object_created", "cloudtrail"],
                ))
            }
        }
    }
    for key in ["task_role", "execution_role"] {
        if let Some(n) = get(key) {
            let path = join("deploy", key);
            let arn = ctx.string(n, &path)?;
            let ok = split_arn(&arn).is_some_and(|[_, service, region, account, res]| {
                service == "iam"
                    && region.is_empty()
                    && !account.is_empty()
                    && res.starts_with("role/")
            });
            if !ok {
                return Err(ctx.error(
                    n.loc,
                    &path,
                    ErrorKind::Value,
                    format!(
                        "`{path}` `{arn}` is not an IAM role ARN \
                         (`arn:aws:iam::ACCOUNT:role/NAME`)"
                    ),
                ));
            }
            if key == "task_role" {
                d.task_role = Some(arn);
            } else {
                d.execution_role = Some(arn);
            }
        }
    }
    if let Some(n) = get("cpu") {
        let cpu = ctx.uint(n, "deploy.cpu")?;
        match FARGATE.iter().find(|f| u64::from(f.0) == cpu) {
            Some(f) => d.cpu = Some(f.0),
            None => {
                return Err(ctx.error(
                    n.loc,
                    "deploy.cpu",
                    ErrorKind::Value,
                    format!(
                        "`deploy.cpu` {cpu} is not a Fargate CPU size: use 256, 512, 1024, 2048, \
                         4096, 8192 or 16384 (units of 1/1024 vCPU)"
                    ),
                ))
            }
        }
    }
    if let Some(n) = get("memory") {
        d.memory = Some(memory_mib(ctx, n)?);
    }
    if d.cpu.is_some() || d.memory.is_some() {
        let cpu = d.cpu.unwrap_or(DEFAULT_CPU);
        let memory = d.memory.unwrap_or(DEFAULT_MEMORY);
        let &(_, lo, hi, step) = FARGATE.iter().find(|f| f.0 == cpu).expect("checked");
        if memory < lo || memory > hi || (memory - lo) % step != 0 {
            let (n, key) = match get("memory") {
                Some(n) => (n, "deploy.memory"),
                None => (get("cpu").unwrap_or(node), "deploy.cpu"),
            };
            return Err(ctx.error(
                n.loc,
                key,
                ErrorKind::Value,
                format!(
                    "Fargate has no task of cpu {cpu} with memory {memory} MiB: with cpu {cpu}, \
                     `deploy.memory` is {lo} to {hi} MiB in steps of {step}"
                ),
            ));
        }
    }
    if let Some(n) = get("cluster") {
        let c = ctx.string(n, "deploy.cluster")?;
        check_cluster(ctx, n, "deploy.cluster", &c, None)?;
        d.cluster = Some(c);
    }
    Ok(d)
}

/// Memory in MiB: an integer (MiB) or a size with a unit (`2g`, `512m`).
fn memory_mib(ctx: &Ctx<'_>, n: &Node) -> Result<u32> {
    let text = ctx.string(n, "deploy.memory")?;
    let t = text.trim();
    let mib = if t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse::<u64>().ok()
    } else {
        super::memory_bytes(t).map(|b| b / (1024 * 1024))
    };
    match mib.and_then(|m| u32::try_from(m).ok()).filter(|&m| m > 0) {
        Some(m) => Ok(m),
        None => Err(ctx.error(
            n.loc,
            "deploy.memory",
            ErrorKind::Value,
            format!("`deploy.memory` `{text}` is not a memory size: write MiB (`2048`) or `2g`"),
        )),
    }
}

/// An ECS cluster name or ARN; an ARN's region must be `region` when given.
pub(super) fn check_cluster(
    ctx: &Ctx<'_>,
    n: &Node,
    path: &str,
    cluster: &str,
    region: Option<&str>,
) -> Result<()> {
    if cluster.starts_with("arn:") {
        let parts = split_arn(cluster).filter(|[_, service, region, _, res]| {
            *service == "ecs" && !region.is_empty() && res.starts_with("cluster/")
        });
        let Some([_, _, arn_region, _, _]) = parts else {
            return Err(ctx.error(
                n.loc,
                path,
                ErrorKind::Value,
                format!(
                    "`{path}` `{cluster}` is neither a cluster name nor an ECS cluster ARN \
                     (`arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`)"
                ),
            ));
        };
        if let Some(region) = region.filter(|r| *r != arn_region) {
            return Err(ctx.error(
                n.loc,
                path,
                ErrorKind::Value,
                format!(
                    "`{path}` is a cluster in `{arn_region}`, not in `{region}`: a region's \
                     tasks run in that region"
                ),
            ));
        }
        return Ok(());
    }
    let ok = !cluster.is_empty()
        && cluster.len() <= 255
        && cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ctx.error(
            n.loc,
            path,
            ErrorKind::Value,
            format!(
                "`{path}` `{cluster}` is not a cluster name (letters, digits, `-`, `_`) or ARN"
            ),
        ))
    }
}

fn one_of(
    ctx: &Ctx<'_>,
    n: &Node,
    path: &str,
    found: &str,
    allowed: &[&str],
) -> super::ConfigError {
    ctx.error(
        n.loc,
        path,
        ErrorKind::Value,
        format!(
            "unknown `{path}` `{found}`; expected {}",
            super::ctx::backticked(allowed).replace(", ", " or ")
        ),
    )
}
