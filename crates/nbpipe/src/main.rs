//! The `nbpipe` binary: parse the command line, dispatch to one function per subcommand,
//! turn its result into an exit code. Invoked through a link named `papermill`, it behaves as
//! `nbpipe exec`.

mod cli;
mod commands;
mod exit;
mod printer;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| {
            std::path::Path::new(a)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    if invoked_as == "papermill" {
        args.insert(1, "exec".into());
    }
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let status = match cli.command {
        cli::Command::Exec(a) => commands::exec::run(*a),
        cli::Command::Run(a) => commands::run::run(a),
        cli::Command::Render(a) => commands::render::run(a),
        cli::Command::Serve(a) => commands::serve::run(a),
        cli::Command::Inspect(a) => commands::inspect::run(a),
        cli::Command::Env(a) => commands::env::run(a),
        cli::Command::Kernels(a) => commands::kernels::run(a),
    };
    ExitCode::from(status)
}
