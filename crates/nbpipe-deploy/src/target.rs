//! One deployment target: a project's settings resolved for one environment and one region
//! (the region's own keys over the top-level ones), with the checks that need both — a
//! top-level secret, trigger or output that would make a region's data cross into another
//! region is refused with the keys named. Offline: S3 bucket regions are not looked up, so
//! only buckets the file itself ties to two regions are caught.

use nbpipe_project::config::{
    s3_bucket_of, split_arn, valid_region, DeployMode, Project, RegionConfig, S3Location, Secret,
    Trigger, TriggerSource, DEFAULT_CPU, DEFAULT_MEMORY,
};

use crate::DeployError;

/// Everything a region's stack is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The project's name.
    pub project: String,
    /// The environment (`--env`).
    pub env: String,
    /// The project's `environments:` entry deployed (`None`: its top-level settings); the
    /// container gets it as `NBPIPE_ENV` so its `nbpipe run` reads the same settings.
    pub environment: Option<String>,
    /// The region.
    pub region: String,
    /// `nbpipe-<project>-<env>-<region>`.
    pub stack_name: String,
    /// The ECR repository (`nbpipe/<project>-<env>`).
    pub repository: String,
    /// The bucket/prefix/suffix the rule matches.
    pub trigger: S3Location,
    /// The `s3://…` output template (`{run_id}` left in).
    pub output: String,
    /// `deploy.mode`.
    pub mode: DeployMode,
    /// `deploy.trigger_source`.
    pub trigger_source: TriggerSource,
    /// Fargate CPU units.
    pub cpu: u32,
    /// Fargate memory, MiB.
    pub memory: u32,
    /// An existing cluster (name or ARN); `None`: the stack makes one.
    pub cluster: Option<String>,
    /// Subnets of the tasks.
    pub subnets: Vec<String>,
    /// Security groups of the tasks.
    pub security_groups: Vec<String>,
    /// Whether tasks get a public IP.
    pub assign_public_ip: bool,
    /// The secrets (top-level, overridden by the region's), by name.
    pub secrets: Vec<Secret>,
    /// `deploy.task_role`.
    pub task_role: Option<String>,
    /// `deploy.execution_role`.
    pub execution_role: Option<String>,
}

/// A name usable in stack names, ECR repositories and tags: lowercase letters, digits, `-`.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Check an environment name given with `--env`.
pub fn check_env(env: &str) -> Result<(), DeployError> {
    let ok = !env.is_empty()
        && env.len() <= 32
        && env.starts_with(|c: char| c.is_ascii_lowercase())
        && env
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(DeployError::Usage(format!(
            "`--env {env}`: an environment name is 1 to 32 lowercase letters, digits and `-`, \
             starting with a letter (it is part of stack and repository names)"
        )))
    }
}

/// The regions `--region` may name: those of `regions:`, or any when the file has none.
pub fn targets(
    project: &Project,
    env: &str,
    regions: &[String],
) -> Result<Vec<Target>, DeployError> {
    check_env(env)?;
    if regions.is_empty() {
        let known: Vec<&str> = project.regions.iter().map(|r| r.name.as_str()).collect();
        return Err(DeployError::Usage(if known.is_empty() {
            "name at least one `--region`".into()
        } else {
            format!(
                "name at least one `--region` (`regions:` has {})",
                known.join(", ")
            )
        }));
    }
    regions.iter().map(|r| resolve(project, env, r)).collect()
}

/// Resolve `project` for `env` in `region`.
pub fn resolve(project: &Project, env: &str, region: &str) -> Result<Target, DeployError> {
    let cfg = |m: String| DeployError::Config(m);
    if !valid_region(region) {
        return Err(DeployError::Usage(format!(
            "`--region {region}` is not an AWS region name (e.g. `eu-west-1`)"
        )));
    }
    let own = match project.regions.iter().find(|r| r.name == region) {
        Some(r) => r.clone(),
        None if project.regions.is_empty() => RegionConfig {
            name: region.to_string(),
            ..Default::default()
        },
        None => {
            let known: Vec<&str> = project.regions.iter().map(|r| r.name.as_str()).collect();
            return Err(DeployError::Usage(format!(
                "region `{region}` is not in `regions:` ({}); add `regions.{region}` to \
                 `nbpipe.yaml`",
                known.join(", ")
            )));
        }
    };
    // Other regions of the file that fall back on a top-level value share it with this one.
    let sharing = |has_own: fn(&RegionConfig) -> bool| -> Option<String> {
        project
            .regions
            .iter()
            .find(|r| r.name != region && !has_own(r))
            .map(|r| r.name.clone())
    };
    let trigger = match &own.trigger {
        Some(t) => t.clone(),
        None => {
            let top = project.triggers.iter().find_map(|t| match t {
                Trigger::S3 {
                    bucket,
                    prefix,
                    suffix,
                } => Some(S3Location {
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    suffix: suffix.clone(),
                }),
                Trigger::Schedule { .. } => None,
            });
            let Some(top) = top else {
                return Err(cfg(format!(
                    "no trigger for region `{region}`: set `regions.{region}.trigger.bucket` (or \
                     the project's `S3TriggerBucket` / `trigger: {{s3: …}}`)"
                )));
            };
            if let Some(other) = sharing(|r| r.trigger.is_some()) {
                return Err(cfg(format!(
                    "regions `{region}` and `{other}` would both watch the project's trigger \
                     bucket `{}`, which lives in one region: set `regions.{region}.trigger` and \
                     `regions.{other}.trigger`",
                    top.bucket
                )));
            }
            top
        }
    };
    let output = match &own.output {
        Some(o) => o.clone(),
        None => {
            let top = &project.output;
            if s3_bucket_of(top).is_none() {
                return Err(cfg(format!(
                    "no output for region `{region}`: `output` is `{top}`, but a task on Fargate \
                     needs an `s3://` prefix; set `regions.{region}.output` (or `output`)"
                )));
            }
            if let Some(other) = sharing(|r| r.output.is_some()) {
                return Err(cfg(format!(
                    "regions `{region}` and `{other}` would both write to the project's \
                     `output` bucket `{}`, which lives in one region: set \
                     `regions.{region}.output` and `regions.{other}.output`",
                    s3_bucket_of(top).unwrap_or_default()
                )));
            }
            top.clone()
        }
    };
    let mut secrets: Vec<Secret> = project
        .secrets
        .iter()
        .filter(|s| !own.secrets.iter().any(|o| o.name == s.name))
        .cloned()
        .collect();
    for s in &secrets {
        if let Some(arn) = s.arn().filter(|a| a.region != region) {
            return Err(cfg(format!(
                "`{}` is a secret in `{}`, but region `{region}` would read it: ECS reads a \
                 task's secrets in the task's own region; set `regions.{region}.secrets.{}` to \
                 a replica in `{region}`",
                s.key, arn.region, s.name
            )));
        }
    }
    secrets.extend(own.secrets.iter().cloned());
    if let Some(s) = secrets.iter().find(|s| s.arn().is_none()) {
        // The task has neither the server's environment nor the file (kept out of images).
        return Err(cfg(format!(
            "`{}` is read from {}, which a task on ECS does not have: only `aws` secrets (an \
             ARN) reach a deployed task, read by ECS itself",
            s.key, s.source
        )));
    }
    let cluster = own
        .cluster
        .clone()
        .or_else(|| project.deploy.cluster.clone());
    if own.cluster.is_none() {
        if let Some(c) = &project.deploy.cluster {
            if let Some([_, _, r, _, _]) = split_arn(c) {
                if r != region {
                    return Err(cfg(format!(
                        "`deploy.cluster` is a cluster in `{r}`, but region `{region}` would run \
                         its tasks there: set `regions.{region}.cluster`"
                    )));
                }
            }
        }
    }
    if project.deploy.mode == DeployMode::Direct && own.subnets.is_empty() {
        return Err(cfg(format!(
            "`deploy.mode: direct` starts Fargate tasks from an EventBridge rule, which needs \
             the tasks' network: set `regions.{region}.subnets` (and `security_groups`)"
        )));
    }
    if let Some(out_bucket) = s3_bucket_of(&output) {
        let out_prefix = output
            .strip_prefix("s3://")
            .and_then(|r| r.split_once('/'))
            .map(|(_, p)| p.split('{').next().unwrap_or(p))
            .unwrap_or("");
        if out_bucket == trigger.bucket
            && (out_prefix.starts_with(&trigger.prefix) || trigger.prefix.starts_with(out_prefix))
            && trigger.suffix.is_none()
        {
            return Err(cfg(format!(
                "region `{region}`: the output `{output}` is inside the trigger \
                 `s3://{}/{}`, so every run would trigger another; give them separate \
                 prefixes (or a trigger `suffix`)",
                trigger.bucket, trigger.prefix
            )));
        }
    }
    let p = slug(&project.name);
    let p = if p.is_empty() {
        "project".to_string()
    } else {
        p
    };
    Ok(Target {
        project: project.name.clone(),
        env: env.to_string(),
        environment: project.environment.clone(),
        region: region.to_string(),
        stack_name: format!("nbpipe-{p}-{env}-{region}"),
        repository: format!("nbpipe/{p}-{env}"),
        trigger,
        output,
        mode: project.deploy.mode,
        trigger_source: project.deploy.trigger_source,
        cpu: project.deploy.cpu.unwrap_or(DEFAULT_CPU),
        memory: project.deploy.memory.unwrap_or(DEFAULT_MEMORY),
        cluster,
        subnets: own.subnets.clone(),
        security_groups: own.security_groups.clone(),
        assign_public_ip: own.assign_public_ip.unwrap_or(false),
        secrets,
        task_role: project.deploy.task_role.clone(),
        execution_role: project.deploy.execution_role.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
        let text = format!("name: Sales Report\nnotebooks: [a.ipynb]\n{yaml}");
        nbpipe_project::config::parse(dir.path(), "nbpipe.yaml", &text).unwrap()
    }

    const TWO: &str = "regions:\n  eu-west-1:\n    trigger: {bucket: in-eu, prefix: in/}\n    \
        output: s3://out-eu/runs/{run_id}/\n    subnets: [subnet-11111111]\n  us-east-1:\n    \
        trigger: {bucket: in-us, prefix: in/}\n    output: s3://out-us/runs/{run_id}/\n    \
        subnets: [subnet-22222222]\n";

    #[test]
    fn each_region_gets_its_own_settings_and_names() {
        let p = project(TWO);
        let t = resolve(&p, "prod", "us-east-1").unwrap();
        assert_eq!(t.stack_name, "nbpipe-sales-report-prod-us-east-1");
        assert_eq!(t.repository, "nbpipe/sales-report-prod");
        assert_eq!(t.trigger.bucket, "in-us");
        assert_eq!(t.output, "s3://out-us/runs/{run_id}/");
        assert_eq!((t.cpu, t.memory), (1024, 2048));
    }

    #[test]
    fn unknown_region_and_bad_env_are_refused() {
        let p = project(TWO);
        let e = resolve(&p, "prod", "ap-south-1").unwrap_err().to_string();
        assert!(e.contains("not in `regions:`"), "{e}");
        let e = targets(&p, "Prod!", &["eu-west-1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--env Prod!"), "{e}");
    }

    #[test]
    fn top_level_values_that_would_cross_regions_are_refused_naming_keys() {
        let sm = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";
        let p = project(&format!("secrets:\n  DB: {sm}\n{TWO}"));
        assert!(resolve(&p, "prod", "eu-west-1").is_ok());
        let e = resolve(&p, "prod", "us-east-1").unwrap_err().to_string();
        assert!(e.contains("`secrets.DB` is a secret in `eu-west-1`"), "{e}");
        assert!(e.contains("regions.us-east-1.secrets.DB"), "{e}");
        let p = project(&format!("secrets:\n  DB: {{env: DB_PASSWORD}}\n{TWO}"));
        let e = resolve(&p, "prod", "eu-west-1").unwrap_err().to_string();
        assert!(
            e.contains("`secrets.DB` is read from environment variable `DB_PASSWORD`"),
            "{e}"
        );

        let p = project(
            "S3TriggerBucket: shared\noutput: s3://out/{run_id}/\nregions:\n  eu-west-1:\n    \
             subnets: [subnet-11111111]\n  us-east-1:\n    subnets: [subnet-22222222]\n",
        );
        let e = resolve(&p, "prod", "eu-west-1").unwrap_err().to_string();
        assert!(e.contains("trigger bucket `shared`"), "{e}");
        assert!(e.contains("regions.us-east-1.trigger"), "{e}");

        let p = project(
            "deploy: {cluster: 'arn:aws:ecs:eu-west-1:123456789012:cluster/c'}\n\
             S3TriggerBucket: b\noutput: s3://o/{run_id}/\nregions:\n  us-east-1:\n    \
             subnets: [subnet-22222222]\n",
        );
        let e = resolve(&p, "prod", "us-east-1").unwrap_err().to_string();
        assert!(
            e.contains("`deploy.cluster` is a cluster in `eu-west-1`"),
            "{e}"
        );
    }

    #[test]
    fn a_local_output_or_an_output_inside_the_trigger_is_refused() {
        let p =
            project("S3TriggerBucket: b\nregions:\n  eu-west-1:\n    subnets: [subnet-11111111]\n");
        let e = resolve(&p, "prod", "eu-west-1").unwrap_err().to_string();
        assert!(e.contains("needs an `s3://` prefix"), "{e}");
        let p = project(
            "S3TriggerBucket: b\noutput: s3://b/runs/{run_id}/\nregions:\n  eu-west-1:\n    \
             subnets: [subnet-11111111]\n",
        );
        let e = resolve(&p, "prod", "eu-west-1").unwrap_err().to_string();
        assert!(e.contains("every run would trigger another"), "{e}");
    }

    #[test]
    fn direct_mode_needs_subnets_service_mode_does_not() {
        let base = "S3TriggerBucket: b\nS3TriggerKeyPrefix: in/\noutput: s3://o/{run_id}/\n";
        let e = resolve(&project(base), "prod", "eu-west-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("regions.eu-west-1.subnets"), "{e}");
        let p = project(&format!("{base}deploy: {{mode: service}}\n"));
        assert!(resolve(&p, "prod", "eu-west-1").is_ok());
    }
}
