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
    tune_allocator();
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
        cli::Command::Cat(a) => commands::cat::run(a),
        cli::Command::Image(a) => commands::image::run(a),
        cli::Command::Deploy(a) => commands::deploy::run(a),
        cli::Command::Runs(a) => commands::runs::run(a),
    };
    ExitCode::from(status)
}

/// Give large buffers (kernel messages carrying images, each a few MB) back to the OS as soon
/// as they are freed. glibc raises its mmap threshold each time such a buffer is freed, after
/// which they come from the heap and stay mapped: with a fixed threshold (its default,
/// 128 KiB) the runner's peak memory on a notebook with 20 MB of images drops from ~35 MiB to
/// ~22 MiB (`bench/run.sh`). It costs a page fault per 4 KiB of such buffers, which is noise
/// next to the kernel round trip that delivered them.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc's tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
