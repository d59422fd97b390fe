//! `nbpipe render`: a notebook as a standalone HTML page.

use crate::cli::RenderArgs;
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: RenderArgs) -> u8 {
    let output = args.output.clone().unwrap_or_else(|| {
        if args.notebook == "-" {
            "-".to_string()
        } else {
            let p = std::path::Path::new(&args.notebook);
            p.with_extension("html").display().to_string()
        }
    });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return exit::USAGE;
        }
    };
    let result = runtime.block_on(async {
        let input = nbpipe_store::Location::parse(&args.notebook).map_err(|e| e.to_string())?;
        let bytes = input.get().await.map_err(|e| e.to_string())?;
        let nb = nbpipe_notebook::read(&bytes)
            .map_err(|e| format!("`{}` is not a valid notebook: {e}", args.notebook))?;
        let title = std::path::Path::new(&args.notebook)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        let html = nbpipe_render::render(
            &nb,
            &nbpipe_render::RenderOptions {
                title,
                ..Default::default()
            },
        );
        let out = nbpipe_store::Location::parse(&output).map_err(|e| e.to_string())?;
        out.put(html.into_bytes()).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => {
            if output != "-" {
                eprintln!("Wrote {output}");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}
