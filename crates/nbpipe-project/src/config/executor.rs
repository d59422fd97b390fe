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
use super::{DockerConfig, ExecutorConfig, Volume};

/// The executors a project may name.
pub const EXECUTORS: &[&str] = &["local", "docker"];
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
                        "`executor` names one executor: `local`, `docker`, or a mapping with \
                         one of them as its only key (`docker: {memory: 2g}`)"
                            .into(),
                    ))
                }
            }
        }
        Kind::Seq(_) => {
            return Err(ctx.type_error(node, "executor", "`local`, `docker` or a mapping"))
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
        other => Err(ctx.error(
            at.loc,
            "executor",
            ErrorKind::Value,
            format!("unknown executor `{other}`; expected `local` or `docker`"),
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
        let em = ctx.map_any(n, "executor.docker.env")?;
        for (k, v) in &em.entries {
            let name = k.scalar().unwrap_or_default().to_string();
            let key = join("executor.docker.env", &name);
            if !valid_env_name(&name) || name.starts_with("NBPIPE_") {
                return Err(ctx.error(
                    k.loc,
                    &key,
                    ErrorKind::Value,
                    format!(
                        "`{name}` is not a variable a project may set: names are letters, \
                         digits and `_` not starting with a digit, and `NBPIPE_*` is nbpipe's \
                         own (the run's id, parameters, trigger and output)"
                    ),
                ));
            }
            let value = match &v.kind {
                Kind::Scalar { text, .. } if !v.is_null() => text.clone(),
                Kind::Scalar { .. } => String::new(),
                _ => return Err(ctx.type_error(v, &key, "a string")),
            };
            d.env.insert(name, value);
        }
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
