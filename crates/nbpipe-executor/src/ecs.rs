//! The ECS executor: one ECS task per run attempt (Fargate unless the project says
//! otherwise), in the project's region and cluster, spoken to with the AWS SDK (endpoint,
//! credentials and region from the standard AWS configuration).
//!
//! - **Image.** `executor.ecs.image` when the project names one; else the server builds the
//!   project's image and pushes it to `image.name` (an ECR repository, credentials through
//!   the Docker credential helpers as for `nbpipe image build --push`), and the task runs
//!   that `repository@digest`.
//! - **Task definition.** Family `nbpipe-<project>`: one container `nbpipe` (the image,
//!   `awslogs` to the project's log group), task CPU/memory, roles, `awsvpc`. A revision is
//!   registered only when that definition changes (its fingerprint is a tag of the
//!   revision); otherwise the latest matching revision is reused — no revision per run.
//! - **Launch.** RunTask with per-run container overrides (the image's contract:
//!   `NBPIPE_RUN_ID`, `NBPIPE_OUTPUT`, `NBPIPE_PARAMETERS`, `NBPIPE_TRIGGER`,
//!   `NBPIPE_TRIGGER_URI`, plus `executor.ecs.env`), `startedBy` and `clientToken` derived from
//!   the attempt, tags with the run id, project and attempt. Before launching, the attempt's
//!   task is looked up by `startedBy`: a retried launch finds it instead of starting a second
//!   (ECS honours `clientToken` too; moto, used in tests, does not).
//! - **Follow.** DescribeTasks with back-off (throttling waits longer); progress from
//!   `run.json` in the output prefix; the log from CloudWatch Logs (live in the API and UI,
//!   kept as `container.log` at the end). A task that stops without a final `run.json` is
//!   [`Outcome::Lost`] with its stop code, stopped reason, container exit code and reason
//!   and last log lines; capacity, network-interface and image-pull failures
//!   (`TaskFailedToStart`, `SpotInterruption`, …) are the infrastructure's.
//! - **Cancel / timeout.** StopTask with the reason; ECS sends SIGTERM, SIGKILL after the
//!   container's `stop_timeout`.
//! - **Secrets.** The project's `aws` secrets (ARNs; `ARN:KEY::` for a `json_key`) go into
//!   the task definition as the container's ECS `secrets`: ECS injects the values as
//!   environment variables with the execution role; the server never reads them, and the
//!   container's run uses the injected variables and masks them in what it records. The
//!   CloudWatch log lines this executor returns are not masked by the server (it does not
//!   know the values); the container's nbpipe does not print them.
//! - **Reattach.** A handle designates its task (region and cluster are in the handle).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::types as ecs;
use nbpipe_exec::Stop;
use nbpipe_project::run::RunObserver;
use nbpipe_project::{EcsConfig, ExecutorConfig, Project};

use crate::docker::{final_manifest, keep_log, last_lines, output_of, Progress};
use crate::{Attempt, Executor, ExecutorError, Handle, Outcome};

/// The task definition's one container.
pub const CONTAINER: &str = "nbpipe";
/// The `awslogs` stream prefix (streams are `nbpipe/nbpipe/<task id>`).
pub const STREAM_PREFIX: &str = "nbpipe";
const LOG_LINES: usize = 1000;
const ERROR_LOG_LINES: usize = 20;
/// Stop codes of tasks the infrastructure could not run or took away.
const INFRASTRUCTURE_STOPS: &[&str] = &[
    "TaskFailedToStart",
    "SpotInterruption",
    "TerminationNotice",
    "ServiceSchedulerInitiated",
];

/// Settings of the ECS executor.
#[derive(Clone, Default)]
pub struct EcsOptions {
    /// The nbpipe binary put in images the server builds (default: the running one).
    pub binary: Option<PathBuf>,
    /// How often a running task is described (default 2 s).
    pub poll: Option<Duration>,
}

#[derive(Clone)]
struct Clients {
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
}

/// Runs attempts as ECS tasks.
#[derive(Clone)]
pub struct EcsExecutor {
    opts: EcsOptions,
    clients: Arc<tokio::sync::Mutex<HashMap<String, Clients>>>,
    /// Task definitions registered or found, by fingerprint.
    definitions: Arc<Mutex<HashMap<String, String>>>,
    builds: crate::images::ImageBuilds,
}

fn aws_err(what: &str, e: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Engine(format!("ECS: {what}: {e}"))
}

/// An SDK error with its whole chain of causes (the SDK's own `Display` says little).
fn sdk_err<E: std::error::Error + 'static>(what: &str, e: E) -> ExecutorError {
    aws_err(what, aws_sdk_ecs::error::DisplayErrorContext(e))
}

/// The attempt's `startedBy` and `clientToken`: the run id and attempt, in the characters
/// both accept (`[A-Za-z0-9_-]`, 36 at most for a token, 128 for `startedBy`).
pub fn attempt_token(run_id: &str, attempt: u32) -> String {
    let clean = crate::sanitize(run_id, "-_");
    let suffix = format!("-a{attempt}");
    let keep = 36usize.saturating_sub(suffix.len());
    let start = clean.len().saturating_sub(keep);
    format!("{}{suffix}", &clean[start..])
}

/// Region and cluster of a task ARN (`arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`).
fn arn_parts(arn: &str) -> Option<(String, String, String)> {
    let mut it = arn.split(':');
    let (_, _, _, region) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let resource = arn.splitn(6, ':').nth(5)?;
    let mut r = resource.split('/');
    let (_, cluster, id) = (r.next()?, r.next()?, r.next()?);
    Some((region.to_string(), cluster.to_string(), id.to_string()))
}

impl EcsExecutor {
    /// An ECS executor; clients are made per region on first use.
    pub fn new(opts: EcsOptions) -> EcsExecutor {
        let builds = crate::images::ImageBuilds::new(opts.binary.clone());
        EcsExecutor {
            opts,
            clients: Arc::default(),
            definitions: Arc::default(),
            builds,
        }
    }

    async fn clients(&self, region: &str) -> Clients {
        let mut map = self.clients.lock().await;
        if let Some(c) = map.get(region) {
            return c.clone();
        }
        let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        let c = Clients {
            ecs: aws_sdk_ecs::Client::new(&cfg),
            logs: aws_sdk_cloudwatchlogs::Client::new(&cfg),
        };
        map.insert(region.to_string(), c.clone());
        c
    }

    fn settings(project: &Project) -> Result<EcsConfig, ExecutorError> {
        match &project.executor {
            ExecutorConfig::Ecs(e) => Ok(e.clone()),
            _ => Err(ExecutorError::Image(format!(
                "project `{}` has no `executor: {{ecs: …}}` settings (subnets, cluster) to run \
                 its tasks with",
                project.name
            ))),
        }
    }

    fn region(settings: &EcsConfig) -> Result<String, ExecutorError> {
        settings
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                ExecutorError::Image(
                    "no AWS region: set `executor.ecs.region` or AWS_REGION".to_string(),
                )
            })
    }

    /// The image to run: the project's fixed one, or its image built and pushed now.
    async fn image(
        &self,
        project: &Project,
        settings: &EcsConfig,
    ) -> Result<String, ExecutorError> {
        if let Some(image) = &settings.image {
            return Ok(image.clone());
        }
        let built = self.builds.build(project).await?;
        let digest = nbpipe_image::push(&built.image, &built.store)
            .await
            .map_err(|e| ExecutorError::Image(format!("pushing the image: {e}")))?;
        Ok(built.pinned(&digest))
    }

    fn log_group(project: &Project, settings: &EcsConfig) -> String {
        settings
            .log_group
            .clone()
            .unwrap_or_else(|| format!("/nbpipe/{}", project.name))
    }

    /// The task definition for `image`: the latest revision with the same fingerprint, or a
    /// new one.
    async fn task_definition(
        &self,
        c: &Clients,
        project: &Project,
        settings: &EcsConfig,
        region: &str,
        image: &str,
    ) -> Result<String, ExecutorError> {
        let family = family_of(&project.name);
        let group = Self::log_group(project, settings);
        let cpu = settings.cpu.unwrap_or(1024).to_string();
        let memory = settings.memory.unwrap_or(2048).to_string();
        let fingerprint = {
            use sha2::Digest;
            let text = serde_json::json!({
                "v": 1, "family": family, "image": image, "group": group, "region": region,
                "cpu": cpu, "memory": memory, "task_role": settings.task_role,
                "execution_role": settings.execution_role,
                "stop_timeout": settings.stop_timeout.map(|d| d.as_secs()),
                "secrets": secrets_of(project),
                "fargate": settings.launch_type.as_deref().unwrap_or("FARGATE") == "FARGATE",
            })
            .to_string();
            hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
        };
        if let Some(arn) = self
            .definitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fingerprint)
        {
            return Ok(arn.clone());
        }
        // The latest revision of the family, if it has this fingerprint.
        let latest = c
            .ecs
            .list_task_definitions()
            .family_prefix(&family)
            .status(ecs::TaskDefinitionStatus::Active)
            .sort(ecs::SortOrder::Desc)
            .max_results(1)
            .send()
            .await
            .map_err(|e| sdk_err("listing task definitions", e))?;
        if let Some(arn) = latest.task_definition_arns().first() {
            let d = c
                .ecs
                .describe_task_definition()
                .task_definition(arn)
                .include(ecs::TaskDefinitionField::Tags)
                .send()
                .await
                .map_err(|e| sdk_err("describing a task definition", e))?;
            if d.tags()
                .iter()
                .any(|t| t.key() == Some("nbpipe:fingerprint") && t.value() == Some(&fingerprint))
            {
                self.definitions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(fingerprint, arn.clone());
                return Ok(arn.clone());
            }
        }
        // The log group must exist before a task logs to it.
        match c
            .logs
            .create_log_group()
            .log_group_name(&group)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) => {
                let e = e.into_service_error();
                if !e.is_resource_already_exists_exception() {
                    return Err(aws_err(&format!("creating log group `{group}`"), e));
                }
            }
        }
        let log = ecs::LogConfiguration::builder()
            .log_driver(ecs::LogDriver::Awslogs)
            .options("awslogs-group", &group)
            .options("awslogs-region", region)
            .options("awslogs-stream-prefix", STREAM_PREFIX)
            .build()
            .map_err(|e| aws_err("log configuration", e))?;
        // The one container gets the whole task (a container-level limit equal to the
        // task's is what ECS does anyway; some schedulers require it).
        let mut container = ecs::ContainerDefinition::builder()
            .name(CONTAINER)
            .image(image)
            .essential(true)
            .cpu(settings.cpu.unwrap_or(1024) as i32)
            .memory(settings.memory.unwrap_or(2048) as i32)
            .log_configuration(log);
        if let Some(t) = settings.stop_timeout {
            container = container.stop_timeout(t.as_secs() as i32);
        }
        // `secrets:` reach the container as environment variables that ECS reads from
        // Secrets Manager / SSM with the execution role: nbpipe never sees their values.
        for (name, arn) in secrets_of(project) {
            container = container.secrets(
                ecs::Secret::builder()
                    .name(name)
                    .value_from(arn)
                    .build()
                    .map_err(|e| aws_err("secret", e))?,
            );
        }
        let mut req = c
            .ecs
            .register_task_definition()
            .family(&family)
            .network_mode(ecs::NetworkMode::Awsvpc)
            .cpu(&cpu)
            .memory(&memory)
            .container_definitions(container.build())
            .set_task_role_arn(settings.task_role.clone())
            .set_execution_role_arn(settings.execution_role.clone())
            .tags(tag("nbpipe:fingerprint", &fingerprint))
            .tags(tag("nbpipe:project", &project.name));
        if settings.launch_type.as_deref().unwrap_or("FARGATE") == "FARGATE" {
            req = req.requires_compatibilities(ecs::Compatibility::Fargate);
        }
        let out = req
            .send()
            .await
            .map_err(|e| sdk_err("registering the task definition", e))?;
        let arn = out
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .ok_or_else(|| aws_err("registering the task definition", "no ARN returned"))?
            .to_string();
        self.definitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fingerprint, arn.clone());
        Ok(arn)
    }

    /// The attempt's task, if one was started already (by `startedBy`).
    async fn existing_task(
        c: &Clients,
        cluster: &str,
        token: &str,
    ) -> Result<Option<String>, ExecutorError> {
        for desired in [ecs::DesiredStatus::Running, ecs::DesiredStatus::Stopped] {
            let out = c
                .ecs
                .list_tasks()
                .cluster(cluster)
                .started_by(token)
                .desired_status(desired)
                .send()
                .await
                .map_err(|e| sdk_err("listing tasks", e))?;
            if let Some(arn) = out.task_arns().first() {
                return Ok(Some(arn.clone()));
            }
        }
        Ok(None)
    }

    async fn describe(
        c: &Clients,
        cluster: &str,
        arn: &str,
    ) -> Result<Option<ecs::Task>, ExecutorError> {
        let out = c
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .tasks(arn)
            .send()
            .await
            .map_err(|e| sdk_err("describing a task", e))?;
        Ok(out.tasks().first().cloned())
    }

    async fn tail(
        c: &Clients,
        handle: &Handle,
        lines: usize,
    ) -> Result<Vec<String>, ExecutorError> {
        let (Some(group), Some(stream)) = (
            handle.detail.get("log_group"),
            handle.detail.get("log_stream"),
        ) else {
            return Ok(Vec::new());
        };
        let out = c
            .logs
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(false)
            .limit(lines.clamp(1, 10_000) as i32)
            .send()
            .await
            .map_err(|e| sdk_err("reading the task's log", e))?;
        Ok(out
            .events()
            .iter()
            .filter_map(|e| e.message().map(str::to_string))
            .collect())
    }

    fn place(handle: &Handle) -> Result<(String, String), ExecutorError> {
        match (handle.detail.get("region"), handle.detail.get("cluster")) {
            (Some(r), Some(c)) => Ok((r.clone(), c.clone())),
            _ => arn_parts(&handle.id)
                .map(|(r, c, _)| (r, c))
                .ok_or_else(|| ExecutorError::Unknown(Box::new(handle.clone()))),
        }
    }
}

fn family_of(project: &str) -> String {
    let clean = crate::sanitize(project, "-_");
    format!("nbpipe-{clean}")
}

/// The project's secrets with an ARN: `(variable, ARN)`, sorted.
/// The project as it runs in its region: with `regions:`, a run triggered in a region runs
/// there — that region's cluster, network, output and secrets — and a run whose trigger is in
/// a region the project does not list is refused (its data would leave its region). A run
/// without a trigger region runs in the executor's region when listed, else in the first
/// listed one. An ECR image reference (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/…`) is pointed
/// at the run's region, so the task pulls from its own region's registry.
pub fn place_in_region(
    project: &mut Project,
    settings: &mut EcsConfig,
    trigger_region: Option<&str>,
    default_region: Option<&str>,
    output_given: bool,
) -> Result<(), ExecutorError> {
    if !project.regions.is_empty() {
        let listed: Vec<&str> = project.regions.iter().map(|r| r.name.as_str()).collect();
        let name = match trigger_region {
            Some(r) if listed.contains(&r) => r.to_owned(),
            Some(r) => {
                return Err(ExecutorError::Refused(format!(
                    "the run was triggered in region `{r}`, which `regions:` does not list ({}): \
                     its data would be processed in another region",
                    listed.join(", ")
                )))
            }
            None => match settings.region.as_deref().or(default_region) {
                Some(d) if listed.contains(&d) => d.to_owned(),
                _ => listed[0].to_owned(),
            },
        };
        let Some(r) = project.regions.iter().find(|r| r.name == name).cloned() else {
            return Err(ExecutorError::Image(format!(
                "no region `{name}` in `regions:`"
            )));
        };
        settings.region = Some(r.name.clone());
        if let Some(c) = &r.cluster {
            settings.cluster = c.clone();
        }
        if !r.subnets.is_empty() {
            settings.subnets = r.subnets.clone();
        }
        if !r.security_groups.is_empty() {
            settings.security_groups = r.security_groups.clone();
        }
        if let Some(p) = r.assign_public_ip {
            settings.assign_public_ip = p;
        }
        if let (Some(o), false) = (&r.output, output_given) {
            project.output = o.clone();
        }
        for s in &r.secrets {
            project.secrets.retain(|t| t.name != s.name);
            project.secrets.push(s.clone());
        }
    }
    let region = settings
        .region
        .clone()
        .or_else(|| default_region.map(str::to_owned));
    if let Some(region) = region {
        settings.image = settings.image.as_deref().map(|i| ecr_in_region(i, &region));
        project.image.name = project
            .image
            .name
            .as_deref()
            .map(|i| ecr_in_region(i, &region));
    }
    Ok(())
}

/// `image` with its ECR registry's region replaced by `region` (other references as they
/// are).
fn ecr_in_region(image: &str, region: &str) -> String {
    let (host, rest) = image.split_once('/').unwrap_or((image, ""));
    let parts: Vec<&str> = host.split('.').collect();
    // ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]
    if parts.len() >= 6 && parts[1] == "dkr" && parts[2] == "ecr" && parts[4] == "amazonaws" {
        let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        p[3] = region.to_owned();
        return format!("{}/{rest}", p.join("."));
    }
    image.to_owned()
}

fn secrets_of(project: &Project) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = project
        .secrets
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.ecs_value_from()?)))
        .collect();
    v.sort();
    v
}

fn tag(k: &str, v: &str) -> ecs::Tag {
    ecs::Tag::builder().key(k).value(v).build()
}

fn kv(k: &str, v: impl Into<String>) -> ecs::KeyValuePair {
    ecs::KeyValuePair::builder().name(k).value(v).build()
}

#[async_trait::async_trait]
impl Executor for EcsExecutor {
    fn kind(&self) -> &'static str {
        "ecs"
    }

    async fn launch(&self, mut attempt: Attempt) -> Result<Handle, ExecutorError> {
        let run_id = attempt.run_id()?;
        let mut settings = Self::settings(&attempt.project)?;
        let trigger_region = attempt
            .options
            .trigger
            .as_ref()
            .and_then(|t| t.region.clone());
        let default_region = Self::region(&settings).ok();
        place_in_region(
            &mut attempt.project,
            &mut settings,
            trigger_region.as_deref(),
            default_region.as_deref(),
            attempt.options.output.is_some(),
        )?;
        let region = Self::region(&settings)?;
        let c = self.clients(&region).await;
        let cluster = settings.cluster.clone();
        let token = attempt_token(&run_id, attempt.number);
        let output = output_of(&attempt, &run_id)?;
        let group = Self::log_group(&attempt.project, &settings);
        let handle = |arn: String, image: String| {
            let id = arn.rsplit('/').next().unwrap_or_default().to_string();
            Handle {
                executor: "ecs".into(),
                run_id: run_id.clone(),
                attempt: attempt.number,
                id: arn,
                output: Some(output.to_string()),
                image: Some(image),
                detail: BTreeMap::from([
                    ("region".to_string(), region.clone()),
                    ("cluster".to_string(), cluster.clone()),
                    ("log_group".to_string(), group.clone()),
                    (
                        "log_stream".to_string(),
                        format!("{STREAM_PREFIX}/{CONTAINER}/{id}"),
                    ),
                ]),
            }
        };
        // Idempotent: the attempt's task exists already (a retried launch).
        if let Some(arn) = Self::existing_task(&c, &cluster, &token).await? {
            let image = match Self::describe(&c, &cluster, &arn).await? {
                Some(t) => t
                    .containers()
                    .first()
                    .and_then(|c| c.image())
                    .unwrap_or_default()
                    .to_string(),
                None => String::new(),
            };
            return Ok(handle(arn, image));
        }
        let image = self.image(&attempt.project, &settings).await?;
        let definition = self
            .task_definition(&c, &attempt.project, &settings, &region, &image)
            .await?;
        let o = &attempt.options;
        let mut env = vec![
            kv("NBPIPE_RUN_ID", &run_id),
            kv("NBPIPE_OUTPUT", output.to_string()),
            kv("NBPIPE_PARAMETERS", o.parameters.to_json().to_string()),
            // The server announces the run (durably, with recoveries): `nbpipe run` must not.
            kv("NBPIPE_NOTIFY", "serve"),
        ];
        for (k, v) in crate::revision_env(&attempt.project, o) {
            env.push(kv(k, v));
        }
        if let Some(t) = &o.trigger {
            env.push(kv("NBPIPE_TRIGGER_URI", &t.uri));
            env.push(kv("NBPIPE_TRIGGER", t.to_json().to_string()));
        }
        for (k, v) in &settings.env {
            env.push(kv(k, v));
        }
        let overrides = ecs::TaskOverride::builder()
            .container_overrides(
                ecs::ContainerOverride::builder()
                    .name(CONTAINER)
                    .set_environment(Some(env))
                    .command("--quiet")
                    .command("--jobs")
                    .command(o.jobs.max(1).to_string())
                    .build(),
            )
            .build();
        let vpc = ecs::AwsVpcConfiguration::builder()
            .set_subnets(Some(settings.subnets.clone()))
            .set_security_groups(
                (!settings.security_groups.is_empty()).then(|| settings.security_groups.clone()),
            )
            .assign_public_ip(if settings.assign_public_ip {
                ecs::AssignPublicIp::Enabled
            } else {
                ecs::AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| aws_err("network configuration", e))?;
        let mut req = c
            .ecs
            .run_task()
            .cluster(&cluster)
            .task_definition(&definition)
            .count(1)
            .network_configuration(
                ecs::NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .overrides(overrides)
            .started_by(&token)
            .client_token(&token)
            .tags(tag("nbpipe:run_id", &run_id))
            .tags(tag("nbpipe:project", &attempt.project.name))
            .tags(tag("nbpipe:attempt", &attempt.number.to_string()));
        if settings.capacity_provider_strategy.is_empty() {
            req = req.launch_type(ecs::LaunchType::from(
                settings.launch_type.as_deref().unwrap_or("FARGATE"),
            ));
        } else {
            for p in &settings.capacity_provider_strategy {
                req = req.capacity_provider_strategy(
                    ecs::CapacityProviderStrategyItem::builder()
                        .capacity_provider(&p.provider)
                        .set_weight(p.weight)
                        .set_base(p.base)
                        .build()
                        .map_err(|e| aws_err("capacity provider strategy", e))?,
                );
            }
        }
        let out = req.send().await.map_err(|e| sdk_err("RunTask", e))?;
        match out.tasks().first().and_then(|t| t.task_arn()) {
            Some(arn) => Ok(handle(arn.to_string(), image)),
            None => {
                let why: Vec<String> = out
                    .failures()
                    .iter()
                    .map(|f| {
                        format!(
                            "{}: {}",
                            f.reason().unwrap_or("failure"),
                            f.detail().unwrap_or_default()
                        )
                    })
                    .collect();
                Err(ExecutorError::Engine(format!(
                    "ECS started no task: {}",
                    if why.is_empty() {
                        "no reason given".to_string()
                    } else {
                        why.join("; ")
                    }
                )))
            }
        }
    }

    async fn follow(
        &self,
        handle: &Handle,
        observer: Arc<dyn RunObserver>,
    ) -> Result<Outcome, ExecutorError> {
        let (region, cluster) = Self::place(handle)?;
        let c = self.clients(&region).await;
        let output = handle.output.clone().unwrap_or_default();
        let base = self.opts.poll.unwrap_or(Duration::from_secs(2));
        let mut wait = base;
        let mut progress = Progress::default();
        let task = loop {
            match Self::describe(&c, &cluster, &handle.id).await {
                Ok(Some(t)) => {
                    wait = base;
                    progress
                        .poll(&output, &handle.run_id, observer.as_ref())
                        .await;
                    if t.last_status() == Some("STOPPED") {
                        break t;
                    }
                }
                Ok(None) => return Err(ExecutorError::Unknown(Box::new(handle.clone()))),
                Err(e) => {
                    // Throttled or briefly unreachable: back off (up to a minute), go on.
                    eprintln!("warning: {e}; trying again in {} s", wait.as_secs());
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
            }
            tokio::time::sleep(wait).await;
        };
        let started = task.created_at().map(|t| {
            chrono::DateTime::from_timestamp(t.secs(), 0)
                .unwrap_or_default()
                .to_rfc3339()
        });
        // A task nbpipe stopped may be reported STOPPED before its container finished
        // saving (the API's view lags the container's SIGTERM handling): give the record a
        // moment to land; any other stop already had its container exit.
        let ours = task
            .stopped_reason()
            .is_some_and(|r| r.starts_with("nbpipe:"));
        let patience = if ours {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(3)
        };
        let deadline = tokio::time::Instant::now() + patience;
        let manifest = loop {
            if let Some(m) = final_manifest(&output, &handle.run_id, started.as_deref()).await {
                break Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let log = Self::tail(&c, handle, LOG_LINES).await.unwrap_or_default();
        keep_log(&output, &log, &format!("task `{}`", handle.id)).await;
        if let Some(m) = manifest {
            return Ok(Outcome::Ran(Ok(m)));
        }
        let stop_code = task.stop_code().map(|s| s.as_str().to_string());
        let container = task.containers().first();
        let exit = container.and_then(|c| c.exit_code());
        let mut error = format!(
            "ECS task `{}` stopped without recording the run's end: {}{}",
            handle.id,
            stop_code.as_deref().unwrap_or("no stop code"),
            task.stopped_reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        match exit {
            Some(code) => error.push_str(&format!("; container exit code {code}")),
            None => error.push_str("; the container never ran"),
        }
        if let Some(reason) = container.and_then(|c| c.reason()) {
            error.push_str(&format!(": {reason}"));
        }
        error.push_str(&last_lines(&log, ERROR_LOG_LINES));
        let reason = container.and_then(|c| c.reason()).unwrap_or_default();
        let interrupted = stop_code
            .as_deref()
            .is_some_and(|s| INFRASTRUCTURE_STOPS.contains(&s))
            || reason.contains("CannotPullContainer")
            || reason.contains("ResourceInitializationError");
        Ok(Outcome::Lost { error, interrupted })
    }

    async fn logs(&self, handle: &Handle, lines: usize) -> Result<Vec<String>, ExecutorError> {
        let (region, _) = Self::place(handle)?;
        let c = self.clients(&region).await;
        Self::tail(&c, handle, lines).await
    }

    async fn cancel(&self, handle: &Handle, why: Stop) -> Result<(), ExecutorError> {
        let (region, cluster) = Self::place(handle)?;
        let c = self.clients(&region).await;
        let reason = match why {
            Stop::Deadline => {
                "nbpipe: the run's time limit (serve.timeout) was reached".to_string()
            }
            Stop::Cancelled => "nbpipe: the run was cancelled".to_string(),
            other => format!("nbpipe: the server stopped the run ({other:?})"),
        };
        c.ecs
            .stop_task()
            .cluster(&cluster)
            .task(&handle.id)
            .reason(reason)
            .send()
            .await
            .map_err(|e| sdk_err("StopTask", e))?;
        Ok(())
    }

    async fn reattach(&self, handle: &Handle) -> Result<bool, ExecutorError> {
        if handle.executor != "ecs" {
            return Ok(false);
        }
        let (region, cluster) = Self::place(handle)?;
        let c = self.clients(&region).await;
        Ok(Self::describe(&c, &cluster, &handle.id).await?.is_some())
    }

    /// Builds the project's image unless `executor.ecs.image` names one (pushed at the
    /// first launch).
    async fn prepare(&self, project: &Project) -> Result<(), ExecutorError> {
        match Self::settings(project)?.image {
            Some(_) => Ok(()),
            None => self.builds.build(project).await.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regional() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
        let text = "notebooks: [a.ipynb]\noutput: s3://out-default/{run_id}/\n\
            image: {name: 123456789012.dkr.ecr.eu-west-3.amazonaws.com/team/sales}\n\
            executor:\n  ecs: {cluster: main, subnets: [subnet-00aa11bb]}\n\
            regions:\n  eu-west-3:\n    output: s3://out-paris/{run_id}/\n    \
            cluster: paris\n    subnets: [subnet-0a1b2c3d]\n  us-east-1:\n    \
            output: s3://out-virginia/{run_id}/\n    subnets: [subnet-0b2c3d4e]\n    \
            security_groups: [sg-12ab34cd]\n    assign_public_ip: true\n";
        nbpipe_project::config::parse(dir.path(), "nbpipe.yaml", text).unwrap()
    }

    #[test]
    fn a_run_is_placed_in_its_trigger_region_and_refused_outside_the_listed_ones() {
        let mut p = regional();
        let mut s = EcsExecutor::settings(&p).unwrap();
        place_in_region(&mut p, &mut s, Some("us-east-1"), Some("eu-west-3"), false).unwrap();
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        assert_eq!(
            s.cluster, "main",
            "no cluster for us-east-1: the executor's"
        );
        assert_eq!(
            (s.subnets.as_slice(), s.security_groups.as_slice()),
            (
                &["subnet-0b2c3d4e".to_string()][..],
                &["sg-12ab34cd".to_string()][..]
            )
        );
        assert!(s.assign_public_ip);
        assert_eq!(p.output, "s3://out-virginia/{run_id}/");
        assert_eq!(
            p.image.name.as_deref(),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/sales")
        );

        let mut p = regional();
        let mut s = EcsExecutor::settings(&p).unwrap();
        place_in_region(&mut p, &mut s, Some("eu-west-3"), None, false).unwrap();
        assert_eq!(
            (s.cluster.as_str(), p.output.as_str()),
            ("paris", "s3://out-paris/{run_id}/")
        );
        // An output given for the run (the API) wins over the region's.
        let mut p = regional();
        let mut s = EcsExecutor::settings(&p).unwrap();
        place_in_region(&mut p, &mut s, Some("eu-west-3"), None, true).unwrap();
        assert_eq!(p.output, "s3://out-default/{run_id}/");

        // No trigger region: the executor's region when listed, else the first listed.
        let mut p = regional();
        let mut s = EcsExecutor::settings(&p).unwrap();
        place_in_region(&mut p, &mut s, None, Some("us-east-1"), false).unwrap();
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        let mut p = regional();
        let mut s = EcsExecutor::settings(&p).unwrap();
        place_in_region(&mut p, &mut s, None, Some("ap-south-1"), false).unwrap();
        assert_eq!(s.region.as_deref(), Some("eu-west-3"));

        let mut p = regional();
        let mut s = EcsExecutor::settings(&p).unwrap();
        let e = place_in_region(&mut p, &mut s, Some("ap-south-1"), None, false).unwrap_err();
        assert!(
            e.to_string().contains("triggered in region `ap-south-1`, which `regions:` does not list (eu-west-3, us-east-1)"),
            "{e}"
        );
    }

    #[test]
    fn only_ecr_references_change_region() {
        assert_eq!(
            ecr_in_region("1.dkr.ecr.eu-west-1.amazonaws.com.cn/a/b:1", "cn-north-1"),
            "1.dkr.ecr.cn-north-1.amazonaws.com.cn/a/b:1"
        );
        assert_eq!(
            ecr_in_region("registry:5000/team/x", "us-east-1"),
            "registry:5000/team/x"
        );
        assert_eq!(ecr_in_region("python:3.11", "us-east-1"), "python:3.11");
    }

    #[test]
    fn attempt_tokens_fit_ecs_and_stay_distinct() {
        let t = attempt_token("20261203T101010Z-ab12cd34", 2);
        assert_eq!(t, "20261203T101010Z-ab12cd34-a2");
        let long = attempt_token(&"x".repeat(80), 12);
        assert_eq!(long.len(), 36);
        assert!(long.ends_with("-a12"));
        assert_eq!(attempt_token("a b/c", 1), "a-b-c-a1");
    }

    #[test]
    fn task_arns_name_their_region_and_cluster() {
        assert_eq!(
            arn_parts("arn:aws:ecs:eu-west-3:123456789012:task/analytics/0a1b2c"),
            Some(("eu-west-3".into(), "analytics".into(), "0a1b2c".into()))
        );
        assert_eq!(arn_parts("not-an-arn"), None);
        assert_eq!(family_of("sales report"), "nbpipe-sales-report");
    }
}
