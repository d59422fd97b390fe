//! Assembling an image: base layers, then the environment, the binary and the project
//! layers, an OCI config (entrypoint, environment, labels, history) and manifest, all
//! stored in the [`Store`]; then tags and, on request, a push.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::base::{self, BaseImage};
use crate::envlayer::{self, ENV_ROOT};
use crate::error::ImageError;
use crate::layer::Layer;
use crate::media;
use crate::project::{self, BINARY, PROJECT_ROOT};
use crate::registry::{self, Registry};
use crate::store::{Blob, Store};

/// The default base image.
pub const DEFAULT_BASE: &str = "python:3.11-slim";

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The project folder.
    pub dir: PathBuf,
    /// Extra tags: a bare tag (`v1`, in the image's repository) or a full reference.
    pub tags: Vec<String>,
    /// The base image overriding `image.base`.
    pub base: Option<String>,
    /// `linux/amd64` (the only platform built).
    pub platform: Option<String>,
    /// The nbpipe binary to put in the image (default: the running one).
    pub binary: Option<PathBuf>,
    /// Do not print progress notes.
    pub quiet: bool,
    /// Build the server's image: the same layers, started as `nbpipe serve` of the project
    /// (tags get a `-server` suffix) — what `nbpipe deploy aws` service mode runs.
    pub server: bool,
}

/// One layer of a built image and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// `base`, `env`, `binary` or `project`.
    pub role: String,
    /// The blob's digest.
    pub digest: String,
    /// The blob's size.
    pub size: u64,
}

/// A built image (also written to `DIR/.nbpipe/image.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuiltImage {
    /// The manifest's digest: the image's identity.
    pub digest: String,
    /// The config's digest (the image id Docker shows).
    pub config: String,
    /// Every reference the image is tagged as (`repo:inputs-hash` first).
    pub references: Vec<String>,
    /// The layers, base first.
    pub layers: Vec<LayerInfo>,
    /// The base reference and its manifest digest.
    pub base: String,
    /// The base's manifest digest.
    pub base_digest: String,
    /// The environment hash (`nbpipe.requirements_hash`).
    pub requirements_hash: String,
    /// The manifest, as stored.
    #[serde(skip)]
    pub manifest: Vec<u8>,
    /// Every blob of the image (layers and config).
    #[serde(skip)]
    pub blobs: Vec<Blob>,
}

/// Build the image of the project in `opts.dir` into `store`.
pub async fn build(opts: &BuildOptions, store: &Store) -> Result<BuiltImage, ImageError> {
    if let Some(p) = opts.platform.as_deref().filter(|p| *p != "linux/amd64") {
        return Err(ImageError::Platform(p.to_string()));
    }
    let dir =
        std::fs::canonicalize(&opts.dir).map_err(|e| ImageError::io("reading", &opts.dir, e))?;
    let project = nbpipe_project::config::load(&dir)?;
    if !project.image.apt.is_empty() && !crate::smoke::engine_reachable().await {
        return Err(ImageError::Unsupported(format!(
            "`image.apt` ({}) is installed by running apt-get in the base image on a Docker \
             engine, and none answers at {}; start one (or set DOCKER_HOST), or build with \
             `nbpipe image dockerfile {}` and your own builder",
            project.image.apt.join(", "),
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into()),
            opts.dir.display()
        )));
    }
    let base_ref = opts
        .base
        .clone()
        .or(project.image.base.clone())
        .unwrap_or_else(|| DEFAULT_BASE.to_string());
    let repository = repository(&project)?;
    let git = project::git_info(&dir);
    let created_secs = source_date_epoch().or(git.time).unwrap_or(0);
    let created = chrono::DateTime::from_timestamp(created_secs as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);

    note(opts.quiet, &format!("base image `{base_ref}`"));
    let base = base::resolve(&base_ref, store).await?;
    note(
        opts.quiet,
        &format!(
            "base Python {} at {}",
            base.python.version, base.python.path
        ),
    );
    let apt = if project.image.apt.is_empty() {
        None
    } else {
        Some(
            crate::apt::layer(
                store,
                &base_ref,
                &base.digest,
                &project.image.apt,
                opts.quiet,
            )
            .await?,
        )
    };
    let (store2, dir2, req, python, quiet) = (
        store.clone(),
        dir.clone(),
        project.env.requirements.clone(),
        base.python.clone(),
        opts.quiet,
    );
    let env = tokio::task::spawn_blocking(move || {
        envlayer::build(&store2, &dir2, req.as_deref(), &python, quiet)
    })
    .await
    .map_err(|e| ImageError::Unsupported(e.to_string()))??;
    let binary = match &opts.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| ImageError::io("finding", "the nbpipe binary", e))?,
    };
    let (store2, dir2) = (store.clone(), dir.clone());
    // Files holding secret values stay out of the image (the executor passes the values).
    let secret_files: Vec<std::path::PathBuf> = project
        .secrets
        .iter()
        .chain(project.regions.iter().flat_map(|r| r.secrets.iter()))
        .filter_map(|s| match &s.source {
            nbpipe_project::config::SecretSource::File(p) => {
                Some(p.strip_prefix(&project.dir).unwrap_or(p).to_path_buf())
            }
            _ => None,
        })
        .collect();
    let (bin_layer, project_layer) = tokio::task::spawn_blocking(move || {
        Ok::<_, ImageError>((
            project::binary_layer(&store2, &binary)?,
            project::project_layer(&store2, &dir2, created_secs, &secret_files)?,
        ))
    })
    .await
    .map_err(|e| ImageError::Unsupported(e.to_string()))??;

    let labels = json!({
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.revision": git.commit.clone().unwrap_or_default(),
        "org.opencontainers.image.source": git.source.clone().unwrap_or_default(),
        "org.opencontainers.image.base.name": base_ref,
        "org.opencontainers.image.base.digest": base.digest,
        "nbpipe.project": project.name,
        "nbpipe.requirements_hash": env.hash,
        "nbpipe.version": env!("CARGO_PKG_VERSION"),
    });
    let apt_note = format!(
        "nbpipe: system packages (apt-get install {})",
        project.image.apt.join(" ")
    );
    let mut ours: Vec<(&str, &Layer, &str)> = Vec::new();
    if let Some(apt) = &apt {
        ours.push(("apt", apt, &apt_note));
    }
    ours.extend([
        (
            "env",
            &env.layer,
            "nbpipe: kernel environment (uv, host-installed)",
        ),
        ("binary", &bin_layer, "nbpipe: binary"),
        ("project", &project_layer, "nbpipe: project files"),
    ]);
    let mut labels = labels;
    if opts.server {
        labels["nbpipe.role"] = json!("server");
    }
    let config = image_config(&base, &ours, labels, &created, opts.server);
    let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
    let config_blob = store.put(&config_bytes, media::CONFIG)?;
    let mut layers: Vec<LayerInfo> = base
        .layers
        .iter()
        .map(|b| LayerInfo {
            role: "base".into(),
            digest: b.digest.clone(),
            size: b.size,
        })
        .collect();
    let mut blobs = base.layers.clone();
    for (role, layer, _) in &ours {
        layers.push(LayerInfo {
            role: (*role).into(),
            digest: layer.blob.digest.clone(),
            size: layer.blob.size,
        });
        blobs.push(layer.blob.clone());
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": config_blob,
        "layers": blobs,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    let manifest_blob = store.put(&manifest_bytes, media::MANIFEST)?;
    blobs.push(config_blob.clone());
    let hash_tag = manifest_blob.digest.trim_start_matches("sha256:")[..16].to_string();
    let suffix = if opts.server { "-server" } else { "" };
    let mut references = vec![format!("{repository}:{hash_tag}{suffix}")];
    for t in &opts.tags {
        let r = if t.contains('/') {
            t.clone()
        } else {
            format!("{repository}:{}{suffix}", t.trim_start_matches(':'))
        };
        registry::parse(&r)?;
        if !references.contains(&r) {
            references.push(r);
        }
    }
    let built = BuiltImage {
        digest: manifest_blob.digest,
        config: config_blob.digest,
        references,
        layers,
        base: base_ref,
        base_digest: base.digest,
        requirements_hash: env.hash,
        manifest: manifest_bytes,
        blobs,
    };
    record(&dir, &built, opts.server)?;
    Ok(built)
}

/// The repository images of `project` go to: `image.name`, else `nbpipe/<name>`.
pub fn repository(project: &nbpipe_project::config::Project) -> Result<String, ImageError> {
    let name = match &project.image.name {
        Some(n) => n.clone(),
        None => {
            let clean: String = project
                .name
                .to_lowercase()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!(
                "nbpipe/{}",
                clean.trim_matches(|c: char| !c.is_ascii_alphanumeric())
            )
        }
    };
    registry::parse(&name)?;
    Ok(name)
}

fn image_config(
    base: &BaseImage,
    ours: &[(&str, &Layer, &str)],
    labels: serde_json::Value,
    created: &str,
    server: bool,
) -> serde_json::Value {
    let base_cfg = &base.config["config"];
    let mut env: Vec<String> = base_cfg["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.retain(|e| !e.starts_with("PATH="));
    env.push(format!("PATH=/opt/nbpipe/bin:{ENV_ROOT}/bin:{path}"));
    env.push(format!("{}={ENV_ROOT}", nbpipe_env::PREBUILT_ENV_VAR));
    env.push(format!("JUPYTER_PATH={ENV_ROOT}/share/jupyter"));
    env.push("PYTHONUNBUFFERED=1".into());
    let mut diff_ids: Vec<serde_json::Value> = base.config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut history: Vec<serde_json::Value> = base.config["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (_, layer, what) in ours {
        diff_ids.push(json!(layer.diff_id));
        history.push(json!({"created": created, "created_by": what}));
    }
    // The server listens on every interface of its container (`NBPIPE_LISTEN`; a token is
    // then required: `NBPIPE_TOKEN`); its arguments (`--sqs-queue`, `--executor ecs`,
    // `--database`) follow.
    let (entrypoint, exposed) = if server {
        env.push("NBPIPE_LISTEN=0.0.0.0:8787".into());
        (
            json!([BINARY, "serve", PROJECT_ROOT, "--no-inbox"]),
            json!({"8787/tcp": {}}),
        )
    } else {
        (json!([BINARY, "run", PROJECT_ROOT]), json!({}))
    };
    json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": env,
            "Entrypoint": entrypoint,
            "ExposedPorts": exposed,
            "WorkingDir": PROJECT_ROOT,
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    })
}

fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

fn record(dir: &Path, built: &BuiltImage, server: bool) -> Result<(), ImageError> {
    let d = dir.join(".nbpipe");
    std::fs::create_dir_all(&d).map_err(|e| ImageError::io("creating", &d, e))?;
    let p = d.join(if server {
        "image-server.json"
    } else {
        "image.json"
    });
    let text = serde_json::to_string_pretty(built).unwrap_or_default() + "\n";
    std::fs::write(&p, text).map_err(|e| ImageError::io("writing", p, e))
}

/// Push `built` under each of its references; returns the pushed manifest digest.
pub async fn push(built: &BuiltImage, store: &Store) -> Result<String, ImageError> {
    let mut digest = built.digest.clone();
    let mut by_repo: Vec<(String, Vec<String>)> = Vec::new();
    for r in &built.references {
        let parsed = registry::parse(r)?;
        let repo = format!("{}/{}", parsed.registry(), parsed.repository());
        let tag = parsed.tag().unwrap_or("latest").to_string();
        match by_repo.iter_mut().find(|(k, _)| *k == repo) {
            Some((_, tags)) => tags.push(tag),
            None => by_repo.push((repo, vec![tag])),
        }
    }
    for (repo, tags) in by_repo {
        let reference = registry::parse(&repo)?;
        let reg = Registry::for_reference(&reference);
        digest = reg
            .push(&reference, &tags, &built.blobs, store, &built.manifest)
            .await?;
    }
    Ok(digest)
}

/// Push `built` to `repository` (`registry/path`, whatever the image's own references are)
/// under `tags`, with `credentials` (user, password) when given, else those of the
/// environment; returns the pushed manifest digest. `nbpipe deploy aws` pushes to each
/// region's ECR repository this way.
pub async fn push_to(
    built: &BuiltImage,
    store: &Store,
    repository: &str,
    tags: &[String],
    credentials: Option<(String, String)>,
) -> Result<String, ImageError> {
    let reference = registry::parse(repository)?;
    let reg = match credentials {
        Some((user, password)) => Registry::with_credentials(&reference, user, password),
        None => Registry::for_reference(&reference),
    };
    reg.push(&reference, tags, &built.blobs, store, &built.manifest)
        .await
}

fn note(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("nbpipe: {msg}");
    }
}
