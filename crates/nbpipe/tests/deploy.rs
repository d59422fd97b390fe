//! `nbpipe deploy aws` against moto's CloudFormation, ECR, STS, ECS, EventBridge, SQS and S3
//! (real HTTP, 127.0.0.1), with the project's image pushed to Debian's `docker-registry` on
//! 127.0.0.1 *standing in for ECR*: moto implements ECR's API (the authorization token is
//! fetched from it) but serves no registry to push to. Every template written is checked with
//! `cfn-lint`. Direct mode's claim is tested against SeaweedFS's S3 (which honours
//! `If-None-Match: *`), then `nbpipe runs list` reads the history it leaves.

mod common;
mod image_support;
#[path = "../../nbpipe-server/tests/common/moto.rs"]
mod moto;
#[path = "../../nbpipe-store/tests/common/seaweed.rs"]
mod seaweed;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use image_support::{binaries, Containers};
use serde_json::{json, Value};

fn write_nb(dir: &Path, name: &str, cells: &[Value]) {
    let nb = json!({
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join(name), nb.to_string()).unwrap();
}

fn text_of(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A boto3 script against `moto` in `region`, with clients `s3`, `cfn`, `ecs`, `events`,
/// `sqs`, `ecr` and `argv` as `sys.argv[1:]`; returns stdout.
fn boto(m: &moto::Moto, region: &str, script: &str, args: &[&str]) -> String {
    let prelude = format!(
        "import sys, json, boto3\nkw = dict(endpoint_url='{}', region_name='{region}', \
         aws_access_key_id='test', aws_secret_access_key='test')\n\
         s3, cfn, ecs, events, sqs, ecr = (boto3.client(n, **kw) for n in \
         ('s3', 'cloudformation', 'ecs', 'events', 'sqs', 'ecr'))\n",
        m.endpoint()
    );
    let out = Command::new(moto::test_env_bin("python"))
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .args(args)
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// A secret value with quotes, unicode and a newline: it must reach the notebook's
/// environment and nothing else.
const SECRET: &str = "hunter2 \"quoted\" ключ\nline2";

fn project_yaml(base: &str, mode: &str, secret_arn: &str) -> String {
    format!(
        "name: hello\nnotebooks: [hello.ipynb]\nimage:\n  base: {base}\ndeploy:\n  mode: {mode}\n\
         regions:\n  eu-west-1:\n    trigger: {{bucket: in-eu, prefix: incoming/}}\n    \
         output: s3://out-eu/runs/{{run_id}}/\n    subnets: [subnet-0e0e0e0e]\n    \
         secrets:\n      DB_PASSWORD: {secret_arn}\n  \
         us-east-1:\n    trigger: {{bucket: in-us, prefix: incoming/}}\n    \
         output: s3://out-us/runs/{{run_id}}/\n    subnets: [subnet-0a0a0a0a]\n"
    )
}

fn stack_status(m: &moto::Moto, region: &str) -> String {
    boto(
        m,
        region,
        "try:\n    print(cfn.describe_stacks(StackName=sys.argv[1])['Stacks'][0]['StackStatus'])\n\
         except Exception as e:\n    print('absent')",
        &[&format!("nbpipe-hello-prod-{region}")],
    )
}

fn lint(files: &[std::path::PathBuf]) {
    let out = Command::new(moto::test_env_bin("cfn-lint"))
        .arg("--")
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "cfn-lint: {}", text_of(&out));
}

#[test]
fn deploy_two_regions_plan_redeploy_switch_modes_and_destroy() {
    let Some(c) = Containers::start() else { return };
    let m = moto::Moto::start();
    let sb = Sandbox::new();
    let bins = binaries(sb.dir.path());
    let dir = sb.path("hello");
    std::fs::create_dir_all(&dir).unwrap();
    write_nb(
        &dir,
        "hello.ipynb",
        &[code(
            "import os\nsecret = os.environ['DB_PASSWORD']\n\
             print('secret of length', len(secret))\nprint('trigger', os.environ['NBPIPE_TRIGGER'])",
        )],
    );
    // The secret lives in eu-west-1's Secrets Manager; only its ARN goes into nbpipe.yaml.
    let secret_arn = boto(
        &m,
        "eu-west-1",
        "sm = boto3.client('secretsmanager', **kw)\n\
         print(sm.create_secret(Name='db', SecretString=sys.argv[1])['ARN'])",
        &[SECRET],
    );
    std::fs::write(
        dir.join("nbpipe.yaml"),
        project_yaml(&c.base, "direct", &secret_arn),
    )
    .unwrap();
    // The data buckets exist before and must outlive the stacks.
    for (region, buckets) in [
        ("eu-west-1", ["in-eu", "out-eu"]),
        ("us-east-1", ["in-us", "out-us"]),
    ] {
        boto(
            &m,
            region,
            "for b in sys.argv[2:]:\n    kw2 = {} if sys.argv[1] == 'us-east-1' else \
             {'CreateBucketConfiguration': {'LocationConstraint': sys.argv[1]}}\n    \
             s3.create_bucket(Bucket=b, **kw2)",
            &[region, buckets[0], buckets[1]],
        );
    }
    let deploy = |extra: &[&str]| -> Output {
        let mut cmd = Command::new(&bins.0);
        sb.isolate(&mut cmd);
        let path = format!(
            "{}/.local/bin:{}",
            std::env::var("HOME").unwrap_or_default(),
            std::env::var("PATH").unwrap_or_default()
        );
        for (k, v) in m.aws_env() {
            cmd.env(k, v);
        }
        cmd.env("PATH", path)
            .env("NBPIPE_DEPLOY_REGISTRY", &c.registry_addr)
            .env("NBPIPE_IMAGE_BINARY", &bins.1)
            .env("NO_PROXY", "127.0.0.1")
            .args(["deploy", "aws"])
            .arg(&dir)
            .args([
                "--env", "prod", "--region", REGIONS[0], "--region", REGIONS[1],
            ])
            .args(extra);
        cmd.output().unwrap()
    };

    // --template writes what a team can own, and it lints.
    let tpl = sb.path("tpl-{region}.json");
    let out = deploy(&["--template", tpl.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text_of(&out));
    let files: Vec<_> = REGIONS
        .iter()
        .map(|r| sb.path(&format!("tpl-{r}.json")))
        .collect();
    lint(&files);
    let eu: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert!(eu.to_string().contains("in-eu") && !eu.to_string().contains("in-us"));
    assert_eq!(
        stack_status(&m, "eu-west-1"),
        "absent",
        "--template deploys nothing"
    );

    // --plan shows both creations and changes nothing.
    let out = deploy(&["--plan"]);
    let all = text_of(&out);
    assert!(out.status.success(), "{all}");
    for r in REGIONS {
        assert!(
            all.contains(&format!("`nbpipe-hello-prod-{r}` in `{r}`: plan (create)")),
            "{all}"
        );
        assert_eq!(stack_status(&m, r), "absent", "{all}");
    }
    assert!(
        all.contains("TaskDefinition") && all.contains("AWS::Events::Rule"),
        "{all}"
    );

    // Deploy: a stack per region, each with its own bucket in its rule and its image pushed
    // to the registry standing in for that region's ECR.
    let out = deploy(&[]);
    let all = text_of(&out);
    assert!(out.status.success(), "{all}");
    for r in REGIONS {
        assert!(
            all.contains(&format!("`nbpipe-hello-prod-{r}` in `{r}`: created")),
            "{all}"
        );
        assert!(stack_status(&m, r).ends_with("_COMPLETE"), "{r}: {all}");
    }
    let image = |region: &str| {
        boto(
            &m,
            region,
            "arns = ecs.list_task_definitions(familyPrefix=sys.argv[1])['taskDefinitionArns']\n\
             td = ecs.describe_task_definition(taskDefinition=arns[-1])['taskDefinition']\n\
             print(json.dumps(td['containerDefinitions'][0]))",
            &[&format!("nbpipe-hello-prod-{region}")],
        )
    };
    let container: Value = serde_json::from_str(&image("eu-west-1")).unwrap();
    let img = container["image"].as_str().unwrap().to_string();
    assert!(
        img.starts_with(&format!("{}/nbpipe/hello-prod@sha256:", c.registry_addr)),
        "{container}"
    );
    let env = container["environment"].to_string();
    assert!(
        env.contains("NBPIPE_CLAIM") && env.contains("s3://out-eu/runs/"),
        "{env}"
    );
    assert!(
        !env.contains("DB_PASSWORD"),
        "secrets only as ARNs in `secrets`: {env}"
    );
    let us: Value = serde_json::from_str(&image("us-east-1")).unwrap();
    assert!(
        us["environment"].to_string().contains("s3://out-us/runs/"),
        "{us}"
    );
    // The registry has the manifest the task definition names.
    let digest = img.rsplit_once('@').unwrap().1;
    let got = boto(
        &m,
        "us-east-1",
        "import urllib.request\nr = urllib.request.Request(sys.argv[1], method='HEAD', \
         headers={'Accept': 'application/vnd.oci.image.manifest.v1+json'})\n\
         print(urllib.request.urlopen(r).status)",
        &[&format!(
            "http://{}/v2/nbpipe/hello-prod/manifests/{digest}",
            c.registry_addr
        )],
    );
    assert_eq!(got, "200");
    let rules = |region: &str| {
        boto(
            &m,
            region,
            "for r in events.list_rules()['Rules']:\n    \
             t = events.list_targets_by_rule(Rule=r['Name'])['Targets']\n    \
             print(r.get('EventPattern'), [x['Arn'] for x in t])",
            &[],
        )
    };
    let eu_rules = rules("eu-west-1");
    assert!(
        eu_rules.contains("in-eu") && !eu_rules.contains("in-us"),
        "{eu_rules}"
    );
    assert!(
        eu_rules.contains(":cluster/"),
        "direct mode targets the cluster: {eu_rules}"
    );
    let us_rules = rules("us-east-1");
    assert!(
        us_rules.contains("in-us") && !us_rules.contains("in-eu"),
        "{us_rules}"
    );

    stand_in_for_eventbridge_and_fargate(&c, &m, &sb, &bins.0);

    // Again with nothing changed: nothing changes.
    let out = deploy(&[]);
    let all = text_of(&out);
    assert!(out.status.success(), "{all}");
    for r in REGIONS {
        assert!(
            all.contains(&format!("`nbpipe-hello-prod-{r}` in `{r}`: no changes")),
            "{all}"
        );
    }
    let same: Value = serde_json::from_str(&image("eu-west-1")).unwrap();
    assert_eq!(
        same["image"], container["image"],
        "the same image, no new revision: {all}"
    );

    // Service mode: the rules now feed a queue per region, for `nbpipe serve --sqs-queue`.
    std::fs::write(
        dir.join("nbpipe.yaml"),
        project_yaml(&c.base, "service", &secret_arn),
    )
    .unwrap();
    let out = deploy(&["--plan"]);
    let all = text_of(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("plan (update)") && all.contains("AWS::SQS::Queue"),
        "{all}"
    );
    let queues = boto(
        &m,
        "eu-west-1",
        "print(sqs.list_queues().get('QueueUrls', []))",
        &[],
    );
    assert!(
        !queues.contains("nbpipe-hello"),
        "--plan made no queue: {queues}"
    );
    let out = deploy(&[]);
    let all = text_of(&out);
    assert!(out.status.success(), "{all}");
    for r in REGIONS {
        assert!(
            all.contains(&format!("`nbpipe-hello-prod-{r}` in `{r}`: updated")),
            "{all}"
        );
        let queues = boto(&m, r, "print(sqs.list_queues().get('QueueUrls', []))", &[]);
        assert!(
            queues.contains(&format!("nbpipe-hello-prod-{r}")),
            "{queues}"
        );
        assert!(rules(r).contains(":sqs:"), "{}", rules(r));
    }
    // (The stacks' outputs are not asserted: moto computes none for stacks made through
    // change sets.)
    // An object in eu-west-1's trigger bucket reaches eu-west-1's queue, through the deployed
    // rule (moto's S3 → EventBridge → SQS), and no other.
    boto(
        &m,
        "eu-west-1",
        "s3.put_object(Bucket='in-eu', Key='incoming/next.csv', Body=b'1')",
        &[],
    );
    let waiting = |r: &str| {
        boto(
            &m,
            r,
            "q = sqs.get_queue_url(QueueName=sys.argv[1])['QueueUrl']\n\
             ms = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1).get('Messages', [])\n\
             print(json.dumps([json.loads(x['Body'])['detail']['object']['key'] for x in ms]))",
            &[&format!("nbpipe-hello-prod-{r}")],
        )
    };
    assert_eq!(waiting("eu-west-1"), r#"["incoming/next.csv"]"#);
    assert_eq!(waiting("us-east-1"), "[]");

    // Destroy: stacks gone, buckets kept.
    let out = deploy(&["--destroy"]);
    let all = text_of(&out);
    assert!(out.status.success(), "{all}");
    for r in REGIONS {
        assert!(
            all.contains(&format!("in `{r}`: deleted (buckets kept)")),
            "{all}"
        );
        assert_eq!(stack_status(&m, r), "absent");
    }
    let buckets = boto(
        &m,
        "us-east-1",
        "print(sorted(b['Name'] for b in s3.list_buckets()['Buckets']))",
        &[],
    );
    assert_eq!(buckets, "['in-eu', 'in-us', 'out-eu', 'out-us']");
    let out = deploy(&["--destroy"]);
    assert!(text_of(&out).contains("no such stack"), "{}", text_of(&out));
}

#[test]
fn deploy_refuses_what_would_cross_regions_naming_the_keys() {
    let sb = Sandbox::new();
    let dir = sb.path("p");
    std::fs::create_dir_all(&dir).unwrap();
    write_nb(&dir, "a.ipynb", &[code("1")]);
    std::fs::write(
        dir.join("nbpipe.yaml"),
        "notebooks: [a.ipynb]\nS3TriggerBucket: shared\noutput: s3://out/{run_id}/\n\
         secrets:\n  DB: arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf\n\
         regions:\n  eu-west-1:\n    subnets: [subnet-0e0e0e0e]\n    \
         trigger: {bucket: in-eu}\n    output: s3://out-eu/\n  \
         us-east-1:\n    subnets: [subnet-0a0a0a0a]\n    trigger: {bucket: in-us}\n    \
         output: s3://out-us/\n",
    )
    .unwrap();
    let go = |regions: &[&str]| {
        let mut cmd = sb.nbpipe();
        cmd.args(["deploy", "aws"])
            .arg(&dir)
            .args(["--env", "prod", "--template", "-"]);
        for r in regions {
            cmd.args(["--region", r]);
        }
        cmd.output().unwrap()
    };
    let out = go(&["eu-west-1"]);
    assert!(out.status.success(), "{}", text_of(&out));
    let out = go(&["us-east-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("`secrets.DB` is a secret in `eu-west-1`"),
        "{}",
        text_of(&out)
    );
    let out = go(&["ap-south-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text_of(&out).contains("not in `regions:`"),
        "{}",
        text_of(&out)
    );
}

#[test]
fn direct_mode_runs_a_trigger_once_and_runs_list_shows_it() {
    let sb = Sandbox::new();
    let weed = seaweed::Seaweed::start();
    let dir = sb.path("p");
    std::fs::create_dir_all(&dir).unwrap();
    write_nb(&dir, "a.ipynb", &[code("print('ran')")]);
    std::fs::write(
        dir.join("nbpipe.yaml"),
        "name: claimed\nnotebooks: [a.ipynb]\n",
    )
    .unwrap();
    let output = format!("s3://{}/runs/{{run_id}}/", weed.bucket());
    let trigger = |version: &str| {
        json!({"bucket": "in", "key": "incoming/a.csv", "uri": "s3://in/incoming/a.csv",
               "etag": "abc", "version": version, "event_time": "2026-12-03T10:00:00Z",
               "region": "us-east-1"})
        .to_string()
    };
    let run = |run_id: &str, version: &str| {
        let mut cmd = sb.nbpipe();
        cmd.env("NBPIPE_HOME", shared_home())
            .env("AWS_ENDPOINT_URL", weed.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NBPIPE_CLAIM", "1")
            .env("NBPIPE_OUTPUT", &output)
            .env("NBPIPE_RUN_ID", run_id)
            .env("NBPIPE_TRIGGER", trigger(version))
            .args(["run"])
            .arg(&dir)
            .arg("--quiet");
        cmd.output().unwrap()
    };
    let first = run("r1", "v1");
    assert!(first.status.success(), "{}", text_of(&first));
    // The same event delivered again: claimed already, exit 0, no second run.
    let again = run("r2", "v1");
    assert_eq!(again.status.code(), Some(0), "{}", text_of(&again));
    assert!(
        text_of(&again).contains("already claimed"),
        "{}",
        text_of(&again)
    );
    // A new version of the object is a new trigger.
    let next = run("r3", "v2");
    assert!(next.status.success(), "{}", text_of(&next));

    let mut list = sb.nbpipe();
    list.env("AWS_ENDPOINT_URL", weed.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "runs",
            "list",
            &format!("s3://{}/runs/", weed.bucket()),
            "--json",
        ]);
    let out = list.output().unwrap();
    assert!(out.status.success(), "{}", text_of(&out));
    let runs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["r1", "r3"], "{runs:?}");
    assert!(runs
        .iter()
        .all(|r| r["project"] == "claimed" && r["status"] == "succeeded"));
    assert!(runs.iter().all(|r| r["duration"].as_f64().unwrap() > 0.0));
}

/// Apply an EventBridge input transformer to `event`: `<name>` placeholders replaced by the
/// values at their `$.a.b` paths (strings JSON-escaped, as inside a quoted template; missing
/// and null values empty).
fn transform(event: &Value, it: &Value) -> String {
    let mut out = it["InputTemplate"].as_str().unwrap().to_string();
    for (name, path) in it["InputPathsMap"].as_object().unwrap() {
        let mut v = event;
        for part in path.as_str().unwrap().trim_start_matches("$.").split('.') {
            v = v.get(part).unwrap_or(&Value::Null);
        }
        let text = match v {
            Value::String(s) => {
                let q = serde_json::to_string(s).unwrap();
                q[1..q.len() - 1].to_string()
            }
            Value::Null => String::new(),
            other => other.to_string(),
        };
        out = out.replace(&format!("<{name}>"), &text);
    }
    out
}

/// EventBridge cannot deliver to an ECS target on moto, and no Fargate runs here. This test-only
/// stand-in does their part, and nothing else: each region's deployed rule gets an SQS queue
/// as its target in place of its RunTask target (so moto's own matcher decides, with the
/// deployed pattern, which events the rule takes); an object put in eu-west-1's trigger bucket
/// is matched there; the stand-in applies the rule's input transformer to the matched event
/// and runs the rule's task definition (image, environment, secrets resolved from moto's
/// Secrets Manager as ECS would, the transformer's overrides) on the local dockerd. The same
/// event is delivered twice, as EventBridge may.
fn stand_in_for_eventbridge_and_fargate(
    c: &Containers,
    m: &moto::Moto,
    sb: &Sandbox,
    nbpipe: &Path,
) {
    // Swap each region's RunTask target for a capture queue, keeping the target to replay.
    let mut targets = Vec::new();
    for r in REGIONS {
        let t = boto(
            m,
            r,
            "rule = [x for x in events.list_rules()['Rules'] if x['Name'].startswith(sys.argv[1])][0]\n\
             t = events.list_targets_by_rule(Rule=rule['Name'])['Targets'][0]\n\
             q = sqs.create_queue(QueueName='capture')['QueueUrl']\n\
             arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
             events.remove_targets(Rule=rule['Name'], Ids=[t['Id']])\n\
             events.put_targets(Rule=rule['Name'], Targets=[{'Id': 'capture', 'Arn': arn}])\n\
             print(json.dumps({'target': t, 'queue': q}))",
            &[&format!("nbpipe-hello-prod-{r}")],
        );
        targets.push(serde_json::from_str::<Value>(&t).unwrap());
    }
    // S3 → EventBridge for both trigger buckets; an object in eu-west-1's only.
    for (r, b) in [("eu-west-1", "in-eu"), ("us-east-1", "in-us")] {
        boto(
            m,
            r,
            "s3.put_bucket_notification_configuration(Bucket=sys.argv[1],\n\
             NotificationConfiguration={'EventBridgeConfiguration': {}})",
            &[b],
        );
    }
    boto(
        m,
        "eu-west-1",
        "s3.put_object(Bucket='in-eu', Key='incoming/data.csv', Body=b'a,b\\n1,2\\n')\n\
         s3.put_object(Bucket='in-eu', Key='elsewhere/other.csv', Body=b'x')",
        &[],
    );
    let receive = |r: &str, q: &str| -> Vec<Value> {
        let out = boto(
            m,
            r,
            "ms = sqs.receive_message(QueueUrl=sys.argv[1], MaxNumberOfMessages=10, WaitTimeSeconds=1).get('Messages', [])\n\
             print(json.dumps([json.loads(x['Body']) for x in ms]))",
            &[q],
        );
        serde_json::from_str(&out).unwrap()
    };
    let eu_events = receive("eu-west-1", targets[0]["queue"].as_str().unwrap());
    let us_events = receive("us-east-1", targets[1]["queue"].as_str().unwrap());
    assert_eq!(
        eu_events.len(),
        1,
        "one matching object in eu-west-1: {eu_events:?}"
    );
    assert_eq!(eu_events[0]["detail"]["object"]["key"], "incoming/data.csv");
    assert!(us_events.is_empty(), "nothing for us-east-1: {us_events:?}");

    // Run the rule's task for the event, twice.
    let target = &targets[0]["target"];
    let ecs = &target["EcsParameters"];
    assert_eq!(ecs["LaunchType"], "FARGATE");
    let td: Value = serde_json::from_str(&boto(
        m,
        "eu-west-1",
        "print(json.dumps(ecs.describe_task_definition(taskDefinition=sys.argv[1])['taskDefinition']['containerDefinitions'][0]))",
        &[ecs["TaskDefinitionArn"].as_str().unwrap()],
    ))
    .unwrap();
    let overrides: Value =
        serde_json::from_str(&transform(&eu_events[0], &target["InputTransformer"])).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    for e in td["environment"].as_array().unwrap() {
        env.push((
            e["name"].as_str().unwrap().into(),
            e["value"].as_str().unwrap().into(),
        ));
    }
    for s in td["secrets"].as_array().unwrap() {
        let value = boto(
            m,
            "eu-west-1",
            "sm = boto3.client('secretsmanager', **kw)\n\
             sys.stdout.write(sm.get_secret_value(SecretId=sys.argv[1])['SecretString'])",
            &[s["valueFrom"].as_str().unwrap()],
        );
        env.push((s["name"].as_str().unwrap().into(), value));
    }
    assert_eq!(overrides["containerOverrides"][0]["name"], td["name"]);
    for e in overrides["containerOverrides"][0]["environment"]
        .as_array()
        .unwrap()
    {
        env.push((
            e["name"].as_str().unwrap().into(),
            e["value"].as_str().unwrap().into(),
        ));
    }
    // The task role's credentials and the endpoint: moto's.
    for (k, v) in m.aws_env() {
        if k != "AWS_REGION" {
            env.push((k.into(), v));
        }
    }
    let run_task = || {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--network".into(),
            "host".into(),
        ];
        for (k, v) in &env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(td["image"].as_str().unwrap().into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        c.docker(&refs)
    };
    let first = run_task();
    assert!(first.status.success(), "{}", text_of(&first));
    let again = run_task();
    assert_eq!(again.status.code(), Some(0), "{}", text_of(&again));
    assert!(
        text_of(&again).contains("already claimed"),
        "{}",
        text_of(&again)
    );

    // Outputs in eu-west-1's output bucket only; one run; the secret nowhere.
    let objects: Value = serde_json::from_str(&boto(
        m,
        "eu-west-1",
        "out = {}\n\
         for b in ('out-eu', 'out-us'):\n    \
             for o in s3.list_objects_v2(Bucket=b).get('Contents', []):\n        \
                 out[b + '/' + o['Key']] = s3.get_object(Bucket=b, Key=o['Key'])['Body'].read().decode('utf-8', 'replace')\n\
         print(json.dumps(out))",
        &[],
    ))
    .unwrap();
    let objects = objects.as_object().unwrap();
    let manifests: Vec<&String> = objects
        .keys()
        .filter(|k| k.ends_with("/run.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{:?}", objects.keys());
    assert!(manifests[0].starts_with("out-eu/runs/"), "{manifests:?}");
    assert!(objects
        .keys()
        .any(|k| k.starts_with("out-eu/runs/.nbpipe/claims/")));
    assert!(
        objects.keys().all(|k| k.starts_with("out-eu/")),
        "{:?}",
        objects.keys()
    );
    let manifest: Value =
        serde_json::from_str(objects[manifests[0].as_str()].as_str().unwrap()).unwrap();
    assert_eq!(manifest["status"], "succeeded", "{manifest}");
    assert_eq!(
        manifest["trigger"]["key"], "incoming/data.csv",
        "{manifest}"
    );
    assert_eq!(manifest["trigger"]["region"], "eu-west-1", "{manifest}");
    let notebook = objects
        .iter()
        .find(|(k, _)| k.ends_with("hello.ipynb"))
        .map(|(_, v)| v.as_str().unwrap())
        .expect("the output notebook");
    assert!(
        notebook.contains(&format!("secret of length {}", SECRET.chars().count())),
        "{notebook}"
    );
    for (k, v) in objects {
        for part in ["hunter2", "ключ"] {
            assert!(!v.as_str().unwrap().contains(part), "the secret is in {k}");
        }
    }
    for out in [&first, &again] {
        assert!(
            !text_of(out).contains("hunter2"),
            "the secret is in the task's log"
        );
    }

    // Direct mode's history.
    let mut list = Command::new(nbpipe);
    sb.isolate(&mut list);
    for (k, v) in m.aws_env() {
        list.env(k, v);
    }
    let out = list
        .env("AWS_REGION", "eu-west-1")
        .args(["runs", "list", "s3://out-eu/runs/"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text_of(&out));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("hello") && table.contains("succeeded"),
        "{table}"
    );

    // Put the RunTask targets back, as deployed.
    for (r, t) in REGIONS.iter().zip(&targets) {
        boto(
            m,
            r,
            "rule = [x for x in events.list_rules()['Rules'] if x['Name'].startswith(sys.argv[1])][0]\n\
             events.remove_targets(Rule=rule['Name'], Ids=['capture'])\n\
             events.put_targets(Rule=rule['Name'], Targets=[json.loads(sys.argv[2])])",
            &[&format!("nbpipe-hello-prod-{r}"), &t["target"].to_string()],
        );
    }
}
