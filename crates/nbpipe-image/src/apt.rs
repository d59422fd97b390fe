//! The system-packages layer (`image.apt`): Debian packages need `apt-get` run inside the
//! base image, which a daemon-less build cannot do, so this layer is made on a Docker engine
//! (`DOCKER_HOST`): a throwaway container of the base runs `apt-get install`, is committed,
//! and the commit's own layer (the filesystem diff, whiteouts included) is taken from the
//! engine's export, gzipped and stored. The engine only builds this one layer; the image is
//! still assembled here.
//!
//! The layer is cached by the base's digest and the sorted package list: a rebuild with the
//! same base and packages reuses it byte for byte (same image digest) without an engine.
//! Change either and it is rebuilt (with whatever versions Debian serves then — pin
//! `name=version` for repeatable builds).

use std::io::{Read, Write};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptions,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ImageError;
use crate::layer::Layer;
use crate::store::Store;

#[derive(Serialize, Deserialize)]
struct AptCache {
    layer: Layer,
}

fn engine_err(what: &str, e: impl std::fmt::Display) -> ImageError {
    ImageError::Engine(format!("{what}: {e}"))
}

/// The shell command installing `packages` (validated names) and leaving no apt caches.
pub(crate) fn install_script(packages: &[String]) -> String {
    format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; \
         apt-get install -y -qq --no-install-recommends {}; apt-get clean; \
         rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
         /var/cache/ldconfig/aux-cache /var/cache/debconf/*-old",
        packages.join(" ")
    )
}

/// The layer with `packages` installed on `base_ref` (manifest digest `base_digest`).
pub async fn layer(
    store: &Store,
    base_ref: &str,
    base_digest: &str,
    packages: &[String],
    quiet: bool,
) -> Result<Layer, ImageError> {
    let mut sorted = packages.to_vec();
    sorted.sort();
    sorted.dedup();
    let key = {
        let mut h = Sha256::new();
        h.update(format!("apt-1\0{base_digest}\0{}", sorted.join("\0")));
        hex::encode(&h.finalize()[..12])
    };
    let name = format!("apt-{key}.json");
    if let Some(hit) = store.cached::<AptCache>(&name, |c| vec![c.layer.blob.digest.clone()]) {
        if !quiet {
            eprintln!("  system packages layer unchanged (cached)");
        }
        return Ok(hit.layer);
    }
    let docker = crate::smoke::connect().await.map_err(|e| {
        ImageError::Unsupported(format!(
            "`image.apt` ({}) is installed by running apt-get in the base image on a Docker \
             engine, and none answers ({e}); start one (or set DOCKER_HOST), or build with \
             `nbpipe image dockerfile` and your own builder",
            sorted.join(", ")
        ))
    })?;
    if !quiet {
        eprintln!(
            "  installing {} with apt-get on the engine",
            sorted.join(", ")
        );
    }
    let mut pull = docker.create_image(
        Some(
            CreateImageOptionsBuilder::default()
                .from_image(base_ref)
                .build(),
        ),
        None,
        None,
    );
    while let Some(item) = pull.next().await {
        item.map_err(|e| engine_err(&format!("pulling `{base_ref}`"), e))?;
    }
    let container = format!("nbpipe-apt-{key}-{}", std::process::id());
    let body = ContainerCreateBody {
        image: Some(base_ref.to_string()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec![install_script(&sorted)]),
        user: Some("0".into()),
        host_config: Some(HostConfig {
            // apt-get downloads: the host's network works on every engine configuration.
            network_mode: Some("host".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(&container)
                    .build(),
            ),
            body,
        )
        .await
        .map_err(|e| engine_err("creating the apt container", e))?;
    let result = install_and_export(&docker, store, &container, &sorted).await;
    let _ = docker
        .remove_container(
            &container,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    let layer = result?;
    store.remember(
        &name,
        &AptCache {
            layer: layer.clone(),
        },
    )?;
    Ok(layer)
}

async fn install_and_export(
    docker: &bollard::Docker,
    store: &Store,
    container: &str,
    packages: &[String],
) -> Result<Layer, ImageError> {
    docker
        .start_container(container, None)
        .await
        .map_err(|e| engine_err("starting the apt container", e))?;
    let mut wait = docker.wait_container(container, None);
    while wait.next().await.is_some() {}
    let state = docker
        .inspect_container(container, None)
        .await
        .map_err(|e| engine_err("inspecting the apt container", e))?
        .state
        .unwrap_or_default();
    let code = state.exit_code.unwrap_or(-1);
    if code != 0 {
        let mut logs = docker.logs(
            container,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .tail("20")
                    .build(),
            ),
        );
        let mut out = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            out.push_str(&chunk.to_string());
        }
        return Err(ImageError::Smoke {
            command: format!("apt-get install {}", packages.join(" ")),
            code,
            output: out,
        });
    }
    let committed = docker
        .commit_container(
            CommitContainerOptions {
                container: Some(container.to_string()),
                ..Default::default()
            },
            bollard::models::ContainerConfig::default(),
        )
        .await
        .map_err(|e| engine_err("committing the apt container", e))?
        .id;
    let result = export_top_layer(docker, store, &committed).await;
    let _ = docker
        .remove_image(
            &committed,
            Some(RemoveImageOptions {
                force: true,
                ..Default::default()
            }),
            None,
        )
        .await;
    result
}

/// The last layer of image `id` as the engine exports it (`docker save`), stored gzipped.
async fn export_top_layer(
    docker: &bollard::Docker,
    store: &Store,
    id: &str,
) -> Result<Layer, ImageError> {
    let (mut file, path) = store.temp_file()?;
    let mut s = docker.export_image(id);
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| engine_err("exporting the apt layer", e))?;
        file.write_all(&chunk)
            .map_err(|e| ImageError::io("writing", &path, e))?;
    }
    drop(file);
    let store2 = store.clone();
    let result = tokio::task::spawn_blocking(move || top_layer_of_archive(&store2, &path))
        .await
        .map_err(|e| ImageError::Unsupported(e.to_string()))?;
    result
}

/// Read a `docker save` archive at `path` (legacy or OCI layout: `manifest.json` names the
/// layers in order), store its last layer gzipped, and remove the archive.
fn top_layer_of_archive(store: &Store, path: &std::path::Path) -> Result<Layer, ImageError> {
    let io = |e| ImageError::io("reading the exported image", path, e);
    let open = || std::fs::File::open(path).map_err(io);
    let mut manifest = None;
    for entry in tar::Archive::new(open()?).entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        if entry.path().map_err(io)?.as_os_str() == "manifest.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(io)?;
            manifest = Some(text);
            break;
        }
    }
    let bad = |why: &str| ImageError::Engine(format!("the engine's image export {why}"));
    let manifest: serde_json::Value = serde_json::from_str(
        manifest
            .as_deref()
            .ok_or_else(|| bad("has no manifest.json"))?,
    )
    .map_err(|_| bad("has an unreadable manifest.json"))?;
    let top = manifest[0]["Layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l.as_str())
        .ok_or_else(|| bad("lists no layers"))?
        .to_string();
    for entry in tar::Archive::new(open()?).entries().map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.path().map_err(io)?.to_string_lossy() == top {
            let layer = gzip_into_store(store, entry)?;
            let _ = std::fs::remove_file(path);
            return Ok(layer);
        }
    }
    Err(bad(&format!("has no `{top}`")))
}

/// Gzip an uncompressed layer tar into the store: its digest and diff id.
fn gzip_into_store(store: &Store, mut tar: impl Read) -> Result<Layer, ImageError> {
    let (file, tmp) = store.temp_file()?;
    let io = |e| ImageError::io("writing", &tmp, e);
    let mut out = HashingWriter {
        inner: std::io::BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut diff = Sha256::new();
    {
        let mut gz = flate2::GzBuilder::new()
            .operating_system(255)
            .write(&mut out, flate2::Compression::new(6));
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = tar.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            diff.update(&buf[..n]);
            gz.write_all(&buf[..n]).map_err(io)?;
        }
        gz.finish().map_err(io)?;
    }
    out.inner.flush().map_err(io)?;
    let digest = format!("sha256:{}", hex::encode(out.hasher.finalize()));
    let blob = store.publish(&tmp, &digest, out.bytes, crate::media::LAYER)?;
    Ok(Layer {
        blob,
        diff_id: format!("sha256:{}", hex::encode(diff.finalize())),
    })
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
