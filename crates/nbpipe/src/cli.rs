//! Command-line definitions. Parsing only: no behaviour lives here.
//!
//! `nbpipe exec` takes papermill's flags with papermill's names (both `_` and `-` spellings
//! where papermill has them), so existing scripts keep working.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Run Jupyter notebooks in production, exactly as written.
#[derive(Debug, Parser)]
#[command(name = "nbpipe", version, about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Execute a notebook with parameters (a drop-in for `papermill`).
    Exec(Box<ExecArgs>),
    /// Run a project: the notebooks of its nbpipe.yaml, in order or as a DAG.
    Run(RunArgs),
    /// Render a notebook as a standalone HTML page.
    Render(RenderArgs),
    /// Serve projects: data-triggered runs, a durable queue, run history, HTTP API and web UI.
    Serve(ServeArgs),

    /// Print the parameters a notebook declares (name, type, default, help).
    Inspect(InspectArgs),
    /// Build (or reuse) the managed kernel environment of a folder from its requirements.txt.
    Env(EnvArgs),
    /// List the kernels nbpipe can find.
    Kernels(KernelsArgs),
    /// Copy a stored file (any location nbpipe accepts) to stdout; the Python API reads
    /// output notebooks on object stores back with it, with nbpipe's credentials.
    #[command(hide = true)]
    Cat(CatArgs),
    /// Build a project's OCI image (no daemon needed), push it, or print its Dockerfile.
    Image(ImageArgs),
    /// Deploy a project to a cloud: one stack per environment and region.
    Deploy(DeployArgs),
    /// Runs recorded under an output prefix (their run.json files).
    Runs(RunsArgs),
}

/// `nbpipe deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Where to deploy.
    #[command(subcommand)]
    pub command: DeployCommand,
}

/// `nbpipe deploy` targets.
#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// AWS: one CloudFormation stack per project, environment and region (ECR, ECS on
    /// Fargate, EventBridge, and SQS in service mode).
    Aws(DeployAwsArgs),
}

/// `nbpipe deploy aws`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 deployed (or planned, destroyed, written), 1 an AWS call, the image build or push failed, 2 bad project or usage. AWS endpoint, credentials and account come from the standard AWS environment."
)]
pub struct DeployAwsArgs {
    /// The project folder (with nbpipe.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The environment: part of stack, repository and tag names (`prod`, `staging`); when the
    /// project declares `environments:`, it must be one of them and its settings are deployed.
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// A region to deploy to (repeatable; each must be in `regions:` when the file has it).
    #[arg(long = "region", value_name = "REGION", num_args = 1.., action = ArgAction::Append, required = true)]
    pub regions: Vec<String>,
    /// Print each stack's change set and change nothing.
    #[arg(long, conflicts_with_all = ["destroy", "template"])]
    pub plan: bool,
    /// Delete the stacks (the trigger and output buckets are never part of them).
    #[arg(long, conflicts_with = "template")]
    pub destroy: bool,
    /// Write the template(s) to FILE instead of deploying (`{region}` in FILE is replaced by
    /// each region; needed with several regions; `-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub template: Option<String>,
    /// The nbpipe binary to put in the image (default: this one; use a `--profile dist` build).
    #[arg(long, value_name = "PATH", env = "NBPIPE_IMAGE_BINARY")]
    pub binary: Option<PathBuf>,
    /// The base image (overrides image.base).
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// Do not print progress notes.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `nbpipe runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RunsCommand,
}

/// `nbpipe runs` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List the runs whose run.json is under PREFIX (newest first).
    List(RunsListArgs),
}

/// `nbpipe runs list`.
#[derive(Debug, Args)]
pub struct RunsListArgs {
    /// The output prefix (`s3://bucket/runs/`, a folder).
    pub prefix: String,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `nbpipe cat` (hidden).
#[derive(Debug, Args)]
pub struct CatArgs {
    /// The location to read (path, `s3://…`, `gs://…`, `az://…`, `http(s)://…`).
    pub location: String,
}

/// `nbpipe image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `nbpipe image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the project's image: base, kernel environment, nbpipe binary, project files.
    Build(ImageBuildArgs),
    /// Print a Dockerfile equivalent to `nbpipe image build`, for your own CI.
    Dockerfile(ImageDockerfileArgs),
}

/// `nbpipe image build`.
#[derive(Debug, Args)]
#[command(
    after_help = "The image is always tagged REPO:<hash of its inputs> (REPO = image.name, default nbpipe/<project>). The smoke check runs on the Docker engine DOCKER_HOST names, when one answers."
)]
pub struct ImageBuildArgs {
    /// The project folder (with nbpipe.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Another tag: a bare tag (in the image's repository) or a full reference.
    #[arg(long = "tag", short = 't', value_name = "REF", action = ArgAction::Append)]
    pub tags: Vec<String>,
    /// Push the image to its registry and print the pushed digest.
    #[arg(long)]
    pub push: bool,
    /// The base image (overrides image.base; default python:3.11-slim).
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// Target platform (only linux/amd64).
    #[arg(long, value_name = "PLATFORM", default_value = "linux/amd64")]
    pub platform: String,
    /// The nbpipe binary to put in the image (default: this one; use a `--profile dist` build).
    #[arg(long, value_name = "PATH", env = "NBPIPE_IMAGE_BINARY")]
    pub binary: Option<PathBuf>,
    /// Skip the smoke check (start the image, `nbpipe --version`, start its kernel).
    #[arg(long)]
    pub no_smoke: bool,
    /// Build the server's image: started as `nbpipe serve` of the project on port 8787
    /// (`NBPIPE_TOKEN` required), tagged `…-server`; append `--sqs-queue URL --executor ecs
    /// --database postgres://…` as its command.
    #[arg(long)]
    pub server: bool,
    /// Do not print progress notes.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `nbpipe image dockerfile`.
#[derive(Debug, Args)]
pub struct ImageDockerfileArgs {
    /// The project folder (with nbpipe.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

/// `nbpipe exec`: papermill's command line.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 success, 1 a cell raised, 2 bad input or usage, 3 kernel could not start, \
4 execution timeout, 5 output could not be stored (local copy kept), 130/143 stopped by SIGINT/SIGTERM, \
138 the kernel died."
)]
pub struct ExecArgs {
    /// Input notebook path or `-` for stdin.
    #[arg(value_name = "NOTEBOOK_PATH")]
    pub notebook_path: Option<String>,
    /// Output notebook path or `-` for stdout; `{name}` is filled from parameters.
    #[arg(value_name = "OUTPUT_PATH")]
    pub output_path: Option<String>,

    /// Print the parameters the notebook declares and exit.
    #[arg(long = "help-notebook")]
    pub help_notebook: bool,
    /// Parameters to pass to the parameters cell (type resolved like papermill: True/False/None, int, float, else string).
    #[arg(short = 'p', long = "parameters", num_args = 2, value_names = ["NAME", "VALUE"], action = ArgAction::Append, allow_hyphen_values = true)]
    pub parameters: Vec<String>,
    /// Parameters to be read as raw strings.
    #[arg(short = 'r', long = "parameters_raw", visible_alias = "parameters-raw", num_args = 2, value_names = ["NAME", "VALUE"], action = ArgAction::Append, allow_hyphen_values = true)]
    pub parameters_raw: Vec<String>,
    /// Path to a YAML file with parameters.
    #[arg(short = 'f', long = "parameters_file", visible_alias = "parameters-file", value_name = "FILE", action = ArgAction::Append)]
    pub parameters_file: Vec<PathBuf>,
    /// YAML string with parameters.
    #[arg(short = 'y', long = "parameters_yaml", visible_alias = "parameters-yaml", value_name = "YAML", action = ArgAction::Append)]
    pub parameters_yaml: Vec<String>,
    /// JSON object of parameters, read from FILE or `-` (stdin) as Python's `json.loads` reads
    /// it: ints of any size, `NaN`/`Infinity`; values keep their JSON types (the Python API uses it).
    #[arg(long = "parameters-json", value_name = "FILE", action = ArgAction::Append)]
    pub parameters_json: Vec<String>,
    /// Base64-encoded YAML string with parameters.
    #[arg(short = 'b', long = "parameters_base64", visible_alias = "parameters-base64", value_name = "B64", action = ArgAction::Append)]
    pub parameters_base64: Vec<String>,
    /// Insert the input path as the parameter `PAPERMILL_INPUT_PATH`.
    #[arg(long = "inject-input-path")]
    pub inject_input_path: bool,
    /// Insert the output path as the parameter `PAPERMILL_OUTPUT_PATH`.
    #[arg(long = "inject-output-path")]
    pub inject_output_path: bool,
    /// Insert both paths as parameters.
    #[arg(long = "inject-paths")]
    pub inject_paths: bool,
    /// Execution engine (only `nbclient`-compatible execution exists).
    #[arg(long = "engine", value_name = "NAME")]
    pub engine: Option<String>,
    /// Name of the kernel to run (ignores the notebook's kernelspec and the managed environment).
    #[arg(short = 'k', long = "kernel", value_name = "NAME")]
    pub kernel: Option<String>,
    /// Language for the injected parameters (defaults to the notebook's).
    #[arg(short = 'l', long = "language", value_name = "LANG")]
    pub language: Option<String>,
    /// Working directory to run the notebook in.
    #[arg(long = "cwd", value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Parameterize and write the notebook without executing it.
    #[arg(long = "prepare-only", overrides_with = "no_prepare_only")]
    pub prepare_only: bool,
    #[arg(long = "no-prepare-only", hide = true)]
    no_prepare_only: bool,
    /// Hide the input of code cells in the output (report mode).
    #[arg(long = "report-mode", overrides_with = "no_report_mode")]
    pub report_mode: bool,
    #[arg(long = "no-report-mode", hide = true)]
    no_report_mode: bool,
    /// Stream cell output to stderr as it is produced.
    #[arg(long = "log-output", overrides_with = "no_log_output")]
    pub log_output: bool,
    #[arg(long = "no-log-output", hide = true)]
    no_log_output: bool,
    /// Show a progress bar (on a terminal); default: on unless --log-output.
    #[arg(long = "progress-bar", overrides_with = "no_progress_bar")]
    pub progress_bar: bool,
    /// Hide the progress bar.
    #[arg(long = "no-progress-bar")]
    pub no_progress_bar: bool,
    /// Log level: NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL.
    #[arg(long = "log-level", value_name = "LEVEL", default_value = "INFO", ignore_case = true,
          value_parser = ["NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])]
    pub log_level: String,
    /// File to append the notebook's stdout stream to.
    #[arg(long = "stdout-file", value_name = "FILE")]
    pub stdout_file: Option<PathBuf>,
    /// File to append the notebook's stderr stream to.
    #[arg(long = "stderr-file", value_name = "FILE")]
    pub stderr_file: Option<PathBuf>,
    /// Seconds to wait for the kernel to start.
    #[arg(
        long = "start-timeout",
        visible_alias = "start_timeout",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub start_timeout: u64,
    /// Seconds a cell may run before it is interrupted and the run fails.
    #[arg(long = "execution-timeout", value_name = "SECONDS")]
    pub execution_timeout: Option<u64>,
    /// Save the output notebook as cells finish (throttled to keep total cost linear).
    #[arg(
        long = "request-save-on-cell-execute",
        overrides_with = "no_request_save_on_cell_execute"
    )]
    pub request_save_on_cell_execute: bool,
    /// Save only at the start and the end (and during long cells).
    #[arg(long = "no-request-save-on-cell-execute")]
    pub no_request_save_on_cell_execute: bool,
    /// Save during a long cell at most every this many seconds; 0 disables.
    #[arg(
        long = "autosave-cell-every",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub autosave_cell_every: u64,
    /// Start the kernel cold even when `nbpipe serve` or `nbpipe run` has a fork server
    /// running for the notebook's environment (nbpipe only; see docs/fork-server.md).
    #[arg(long = "no-fork-server")]
    pub no_fork_server: bool,
}

/// `nbpipe inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The notebook (`-` for stdin).
    pub notebook: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Kernel name to assume (defaults to the notebook's).
    #[arg(short = 'k', long = "kernel")]
    pub kernel: Option<String>,
    /// Language to assume (defaults to the notebook's).
    #[arg(short = 'l', long = "language")]
    pub language: Option<String>,
}

/// `nbpipe env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The folder whose requirements.txt defines the environment.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Python interpreter to build with (name or path; default python3).
    #[arg(long)]
    pub python: Option<String>,
    /// Requirements file (default DIR/requirements.txt).
    #[arg(short = 'r', long)]
    pub requirements: Option<PathBuf>,
    /// Rebuild even if an environment with the same hash exists.
    #[arg(long)]
    pub force: bool,
    /// Do not stream the installer's output.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `nbpipe kernels`.
#[derive(Debug, Args)]
pub struct KernelsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `nbpipe run`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 every step succeeded, 1 a step failed, 2 bad project or usage, \
130/143 stopped by SIGINT/SIGTERM."
)]
pub struct RunArgs {
    /// The project folder (with nbpipe.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Parameter for every step (type resolved like papermill).
    #[arg(short = 'p', long = "parameters", num_args = 2, value_names = ["NAME", "VALUE"], action = ArgAction::Append, allow_hyphen_values = true)]
    pub parameters: Vec<String>,
    /// Parameter kept as a string.
    #[arg(short = 'r', long = "parameters_raw", visible_alias = "parameters-raw", num_args = 2, value_names = ["NAME", "VALUE"], action = ArgAction::Append, allow_hyphen_values = true)]
    pub parameters_raw: Vec<String>,
    /// YAML file of parameters.
    #[arg(short = 'f', long = "parameters_file", visible_alias = "parameters-file", value_name = "FILE", action = ArgAction::Append)]
    pub parameters_file: Vec<PathBuf>,
    /// YAML string of parameters.
    #[arg(short = 'y', long = "parameters_yaml", visible_alias = "parameters-yaml", value_name = "YAML", action = ArgAction::Append)]
    pub parameters_yaml: Vec<String>,
    /// JSON object of parameters from FILE or `-` (stdin), typed as Python's `json.loads` reads it.
    #[arg(long = "parameters-json", value_name = "FILE", action = ArgAction::Append)]
    pub parameters_json: Vec<String>,
    /// Output prefix (directory or s3://, gs://, az:// prefix); `{run_id}` is filled in.
    #[arg(long, value_name = "URI", env = "NBPIPE_OUTPUT")]
    pub output: Option<String>,
    /// Run id (default: a timestamp plus a random suffix).
    #[arg(long = "run-id", value_name = "ID", env = "NBPIPE_RUN_ID")]
    pub run_id: Option<String>,
    /// Parameters for every step as JSON text (what a container passes in `NBPIPE_PARAMETERS`;
    /// every other source overrides it).
    #[arg(
        long = "parameters-json-text",
        value_name = "JSON",
        env = "NBPIPE_PARAMETERS",
        hide = true
    )]
    pub parameters_env: Option<String>,
    /// Steps to run at once.
    #[arg(short = 'j', long, default_value_t = 1)]
    pub jobs: usize,
    /// Reuse outputs of steps whose notebook, parameters, environment and inputs are unchanged.
    #[arg(long)]
    pub cache: bool,
    /// Run as if this object had triggered the run (sets trigger_* context parameters).
    #[arg(long, value_name = "URI", env = "NBPIPE_TRIGGER_URI")]
    pub trigger: Option<String>,
    /// The triggering object as JSON (bucket, key, uri, etag, version, size, event_time,
    /// region): what a container executor passes in `NBPIPE_TRIGGER`; wins over `--trigger`.
    #[arg(
        long = "trigger-json",
        value_name = "JSON",
        env = "NBPIPE_TRIGGER",
        hide = true
    )]
    pub trigger_json: Option<String>,
    /// Do not stream environment-building output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the run's manifest (`run.json`) on stdout instead of the closing table.
    #[arg(long)]
    pub json: bool,
    /// Start every kernel cold instead of forking it from the environment's zygote.
    #[arg(long = "no-fork-server")]
    pub no_fork_server: bool,
    /// Claim the trigger before running (what a direct-mode deployment sets): a marker under
    /// the output prefix, created only if absent; a trigger already claimed exits 0 at once.
    #[arg(long, env = "NBPIPE_CLAIM", hide = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub claim: bool,
    /// The project's environment (an `environments:` entry) to run with (default: the one
    /// whose branch is checked out, else the top-level settings).
    #[arg(long = "env", value_name = "NAME", env = "NBPIPE_ENV")]
    pub env: Option<String>,
    /// The commit the project's files are at, recorded in `run.json` when the folder has no
    /// `.git` (what container executors pass in `NBPIPE_GIT_COMMIT`).
    #[arg(
        long = "git-commit",
        value_name = "SHA",
        env = "NBPIPE_GIT_COMMIT",
        hide = true
    )]
    pub git_commit: Option<String>,
    /// The branch that commit was on (`NBPIPE_GIT_BRANCH`).
    #[arg(
        long = "git-branch",
        value_name = "NAME",
        env = "NBPIPE_GIT_BRANCH",
        hide = true
    )]
    pub git_branch: Option<String>,
    /// Do not send the project's `notify:` messages after the run (also `NBPIPE_NOTIFY=off`;
    /// containers started by `nbpipe serve` get `NBPIPE_NOTIFY=serve`: the server sends them).
    #[arg(long = "no-notify")]
    pub no_notify: bool,
}

/// `nbpipe render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The notebook (`-` for stdin).
    pub notebook: String,
    /// Where to write the HTML (default: the notebook's name with .html; `-` for stdout).
    pub output: Option<String>,
}

/// `nbpipe serve`.
#[derive(Debug, Args)]
#[command(
    after_help = "A file dropped at INBOX/<bucket>/<key> triggers every project whose S3 trigger \
matches s3://<bucket>/<key>. The first SIGINT/SIGTERM drains (no new runs; running ones get \
--drain-timeout to finish); a second exits at once."
)]
pub struct ServeArgs {
    /// Project folders (each with an nbpipe.yaml).
    #[arg(required_unless_present = "git")]
    pub projects: Vec<PathBuf>,
    /// Serve the projects' settings of this environment (an `environments:` entry;
    /// repeatable: each environment is served as `name@environment`). Default: the one whose
    /// branch each folder has checked out, else the top-level settings; with `--git`, every
    /// environment the default branch's nbpipe.yaml declares.
    #[arg(
        long = "env",
        value_name = "NAME",
        env = "NBPIPE_ENV",
        value_delimiter = ','
    )]
    pub envs: Vec<String>,
    /// Follow this git repository (URL or path; repeatable, one project per repository):
    /// each environment's branch is served, and every new commit is checked out, validated
    /// and its environment built before it replaces the running revision (runs in flight
    /// finish on theirs).
    #[arg(long, value_name = "URL")]
    pub git: Vec<String>,
    /// How often the followed repository is fetched (a push webhook makes it sooner).
    #[arg(
        long = "git-poll",
        value_name = "SECS",
        default_value_t = 60,
        requires = "git"
    )]
    pub git_poll: u64,
    /// The secret `POST /hooks/git` pushes are signed with (GitHub, Gitea: HMAC-SHA256;
    /// GitLab: the token). Without it the hook is refused and the repository is polled only.
    #[arg(
        long = "git-webhook-secret",
        value_name = "SECRET",
        env = "NBPIPE_GIT_WEBHOOK_SECRET",
        hide_env_values = true,
        requires = "git"
    )]
    pub git_webhook_secret: Option<String>,
    /// Where the repository's mirror, revision folders and relative outputs live (default:
    /// `.nbpipe/git/<hash of the URL>` in the current folder); with several `--git`, each
    /// repository's folder is `DIR/<hash of its URL>`.
    #[arg(long = "git-workdir", value_name = "DIR", requires = "git")]
    pub git_workdir: Option<PathBuf>,
    /// Address of the HTTP API and UI (loopback unless told otherwise; a public address needs a token).
    #[arg(long, default_value = "127.0.0.1:8787", env = "NBPIPE_LISTEN")]
    pub listen: std::net::SocketAddr,
    /// A host name the server may be reached by (repeatable), e.g. the name of a reverse proxy
    /// in front of it. IP addresses and `localhost` are always accepted; a request naming any
    /// other host is refused (421), which keeps DNS-rebinding pages out.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// Run database: a SQLite path or `sqlite://…`, or `postgres://…` (default: FIRST_PROJECT/.nbpipe/queue.sqlite).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Runs this server executes at once.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Runs executing at once across every server sharing the database (default: no limit
    /// beyond each server's --workers; 0 pauses every server).
    #[arg(long = "max-running", value_name = "N")]
    pub max_running: Option<usize>,
    /// Runs of one project executing at once (across every server sharing the database).
    #[arg(long = "per-project", default_value_t = 1)]
    pub per_project: usize,
    /// Bearer token for state-changing requests and hooks (also NBPIPE_TOKEN).
    #[arg(long, env = "NBPIPE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Local inbox folder (default: FIRST_PROJECT/.nbpipe/inbox).
    #[arg(long, value_name = "DIR")]
    pub inbox: Option<PathBuf>,
    /// Do not watch a local inbox.
    #[arg(long = "no-inbox")]
    pub no_inbox: bool,
    /// Poll the S3 trigger prefixes every SECONDS (uses the AWS_* configuration).
    #[arg(long, value_name = "SECONDS")]
    pub poll: Option<u64>,
    /// Long-poll this SQS queue for the buckets' notifications (repeatable; AWS_* configuration).
    #[arg(long = "sqs-queue", value_name = "URL", action = ArgAction::Append)]
    pub sqs_queues: Vec<String>,
    /// Seconds running runs get to finish on shutdown before they are stopped.
    #[arg(long = "drain-timeout", default_value_t = 300)]
    pub drain_timeout: u64,
    /// Seconds a worker's claim on a run lasts without a heartbeat (crash recovery delay).
    #[arg(long = "lease", default_value_t = 30)]
    pub lease: u64,
    /// Pre-started kernels kept ready per project step, so a triggered run skips the cold
    /// start (each serves one run, then is discarded); 0 turns the pool off.
    #[arg(long = "warm-kernels", default_value_t = 1)]
    pub warm_kernels: usize,
    /// Start every kernel cold instead of forking Python kernels of managed environments
    /// from a zygote per environment.
    #[arg(long = "no-fork-server")]
    pub no_fork_server: bool,
    /// Where every project's runs execute, whatever its `executor:` says: `local` (this
    /// process) or `docker` (a container per attempt from the project's image, on the engine
    /// `DOCKER_HOST` names).
    #[arg(long = "executor", value_name = "NAME", value_parser = ["local", "docker"])]
    pub executor: Option<String>,
    /// The nbpipe binary put in projects' images for the Docker executor (default: this one;
    /// use a `dist` build: images carry no debug info).
    #[arg(
        long = "image-binary",
        value_name = "PATH",
        env = "NBPIPE_IMAGE_BINARY"
    )]
    pub image_binary: Option<PathBuf>,
    /// The server's address as people reach it (e.g. `https://nbpipe.example.org` behind a
    /// proxy), for report links in notifications: `URL/runs/ID` (default: the listen address).
    #[arg(long = "public-url", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
}

/// `--public-url`: an `http(s)://` URL, kept without its trailing `/`.
fn parse_public_url(s: &str) -> Result<String, String> {
    if (s.starts_with("http://") || s.starts_with("https://")) && !s.contains(char::is_whitespace) {
        Ok(s.trim_end_matches('/').to_string())
    } else {
        Err(format!("`{s}` is not an http:// or https:// URL"))
    }
}
