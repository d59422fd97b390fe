//! `nbpipe image build` and `nbpipe image dockerfile`: the project's OCI image.
//! Exit codes: 0 built (and pushed, and smoke-checked when an engine answers), 1 the build,
//! push or smoke check failed, 2 bad project or usage.

use nbpipe_image::{BuildOptions, ImageError, Store};

use crate::cli::{ImageArgs, ImageBuildArgs, ImageCommand, ImageDockerfileArgs};
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: ImageArgs) -> u8 {
    match args.command {
        ImageCommand::Build(a) => build(a),
        ImageCommand::Dockerfile(a) => dockerfile(a),
    }
}

fn code_of(e: &ImageError) -> u8 {
    match e {
        ImageError::Config(_)
        | ImageError::BadReference { .. }
        | ImageError::Platform(_)
        | ImageError::Unsupported(_) => exit::USAGE,
        _ => exit::CELL_ERROR,
    }
}

fn dockerfile(args: ImageDockerfileArgs) -> u8 {
    match nbpipe_image::dockerfile(&args.dir) {
        Ok(text) => {
            print!("{text}");
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            code_of(&e)
        }
    }
}

fn build(args: ImageBuildArgs) -> u8 {
    let runtime = match super::runtime(None) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let opts = BuildOptions {
        dir: args.dir.clone(),
        tags: args.tags.clone(),
        base: args.base.clone(),
        platform: Some(args.platform.clone()),
        binary: args.binary.clone(),
        quiet: args.quiet,
        server: args.server,
    };
    runtime.block_on(async move {
        let result = async {
            let store = Store::default_location()?;
            let started = std::time::Instant::now();
            let built = nbpipe_image::build(&opts, &store).await?;
            eprintln!(
                "built {} in {:.1}s ({} layers)",
                built.digest,
                started.elapsed().as_secs_f64(),
                built.layers.len()
            );
            for l in &built.layers {
                eprintln!("  {:<8} {} {:>12} bytes", l.role, l.digest, l.size);
            }
            for r in &built.references {
                println!("{r}");
            }
            let mut pulled_from = None;
            if args.push {
                let digest = nbpipe_image::push(&built, &store).await?;
                let first = &built.references[0];
                let repo = first.rsplit_once(':').map_or(first.as_str(), |(r, _)| r);
                let pinned = format!("{repo}@{digest}");
                eprintln!("pushed {pinned}");
                println!("{pinned}");
                pulled_from = Some(pinned);
            }
            if args.no_smoke {
                return Ok(());
            }
            if !nbpipe_image::engine_reachable().await {
                eprintln!(
                    "note: smoke check skipped: no Docker engine answers (set DOCKER_HOST, or \
                     pass --no-smoke)"
                );
                if std::env::var_os("DOCKER_HOST").is_some() {
                    return Err(ImageError::Engine("DOCKER_HOST does not answer".into()));
                }
                return Ok(());
            }
            let report = nbpipe_image::smoke(&built, &store, pulled_from.as_deref()).await?;
            eprintln!("smoke check passed: {} · {}", report.version, report.kernel);
            Ok::<_, ImageError>(())
        }
        .await;
        match result {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: {e}");
                code_of(&e)
            }
        }
    })
}
