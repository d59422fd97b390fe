//! OCI images of nbpipe projects, built without a container daemon.
//!
//! [`build`] makes the image of a project folder from four kinds of layers, in this order,
//! so a notebook-only change rebuilds only the last, small one:
//!
//! 1. the base image's layers (`image.base`, default `python:3.11-slim`), pulled from its
//!    registry and reused byte for byte;
//! 2. system packages (`image.apt`), installed with `apt-get` in a throwaway container of the
//!    base on a Docker engine — the only step that needs one ([`apt`](crate) layer, cached by
//!    base digest and packages);
//! 3. the kernel environment (requirements + ipykernel) installed **on the host** with `uv`
//!    for the base's Python version and Linux x86-64 wheels, at `/opt/nbpipe/env`
//!    ([`envlayer`]); cached while the requirements and the base's Python are unchanged;
//! 4. the nbpipe binary at `/opt/nbpipe/bin/nbpipe` (the running one unless told otherwise);
//! 5. the project's files at `/project` ([`project`]).
//!
//! Layers are deterministic tarballs ([`layer`]): rebuilding with nothing changed gives the
//! same manifest digest. Everything is stored content-addressed in a local [`Store`]
//! (`$NBPIPE_HOME/images`); [`push`] sends the image to any OCI registry; [`smoke`] runs it
//! on a Docker engine; [`dockerfile`] writes the equivalent Dockerfile for teams that build
//! in their own CI. This crate never shells out to a `docker` CLI.
//!
//! The image's entrypoint is `nbpipe run /project`; `NBPIPE_RUN_ID`, `NBPIPE_TRIGGER_URI`,
//! `NBPIPE_PARAMETERS` (a JSON object) and `NBPIPE_OUTPUT` give it a run's context.
#![deny(missing_docs)]

mod apt;
pub mod base;
mod build;
mod dockerfile;
pub mod envlayer;
mod error;
pub mod layer;
pub mod media;
pub mod project;
pub mod registry;
mod smoke;
pub mod store;

pub use bollard;
pub use build::{
    build, push, push_to, repository, BuildOptions, BuiltImage, LayerInfo, DEFAULT_BASE,
};
pub use dockerfile::dockerfile;
pub use error::ImageError;
pub use smoke::{engine, engine_reachable, provide, smoke, SmokeReport};
pub use store::Store;

/// First executable `name` on `PATH`.
pub(crate) fn which(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
