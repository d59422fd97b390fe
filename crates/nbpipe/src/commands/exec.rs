//! `nbpipe exec`: papermill's command, resolved into [`nbpipe_exec::ExecOptions`].

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nbpipe_exec::{ExecError, ExecOptions, Outcome, Stop};
use nbpipe_params::{Parameters, Value};
use tokio::sync::watch;

use crate::cli::ExecArgs;
use crate::exit;
use crate::printer::{Level, Printer};

/// Run the command; returns the exit code.
pub fn run(args: ExecArgs) -> u8 {
    let mut level = Level::parse(&args.log_level);
    let (input, output) = match resolve_paths(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    if output == "-" && level == Level::Info {
        // Keep the terminal quiet when the notebook itself goes to stdout, like papermill.
        level = Level::Error;
    }
    let params = match collect_parameters(&args, &input, &output) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    };
    if args.help_notebook {
        return crate::commands::inspect::help_notebook(
            &input,
            args.kernel.as_deref(),
            args.language.as_deref(),
        );
    }
    if let Some(engine) = &args.engine {
        if engine != "nbclient" && engine != "nbpipe" {
            eprintln!("error: no engine named `{engine}`; nbpipe runs notebooks itself (`nbclient` is accepted as an alias)");
            return exit::USAGE;
        }
    }
    let progress =
        !args.no_progress_bar && (args.progress_bar || !args.log_output) && output != "-";
    let mut printer = Printer::new(level, args.log_output, progress);
    match open_copy(args.stdout_file.as_deref())
        .and_then(|o| Ok((o, open_copy(args.stderr_file.as_deref())?)))
    {
        Ok((o, e)) => {
            printer.stdout_file = o;
            printer.stderr_file = e;
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::USAGE;
        }
    }

    let (input, output) = match (
        nbpipe_exec::prepare::template_path(&input, &params),
        nbpipe_exec::prepare::template_path(&output, &params),
    ) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    printer.log(Level::Info, &format!("Input Notebook:  {input}"));
    printer.log(Level::Info, &format!("Output Notebook: {output}"));

    let python_env = if args.kernel.is_none() {
        match managed_env_for(&input, &printer) {
            Ok(env) => env,
            Err(e) => {
                eprintln!("error: {e:#}");
                return exit::USAGE;
            }
        }
    } else {
        None
    };
    let opts = ExecOptions {
        input,
        output: Some(output),
        parameters: params,
        kernel_name: args.kernel.clone(),
        language: args.language.clone(),
        kernel_spec: None,
        python_env,
        cwd: args.cwd.clone(),
        prepare_only: args.prepare_only,
        report_mode: args.report_mode,
        start_timeout: Duration::from_secs(args.start_timeout),
        execution_timeout: args
            .execution_timeout
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        save_on_cell: !args.no_request_save_on_cell_execute,
        autosave_every: Duration::from_secs(args.autosave_cell_every),
        echo_kernel_stderr: level == Level::Debug,
        pool: None,
        // A single notebook pays a zygote's start as much as a cold kernel, so exec starts
        // none; it forks from the one `nbpipe serve`/`run` advertises for its environment,
        // when there is one and the kernel would be the same as a cold one.
        fork: if args.no_fork_server {
            None
        } else {
            nbpipe_env::zygote_registry()
                .ok()
                .and_then(|dir| nbpipe_kernel::ForkServers::discovering(dir).ok())
        },
        shutdowns: None,
        // The papermill-style single notebook has no project, hence no `secrets:`.
        env: Vec::new(),
        private_pool: false,
        masker: Default::default(),
    };
    if let Some(cwd) = &opts.cwd {
        if !cwd.is_dir() {
            eprintln!("error: --cwd `{}` is not a directory", cwd.display());
            return exit::USAGE;
        }
        printer.log(
            Level::Info,
            &format!("Working directory: {}", cwd.display()),
        );
    }

    let runtime = match super::runtime(Some(2)) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(None);
        tokio::spawn(forward_signals(stop_tx));
        let result = nbpipe_exec::execute(&opts, &mut printer, stop_rx).await;
        report(&printer, &opts, result)
    })
}

fn report(
    printer: &Printer,
    opts: &ExecOptions,
    result: Result<(nbpipe_exec::Executed, Outcome), ExecError>,
) -> u8 {
    let out = opts.output.as_deref().unwrap_or("-");
    match result {
        Ok((_, Outcome::Completed | Outcome::Prepared)) => exit::OK,
        Ok((_, Outcome::CellFailed(f))) => {
            let count = f
                .execution_count
                .map_or("None".to_string(), |c| c.to_string());
            printer.log(
                Level::Error,
                &format!(
                    "exception encountered at \"In [{count}]\" (cell {}): {}: {}\n{}\n\nThe output notebook `{out}` has the full record.",
                    f.cell_index, f.ename, f.evalue, f.traceback.join("\n")
                ),
            );
            exit::CELL_ERROR
        }
        Ok((_, Outcome::TimedOut(f))) => {
            printer.log(
                Level::Error,
                &format!(
                    "cell {} {}\n\nThe partial notebook is saved at `{out}`.",
                    f.cell_index, f.evalue
                ),
            );
            exit::TIMEOUT
        }
        Ok((_, Outcome::KernelDied(f))) => {
            printer.log(
                Level::Error,
                &format!(
                    "{} while running cell {}.\n{}\n\nThe partial notebook is saved at `{out}`.",
                    f.evalue,
                    f.cell_index,
                    f.traceback.join("\n")
                ),
            );
            exit::KERNEL_DIED
        }
        Ok((_, Outcome::Stopped(why))) => {
            let sig = match why {
                Stop::Signal(sig) => sig,
                Stop::Deadline | Stop::Cancelled => 15,
            };
            printer.log(
                Level::Error,
                &format!("stopped by signal {sig}; the partial notebook is saved at `{out}`."),
            );
            exit::signal(sig)
        }
        Err(e @ ExecError::NotStored(_)) => {
            printer.log(Level::Error, &e.to_string());
            exit::NOT_STORED
        }
        Err(e @ ExecError::KernelStart(_)) => {
            printer.log(Level::Error, &e.to_string());
            exit::KERNEL_START
        }
        Err(e) => {
            printer.log(Level::Error, &e.to_string());
            exit::USAGE
        }
    }
}

/// Deliver SIGINT/SIGTERM/SIGHUP to the engine once; a second signal exits at once (the
/// kernel dies with us: it is started with a parent-death signal and in its own group).
pub(crate) async fn forward_signals(tx: watch::Sender<Option<Stop>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    let mut received = false;
    loop {
        let sig = tokio::select! {
            _ = int.recv() => 2,
            _ = term.recv() => 15,
            _ = hup.recv() => 1,
        };
        if received {
            std::process::exit(i32::from(exit::signal(sig)));
        }
        received = true;
        let _ = tx.send(Some(Stop::Signal(sig)));
    }
}

/// papermill's input/output resolution, including pipes.
fn resolve_paths(args: &ExecArgs) -> Result<(String, String)> {
    let input_piped = stdin_is_data();
    let output_piped = !std::io::stdout().is_terminal();
    let nb = args.notebook_path.clone().filter(|s| !s.is_empty());
    let out = args.output_path.clone().filter(|s| !s.is_empty());
    if args.help_notebook {
        return Ok((
            nb.unwrap_or_else(|| "-".into()),
            out.unwrap_or_else(|| "-".into()),
        ));
    }
    if nb.is_none() && !input_piped {
        bail!("missing argument `NOTEBOOK_PATH`\n\nUsage: nbpipe exec NOTEBOOK_PATH [OUTPUT_PATH] [OPTIONS]");
    }
    if out.is_none() && !(input_piped || output_piped) {
        bail!("missing argument `OUTPUT_PATH`\n\nUse `-` to write the output notebook to stdout.");
    }
    Ok(match (nb, out) {
        (Some(nb), None) if input_piped => ("-".into(), nb),
        (nb, out) => (
            nb.unwrap_or_else(|| "-".into()),
            out.unwrap_or_else(|| "-".into()),
        ),
    })
}

/// True when stdin is a pipe or a file (data is being piped in), not a terminal or /dev/null.
fn stdin_is_data() -> bool {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata("/proc/self/fd/0") {
        Ok(m) => {
            let t = m.file_type();
            t.is_fifo() || t.is_file() || t.is_socket()
        }
        Err(_) => false,
    }
}

/// Parameters in papermill's precedence: inject paths, -b, -f, -y, (--parameters-json), -p, -r.
fn collect_parameters(args: &ExecArgs, input: &str, output: &str) -> Result<Parameters> {
    let mut params = Parameters::new();
    if args.inject_input_path || args.inject_paths {
        params.set("PAPERMILL_INPUT_PATH", Value::Str(input.to_string()));
    }
    if args.inject_output_path || args.inject_paths {
        params.set("PAPERMILL_OUTPUT_PATH", Value::Str(output.to_string()));
    }
    super::params::collect(
        params,
        &super::params::Sources {
            base64: &args.parameters_base64,
            files: &args.parameters_file,
            yaml: &args.parameters_yaml,
            json: &args.parameters_json,
            pairs: &args.parameters,
            raw: &args.parameters_raw,
        },
    )
}

fn open_copy(path: Option<&Path>) -> Result<Option<std::fs::File>> {
    path.map(|p| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("could not open `{}`", p.display()))
    })
    .transpose()
}

/// The kernelspec of the managed environment nearest to the notebook, if any. A marker whose
/// environment is gone is an error: falling back to another kernel would ignore the folder's
/// requirements.
fn managed_env_for(
    input: &str,
    printer: &Printer,
) -> Result<Option<nbpipe_kernel::spec::KernelSpec>> {
    let start: PathBuf = if input == "-" || input.contains("://") {
        std::env::current_dir()?
    } else {
        let p = Path::new(input);
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match std::fs::canonicalize(dir) {
            Ok(d) => d,
            Err(_) => return Ok(None),
        }
    };
    let Some((folder, env)) = nbpipe_env::nearest(&start)? else {
        return Ok(None);
    };
    if env.stale {
        printer.log(
            Level::Warning,
            &format!(
                "the managed environment of `{0}` was built from different requirements; run `nbpipe env {0}` to rebuild it",
                folder.display()
            ),
        );
    }
    printer.log(
        Level::Info,
        &format!("Managed environment: {}", env.root.display()),
    );
    Ok(Some(env.kernelspec()))
}
