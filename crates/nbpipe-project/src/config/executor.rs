//! `executor:`, where `nbpipe serve` runs the project's runs: `local` (in the server's own
//! process, the default) or `docker` (one container per run attempt from the project's
//! image), with the container's resources, network, extra environment and volumes. Only
//! reads and checks the values; running is `nbpipe-executor`'s job, and `nbpipe run`
//! ignores the section.

use std::path::Path;
use std::time::Duration;

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::yaml::{Kind, Map, Node};
use super::{CapacityProvider, DockerConfig, EcsConfig, ExecutorConfig, Volume};

/// The executors a project may name.
pub const EXECUTORS: &[&str] = &["local", "docker", "ecs"];
/// Keys of `executor.ecs`.
const ECS_KEYS: &[&str] = &[
    "cluster",
    "region",
    "launch_type",
    "capacity_provider_strategy",
    "cpu",
    "memory",
    "subnets",
    "security_groups",
    "assign_public_ip",
    "task_role",
    "execution_role",
    "log_group",
    "env",
    "image",
    "stop_timeout",
];
/// Keys of `executor.docker`.
const DOCKER_KEYS: &[&str] = &["cpus", "memory", "network", "env", "volumes", "stop_grace"];
/// Docker's smallest memory limit.
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

pub(super) fn executor(ctx: &Ctx<'_>, top: &Map) -> Result<ExecutorConfig> {
    let Some(node) = top.get("executor").filter(|n| !n.is_null()) else {
        return Ok(ExecutorConfig::Local);
    };
    let (kind, settings, at) = match &node.kind {
        Kind::Scalar { .. } => (ctx.string(node, "executor")?, None, node),
        Kind::Map(_) => {
            let m = ctx.map(node, "executor", EXECUTORS)?;
            match m.entries.as_slice() {
                [(k, v)] => (k.scalar().unwrap_or_default().to_string(), Some(v), k),
                _ => {
                    return Err(ctx.error(
                        node.loc,
                        "executor",
                        ErrorKind::Value,
                        "`executor` names one executor: `local`, `docker`, `ecs`, or a mapping \
                         with one of them as its only key (`docker: {memory: 2g}`)"
                            .into(),
                    ))
                }
            }
        }
        Kind::Seq(_) => {
            return Err(ctx.type_error(node, "executor", "`local`, `docker`, `ecs` or a mapping"))
        }
    };
    match kind.as_str() {
        "local" => {
            if let Some(v) = settings.filter(|v| !v.is_null()) {
                ctx.map(v, "executor.local", &[])?;
            }
            Ok(ExecutorConfig::Local)
        }
        "docker" => Ok(ExecutorConfig::Docker(
            match settings.filter(|v| !v.is_null()) {
                Some(v) => docker(ctx, v)?,
                None => DockerConfig::default(),
            },
        )),
        "ecs" => match settings.filter(|v| !v.is_null()) {
            Some(v) => Ok(ExecutorConfig::Ecs(ecs(ctx, v)?)),
            None => Err(ctx.error(
                at.loc,
                "executor.ecs",
                ErrorKind::Value,
                "`executor: ecs` needs its settings: at least `subnets` (`executor: {ecs: \
                 {cluster: …, subnets: [subnet-…]}}`)"
                    .into(),
            )),
        },
        other => Err(ctx.error(
            at.loc,
            "executor",
            ErrorKind::Value,
            format!("unknown executor `{other}`; expected `local`, `docker` or `ecs`"),
        )),
    }
}

fn docker(ctx: &Ctx<'_>, node: &Node) -> Result<DockerConfig> {
    let path = "executor.docker";
    let m = ctx.map(node, path, DOCKER_KEYS)?;
    let get = |key: &str| m.get(key).filter(|n| !n.is_null());
    let mut d = DockerConfig::default();
    if let Some(n) = get("cpus") {
        let text = ctx.string(n, "executor.docker.cpus")?;
        d.cpus = Some(
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|c| c.is_finite() && *c >= 0.01 && *c <= 4096.0)
                .ok_or_else(|| {
                    ctx.error(
                        n.loc,
                        "executor.docker.cpus",
                        ErrorKind::Value,
                        format!(
                            "`executor.docker.cpus` must be a number of CPUs such as `1` or \
                             `0.5`, found `{}`",
                            text.trim()
                        ),
                    )
                })?,
        );
    }
    if let Some(n) = get("memory") {
        let text = ctx.string(n, "executor.docker.memory")?;
        d.memory = Some(
            memory_bytes(&text)
                .filter(|b| *b >= MIN_MEMORY)
                .ok_or_else(|| {
                    ctx.error(
                        n.loc,
                        "executor.docker.memory",
                        ErrorKind::Value,
                        format!(
                    "`executor.docker.memory` must be a size of at least 6m such as `512m`, \
                     `2g` or `1.5GiB`, found `{}`",
                    text.trim()
                ),
                    )
                })?,
        );
    }
    d.network = ctx.opt_string(m, path, "network")?;
    if let Some(n) = get("env") {
        d.env = env_map(ctx, n, "executor.docker.env")?;
    }
    if let Some(n) = get("volumes") {
        for (i, (spec, item)) in ctx
            .strings(n, "executor.docker.volumes")?
            .into_iter()
            .enumerate()
        {
            d.volumes.push(volume(&spec, ctx.dir).map_err(|why| {
                ctx.error(
                    item.loc,
                    &format!("executor.docker.volumes[{i}]"),
                    ErrorKind::Value,
                    format!(
                        "`executor.docker.volumes` item `{spec}`: {why}; write \
                         `HOST_PATH:CONTAINER_PATH` or `HOST_PATH:CONTAINER_PATH:ro`"
                    ),
                )
            })?);
        }
    }
    if let Some(n) = get("stop_grace") {
        d.stop_grace = Some(ctx.duration(n, "executor.docker.stop_grace")?);
    }
    Ok(d)
}

fn env_map(
    ctx: &Ctx<'_>,
    n: &Node,
    path: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    let em = ctx.map_any(n, path)?;
    for (k, v) in &em.entries {
        let name = k.scalar().unwrap_or_default().to_string();
        let key = join(path, &name);
        if !valid_env_name(&name) || name.starts_with("NBPIPE_") {
            return Err(ctx.error(
                k.loc,
                &key,
                ErrorKind::Value,
                format!(
                    "`{name}` is not a variable a project may set: names are letters, digits \
                     and `_` not starting with a digit, and `NBPIPE_*` is nbpipe's own (the \
                     run's id, parameters, trigger and output)"
                ),
            ));
        }
        let value = match &v.kind {
            Kind::Scalar { text, .. } if !v.is_null() => text.clone(),
            Kind::Scalar { .. } => String::new(),
            _ => return Err(ctx.type_error(v, &key, "a string")),
        };
        out.insert(name, value);
    }
    Ok(out)
}

fn ecs(ctx: &Ctx<'_>, node: &Node) -> Result<EcsConfig> {
    let path = "executor.ecs";
    let m = ctx.map(node, path, ECS_KEYS)?;
    let get = |key: &str| m.get(key).filter(|n| !n.is_null());
    let value_err = |n: &Node, key: &str, msg: String| {
        ctx.error(n.loc, &join(path, key), ErrorKind::Value, msg)
    };
    let mut e = EcsConfig {
        cluster: ctx
            .opt_string(m, path, "cluster")?
            .unwrap_or_else(|| "default".into()),
        ..Default::default()
    };
    e.region = ctx.opt_string(m, path, "region")?;
    if let Some(n) = get("launch_type") {
        let t = ctx.string(n, "executor.ecs.launch_type")?;
        if !["FARGATE", "EC2", "EXTERNAL"].contains(&t.as_str()) {
            return Err(value_err(
                n,
                "launch_type",
                format!("`executor.ecs.launch_type` must be `FARGATE`, `EC2` or `EXTERNAL`, found `{t}`"),
            ));
        }
        e.launch_type = Some(t);
    }
    if let Some(n) = get("capacity_provider_strategy") {
        let Kind::Seq(items) = &n.kind else {
            return Err(ctx.type_error(
                n,
                "executor.ecs.capacity_provider_strategy",
                "a list of `{provider, weight, base}`",
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let p = format!("executor.ecs.capacity_provider_strategy[{i}]");
            let im = ctx.map(item, &p, &["provider", "weight", "base"])?;
            let provider = ctx.opt_string(im, &p, "provider")?.ok_or_else(|| {
                ctx.error(
                    item.loc,
                    &p,
                    ErrorKind::Value,
                    format!("`{p}` needs a `provider` (e.g. `FARGATE_SPOT`)"),
                )
            })?;
            let num = |k: &str| -> Result<Option<i32>> {
                match im.get(k).filter(|n| !n.is_null()) {
                    Some(n) => Ok(Some(
                        i32::try_from(ctx.uint(n, &join(&p, k))?).unwrap_or(i32::MAX),
                    )),
                    None => Ok(None),
                }
            };
            e.capacity_provider_strategy.push(CapacityProvider {
                provider,
                weight: num("weight")?,
                base: num("base")?,
            });
        }
        if e.launch_type.is_some() {
            return Err(value_err(
                n,
                "capacity_provider_strategy",
                "give `launch_type` or `capacity_provider_strategy`, not both".into(),
            ));
        }
    }
    if let Some(n) = get("cpu") {
        let c = ctx.uint(n, "executor.ecs.cpu")?;
        if !(128..=16384).contains(&c) {
            return Err(value_err(
                n,
                "cpu",
                format!(
                    "`executor.ecs.cpu` is in CPU units (1024 = 1 vCPU), 128 to 16384; found {c}"
                ),
            ));
        }
        e.cpu = Some(c as u32);
    }
    if let Some(n) = get("memory") {
        let text = ctx.string(n, "executor.ecs.memory")?;
        // A bare number is MiB, as ECS reads it; a unit is allowed too.
        let mib = match text.trim().parse::<u64>() {
            Ok(m) => Some(m),
            Err(_) => memory_bytes(&text).map(|b| b / (1024 * 1024)),
        };
        e.memory = Some(
            mib.filter(|m| *m >= 128)
                .and_then(|m| u32::try_from(m).ok())
                .ok_or_else(|| {
                    value_err(
                        n,
                        "memory",
                        format!(
                            "`executor.ecs.memory` is MiB (`2048`) or a size (`2g`), at least \
                             128 MiB; found `{}`",
                            text.trim()
                        ),
                    )
                })?,
        );
    }
    for (key, list) in [
        ("subnets", &mut e.subnets),
        ("security_groups", &mut e.security_groups),
    ] {
        if let Some(n) = get(key) {
            for (v, _) in ctx.strings(n, &join(path, key))? {
                list.push(v);
            }
        }
    }
    if let Some(n) = get("assign_public_ip") {
        e.assign_public_ip = ctx.boolean(n, "executor.ecs.assign_public_ip")?;
    }
    for (key, slot) in [
        ("task_role", &mut e.task_role),
        ("execution_role", &mut e.execution_role),
    ] {
        if let Some(arn) = ctx.opt_string(m, path, key)? {
            if !arn.starts_with("arn:") {
                let n = m.get(key).expect("present");
                return Err(value_err(
                    n,
                    key,
                    format!("`executor.ecs.{key}` must be a role ARN (`arn:aws:iam::…:role/…`), found `{arn}`"),
                ));
            }
            *slot = Some(arn);
        }
    }
    e.log_group = ctx.opt_string(m, path, "log_group")?;
    if let Some(n) = get("env") {
        e.env = env_map(ctx, n, "executor.ecs.env")?;
    }
    e.image = ctx.opt_string(m, path, "image")?;
    if let Some(n) = get("stop_timeout") {
        let d = ctx.duration(n, "executor.ecs.stop_timeout")?;
        if d > Duration::from_secs(120) {
            return Err(value_err(
                n,
                "stop_timeout",
                "`executor.ecs.stop_timeout` is at most 120 s (ECS's limit)".into(),
            ));
        }
        e.stop_timeout = Some(d);
    }
    if e.subnets.is_empty() {
        return Err(ctx.error(
            node.loc,
            "executor.ecs.subnets",
            ErrorKind::Value,
            "`executor.ecs` needs `subnets` (Fargate tasks run in your VPC's subnets)".into(),
        ));
    }
    Ok(e)
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A size in bytes: a number with an optional unit — `b`, `k`/`kb`/`kib`, `m`/`mb`/`mib`,
/// `g`/`gb`/`gib` (powers of 1024, as Docker reads them; case-insensitive).
pub fn memory_bytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn volume(spec: &str, dir: &Path) -> std::result::Result<Volume, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, read_only) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        [_, _, mode] => return Err(format!("unknown mode `{mode}` (use `ro` or `rw`)")),
        _ => return Err("expected two or three `:`-separated parts".into()),
    };
    if host.is_empty() {
        return Err("the host path is empty".into());
    }
    if !container.starts_with('/') {
        return Err(format!("the container path `{container}` must be absolute"));
    }
    let host = Path::new(host);
    let host = if host.is_absolute() {
        host.to_path_buf()
    } else {
        dir.join(host)
    };
    Ok(Volume {
        host,
        container: container.to_string(),
        read_only,
    })
}

impl DockerConfig {
    /// How long a stopped container has to save its notebooks between SIGTERM and SIGKILL.
    pub fn grace(&self) -> Duration {
        self.stop_grace.unwrap_or(Duration::from_secs(10))
    }
}
