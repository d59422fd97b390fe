//! The smoke check after a build: the image is given to a Docker engine (pulled from the
//! registry it was pushed to, or loaded from the store as a `docker save` archive), then two
//! throwaway containers run in it: `nbpipe --version`, and `nbpipe exec` of a one-cell
//! notebook on the image's kernel. Both must exit 0. The engine is the one `DOCKER_HOST`
//! names (default `/var/run/docker.sock`), spoken to over its API; the containers are removed
//! whatever happens.

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::build::BuiltImage;
use crate::error::ImageError;
use crate::project::{BINARY, SMOKE_NOTEBOOK};
use crate::store::Store;

/// What the smoke check saw.
#[derive(Debug, Clone)]
pub struct SmokeReport {
    /// `nbpipe --version` in the image.
    pub version: String,
    /// The smoke notebook's output line (Python and ipykernel versions in the image).
    pub kernel: String,
}

fn engine_err(e: impl std::fmt::Display) -> ImageError {
    ImageError::Engine(e.to_string())
}

/// Connect to the engine `DOCKER_HOST` names.
pub(crate) async fn connect() -> Result<Docker, ImageError> {
    Docker::connect_with_defaults()
        .map_err(engine_err)?
        .negotiate_version()
        .await
        .map_err(engine_err)
}

/// Run the smoke check of `built`. With `pulled_from` (a pushed `repo@digest`) the engine
/// pulls it; otherwise the image is loaded from `store`.
pub async fn smoke(
    built: &BuiltImage,
    store: &Store,
    pulled_from: Option<&str>,
) -> Result<SmokeReport, ImageError> {
    let docker = connect().await?;
    let image = match pulled_from {
        Some(reference) => {
            let mut s = docker.create_image(
                Some(
                    CreateImageOptionsBuilder::default()
                        .from_image(reference)
                        .build(),
                ),
                None,
                None,
            );
            while let Some(item) = s.next().await {
                item.map_err(|e| ImageError::Engine(format!("pulling `{reference}`: {e}")))?;
            }
            reference.to_string()
        }
        None => {
            load(&docker, built, store).await?;
            built.config.clone()
        }
    };
    let (code, out) = run(&docker, &image, &["--version"]).await?;
    if code != 0 {
        return Err(ImageError::Smoke {
            command: format!("{BINARY} --version"),
            code,
            output: out,
        });
    }
    let version = out.trim().to_string();
    let args = [
        "exec",
        "--log-output",
        "--no-progress-bar",
        SMOKE_NOTEBOOK,
        "/tmp/smoke-out.ipynb",
    ];
    let (code, out) = run(&docker, &image, &args).await?;
    if code != 0 {
        return Err(ImageError::Smoke {
            command: format!("{BINARY} {}", args.join(" ")),
            code,
            output: out,
        });
    }
    let kernel = out
        .lines()
        .find(|l| l.contains("nbpipe smoke check"))
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(SmokeReport { version, kernel })
}

/// Make `built` available to the engine `docker` (as its config digest, the image id):
/// nothing when the engine has it already; else, when its repository names a registry
/// (`host[:port]/path`), pushed there and pulled by digest (so a remote engine gets it the
/// same way); else loaded from `store`. Returns the reference the engine knows it by.
pub async fn provide(
    docker: &Docker,
    built: &BuiltImage,
    store: &Store,
) -> Result<String, ImageError> {
    if docker.inspect_image(&built.config).await.is_ok() {
        return Ok(built.config.clone());
    }
    let first = &built.references[0];
    let repo = first.rsplit_once(':').map_or(first.as_str(), |(r, _)| r);
    let host = repo.split('/').next().unwrap_or_default();
    let has_registry =
        repo.contains('/') && (host.contains('.') || host.contains(':') || host == "localhost");
    if has_registry {
        let digest = crate::build::push(built, store).await?;
        let pinned = format!("{repo}@{digest}");
        let mut s = docker.create_image(
            Some(
                CreateImageOptionsBuilder::default()
                    .from_image(&pinned)
                    .build(),
            ),
            None,
            None,
        );
        while let Some(item) = s.next().await {
            item.map_err(|e| ImageError::Engine(format!("pulling `{pinned}`: {e}")))?;
        }
    } else {
        load(docker, built, store).await?;
    }
    Ok(built.config.clone())
}

/// Connect to the engine `DOCKER_HOST` names (default `/var/run/docker.sock`).
pub async fn engine() -> Result<Docker, ImageError> {
    connect().await
}

/// Run `BINARY args` in a throwaway container (no network); its exit code and output.
async fn run(docker: &Docker, image: &str, args: &[&str]) -> Result<(i64, String), ImageError> {
    let name = format!("nbpipe-smoke-{}", uuid_like());
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec![BINARY.to_string()]),
        cmd: Some(args.iter().map(|s| s.to_string()).collect()),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .map_err(engine_err)?;
    let result = async {
        docker
            .start_container(&name, None)
            .await
            .map_err(engine_err)?;
        let mut wait = docker.wait_container(&name, None);
        // A non-zero exit is reported as an error by the client: the exit code is read below.
        while wait.next().await.is_some() {}
        let state = docker
            .inspect_container(&name, None)
            .await
            .map_err(engine_err)?
            .state
            .unwrap_or_default();
        let mut logs = docker.logs(
            &name,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .tail("40")
                    .build(),
            ),
        );
        let mut out = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            out.push_str(&chunk.to_string());
        }
        Ok::<_, ImageError>((state.exit_code.unwrap_or(-1), out))
    }
    .await;
    let _ = docker
        .remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    result
}

/// Load `built` into the engine as a `docker save` archive (config, gzipped layers and a
/// `manifest.json` naming its references).
async fn load(docker: &Docker, built: &BuiltImage, store: &Store) -> Result<(), ImageError> {
    let (file, path) = store.temp_file()?;
    let manifest = serde_json::json!([{
        "Config": format!("{}.json", built.config.trim_start_matches("sha256:")),
        "RepoTags": built.references,
        "Layers": built.layers.iter().map(|l| format!("{}.tar.gz", l.digest.trim_start_matches("sha256:"))).collect::<Vec<_>>(),
    }]);
    let (store2, built2, path2) = (store.clone(), built.clone(), path.clone());
    tokio::task::spawn_blocking(move || -> Result<(), ImageError> {
        let io = |e| ImageError::io("writing", &path2, e);
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let mut add = |name: String, src: &std::path::Path| -> Result<(), ImageError> {
            tar.append_path_with_name(src, name).map_err(io)
        };
        add(
            format!("{}.json", built2.config.trim_start_matches("sha256:")),
            &store2.blob_path(&built2.config),
        )?;
        for l in &built2.layers {
            add(
                format!("{}.tar.gz", l.digest.trim_start_matches("sha256:")),
                &store2.blob_path(&l.digest),
            )?;
        }
        let data = serde_json::to_vec(&manifest).unwrap_or_default();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, "manifest.json", data.as_slice())
            .map_err(io)?;
        tar.into_inner().map_err(io)?;
        Ok(())
    })
    .await
    .map_err(engine_err)??;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ImageError::io("reading", &path, e))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    let mut s = docker.import_image_stream(
        ImportImageOptionsBuilder::default().quiet(true).build(),
        stream,
        None,
    );
    let mut result = Ok(());
    while let Some(item) = s.next().await {
        match item {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    result = Err(ImageError::Engine(format!("loading the image: {e}")));
                }
            }
            Err(e) => result = Err(ImageError::Engine(format!("loading the image: {e}"))),
        }
    }
    let _ = std::fs::remove_file(&path);
    result
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", n, std::process::id())
}

/// Whether the engine `DOCKER_HOST` names (or the default socket) answers.
pub async fn engine_reachable() -> bool {
    match connect().await {
        Ok(d) => d.ping().await.is_ok(),
        Err(_) => false,
    }
}
