//! The nbpipe notebook engine: parameterize → execute → record → save.
//!
//! [`execute`] runs one notebook on a real Jupyter kernel the way papermill does (same
//! injected cell, same `metadata.papermill`, same error banner cells) and keeps every output,
//! error and timing in the output notebook, which is the run's log. Unlike papermill it never
//! hangs (every wait is raced against the kernel dying, a timeout, or a stop signal) and its
//! saving cost grows linearly with the notebook (see [`save`]).
//!
//! The CLI builds an [`ExecOptions`], implements [`Observer`] for progress and logs, and maps
//! the returned [`Outcome`] or [`ExecError`] to an exit code.
#![deny(missing_docs)]

pub mod mask;
pub mod prepare;
pub mod record;
mod run;
pub mod save;

use std::path::PathBuf;
use std::time::Duration;

use nbpipe_kernel::spec::KernelSpec;
use nbpipe_params::Parameters;
use serde_json::Value;

pub use mask::Masker;
pub use run::execute;

/// Everything one notebook run needs.
#[derive(Clone)]
pub struct ExecOptions {
    /// Input location (`-` = stdin), already templated.
    pub input: String,
    /// Output location (`-` = stdout); `None` writes nothing.
    pub output: Option<String>,
    /// Parameters to inject, in papermill's precedence order.
    pub parameters: Parameters,
    /// Kernel name override (`-k`).
    pub kernel_name: Option<String>,
    /// Language override (`-l`), for the translator.
    pub language: Option<String>,
    /// A kernelspec to use instead of discovery (e.g. a managed environment's).
    pub kernel_spec: Option<KernelSpec>,
    /// The managed environment's kernel, used for Python notebooks when no kernel is named.
    pub python_env: Option<KernelSpec>,
    /// Working directory of the kernel.
    pub cwd: Option<PathBuf>,
    /// Only parameterize and write; do not execute.
    pub prepare_only: bool,
    /// Hide code cell inputs in the output.
    pub report_mode: bool,
    /// Kernel start timeout.
    pub start_timeout: Duration,
    /// Per-cell execution timeout.
    pub execution_timeout: Option<Duration>,
    /// Save as cells finish (throttled so total cost stays linear).
    pub save_on_cell: bool,
    /// Save at most this often during a long cell that produces output; zero disables.
    pub autosave_every: Duration,
    /// Echo the kernel's own stderr (debug logging).
    pub echo_kernel_stderr: bool,
    /// Take a pre-started kernel from this pool when one matches (the service's warm pool).
    pub pool: Option<nbpipe_kernel::pool::KernelPool>,
    /// Fork the kernel from a zygote when it is a Python kernel of an environment these
    /// fork servers serve (see `nbpipe_kernel::fork`).
    pub fork: Option<nbpipe_kernel::ForkServers>,
    /// Shut the kernel down in the background once the notebook is saved, instead of waiting
    /// for it to exit; the owner of the set waits for it.
    pub shutdowns: Option<nbpipe_kernel::pool::Shutdowns>,
    /// Extra environment variables of the kernel process (a project's secrets). A run with
    /// any does not take a kernel from a shared `pool` (a kernel holding secret values must
    /// not wait where another run could take it); it still forks from `fork`.
    pub env: Vec<(String, String)>,
    /// `pool` is the caller's own (one project run's, gone when the run ends): a kernel
    /// pre-started there with the same `env` may be taken (the pool keys kernels by it).
    pub private_pool: bool,
    /// Secret values to replace with `***` in every output, error and failure message
    /// before it is saved or shown (see [`mask`]).
    pub masker: Masker,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            input: String::new(),
            output: None,
            parameters: Parameters::new(),
            kernel_name: None,
            language: None,
            kernel_spec: None,
            python_env: None,
            cwd: None,
            prepare_only: false,
            report_mode: false,
            start_timeout: Duration::from_secs(60),
            execution_timeout: None,
            save_on_cell: true,
            autosave_every: Duration::from_secs(30),
            echo_kernel_stderr: false,
            pool: None,
            fork: None,
            shutdowns: None,
            env: Vec::new(),
            private_pool: false,
            masker: Masker::default(),
        }
    }
}

/// Progress and log hooks; every method has a no-op default.
pub trait Observer: Send {
    /// A warning for the user (unknown parameter, missing parameters cell...).
    fn warn(&mut self, _msg: &str) {}
    /// Informational message (paths, kernel chosen).
    fn info(&mut self, _msg: &str) {}
    /// Execution begins; `total` cells.
    fn notebook_start(&mut self, _total: usize) {}
    /// The kernel is started (or taken from the pool) and answered; cells run next.
    fn kernel_ready(&mut self) {}
    /// A cell starts; `description` from `papermill_description=`.
    fn cell_start(&mut self, _index: usize, _total: usize, _description: Option<&str>) {}
    /// A cell produced (or extended) an output.
    fn output(&mut self, _index: usize, _output: &Value) {}
    /// A cell finished.
    fn cell_end(&mut self, _index: usize, _ok: bool) {}
    /// Execution is over.
    fn notebook_end(&mut self) {}
}

/// The output notebook of a run. Its large output strings may still be in a temporary file
/// ([`nbpipe_notebook::Spill`]): [`Executed::into_notebook`] brings them back into memory,
/// [`Executed::write_to`] streams the notebook without doing so.
#[derive(Debug)]
pub struct Executed {
    notebook: nbpipe_notebook::Notebook,
    spill: Option<nbpipe_notebook::Spill>,
}

impl Executed {
    pub(crate) fn new(
        notebook: nbpipe_notebook::Notebook,
        spill: Option<nbpipe_notebook::Spill>,
    ) -> Executed {
        Executed { notebook, spill }
    }

    pub(crate) fn in_memory(notebook: nbpipe_notebook::Notebook) -> Executed {
        Executed::new(notebook, None)
    }

    /// The notebook as recorded; large output strings may be spill markers (see
    /// [`nbpipe_notebook::spill`]). Cells, metadata and small outputs are all there.
    pub fn notebook(&self) -> &nbpipe_notebook::Notebook {
        &self.notebook
    }

    /// The whole notebook in memory, large outputs included.
    pub fn into_notebook(self) -> std::io::Result<nbpipe_notebook::Notebook> {
        let mut nb = self.notebook;
        if let Some(spill) = &self.spill {
            spill.restore_notebook(&mut nb)?;
        }
        Ok(nb)
    }

    /// Serialize the notebook (byte-identical to `nbformat.writes`) in small chunks.
    pub fn write_to(&self, sink: &mut dyn std::io::Write) -> std::io::Result<()> {
        nbpipe_notebook::write_to(&self.notebook, self.spill.as_ref(), sink)
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// How a run ended when nothing went wrong outside the notebook itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every cell ran (or the notebook ended itself with `sys.exit(0)`).
    Completed,
    /// Only prepared (`--prepare-only`).
    Prepared,
    /// A cell raised.
    CellFailed(CellFailure),
    /// A cell exceeded `--execution-timeout`; it was interrupted.
    TimedOut(CellFailure),
    /// The kernel died mid-run.
    KernelDied(CellFailure),
    /// The run was asked to stop before it finished; the running cell was interrupted.
    Stopped(Stop),
}

/// Why a run is asked to stop (sent through the `stop` channel of [`execute`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// nbpipe received this signal (SIGINT, SIGTERM, SIGHUP).
    Signal(i32),
    /// A deadline set by the caller passed (e.g. a pipeline step's timeout).
    Deadline,
    /// The caller cancelled the run (e.g. a user cancelled it in the service).
    Cancelled,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Signal(sig) => write!(f, "nbpipe received signal {sig}"),
            Stop::Deadline => f.write_str("the run's time limit passed"),
            Stop::Cancelled => f.write_str("the run was cancelled"),
        }
    }
}

/// Where and how a run failed.
#[derive(Debug, Clone, PartialEq)]
pub struct CellFailure {
    /// Cell index in the output notebook (before banner cells were added).
    pub cell_index: usize,
    /// The cell's execution count, if any.
    pub execution_count: Option<i64>,
    /// Exception name.
    pub ename: String,
    /// Exception value.
    pub evalue: String,
    /// Traceback lines (may contain ANSI colour).
    pub traceback: Vec<String>,
}

/// Errors that stop a run before or outside cell execution.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Reading or writing a notebook failed.
    #[error(transparent)]
    Store(#[from] nbpipe_store::StoreError),
    /// The input is not a notebook we can run.
    #[error("`{path}` is not a valid notebook: {source}")]
    Notebook {
        /// The input location.
        path: String,
        /// What is wrong with it.
        source: nbpipe_notebook::NotebookError,
    },
    /// A parameter is unusable.
    #[error("{0}")]
    Params(nbpipe_params::ParamError),
    /// A path template is wrong.
    #[error("{0}")]
    Path(String),
    /// No kernel could be chosen.
    #[error("{0}")]
    NoKernel(String),
    /// The named kernel does not exist.
    #[error(transparent)]
    KernelSpec(#[from] nbpipe_kernel::spec::SpecError),
    /// The kernel could not start.
    #[error(transparent)]
    KernelStart(nbpipe_kernel::KernelError),
    /// The output notebook could not be stored at the end of the run.
    #[error("the output notebook could not be stored: {0}")]
    NotStored(#[from] save::SaveError),
}
