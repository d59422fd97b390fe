//! Every template shape `nbpipe deploy aws` writes — direct and service mode, `Object Created`
//! and CloudTrail events, with and without secrets, given roles and clusters — passes
//! `cfn-lint` (the real linter, from the test environment), and says what the least-privilege
//! and secrets rules promise.

#[path = "../../nbpipe-server/tests/common/moto.rs"]
mod moto;

use std::process::Command;

use nbpipe_deploy::target::resolve;
use nbpipe_deploy::template::template;
use serde_json::Value;

const SM: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf";
const SSM: &str = "arn:aws:ssm:eu-west-1:123456789012:parameter/team/token";

fn project(yaml: &str) -> nbpipe_project::config::Project {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    let text = format!("name: sales\nnotebooks: [a.ipynb]\n{yaml}");
    nbpipe_project::config::parse(dir.path(), "nbpipe.yaml", &text).unwrap()
}

fn yaml(deploy: &str) -> String {
    format!(
        "deploy: {{{deploy}}}\nsecrets:\n  DB_PASSWORD: {SM}\n  API_TOKEN: {SSM}\nregions:\n  \
         eu-west-1:\n    trigger: {{bucket: in-eu, prefix: incoming/, suffix: .csv}}\n    \
         output: s3://out-eu/runs/{{run_id}}/\n    subnets: [subnet-0a1b2c3d]\n    \
         security_groups: [sg-0a1b2c3d]\n"
    )
}

/// Lint the templates (name, template) with one cfn-lint run; fails the test with its findings.
fn lint(templates: &[(String, Value)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, t) in templates {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(t).unwrap()).unwrap();
        files.push(file);
    }
    let out = Command::new(moto::test_env_bin("cfn-lint"))
        .arg("--regions")
        .arg("eu-west-1")
        .arg("--")
        .args(&files)
        .output()
        .expect("run cfn-lint");
    assert!(
        out.status.success(),
        "cfn-lint rejects templates:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[test]
fn every_template_shape_passes_cfn_lint() {
    let shapes = [
        ("direct-object-created", "mode: direct"),
        (
            "direct-cloudtrail",
            "mode: direct, trigger_source: cloudtrail",
        ),
        ("service-object-created", "mode: service"),
        (
            "service-cloudtrail",
            "mode: service, trigger_source: cloudtrail",
        ),
        (
            "given-roles-and-cluster",
            "task_role: 'arn:aws:iam::123456789012:role/t', execution_role: \
             'arn:aws:iam::123456789012:role/e', cluster: shared, cpu: 512, memory: 4096",
        ),
    ];
    let mut templates = Vec::new();
    for (name, deploy) in shapes {
        let t = resolve(&project(&yaml(deploy)), "prod", "eu-west-1").unwrap();
        templates.push((name.to_string(), template(&t)));
        let boot = nbpipe_deploy::template::bootstrap(&t);
        templates.push((format!("{name}-bootstrap"), boot));
    }
    lint(&templates);
}

#[test]
fn roles_grant_the_trigger_and_output_prefixes_and_the_named_secrets_only() {
    let t = resolve(&project(&yaml("mode: direct")), "prod", "eu-west-1").unwrap();
    let tpl = template(&t);
    let task = &tpl["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    let text = task.to_string();
    assert!(text.contains("in-eu/incoming/*"), "{text}");
    assert!(text.contains("out-eu/runs/*"), "{text}");
    let actions: Vec<String> = task["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            _ => vec![],
        })
        .collect();
    assert_eq!(actions, ["s3:GetObject", "s3:GetObject", "s3:PutObject"]);
    let exec = tpl["Resources"]["ExecutionRole"]["Properties"].to_string();
    assert!(exec.contains(SM) && exec.contains(SSM), "{exec}");
    assert!(
        !exec.contains("secretsmanager:*") && !exec.contains("\"s3:"),
        "{exec}"
    );
}

#[test]
fn secrets_appear_as_arns_in_secrets_never_in_plain_environment() {
    let t = resolve(&project(&yaml("mode: direct")), "prod", "eu-west-1").unwrap();
    let tpl = template(&t);
    let c = &tpl["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    assert_eq!(
        c["Secrets"],
        serde_json::json!([
            {"Name": "DB_PASSWORD", "ValueFrom": SM},
            {"Name": "API_TOKEN", "ValueFrom": SSM},
        ])
    );
    let env = c["Environment"].to_string();
    assert!(
        !env.contains("DB_PASSWORD") && !env.contains("secretsmanager"),
        "{env}"
    );
    assert!(
        !tpl["Outputs"].to_string().contains("secret"),
        "{}",
        tpl["Outputs"]
    );
    assert!(
        env.contains("NBPIPE_CLAIM"),
        "direct mode asks the container to claim: {env}"
    );
}

#[test]
fn direct_rules_run_the_task_with_the_object_in_nbpipe_trigger() {
    for (deploy, key_path) in [
        ("mode: direct", "/detail/object/key"),
        (
            "mode: direct, trigger_source: cloudtrail",
            "/detail/requestParameters/key",
        ),
    ] {
        let t = resolve(&project(&yaml(deploy)), "prod", "eu-west-1").unwrap();
        let tpl = template(&t);
        let rule = &tpl["Resources"]["Rule"]["Properties"];
        // The suffix is matched by EventBridge itself: no intake filters it in direct mode.
        assert_eq!(
            rule["EventPattern"].pointer(key_path).unwrap(),
            &serde_json::json!([{"wildcard": "incoming/*.csv"}])
        );
        let target = &rule["Targets"][0];
        assert_eq!(target["EcsParameters"]["LaunchType"], "FARGATE");
        let it = &target["InputTransformer"];
        // The template with placeholders filled by plain values is the overrides' JSON, and
        // its NBPIPE_TRIGGER the container contract's JSON.
        let mut filled = it["InputTemplate"].as_str().unwrap().to_string();
        for (k, v) in [
            ("bucket", "in-eu"),
            ("key", "incoming/a b.csv"),
            ("etag", "abc"),
            ("version", "v1"),
            ("time", "2026-12-03T10:00:00Z"),
            ("region", "eu-west-1"),
        ] {
            filled = filled.replace(&format!("<{k}>"), v);
        }
        let overrides: Value = serde_json::from_str(&filled).expect(&filled);
        let env = &overrides["containerOverrides"][0]["environment"][0];
        assert_eq!(env["name"], "NBPIPE_TRIGGER");
        let trigger: Value = serde_json::from_str(env["value"].as_str().unwrap()).unwrap();
        assert_eq!(trigger["uri"], "s3://in-eu/incoming/a b.csv");
        assert_eq!(trigger["version"], "v1");
        let parsed = nbpipe_project::run::TriggerObject::from_json(&trigger).unwrap();
        assert_eq!(parsed.key, "incoming/a b.csv");
    }
}

#[test]
fn service_rules_feed_a_queue_that_only_the_rule_may_send_to() {
    let t = resolve(&project(&yaml("mode: service")), "prod", "eu-west-1").unwrap();
    let tpl = template(&t);
    let r = &tpl["Resources"];
    assert_eq!(r["Queue"]["Type"], "AWS::SQS::Queue");
    assert_eq!(
        r["Rule"]["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0],
        "Queue"
    );
    let policy = r["QueuePolicy"]["Properties"]["PolicyDocument"].to_string();
    assert!(policy.contains("aws:SourceArn") && policy.contains("events.amazonaws.com"));
    assert!(r.get("EventsRole").is_none());
    // The intake applies the suffix in service mode: the pattern is the intake's own.
    assert_eq!(
        r["Rule"]["Properties"]["EventPattern"]["detail"]["object"]["key"],
        serde_json::json!([{"prefix": "incoming/"}])
    );
    assert!(tpl["Outputs"].get("QueueUrl").is_some());
}
