//! Tests of `deploy:`, `regions:` and `secrets:`, the AWS deployment settings.

use super::*;

fn project(body: &str) -> Result<Project, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    let text = format!("notebooks: [a.ipynb]\n{body}");
    parse(dir.path(), "nbpipe.yaml", &text)
}

fn err(body: &str, line: usize, key: &str) -> String {
    let e = project(body).expect_err(body);
    let shown = e.to_string();
    let inv = e.invalid().unwrap_or_else(|| panic!("{shown}")).clone();
    assert_eq!((inv.line, inv.key.as_str()), (line, key), "{shown}");
    shown
}

const SM: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";
const SSM: &str = "arn:aws:ssm:us-east-1:123456789012:parameter/team/token";

#[test]
fn deploy_defaults_to_direct_object_created() {
    let p = project("").unwrap();
    assert_eq!(p.deploy, DeployConfig::default());
    assert_eq!(p.deploy.mode, DeployMode::Direct);
    assert_eq!(p.deploy.trigger_source, TriggerSource::ObjectCreated);
    assert!(p.regions.is_empty() && p.secrets.is_empty());
}

#[test]
fn deploy_reads_every_key() {
    let p = project(
        "deploy:\n  mode: service\n  trigger_source: cloudtrail\n  \
         task_role: arn:aws:iam::123456789012:role/task\n  \
         execution_role: arn:aws:iam::123456789012:role/exec\n  cpu: 512\n  memory: 2g\n  \
         cluster: shared\n",
    )
    .unwrap();
    assert_eq!(
        p.deploy,
        DeployConfig {
            mode: DeployMode::Service,
            trigger_source: TriggerSource::CloudTrail,
            task_role: Some("arn:aws:iam::123456789012:role/task".into()),
            execution_role: Some("arn:aws:iam::123456789012:role/exec".into()),
            cpu: Some(512),
            memory: Some(2048),
            cluster: Some("shared".into()),
        }
    );
}

#[test]
fn deploy_rejects_bad_values_with_their_location() {
    let e = err("deploy:\n  mode: lambda\n", 3, "deploy.mode");
    assert!(e.contains("`direct` or `service`"), "{e}");
    let e = err(
        "deploy:\n  trigger_source: sns\n",
        3,
        "deploy.trigger_source",
    );
    assert!(e.contains("`cloudtrail`"), "{e}");
    let e = err("deploy:\n  task_role: my-role\n", 3, "deploy.task_role");
    assert!(e.contains("IAM role ARN"), "{e}");
    let e = err("deploy:\n  cpu: 300\n", 3, "deploy.cpu");
    assert!(e.contains("Fargate CPU size"), "{e}");
    let e = err("deploy:\n  cpu: 256\n  memory: 4096\n", 4, "deploy.memory");
    assert!(e.contains("512 to 2048 MiB"), "{e}");
    let e = err("deploy:\n  memory: lots\n", 3, "deploy.memory");
    assert!(e.contains("memory size"), "{e}");
    let e = err("deploy:\n  cluster: 'a b'\n", 3, "deploy.cluster");
    assert!(e.contains("cluster name"), "{e}");
    let e = err("deploy:\n  mod: direct\n", 3, "deploy.mod");
    assert!(e.contains("did you mean `mode`"), "{e}");
}

#[test]
fn regions_read_trigger_output_network_and_secrets() {
    let p = project(&format!(
        "secrets:\n  DB_PASSWORD: {SM}\nregions:\n  eu-west-1:\n    \
         trigger: {{bucket: in-eu, prefix: sales/, suffix: .csv}}\n    \
         output: s3://out-eu/runs/{{run_id}}/\n    subnets: [subnet-0a1b2c3d]\n    \
         security_groups: sg-12ab34cd\n    assign_public_ip: true\n  us-east-1:\n    \
         secrets:\n      TOKEN: {{aws: {SSM}}}\n"
    ))
    .unwrap();
    assert_eq!(p.secrets.len(), 1);
    assert_eq!(p.secrets[0].name, "DB_PASSWORD");
    assert_eq!(p.secrets[0].arn().unwrap().region, "eu-west-1");
    let [eu, us] = p.regions.as_slice() else {
        panic!("{:?}", p.regions)
    };
    assert_eq!(eu.name, "eu-west-1");
    assert_eq!(
        eu.trigger,
        Some(S3Location {
            bucket: "in-eu".into(),
            prefix: "sales/".into(),
            suffix: Some(".csv".into())
        })
    );
    assert_eq!(eu.output.as_deref(), Some("s3://out-eu/runs/{run_id}/"));
    assert_eq!(eu.subnets, vec!["subnet-0a1b2c3d".to_string()]);
    assert_eq!(eu.security_groups, vec!["sg-12ab34cd".to_string()]);
    assert_eq!(eu.assign_public_ip, Some(true));
    assert_eq!(us.secrets[0].key, "regions.us-east-1.secrets.TOKEN");
    assert_eq!(us.secrets[0].arn().unwrap().service, "ssm");
}

#[test]
fn regions_refuse_what_would_cross_regions() {
    // A secret of another region, written inside a region.
    let e = err(
        &format!("regions:\n  us-east-1:\n    secrets:\n      DB: {SM}\n"),
        5,
        "regions.us-east-1.secrets.DB",
    );
    assert!(e.contains("`eu-west-1`, not `us-east-1`"), "{e}");
    // One bucket named by two regions.
    let e = err(
        "regions:\n  eu-west-1:\n    trigger: {bucket: data}\n  us-east-1:\n    \
         output: s3://data/runs/\n",
        6,
        "regions.us-east-1.output",
    );
    assert!(
        e.contains("`regions.eu-west-1.trigger.bucket` uses in `eu-west-1`"),
        "{e}"
    );
    // A cluster ARN of another region.
    let e = err(
        "regions:\n  eu-west-1:\n    cluster: arn:aws:ecs:us-east-1:123456789012:cluster/c\n",
        4,
        "regions.eu-west-1.cluster",
    );
    assert!(e.contains("in `us-east-1`, not in `eu-west-1`"), "{e}");
}

#[test]
fn regions_reject_bad_values_with_their_location() {
    let e = err(
        "regions:\n  europe:\n    output: s3://o/\n",
        3,
        "regions.europe",
    );
    assert!(e.contains("not an AWS region name"), "{e}");
    let e = err(
        "regions:\n  eu-west-1:\n    output: ./runs/\n",
        4,
        "regions.eu-west-1.output",
    );
    assert!(e.contains("s3://"), "{e}");
    let e = err(
        "regions:\n  eu-west-1:\n    subnets: [vpc-1]\n",
        4,
        "regions.eu-west-1.subnets",
    );
    assert!(e.contains("`subnet-`"), "{e}");
    let e = err(
        "regions:\n  eu-west-1:\n    trigger: {prefix: a/}\n",
        4,
        "regions.eu-west-1.trigger.bucket",
    );
    assert!(e.contains("no `bucket:`"), "{e}");
    let e = err(
        "regions:\n  eu-west-1:\n    ouptut: s3://o/\n",
        4,
        "regions.eu-west-1.ouptut",
    );
    assert!(e.contains("did you mean `output`"), "{e}");
}

#[test]
fn secrets_reject_bad_names_and_sources() {
    let e = err(&format!("secrets:\n  1PASS: {SM}\n"), 3, "secrets.1PASS");
    assert!(e.contains("environment variable name"), "{e}");
    let e = err(
        &format!("secrets:\n  NBPIPE_X: {SM}\n"),
        3,
        "secrets.NBPIPE_X",
    );
    assert!(e.contains("reserved"), "{e}");
    let e = err("secrets:\n  DB: hunter2\n", 3, "secrets.DB");
    assert!(e.contains("Secrets Manager secret"), "{e}");
    let e = err("secrets:\n  DB: arn:aws:s3:::bucket/key\n", 3, "secrets.DB");
    assert!(e.contains("SSM parameter"), "{e}");
    let e = err("secrets:\n  DB: {vault: x}\n", 3, "secrets.DB.vault");
    assert!(e.contains("expected one of `aws`"), "{e}");
}

#[test]
fn secrets_read_env_file_and_json_key_sources() {
    let p = project(&format!(
        "secrets:\n  A: {{env: SRC_VAR}}\n  B: {{file: secrets/b.txt}}\n  \
         C: {{aws: {SM}, json_key: password}}\n  D: {SSM}\n"
    ))
    .unwrap();
    let src: Vec<&SecretSource> = p.secrets.iter().map(|s| &s.source).collect();
    assert_eq!(src[0], &SecretSource::Env("SRC_VAR".into()));
    let SecretSource::File(path) = src[1] else {
        panic!("{src:?}")
    };
    assert!(
        path.is_absolute() && path.ends_with("secrets/b.txt"),
        "{path:?}"
    );
    let c = p.secrets[2].arn().unwrap();
    assert_eq!(c.json_key.as_deref(), Some("password"));
    assert_eq!(
        p.secrets[2].ecs_value_from().unwrap(),
        format!("{SM}:password::")
    );
    assert_eq!(p.secrets[3].ecs_value_from().unwrap(), SSM);
    assert!(p.secrets[0].arn().is_none() && p.secrets[0].ecs_value_from().is_none());
}

#[test]
fn secrets_reject_bad_source_forms_with_their_location() {
    let e = err("secrets:\n  DB: {env: X, file: y}\n", 3, "secrets.DB");
    assert!(
        e.contains("names one source") && e.contains("`env`, `file`"),
        "{e}"
    );
    let e = err("secrets:\n  DB: {json_key: k}\n", 3, "secrets.DB");
    assert!(e.contains("names one source"), "{e}");
    let e = err("secrets:\n  DB: {env: 2BAD}\n", 3, "secrets.DB.env");
    assert!(e.contains("not an environment variable name"), "{e}");
    let e = err("secrets:\n  DB: {file: ''}\n", 3, "secrets.DB.file");
    assert!(e.contains("must not be empty"), "{e}");
    let e = err(
        "secrets:\n  DB: {env: X, json_key: k}\n",
        3,
        "secrets.DB.json_key",
    );
    assert!(e.contains("goes with `aws`"), "{e}");
    let e = err(
        &format!("secrets:\n  DB: {{aws: {SSM}, json_key: k}}\n"),
        3,
        "secrets.DB.aws",
    );
    assert!(e.contains("not of an SSM parameter"), "{e}");
    let e = err(
        &format!("secrets:\n  DB:\n    aws: {SM}\n    json_key: [a]\n"),
        5,
        "secrets.DB.json_key",
    );
    assert!(e.contains("string"), "{e}");
    // A value written where its source belongs is not echoed back.
    let e = err("secrets:\n  DB: hunter2-value\n", 3, "secrets.DB");
    assert!(!e.contains("hunter2") && e.contains("never goes in"), "{e}");
}
