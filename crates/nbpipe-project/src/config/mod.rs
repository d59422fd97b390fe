//! The project file, `nbpipe.yaml`: reading, validating and describing a
//! project's pipeline of notebooks.
//!
//! This module owns the file's schema and every check that can be made
//! without running anything: keys, types, durations, notebook paths, step ids,
//! the `needs` graph, trigger syntax. It must not run notebooks, build
//! environments or touch the network; the runner and the trigger service take
//! a validated [`Project`] from here.
//!
//! Every problem in the file is a [`ConfigError::Invalid`] naming the file,
//! line, column and key path, e.g.
//! ``nbpipe.yaml:12:5: unknown key `timout` in `notebooks[1]` (did you mean `timeout`?)``.

mod ctx;
mod deploy;
mod environments;
mod error;
mod executor;
mod graph;
mod image;
mod notify;
mod regions;
mod schema;
mod secrets;
mod serve;
mod steps;
mod trigger;
mod yaml;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_deploy;
#[cfg(test)]
mod tests_environments;
#[cfg(test)]
mod tests_executor;
#[cfg(test)]
mod tests_image;
#[cfg(test)]
mod tests_notify;
#[cfg(test)]
mod tests_serve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nbpipe_params::Parameters;

pub use deploy::{DeployConfig, DeployMode, TriggerSource, DEFAULT_CPU, DEFAULT_MEMORY};
pub use environments::{checked_out_branch, Environment, Select, MERGED};
pub use error::{ConfigError, ErrorKind, Invalid};
pub use executor::{memory_bytes, EXECUTORS};
pub use notify::{
    EmailTarget, NotifyEvent, NotifyKind, NotifyTarget, SmtpConfig, DEFAULT_RATE_LIMIT,
};
pub use regions::{s3_bucket_of, valid_region, RegionConfig, S3Location};
pub use secrets::{split_arn, AwsArn, Secret, SecretSource};

/// The project file names [`load`] looks for, in order.
pub const FILE_NAMES: [&str; 2] = ["nbpipe.yaml", "nbpipe.yml"];

/// The default `output` template.
pub const DEFAULT_OUTPUT: &str = "./runs/{run_id}/";

/// A validated project: where it is, its defaults and its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// The project directory (as given to [`load`] / [`parse`]).
    pub dir: PathBuf,
    /// The project file, `dir/nbpipe.yaml`.
    pub file: PathBuf,
    /// `name:`, default the directory's name.
    pub name: String,
    /// `parameters:`, the defaults every step gets (a step's own
    /// `parameters` override them; see [`Project::step_parameters`]).
    pub parameters: Parameters,
    /// `output:`, where runs are written: a URI template such as
    /// `s3://bucket/runs/{run_id}/`. Local paths are resolved against
    /// [`Project::dir`] (see [`resolve_location`]); default
    /// [`DEFAULT_OUTPUT`], i.e. `DIR/runs/{run_id}/`. `{name}`-style
    /// placeholders are left for the runner to fill.
    pub output: String,
    /// `env:`, the kernel environment.
    pub env: EnvConfig,
    /// The `notebooks:` items, in file order.
    pub steps: Vec<Step>,
    /// Triggers for the service, in file order: the short form's S3 trigger
    /// first, then `trigger:` entries.
    pub triggers: Vec<Trigger>,
    /// `jobs:`, how many steps may run at once (`None`: the runner decides).
    pub jobs: Option<usize>,
    /// `serve:`, the run policy `nbpipe serve` applies (all `None` when absent).
    pub serve: ServePolicy,
    /// `image:`, how `nbpipe image build` packages the project (all empty when absent).
    pub image: ImageConfig,
    /// `executor:`, where `nbpipe serve` runs the project's runs (default local).
    pub executor: ExecutorConfig,
    /// `deploy:`, how `nbpipe deploy aws` sets the project up (defaults when absent).
    pub deploy: DeployConfig,
    /// `regions:`, the AWS regions the project is deployed to, in file order.
    pub regions: Vec<RegionConfig>,
    /// `secrets:`, environment variables whose values the platform injects, in file order.
    pub secrets: Vec<Secret>,
    /// `notify:`, who is told about finished runs, in file order.
    pub notify: Vec<NotifyTarget>,
    /// The environment (`environments:` entry) these settings are for, `None` for the
    /// top-level settings.
    pub environment: Option<String>,
    /// `environments:`, every environment the file declares, in file order.
    pub environments: Vec<Environment>,
}

/// `executor:`, where `nbpipe serve` runs a run attempt.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ExecutorConfig {
    /// In the server's own process, on its kernels (the default).
    #[default]
    Local,
    /// One container per attempt, from the project's image, on a Docker engine.
    Docker(DockerConfig),
    /// One ECS task per attempt (Fargate by default).
    Ecs(EcsConfig),
}

impl ExecutorConfig {
    /// The executor's name, as written in `nbpipe.yaml`.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecutorConfig::Local => "local",
            ExecutorConfig::Docker(_) => "docker",
            ExecutorConfig::Ecs(_) => "ecs",
        }
    }
}

/// `executor: {docker: ...}`: the containers' settings. Empty fields leave the engine's
/// defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DockerConfig {
    /// `cpus`, a CPU quota (`1.5`).
    pub cpus: Option<f64>,
    /// `memory`, the memory limit in bytes (`512m`, `2g`); swap is not added to it.
    pub memory: Option<u64>,
    /// `network`, the container's network (`host`, `none`, a network's name).
    pub network: Option<String>,
    /// `env`, variables added to the container's environment.
    pub env: std::collections::BTreeMap<String, String>,
    /// `volumes`, folders mounted into the container.
    pub volumes: Vec<Volume>,
    /// `stop_grace`, how long a cancelled container has between SIGTERM and SIGKILL
    /// (default 10 s).
    pub stop_grace: Option<Duration>,
}

/// `executor: {ecs: ...}`: where and how the project's tasks run on ECS.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EcsConfig {
    /// `cluster` (default `default`).
    pub cluster: String,
    /// `region` (default: the server's `AWS_REGION`).
    pub region: Option<String>,
    /// `launch_type` (`FARGATE`, `EC2`, `EXTERNAL`); default `FARGATE` unless a capacity
    /// provider strategy is given.
    pub launch_type: Option<String>,
    /// `capacity_provider_strategy` (e.g. `FARGATE_SPOT`).
    pub capacity_provider_strategy: Vec<CapacityProvider>,
    /// `cpu`, task CPU units (1024 = 1 vCPU; default 1024).
    pub cpu: Option<u32>,
    /// `memory`, task memory in MiB (default 2048).
    pub memory: Option<u32>,
    /// `subnets` of the task's network interface (required).
    pub subnets: Vec<String>,
    /// `security_groups` of the task's network interface.
    pub security_groups: Vec<String>,
    /// `assign_public_ip` (needed in public subnets without a NAT to pull images).
    pub assign_public_ip: bool,
    /// `task_role`, the role the notebooks run with (ARN).
    pub task_role: Option<String>,
    /// `execution_role`, the role ECS pulls the image and writes logs with (ARN).
    pub execution_role: Option<String>,
    /// `log_group` for the container's log (default `/nbpipe/<project>`).
    pub log_group: Option<String>,
    /// `env`, variables added to the container's environment.
    pub env: std::collections::BTreeMap<String, String>,
    /// `image`, a fixed image reference to run (default: the server builds the project's
    /// image and pushes it to `image.name`).
    pub image: Option<String>,
    /// `stop_timeout`, between SIGTERM and SIGKILL when a task is stopped (ECS default 30 s,
    /// at most 120 s).
    pub stop_timeout: Option<Duration>,
}

/// One entry of `executor.ecs.capacity_provider_strategy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityProvider {
    /// The capacity provider (`FARGATE`, `FARGATE_SPOT`, or a cluster's own).
    pub provider: String,
    /// Its relative weight.
    pub weight: Option<i32>,
    /// Tasks placed on it first.
    pub base: Option<i32>,
}

/// A folder of the host mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The host's folder (relative paths in the file are resolved against the project).
    pub host: PathBuf,
    /// Where it appears in the container (absolute).
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// `image:`, the project's OCI image. Every field is empty when not written; `nbpipe image
/// build` then applies its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// `name`, the repository the image is tagged in (`registry:5000/team/project`).
    /// Default: `nbpipe/<project name>`.
    pub name: Option<String>,
    /// `base`, the image with Python the project's layers go on. Default: the official
    /// `python:3.11-slim`.
    pub base: Option<String>,
    /// `apt`, Debian packages to install in the image (`name` or `name=version`).
    pub apt: Vec<String>,
}

/// `serve:`, how `nbpipe serve` runs the project: concurrency, run-level retries and their
/// backoff, and a time limit per run. `nbpipe run` ignores it. Every field is `None` when
/// not written; the service then applies its defaults (see each field).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServePolicy {
    /// `concurrency`, the most runs of this project running at once across every server
    /// sharing the run database (at least 1). Default: `nbpipe serve --per-project`.
    pub concurrency: Option<usize>,
    /// `retries`, how many times a run that failed or was interrupted (its server died) is
    /// run again, from the start. Default: a failed run is not retried (its steps already
    /// had their own `retries`) and an interrupted one gets as many retries as the
    /// project's largest step `retries`.
    pub retries: Option<u32>,
    /// `retry_backoff`, the delay before the first retry; each further retry waits twice
    /// as long as the previous one. Default 10 s.
    pub retry_backoff: Option<Duration>,
    /// `retry_backoff_max`, the longest delay between two attempts (at least
    /// `retry_backoff`). Default 10 min, or `retry_backoff` when that is longer.
    pub retry_backoff_max: Option<Duration>,
    /// `timeout`, the longest one attempt of a run may take; a run exceeding it is stopped
    /// (running cells interrupted, notebooks saved) and the attempt fails. Default: none.
    pub timeout: Option<Duration>,
    /// `interrupted_retries`, how many times a run interrupted by the infrastructure (its
    /// server was killed or lost its lease mid-run) is run again, on top of and separately
    /// from `retries`: an interruption is not the notebook's fault. Default 1.
    pub interrupted_retries: Option<u32>,
}

/// `env:`, the project's managed kernel environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvConfig {
    /// `env.requirements`, resolved against the project directory; default
    /// `DIR/requirements.txt` when that file exists.
    pub requirements: Option<PathBuf>,
    /// `env.python`, the interpreter to build the environment with.
    pub python: Option<String>,
    /// `env.fork_server`: fork the environment's Python kernels from a zygote that has
    /// already imported ipykernel (see `nbpipe_kernel::fork`). Default `true`.
    pub fork_server: bool,
    /// `env.preload`: modules the zygote imports once for every kernel (e.g. `pandas`).
    pub preload: Vec<String>,
}

impl Default for EnvConfig {
    fn default() -> Self {
        EnvConfig {
            requirements: None,
            python: None,
            fork_server: true,
            preload: Vec::new(),
        }
    }
}

/// One `notebooks:` item.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `id:`, default the notebook's file stem (characters outside
    /// `[A-Za-z0-9_.-]` replaced with `_`); unique in the project.
    pub id: String,
    /// The notebook, relative to the project directory (normalized: no `.`
    /// components; never absolute, never `..`).
    pub path: PathBuf,
    /// The step's own `parameters:` (without the project defaults).
    pub parameters: Parameters,
    /// The ids of the steps this one waits for, deduplicated, in written
    /// order. When the file uses `needs:` nowhere ([`Step::explicit_needs`]
    /// is false) this is the previous step's id (empty for the first step),
    /// so steps run in list order.
    pub needs: Vec<String>,
    /// `kernel:`, a kernelspec name overriding the project environment.
    pub kernel: Option<String>,
    /// `timeout:`, the longest the whole notebook may run.
    pub timeout: Option<Duration>,
    /// `cell_timeout:`, the longest one cell may run.
    pub cell_timeout: Option<Duration>,
    /// `retries:`, how many times a failed run is retried (default 0).
    pub retries: u32,
    /// `inputs:`, URIs (or paths relative to the project directory) whose
    /// content versions feed the step's cache key, as written.
    pub inputs: Vec<String>,
    /// True when the file uses `needs:` on any step: the steps form a DAG
    /// and a step without `needs` starts at once. False: list order.
    pub explicit_needs: bool,
}

/// What starts a project run in the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An object created in `bucket` under `prefix` (and ending with
    /// `suffix`, when set).
    S3 {
        /// The bucket name.
        bucket: String,
        /// The key prefix (`""`: the whole bucket).
        prefix: String,
        /// The key suffix, e.g. `.csv`.
        suffix: Option<String>,
    },
    /// A cron schedule.
    Schedule {
        /// The expression, validated with `croner`'s default parser: 5
        /// fields (`min hour dom month dow`), or 6 with leading seconds, or
        /// 7 with trailing year; `@daily`-style nicknames.
        cron: String,
        /// An IANA timezone name (`Europe/Paris`); `None` means UTC.
        timezone: Option<String>,
    },
}

/// Load the project in `dir` from `dir/nbpipe.yaml` (or `dir/nbpipe.yml`
/// when there is no `nbpipe.yaml`).
pub fn load(dir: &Path) -> Result<Project, ConfigError> {
    load_env(dir, Select::CheckedOut)
}

/// [`load`] the settings of one environment (see [`Select`]). Every declared environment is
/// validated, whichever is selected.
pub fn load_env(dir: &Path, select: Select<'_>) -> Result<Project, ConfigError> {
    for name in FILE_NAMES {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => return parse_env(dir, name, &text, select),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
    }
    Err(ConfigError::NotFound {
        dir: dir.to_path_buf(),
    })
}

/// The `name` the project file in `dir` sets, read with the project file's own YAML parser
/// but not validated: the name of a project that may not load (e.g. to say which project a
/// refused revision was). `None` when there is no file, it is not YAML or sets no name.
pub fn declared_name(dir: &Path) -> Option<String> {
    let text = FILE_NAMES
        .iter()
        .find_map(|name| std::fs::read_to_string(dir.join(name)).ok())?;
    match yaml::parse(&text).ok()??.kind {
        yaml::Kind::Map(map) => map
            .get("name")?
            .scalar()
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

/// Parse and validate the project file `file_name` of the project in `dir`,
/// whose content is `text`. Notebook and requirements paths are checked
/// against the file system.
pub fn parse(dir: &Path, file_name: &str, text: &str) -> Result<Project, ConfigError> {
    schema::project(dir, file_name, text, Select::CheckedOut)
}

/// [`parse`] the settings of one environment (see [`Select`]).
pub fn parse_env(
    dir: &Path,
    file_name: &str,
    text: &str,
    select: Select<'_>,
) -> Result<Project, ConfigError> {
    schema::project(dir, file_name, text, select)
}

/// Resolve a location written in the project file: a URI with a scheme
/// (`s3://...`, `file:///...`) or an absolute path is kept as is; a relative
/// path is joined to `dir` (a leading `./` dropped; a trailing `/` kept).
pub fn resolve_location(dir: &Path, location: &str) -> String {
    if has_scheme(location) || Path::new(location).is_absolute() {
        return location.to_owned();
    }
    let mut rest = location;
    while let Some(r) = rest.strip_prefix("./") {
        rest = r.trim_start_matches('/');
    }
    if rest.is_empty() || rest == "." {
        let d = dir.to_string_lossy();
        return if location.ends_with('/') && !d.ends_with('/') {
            format!("{d}/")
        } else {
            d.into_owned()
        };
    }
    if dir.as_os_str().is_empty() {
        return rest.to_owned();
    }
    let d = dir.to_string_lossy();
    if d.ends_with('/') {
        format!("{d}{rest}")
    } else {
        format!("{d}/{rest}")
    }
}

/// `scheme://` with an RFC 3986 scheme.
pub(crate) fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl Project {
    /// The project's identity in a server: its name, with its environment after an `@`
    /// when it has one (`sales@staging`), so that one server can serve several environments
    /// of a project, each with its own runs, limits and deduplication.
    pub fn key(&self) -> String {
        match &self.environment {
            Some(env) => format!("{}@{env}", self.name),
            None => self.name.clone(),
        }
    }

    /// The index of the step with this id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// The notebook of step `step`, joined to the project directory.
    pub fn notebook_path(&self, step: usize) -> PathBuf {
        self.dir.join(&self.steps[step].path)
    }

    /// The parameters step `step` runs with: the project's `parameters`
    /// updated with the step's own.
    pub fn step_parameters(&self, step: usize) -> Parameters {
        let mut p = self.parameters.clone();
        p.update(self.steps[step].parameters.clone());
        p
    }

    /// The steps `step` waits for, in its `needs` order.
    pub fn dependencies(&self, step: usize) -> Vec<usize> {
        self.steps[step]
            .needs
            .iter()
            .filter_map(|id| self.step_index(id))
            .collect()
    }

    /// The steps that wait for `step`, in file order.
    pub fn dependents(&self, step: usize) -> Vec<usize> {
        let id = &self.steps[step].id;
        (0..self.steps.len())
            .filter(|&i| self.steps[i].needs.iter().any(|n| n == id))
            .collect()
    }

    /// The steps in topological layers: every step of a layer depends only on
    /// steps of earlier layers, and each layer is in file order. Steps in one
    /// layer may run in parallel. In list order (no `needs:` in the file)
    /// every layer holds one step.
    pub fn order(&self) -> Vec<Vec<usize>> {
        let deps: Vec<Vec<usize>> = (0..self.steps.len())
            .map(|i| self.dependencies(i))
            .collect();
        graph::layers(&deps)
    }
}
