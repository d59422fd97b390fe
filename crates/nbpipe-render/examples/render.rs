//! Render a notebook file to HTML: `cargo run -p nbpipe-render --example render -- IN.ipynb [OUT.html]`
//! (stdout without `OUT.html`). The `nbpipe render` command is the real interface; this is for
//! looking at the page while working on this crate.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(input) = args.first() else {
        eprintln!("usage: render IN.ipynb [OUT.html]");
        return ExitCode::from(2);
    };
    let nb = match std::fs::read(input)
        .map_err(|e| e.to_string())
        .and_then(|b| nbpipe_notebook::read(&b).map_err(|e| e.to_string()))
    {
        Ok(nb) => nb,
        Err(e) => {
            eprintln!("error: cannot read `{input}`: {e}");
            return ExitCode::from(2);
        }
    };
    let html = nbpipe_render::render(&nb, &nbpipe_render::RenderOptions::default());
    match args.get(1) {
        Some(out) => {
            if let Err(e) = std::fs::write(out, html) {
                eprintln!("error: cannot write `{out}`: {e}");
                return ExitCode::from(1);
            }
        }
        None => print!("{html}"),
    }
    ExitCode::SUCCESS
}
