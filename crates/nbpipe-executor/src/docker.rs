//! The Docker executor: one container per run attempt, from the project's image, on the
//! engine `DOCKER_HOST` names (a local `dockerd`, a remote one, or podman's
//! Docker-compatible socket), spoken to over its API.
//!
//! - **Image.** Before a launch the project's image is built from its current files
//!   (`nbpipe-image`: cached layers, so an unchanged project costs a few milliseconds) and
//!   given to the engine: pushed to its registry and pulled by digest when `image.name`
//!   names one, else loaded. The attempt runs that exact image; its digest is in the handle.
//! - **Launch.** The container is named after the attempt ([`container_name`]) and
//!   labelled `nbpipe.run_id`, `nbpipe.project`, `nbpipe.attempt`: launching an attempt
//!   whose container exists returns it instead of starting a second. The run's context
//!   goes in as the image's contract says (`NBPIPE_RUN_ID`, `NBPIPE_OUTPUT`,
//!   `NBPIPE_PARAMETERS`, `NBPIPE_TRIGGER`, `NBPIPE_TRIGGER_URI`), with the server's
//!   object-store settings (`AWS_*`, …) and the project's `executor.docker.env`. A local
//!   output folder (and a local trigger file) is mounted at the same path. The project's
//!   `secrets:` are resolved here, by the server, and go in as the container's environment
//!   (`NAME=value`, with `NBPIPE_SECRETS_IN_ENV` listing the names so the container's run
//!   uses them as they are); the container's run masks them in what it records, and the
//!   log lines this executor keeps or returns are masked too (while this server process
//!   knows the values: after a restart, lines of a reattached container are not).
//! - **Follow.** The container's state is polled; progress is `run.json` in the output
//!   prefix. At the end the last log lines are kept as `container.log` next to `run.json`,
//!   the container is removed, and a container that ended without a final `run.json` is an
//!   [`Outcome::Lost`] naming its exit code, whether it ran out of memory, and its last
//!   log lines.
//! - **Cancel.** SIGTERM (the run stops its cells and saves its notebooks), SIGKILL after
//!   `executor.docker.stop_grace`.
//! - **Reattach.** A handle designates a live attempt while its container exists.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nbpipe_exec::Stop;
use nbpipe_image::bollard::models::{ContainerCreateBody, HostConfig};
use nbpipe_image::bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptions,
};
use nbpipe_image::bollard::Docker;
use nbpipe_project::run::manifest::{status, RunManifest};
use nbpipe_project::run::RunObserver;
use nbpipe_project::{DockerConfig, ExecutorConfig, Project};
use nbpipe_store::Location;

use crate::{Attempt, Executor, ExecutorError, Handle, Outcome};

/// Log lines kept in `container.log` and quoted in a lost attempt's error.
const LOG_LINES: usize = 1000;
/// Log lines quoted in a lost attempt's error.
const ERROR_LOG_LINES: usize = 20;
/// How often a running container's state and `run.json` are read.
const POLL: Duration = Duration::from_millis(500);

/// Settings of the Docker executor.
#[derive(Clone, Default)]
pub struct DockerOptions {
    /// The nbpipe binary put in images (default: the running one; it must run on the
    /// image's Linux, so a release or `dist` build).
    pub binary: Option<PathBuf>,
    /// Overrides every project's `executor.docker` settings' absence: used when `nbpipe
    /// serve --executor docker` sends projects that say nothing to containers.
    pub defaults: DockerConfig,
}

/// Runs attempts as containers.
#[derive(Clone)]
pub struct DockerExecutor {
    opts: DockerOptions,
    docker: Arc<tokio::sync::OnceCell<Docker>>,
    /// One image build at a time per project folder.
    builds: crate::images::ImageBuilds,
    /// Container name → the masker of its run's secrets, while it is followed.
    maskers: Arc<std::sync::Mutex<HashMap<String, nbpipe_exec::Masker>>>,
}

/// The container of attempt `attempt` of run `run_id`: `nbpipe-<run id>-<attempt>`, with
/// characters Docker does not allow in names replaced by `-`.
pub fn container_name(run_id: &str, attempt: u32) -> String {
    let clean = crate::sanitize(run_id, "_.-");
    format!("nbpipe-{clean}-{attempt}")
}

fn engine_err(e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Engine(format!("the Docker engine: {e}"))
}

fn is_not_found(e: &nbpipe_image::bollard::errors::Error) -> bool {
    matches!(
        e,
        nbpipe_image::bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerExecutor {
    /// A Docker executor; the engine is reached on first use.
    pub fn new(opts: DockerOptions) -> DockerExecutor {
        let builds = crate::images::ImageBuilds::new(opts.binary.clone());
        DockerExecutor {
            opts,
            docker: Arc::new(tokio::sync::OnceCell::new()),
            builds,
            maskers: Arc::default(),
        }
    }

    /// The masker of container `name`'s secrets (masks nothing when it has none or this
    /// process did not launch it).
    fn masker(&self, name: &str) -> nbpipe_exec::Masker {
        self.maskers
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
            .unwrap_or_default()
    }

    async fn docker(&self) -> Result<&Docker, ExecutorError> {
        self.docker
            .get_or_try_init(|| async { nbpipe_image::engine().await.map_err(engine_err) })
            .await
    }

    /// The project's container settings: its own, else the executor's defaults.
    fn settings(&self, project: &Project) -> DockerConfig {
        match &project.executor {
            ExecutorConfig::Docker(d) => d.clone(),
            _ => self.opts.defaults.clone(),
        }
    }

    /// Build the project's image from its current files and give it to the engine; the
    /// image id to run and the image's `repository@digest`.
    async fn image(&self, project: &Project) -> Result<(String, String), ExecutorError> {
        let built = self.builds.build(project).await?;
        let docker = self.docker().await?;
        let id = nbpipe_image::provide(docker, &built.image, &built.store)
            .await
            .map_err(|e| match e {
                nbpipe_image::ImageError::Engine(m) => {
                    ExecutorError::Engine(format!("the Docker engine: {m}"))
                }
                other => ExecutorError::Image(other.to_string()),
            })?;
        Ok((id, built.pinned(&built.image.digest)))
    }

    /// The last `lines` lines the container printed.
    async fn tail(&self, name: &str, lines: usize) -> Result<Vec<String>, ExecutorError> {
        let docker = self.docker().await?;
        let mut s = docker.logs(
            name,
            Some(
                LogsOptionsBuilder::default()
                    .stdout(true)
                    .stderr(true)
                    .tail(&lines.to_string())
                    .build(),
            ),
        );
        let mut text = String::new();
        while let Some(chunk) = s.next().await {
            match chunk {
                Ok(c) => text.push_str(&c.to_string()),
                Err(e) if is_not_found(&e) => return Err(ExecutorError::Engine(e.to_string())),
                Err(e) => return Err(engine_err(e)),
            }
        }
        Ok(text.lines().map(str::to_string).collect())
    }
}

/// The output prefix of a run: the template with `{run_id}` filled in.
pub(crate) fn output_of(attempt: &Attempt, run_id: &str) -> Result<Location, ExecutorError> {
    let template = attempt
        .options
        .output
        .clone()
        .unwrap_or_else(|| attempt.project.output.clone());
    let filled = template.replace("{run_id}", run_id);
    let loc = Location::parse(&filled).map_err(|e| ExecutorError::Image(e.to_string()))?;
    if let Location::Local(p) = &loc {
        std::fs::create_dir_all(p)
            .map_err(|e| ExecutorError::Image(format!("cannot create `{}`: {e}", p.display())))?;
    }
    Ok(loc)
}

/// The container of `attempt` (image `image`), as the engine's create call takes it.
pub(crate) fn container_spec(
    attempt: &Attempt,
    settings: &DockerConfig,
    run_id: &str,
    output: &Location,
    image: &str,
    digest: &str,
) -> ContainerCreateBody {
    let o = &attempt.options;
    let mut env: Vec<String> = nbpipe_store::StoreConfig::from_env()
        .vars()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(settings.env.iter().map(|(k, v)| format!("{k}={v}")));
    env.push(format!("NBPIPE_RUN_ID={run_id}"));
    env.push(format!("NBPIPE_OUTPUT={output}"));
    env.push(format!("NBPIPE_PARAMETERS={}", o.parameters.to_json()));
    env.extend(
        crate::revision_env(&attempt.project, o)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    // The server announces the run (durably, with recoveries): `nbpipe run` must not.
    env.push("NBPIPE_NOTIFY=serve".to_string());
    let mut binds = Vec::new();
    if let Location::Local(p) = output {
        binds.push(format!("{}:{}", p.display(), p.display()));
    }
    if let Some(t) = &o.trigger {
        env.push(format!("NBPIPE_TRIGGER_URI={}", t.uri));
        env.push(format!("NBPIPE_TRIGGER={}", t.to_json()));
        if let Some(path) = t
            .path
            .as_deref()
            .filter(|p| std::path::Path::new(p).exists())
        {
            binds.push(format!("{path}:{path}:ro"));
        }
    }
    for v in &settings.volumes {
        let mode = if v.read_only { ":ro" } else { "" };
        binds.push(format!("{}:{}{mode}", v.host.display(), v.container));
    }
    let labels: HashMap<String, String> = [
        ("nbpipe.run_id", run_id.to_string()),
        ("nbpipe.project", attempt.project.name.clone()),
        ("nbpipe.attempt", attempt.number.to_string()),
        ("nbpipe.output", output.to_string()),
        ("nbpipe.image", digest.to_string()),
        ("nbpipe.stop_grace", settings.grace().as_secs().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let memory = settings
        .memory
        .map(|m| i64::try_from(m).unwrap_or(i64::MAX));
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec![
            "--quiet".into(),
            "--jobs".into(),
            o.jobs.max(1).to_string(),
        ]),
        env: Some(env),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: settings.network.clone(),
            memory,
            // No swap beyond the limit: a run over its memory is stopped, not slowed down.
            memory_swap: memory,
            nano_cpus: settings.cpus.map(|c| (c * 1e9) as i64),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The final manifest of run `run_id` at `output`, if this container's runner recorded
/// one: an earlier attempt's `run.json` (same run id, same prefix) started before the
/// container did (`container_started`, RFC 3339) and does not count.
pub(crate) async fn final_manifest(
    output: &str,
    run_id: &str,
    container_started: Option<&str>,
) -> Option<RunManifest> {
    let m = read_manifest(output).await?;
    let ours = match (container_started.and_then(rfc3339), rfc3339(&m.started)) {
        // A few seconds of slack for clocks: the runner writes `started` after the
        // container started, never before.
        (Some(container), Some(run)) => run + chrono::Duration::seconds(5) >= container,
        _ => true,
    };
    (ours && m.run_id == run_id && m.status != status::RUNNING).then_some(m)
}

fn rfc3339(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

pub(crate) async fn read_manifest(output: &str) -> Option<RunManifest> {
    let loc = Location::parse(output).ok()?.join("run.json");
    let bytes = loc.get().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn human_bytes(n: i64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / (MIB * 1024.0))
    } else {
        format!("{:.0} MiB", n as f64 / MIB)
    }
}

/// Reports the attempt's `run.json` to the observer each time it changes (what every
/// executor whose attempt runs elsewhere polls).
#[derive(Default)]
pub(crate) struct Progress {
    last_seen: Option<String>,
}

impl Progress {
    /// Read `{output}/run.json`; tell `observer` if it is run `run_id`'s and changed.
    pub async fn poll(&mut self, output: &str, run_id: &str, observer: &dyn RunObserver) {
        if let Some(m) = read_manifest(output).await {
            let text = serde_json::to_string(&m).unwrap_or_default();
            if m.run_id == run_id && self.last_seen.as_deref() != Some(text.as_str()) {
                observer.manifest(&m);
                self.last_seen = Some(text);
            }
        }
    }
}

/// Keep an attempt's log as `container.log` next to its `run.json` (a warning if not).
pub(crate) async fn keep_log(output: &str, log: &[String], what: &str) {
    if let Ok(loc) = Location::parse(output) {
        let text = log.join("\n") + if log.is_empty() { "" } else { "\n" };
        if let Err(e) = loc.join("container.log").put(text.into_bytes()).await {
            eprintln!("warning: could not keep the log of {what}: {e}");
        }
    }
}

/// `\nlast log lines:\n…` with the last `n` lines of `log` (empty when there are none).
pub(crate) fn last_lines(log: &[String], n: usize) -> String {
    let last = &log[log.len().saturating_sub(n)..];
    if last.is_empty() {
        String::new()
    } else {
        format!("\nlast log lines:\n{}", last.join("\n"))
    }
}

#[async_trait::async_trait]
impl Executor for DockerExecutor {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn launch(&self, attempt: Attempt) -> Result<Handle, ExecutorError> {
        let run_id = attempt.run_id()?;
        let name = container_name(&run_id, attempt.number);
        let handle = |output: String, image: String| Handle {
            executor: "docker".into(),
            run_id: run_id.clone(),
            attempt: attempt.number,
            id: name.clone(),
            output: Some(output),
            image: Some(image),
            detail: Default::default(),
        };
        // Resolved by the server: a container cannot read this server's environment or files.
        let secrets = nbpipe_project::secrets::resolve(&attempt.project.secrets).await?;
        if !secrets.is_empty() {
            if let Ok(mut m) = self.maskers.lock() {
                m.insert(name.clone(), secrets.masker().clone());
            }
        }
        let docker = self.docker().await?;
        // Idempotent: the attempt's container exists already (a retried launch).
        if let Ok(c) = docker.inspect_container(&name, None).await {
            let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
            if labels.get("nbpipe.run_id") != Some(&run_id) {
                return Err(ExecutorError::Engine(format!(
                    "the Docker engine: a container named `{name}` exists and is not this run's"
                )));
            }
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            return Ok(handle(get("nbpipe.output"), get("nbpipe.image")));
        }
        let settings = self.settings(&attempt.project);
        let output = output_of(&attempt, &run_id)?;
        let (image, digest) = self.image(&attempt.project).await?;
        let mut spec = container_spec(&attempt, &settings, &run_id, &output, &image, &digest);
        if let (false, Some(env)) = (secrets.is_empty(), spec.env.as_mut()) {
            env.extend(secrets.env().iter().map(|(k, v)| format!("{k}={v}")));
            let names: Vec<&str> = secrets.env().iter().map(|(k, _)| k.as_str()).collect();
            env.push(format!(
                "{}={}",
                nbpipe_project::secrets::IN_ENV_VAR,
                names.join(",")
            ));
        }
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                spec,
            )
            .await
            .map_err(|e| {
                ExecutorError::Engine(format!(
                    "the Docker engine: creating container `{name}`: {e}"
                ))
            })?;
        if let Err(e) = docker.start_container(&name, None).await {
            let _ = docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            return Err(ExecutorError::Engine(format!(
                "the Docker engine: starting container `{name}`: {e}"
            )));
        }
        Ok(handle(output.to_string(), digest))
    }

    async fn follow(
        &self,
        handle: &Handle,
        observer: Arc<dyn RunObserver>,
    ) -> Result<Outcome, ExecutorError> {
        let docker = self.docker().await?;
        let name = &handle.id;
        let output = handle.output.clone().unwrap_or_default();
        let mut progress = Progress::default();
        let mut limit: Option<i64>;
        let state = loop {
            let c = match docker.inspect_container(name, None).await {
                Ok(c) => c,
                Err(e) if is_not_found(&e) => {
                    return Err(ExecutorError::Unknown(Box::new(handle.clone())));
                }
                Err(e) => {
                    // A hiccup of the engine: look again rather than lose the run.
                    eprintln!("warning: inspecting container `{name}`: {e}");
                    tokio::time::sleep(POLL * 4).await;
                    continue;
                }
            };
            limit = c.host_config.and_then(|h| h.memory).filter(|m| *m > 0);
            let state = c.state.unwrap_or_default();
            progress
                .poll(&output, &handle.run_id, observer.as_ref())
                .await;
            if !state.running.unwrap_or(false) && !state.restarting.unwrap_or(false) {
                break state;
            }
            tokio::time::sleep(POLL).await;
        };
        let masker = self.masker(name);
        let log: Vec<String> = self
            .tail(name, LOG_LINES)
            .await
            .unwrap_or_default()
            .iter()
            .map(|l| masker.mask(l))
            .collect();
        keep_log(&output, &log, &format!("container `{name}`")).await;
        if let Ok(mut m) = self.maskers.lock() {
            m.remove(name);
        }
        let _ = docker
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
        let code = state.exit_code.unwrap_or(-1);
        let oom = state.oom_killed.unwrap_or(false);
        let limit = oom.then(|| match limit {
            Some(l) => format!(
                "out of memory: the container's limit is {} (`executor.docker.memory`) and \
                 its kernel was killed by the kernel's OOM killer",
                human_bytes(l)
            ),
            None => "out of memory: the container's processes were killed by the kernel's OOM \
                     killer"
                .to_string(),
        });
        if let Some(mut m) =
            final_manifest(&output, &handle.run_id, state.started_at.as_deref()).await
        {
            if let Some(note) = &limit {
                for s in m.steps.iter_mut().filter(|s| s.status == status::FAILED) {
                    s.error = Some(match &s.error {
                        Some(e) => format!("{e} ({note})"),
                        None => note.clone(),
                    });
                }
            }
            return Ok(Outcome::Ran(Ok(m)));
        }
        let mut error = format!(
            "container `{name}` ended with exit code {code} without recording the run's end"
        );
        if let Some(note) = &limit {
            error.push_str(&format!(": {note}"));
        }
        if let Some(e) = state.error.filter(|e| !e.is_empty()) {
            error.push_str(&format!("; the engine says: {e}"));
        }
        error.push_str(&last_lines(&log, ERROR_LOG_LINES));
        // Killed from outside (SIGKILL/SIGTERM not sent by nbpipe, the engine restarting)
        // is the infrastructure's doing; running out of memory or exiting is the run's.
        let interrupted = !oom && matches!(code, 137 | 143);
        Ok(Outcome::Lost { error, interrupted })
    }

    async fn logs(&self, handle: &Handle, lines: usize) -> Result<Vec<String>, ExecutorError> {
        match self.tail(&handle.id, lines).await {
            Ok(l) => {
                let masker = self.masker(&handle.id);
                Ok(l.iter().map(|l| masker.mask(l)).collect())
            }
            Err(_) => Err(ExecutorError::Unknown(Box::new(handle.clone()))),
        }
    }

    async fn cancel(&self, handle: &Handle, _why: Stop) -> Result<(), ExecutorError> {
        let docker = self.docker().await?.clone();
        let c = match docker.inspect_container(&handle.id, None).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => {
                return Err(ExecutorError::Unknown(Box::new(handle.clone())))
            }
            Err(e) => return Err(engine_err(e)),
        };
        let grace = c
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get("nbpipe.stop_grace").and_then(|g| g.parse().ok()))
            .unwrap_or(10);
        // SIGTERM now, SIGKILL after the grace period; `follow` sees the end.
        let name = handle.id.clone();
        tokio::spawn(async move {
            let opts = StopContainerOptions {
                signal: Some("SIGTERM".into()),
                t: Some(grace),
            };
            if let Err(e) = docker.stop_container(&name, Some(opts)).await {
                if !is_not_found(&e) {
                    eprintln!("warning: stopping container `{name}`: {e}");
                }
            }
        });
        Ok(())
    }

    async fn reattach(&self, handle: &Handle) -> Result<bool, ExecutorError> {
        if handle.executor != "docker" {
            return Ok(false);
        }
        let docker = self.docker().await?;
        match docker.inspect_container(&handle.id, None).await {
            Ok(c) => Ok(c
                .config
                .and_then(|c| c.labels)
                .is_some_and(|l| l.get("nbpipe.run_id") == Some(&handle.run_id))),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(engine_err(e)),
        }
    }

    /// Builds the project's image (layers cached; loaded or pushed at the first launch).
    async fn prepare(&self, project: &Project) -> Result<(), ExecutorError> {
        self.builds.build(project).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbpipe_project::run::{RunOptions, TriggerObject};

    struct Quiet;
    impl RunObserver for Quiet {}

    #[test]
    fn container_names_are_what_docker_accepts() {
        assert_eq!(
            container_name("20261203T101010Z-ab12cd34", 2),
            "nbpipe-20261203T101010Z-ab12cd34-2"
        );
        assert_eq!(container_name("a b/ç:1", 1), "nbpipe-a-b---1-1");
    }

    #[test]
    fn the_container_spec_carries_the_run_its_limits_and_its_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.ipynb"), "{}").unwrap();
        std::fs::write(tmp.path().join("dropped.csv"), "x").unwrap();
        let project = nbpipe_project::parse(
            tmp.path(),
            "nbpipe.yaml",
            "name: demo\nnotebooks: [a.ipynb]\nexecutor:\n  docker:\n    cpus: 0.5\n    \
             memory: 64m\n    network: host\n    env: {TZ: UTC}\n    volumes: ['data:/data:ro']\n    \
             stop_grace: 3s\n",
        )
        .unwrap();
        let mut parameters = nbpipe_params::Parameters::new();
        parameters.set("n", nbpipe_params::Value::Int("3".into()));
        parameters.set("q", nbpipe_params::Value::Str("it's \"x\"\n".into()));
        let trigger = TriggerObject {
            bucket: "in".into(),
            key: "data/a b+ç.csv".into(),
            uri: "s3://in/data/a b+ç.csv".into(),
            region: Some("eu-west-3".into()),
            path: Some(tmp.path().join("dropped.csv").display().to_string()),
            ..Default::default()
        };
        let attempt = Attempt {
            project: project.clone(),
            options: RunOptions {
                parameters,
                trigger: Some(trigger.clone()),
                jobs: 2,
                ..Default::default()
            },
            number: 3,
            observer: Arc::new(Quiet),
        };
        let ExecutorConfig::Docker(settings) = &project.executor else {
            panic!("docker")
        };
        let out = tmp.path().join("runs/r1");
        let output = Location::parse(&out.display().to_string()).unwrap();
        let spec = container_spec(
            &attempt,
            settings,
            "r1",
            &output,
            "sha256:cfg",
            "reg:5000/demo@sha256:m",
        );
        let env = spec.env.unwrap();
        let var = |k: &str| {
            env.iter()
                .find_map(|e| e.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} in {env:?}"))
                .to_string()
        };
        assert_eq!(var("NBPIPE_RUN_ID"), "r1");
        assert_eq!(var("NBPIPE_OUTPUT"), output.to_string());
        assert_eq!(var("TZ"), "UTC");
        assert_eq!(var("NBPIPE_TRIGGER_URI"), "s3://in/data/a b+ç.csv");
        let t: serde_json::Value = serde_json::from_str(&var("NBPIPE_TRIGGER")).unwrap();
        assert_eq!(TriggerObject::from_json(&t).unwrap(), trigger);
        // Parameters round-trip as the container's `nbpipe run` reads them.
        let p = nbpipe_params::parse_json(&var("NBPIPE_PARAMETERS")).unwrap();
        assert_eq!(p, attempt.options.parameters);
        let labels = spec.labels.unwrap();
        assert_eq!(labels["nbpipe.run_id"], "r1");
        assert_eq!(labels["nbpipe.project"], "demo");
        assert_eq!(labels["nbpipe.attempt"], "3");
        assert_eq!(labels["nbpipe.image"], "reg:5000/demo@sha256:m");
        assert_eq!(labels["nbpipe.stop_grace"], "3");
        assert_eq!(spec.image.as_deref(), Some("sha256:cfg"));
        assert_eq!(
            spec.cmd.unwrap(),
            vec!["--quiet".to_string(), "--jobs".into(), "2".into()]
        );
        let host = spec.host_config.unwrap();
        assert_eq!(host.memory, Some(64 * 1024 * 1024));
        assert_eq!(host.memory_swap, host.memory, "no swap beyond the limit");
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        let binds = host.binds.unwrap();
        let o = out.display().to_string();
        let dropped = tmp.path().join("dropped.csv").display().to_string();
        let data = tmp.path().join("data").display().to_string();
        assert_eq!(
            binds,
            vec![
                format!("{o}:{o}"),
                format!("{dropped}:{dropped}:ro"),
                format!("{data}:/data:ro"),
            ]
        );
    }

    #[tokio::test]
    async fn only_this_containers_final_run_json_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().display().to_string();
        let write = |status: &str, started: &str| {
            let m = serde_json::json!({
                "format": 1, "run_id": "r1", "project": "p", "status": status,
                "started": started, "output": out, "parameters": {}, "steps": [],
                "nbpipe_version": "0"
            });
            std::fs::write(tmp.path().join("run.json"), m.to_string()).unwrap();
        };
        assert!(
            final_manifest(&out, "r1", None).await.is_none(),
            "no run.json"
        );
        write("running", "2026-12-03T10:00:00Z");
        assert!(
            final_manifest(&out, "r1", None).await.is_none(),
            "still running"
        );
        write("cancelled", "2026-12-03T10:00:00Z");
        assert!(final_manifest(&out, "r1", None).await.is_some());
        assert!(
            final_manifest(&out, "r2", None).await.is_none(),
            "another run's"
        );
        // An earlier attempt's record, left in the same prefix.
        assert!(
            final_manifest(&out, "r1", Some("2026-12-03T10:05:00.123456789Z"))
                .await
                .is_none()
        );
        assert!(final_manifest(&out, "r1", Some("2026-12-03T10:00:02Z"))
            .await
            .is_some());
    }
}
