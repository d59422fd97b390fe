//! `nbpipe serve` with the ECS executor, against moto's ECS, CloudWatch Logs and S3 (real
//! HTTP, `moto_server` on 127.0.0.1). moto records tasks but runs no container, and Fargate
//! cannot run here: `ecs_standin.py` — a TEST-ONLY stand-in for Fargate — runs each task moto
//! holds on the local dockerd (Debian's docker.io, as in the container tests), ships its
//! output to the task's CloudWatch log stream and stops the task when the container exits.
//! The images go to Debian's docker-registry on 127.0.0.1, standing in for ECR.

mod common;
mod image_support;
#[path = "../../nbpipe-server/tests/common/moto.rs"]
mod moto;
mod serve_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use image_support::{binaries, Containers};
use moto::Moto;
use serde_json::{json, Value};
use serve_support::*;

const BUCKET: &str = "ecs-outputs";

/// The stand-in for Fargate, killed (and its containers removed) on drop.
struct StandIn {
    child: Child,
    state: std::path::PathBuf,
    docker_host: String,
}

impl StandIn {
    fn start(moto: &Moto, c: &Containers, dir: &Path) -> StandIn {
        let state = dir.join("standin.txt");
        std::fs::write(&state, "").unwrap();
        let log = std::fs::File::create(dir.join("standin.log")).unwrap();
        let child = Command::new(moto::test_env_bin("python"))
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ecs_standin.py"))
            .args([&moto.endpoint(), moto::REGION, state.to_str().unwrap()])
            .env("DOCKER_HOST", c.docker_host())
            .env("DOCKER_CONFIG", c.dir.path().join("docker-config"))
            .env("NO_PROXY", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        StandIn {
            child,
            state,
            docker_host: c.docker_host(),
        }
    }

    /// `(task arn, container)` of every container the stand-in started.
    fn started(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.state)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (_, name) in self.started() {
            let _ = Command::new("docker")
                .args(["rm", "-f", &name])
                .env("DOCKER_HOST", &self.docker_host)
                .output();
        }
    }
}

fn project_yaml(c: &Containers, network: &str) -> String {
    let mut parts = network.split(' ');
    let (subnet, sg, secret) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    format!(
        "name: ecsproj\nnotebooks: [nb.ipynb]\noutput: s3://{BUCKET}/ecsproj/{{run_id}}/\n\
         image:\n  name: {reg}/team/ecsproj\n  base: {base}\n\
         executor:\n  ecs:\n    cluster: analytics\n    region: {region}\n    subnets: [{subnet}]\n    security_groups: [{sg}]\n    \
         cpu: 512\n    memory: 1024\n    env: {{TZ: UTC}}\n    stop_timeout: 20s\n\
         secrets:\n  DB_PASSWORD: {secret}\n",
        reg = c.registry_addr,
        base = c.base,
        region = moto::REGION,
    )
}

fn write_notebook(dir: &Path) {
    let nb = json!({
        "cells": [
            tagged("seconds = 0\nrun_id = None", "parameters"),
            code("import os, time\nprint('hello from', os.environ.get('NBPIPE_RUN_ID'), 'tz', os.environ.get('TZ'))\nprint('secret', os.environ.get('DB_PASSWORD'), len(os.environ.get('DB_PASSWORD') or ''))"),
            code("for i in range(int(seconds * 2)):\n    time.sleep(0.5)\nprint('slept', seconds)"),
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("nb.ipynb"), nb.to_string()).unwrap();
}

fn submit(server: &Server, params: Value) -> String {
    let (code, body) = server.post_json(
        "/api/runs",
        &json!({"project": "ecsproj", "parameters": params}).to_string(),
    );
    assert_eq!(code, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[test]
fn served_runs_execute_as_ecs_tasks_once_each_and_are_followed_again_after_a_restart() {
    let Some(c) = Containers::start() else { return };
    let sb = Sandbox::new();
    let moto = Moto::start();
    // moto advances a task's status on every DescribeTasks (RUNNING → … → STOPPED after a
    // few calls); a real task runs until its container exits: keep moto's tasks RUNNING
    // until the stand-in (or a StopTask) stops them.
    let subnet = moto.boto(
        "ec2 = boto3.client('ec2', **kw); ecs = boto3.client('ecs', **kw)\n\
         vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']\n\
         ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={'Value': True})\n\
         sub = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24')['Subnet']['SubnetId']\n\
         sg = ec2.create_security_group(GroupName='tasks', Description='t', VpcId=vpc)['GroupId']\n\
         ecs.create_cluster(clusterName='analytics')\n\
         s3.create_bucket(Bucket=sys.argv[1])\n\
         secret = boto3.client('secretsmanager', **kw).create_secret(Name='db', SecretString='s3cr3t-value')['ARN']\n\
         import urllib.request\n\
         urllib.request.urlopen(urllib.request.Request(kw['endpoint_url'] + '/moto-api/state-manager/set-transition', \
         data=json.dumps({'model_name': 'ecs::task', 'transition': {'progression': 'manual', 'times': 10**9}}).encode(), method='POST'))\n\
         print(sub, sg, secret)",
        &[BUCKET],
    );
    let secret_arn = subnet.split(' ').nth(2).unwrap().to_string();
    let (_, slim) = binaries(sb.dir.path());
    let dir = sb.path("ecsproj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nbpipe.yaml"), project_yaml(&c, &subnet)).unwrap();
    write_notebook(&dir);
    let standin = StandIn::start(&moto, &c, sb.dir.path());
    let mut env: Vec<(String, String)> = moto
        .aws_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("NBPIPE_IMAGE_BINARY".into(), slim.display().to_string()));
    env.push(("NBPIPE_ECS_POLL_MS".into(), "300".into()));
    env.push((
        "PATH".into(),
        format!(
            "{}/.local/bin:{}",
            std::env::var("HOME").unwrap_or_default(),
            std::env::var("PATH").unwrap_or_default()
        ),
    ));
    let args = ["--lease", "3", "--no-inbox", "--warm-kernels", "0"];
    let server = Server::start_with(&sb, &dir, &args, env.iter().cloned());
    // Every server log of this sandbox, and the stand-in's.
    let log = || {
        let mut all = String::new();
        for e in std::fs::read_dir(sb.dir.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("serve-") || name == "standin.log" {
                all += &format!(
                    "--- {name}\n{}",
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                );
            }
        }
        all
    };

    // 1. A run → one task from the pushed image, its outputs in S3, its log from CloudWatch.
    let id = submit(&server, json!({}));
    let done = wait_status(&server, &id, |s| s != "queued" && s != "running", 300);
    assert_eq!(done["status"], "succeeded", "{done:#}\n{}", log());
    let handle = &done["attempts_history"][0]["handle"];
    assert_eq!(handle["executor"], "ecs", "{done:#}");
    let arn = handle["id"].as_str().unwrap().to_string();
    assert!(arn.starts_with("arn:aws:ecs:us-east-1:"), "{arn}");
    assert!(handle["image"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}/team/ecsproj@sha256:", c.registry_addr)));
    let task = moto.boto(
        "ecs = boto3.client('ecs', **kw)\n\
         t = ecs.describe_tasks(cluster='analytics', tasks=[sys.argv[1]], include=['TAGS'])['tasks'][0]\n\
         print(json.dumps({'startedBy': t.get('startedBy'), 'tags': t.get('tags', []), \
         'env': t['overrides']['containerOverrides'][0]['environment'], 'status': t['lastStatus'], \
         'td': t['taskDefinitionArn']}))",
        &[&arn],
    );
    let task: Value = serde_json::from_str(&task).unwrap();
    assert_eq!(task["startedBy"], format!("{id}-a1"), "{task:#}");
    assert_eq!(task["status"], "STOPPED");
    let env_of = |name: &str| {
        task["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_string())
    };
    assert_eq!(env_of("NBPIPE_RUN_ID").as_deref(), Some(id.as_str()));
    assert_eq!(env_of("TZ").as_deref(), Some("UTC"));
    assert_eq!(
        env_of("AWS_SECRET_ACCESS_KEY"),
        None,
        "no server credentials in tasks"
    );
    let nb = moto.boto(
        "print(s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])['Body'].read().decode())",
        &[BUCKET, &format!("ecsproj/{id}/nb.ipynb")],
    );
    assert!(nb.contains(&format!("hello from {id} tz UTC")), "{nb}");
    // ECS (the stand-in) injected the secret by ARN; the notebook saw it, nothing kept it.
    assert!(nb.contains("secret *** 12"), "{nb}");
    assert!(!nb.contains("s3cr3t-value"), "{nb}");
    let lines = server.get(&format!("/api/runs/{id}/log")).unwrap();
    assert_eq!(lines["executor"], "ecs", "{lines:#}");
    assert!(
        lines["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains(&format!("Run {id}"))),
        "{lines:#}"
    );

    // 2. A second run reuses the task definition: one revision, not one per run.
    let id2 = submit(&server, json!({}));
    let r = wait_status(&server, &id2, |s| s != "queued" && s != "running", 300);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    let revisions = moto.boto(
        "ecs = boto3.client('ecs', **kw)\n\
         print(len(ecs.list_task_definitions(familyPrefix='nbpipe-ecsproj')['taskDefinitionArns']))",
        &[],
    );
    assert_eq!(revisions, "1");
    // The secret is in the task definition by ARN only (ECS injects its value).
    let secrets = moto.boto(
        "ecs = boto3.client('ecs', **kw)\n\
         arn = ecs.list_task_definitions(familyPrefix='nbpipe-ecsproj')['taskDefinitionArns'][0]\n\
         print(json.dumps(ecs.describe_task_definition(taskDefinition=arn)['taskDefinition']['containerDefinitions'][0].get('secrets')))",
        &[],
    );
    let secrets: Value = serde_json::from_str(&secrets).unwrap();
    assert_eq!(
        secrets,
        json!([{"name": "DB_PASSWORD", "valueFrom": secret_arn}])
    );

    // 3. kill -9 of the server while a task runs → the restarted server follows the same
    //    task to its end: one task for the run, one attempt.
    let slow = submit(&server, json!({"seconds": 8}));
    wait_first_step_running(&server, &slow, 120);
    let mut server = server;
    server.signal("-9");
    let _ = server.child.wait();
    let server = Server::start_with(&sb, &dir, &args, env.iter().cloned());
    let r = wait_status(&server, &slow, |s| s != "queued" && s != "running", 180);
    assert_eq!(r["status"], "succeeded", "{r:#}");
    assert_eq!(r["attempts"], 1, "{r:#}");
    let tasks = moto.boto(
        "ecs = boto3.client('ecs', **kw)\n\
         n = sum(len(ecs.list_tasks(cluster='analytics', startedBy=sys.argv[1], desiredStatus=d)['taskArns']) for d in ('RUNNING', 'STOPPED'))\n\
         print(n)",
        &[&format!("{slow}-a1")],
    );
    assert_eq!(tasks, "1", "one task for the run");
    let containers = standin
        .started()
        .iter()
        .filter(|(a, _)| *a == r["attempts_history"][0]["handle"]["id"])
        .count();
    assert_eq!(containers, 1, "one container for the run");

    // 4. Cancel → StopTask with the reason; the notebook is saved with the cancel.
    let cancelled = submit(&server, json!({"seconds": 30}));
    wait_first_step_running(&server, &cancelled, 120);
    std::thread::sleep(Duration::from_secs(2));
    let (code, body) = server.post_json(&format!("/api/runs/{cancelled}/cancel"), "{}");
    assert_eq!(code, 200, "{body}");
    let r = wait_status(&server, &cancelled, |s| s != "running", 90);
    assert_eq!(r["status"], "cancelled", "{r:#}\n{}", log());
    let reason = moto.boto(
        "ecs = boto3.client('ecs', **kw)\n\
         print(ecs.describe_tasks(cluster='analytics', tasks=[sys.argv[1]])['tasks'][0].get('stoppedReason'))",
        &[r["attempts_history"][0]["handle"]["id"].as_str().unwrap()],
    );
    assert_eq!(reason, "nbpipe: the run was cancelled");
    let m = moto.boto(
        "print(s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])['Body'].read().decode())",
        &[BUCKET, &format!("ecsproj/{cancelled}/run.json")],
    );
    let m: Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["status"], "cancelled", "{m:#}");
    drop(server);
    drop(standin);
    assert_eq!(c.leftover_containers(), "");
}

/// `regions:` in the served ECS path, on moto's ECS in two regions (no container runs: moto
/// records the tasks, which is all this test looks at). An object in a region's bucket runs
/// in that region — its cluster, network, output and the ECR of that region — and none in the
/// other; an object from a region the project does not list is refused and starts nothing.
#[test]
fn served_runs_go_to_the_region_of_their_trigger() {
    let sb = Sandbox::new();
    let moto = Moto::start();
    let nets = moto.boto(
        "import urllib.request\n\
         out = {}\n\
         for region in ('us-east-1', 'eu-west-3'):\n\
         \x20   k = dict(kw, region_name=region)\n\
         \x20   ec2 = boto3.client('ec2', **k); ecs = boto3.client('ecs', **k)\n\
         \x20   vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']\n\
         \x20   ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={'Value': True})\n\
         \x20   sub = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24')['Subnet']['SubnetId']\n\
         \x20   sg = ec2.create_security_group(GroupName='t', Description='t', VpcId=vpc)['GroupId']\n\
         \x20   ecs.create_cluster(clusterName='c-' + region)\n\
         \x20   out[region] = [sub, sg]\n\
         urllib.request.urlopen(urllib.request.Request(kw['endpoint_url'] + '/moto-api/state-manager/set-transition', \
         data=json.dumps({'model_name': 'ecs::task', 'transition': {'progression': 'manual', 'times': 10**9}}).encode(), method='POST'))\n\
         print(json.dumps(out))",
        &[],
    );
    let nets: Value = serde_json::from_str(&nets).unwrap();
    let net = |r: &str, i: usize| nets[r][i].as_str().unwrap().to_string();
    let dir = sb.path("regional");
    std::fs::create_dir_all(&dir).unwrap();
    write_notebook(&dir);
    let yaml = format!(
        "name: regional\nnotebooks: [nb.ipynb]\noutput: s3://out-default/{{run_id}}/\n\
         trigger:\n  s3: {{bucket: data-bucket, prefix: in/}}\n\
         executor:\n  ecs:\n    cluster: c-us-east-1\n    subnets: [{us_sub}]\n    security_groups: [{us_sg}]\n    \
         image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/regional:1\n\
         regions:\n  us-east-1:\n    output: s3://out-virginia/{{run_id}}/\n    cluster: c-us-east-1\n    \
         subnets: [{us_sub}]\n    security_groups: [{us_sg}]\n  eu-west-3:\n    \
         output: s3://out-paris/{{run_id}}/\n    cluster: c-eu-west-3\n    subnets: [{eu_sub}]\n    \
         security_groups: [{eu_sg}]\n",
        us_sub = net("us-east-1", 0),
        us_sg = net("us-east-1", 1),
        eu_sub = net("eu-west-3", 0),
        eu_sg = net("eu-west-3", 1),
    );
    std::fs::write(dir.join("nbpipe.yaml"), yaml).unwrap();
    let mut env: Vec<(String, String)> = moto
        .aws_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("NBPIPE_ECS_POLL_MS".into(), "300".into()));
    let args = [
        "--lease",
        "3",
        "--no-inbox",
        "--warm-kernels",
        "0",
        "--per-project",
        "2",
    ];
    let server = Server::start_with(&sb, &dir, &args, env.iter().cloned());
    let hook = |region: &str, key: &str| {
        let body = json!({"Records": [{
            "eventSource": "aws:s3", "awsRegion": region, "eventName": "ObjectCreated:Put",
            "eventTime": "2026-12-03T10:00:00.000Z",
            "s3": {"bucket": {"name": "data-bucket"},
                   "object": {"key": key, "size": 3, "eTag": format!("e-{key}"), "sequencer": "0A"}}
        }]})
        .to_string();
        let (code, v) = server.post_json("/hooks/s3", &body);
        assert_eq!(code, 202, "{v}");
        assert_eq!(v["queued"], 1, "{v}");
    };
    let tasks = |region: &str| -> Vec<Value> {
        let out = moto.boto(
            "ecs = boto3.client('ecs', **dict(kw, region_name=sys.argv[1]))\n\
             arns = ecs.list_tasks(cluster='c-' + sys.argv[1])['taskArns']\n\
             ts = ecs.describe_tasks(cluster='c-' + sys.argv[1], tasks=arns)['tasks'] if arns else []\n\
             print(json.dumps([{'arn': t['taskArn'], 'env': t['overrides']['containerOverrides'][0]['environment'], \
             'image': ecs.describe_task_definition(taskDefinition=t['taskDefinitionArn'])['taskDefinition']['containerDefinitions'][0]['image'], \
             'subnets': [d['value'] for a in t.get('attachments', []) for d in a.get('details', []) if d['name'] == 'subnetId']} for t in ts]))",
            &[region],
        );
        serde_json::from_str(&out).unwrap()
    };

    // An object in eu-west-3: one task there, none in us-east-1.
    hook("eu-west-3", "in/paris.csv");
    let runs = server.wait_runs("a launched task", |r| {
        r.len() == 1 && r[0]["status"] == "running"
    });
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let mut run = Value::Null;
    for _ in 0..100 {
        run = server.get(&format!("/api/runs/{id}")).unwrap();
        if run["attempts_history"][0]["handle"]["id"].is_string() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let arn = run["attempts_history"][0]["handle"]["id"]
        .as_str()
        .unwrap_or_default();
    assert!(arn.starts_with("arn:aws:ecs:eu-west-3:"), "{run:#}");
    let eu = tasks("eu-west-3");
    assert_eq!(eu.len(), 1, "{eu:#?}");
    assert!(tasks("us-east-1").is_empty());
    let var = |t: &Value, name: &str| {
        t["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        var(&eu[0], "NBPIPE_OUTPUT"),
        format!("s3://out-paris/{id}/")
    );
    assert_eq!(
        eu[0]["image"], "123456789012.dkr.ecr.eu-west-3.amazonaws.com/regional:1",
        "the task pulls from its own region's ECR"
    );
    assert!(var(&eu[0], "NBPIPE_TRIGGER").contains("eu-west-3"));

    // An object from a region the project does not list: refused, no task anywhere.
    hook("ap-south-1", "in/mumbai.csv");
    let runs = server.wait_runs("the refused run", |r| {
        r.iter().any(|r| r["status"] == "failed")
    });
    let failed = runs.iter().find(|r| r["status"] == "failed").unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("triggered in region `ap-south-1`, which `regions:` does not list"),
        "{failed:#}"
    );
    assert_eq!(tasks("eu-west-3").len(), 1);
    assert!(tasks("us-east-1").is_empty());

    // The eu-west-3 run is stopped where it runs.
    let (code, _) = server.post_json(&format!("/api/runs/{id}/cancel"), "{}");
    assert!(code == 200 || code == 202, "{code}");
    wait_status(&server, &id, |s| s == "cancelled" || s == "failed", 60);
}
