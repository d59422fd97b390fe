//! Benchmark (ignored as a test; run by `bench/aws.sh`): `nbpipe deploy aws` and the path from
//! an object put to the ECS task launch, in both deploy modes, on moto (real HTTP,
//! `moto_server` on 127.0.0.1) with Debian's docker-registry standing in for ECR, as in the
//! deploy tests. Prints a table and writes `bench/out/aws-results.json`.
//!
//! - deploy: first deployment (image build + push + change set), a redeploy with nothing
//!   changed, `--plan`, `--destroy`;
//! - direct mode: put → the stack's EventBridge rule matched the object (its ECS target,
//!   which moto cannot call, swapped for an observer SQS queue). On AWS, EventBridge itself then calls RunTask; moto's
//!   EventBridge cannot call ECS, so that last hop is AWS's and is not measured here;
//! - service mode: put → S3 → EventBridge → the stack's SQS queue → `nbpipe serve --sqs-queue`
//!   → RunTask (the task seen in moto's ListTasks, polled every 20 ms: moto records no
//!   `createdAt`).

mod common;
mod image_support;
#[path = "../../nbpipe-server/tests/common/moto.rs"]
mod moto;
mod serve_support;

use std::process::{Command, Output};
use std::time::Instant;

use common::*;
use image_support::{binaries, Containers};
use serde_json::json;
use serve_support::*;

const REGION: &str = "us-east-1";

fn boto(m: &moto::Moto, script: &str, args: &[&str]) -> String {
    let prelude = format!(
        "import sys, json, time, boto3\nkw = dict(endpoint_url='{}', region_name='{REGION}', \
         aws_access_key_id='test', aws_secret_access_key='test')\n\
         s3, cfn, ecs, events, sqs, ec2 = (boto3.client(n, **kw) for n in \
         ('s3', 'cloudformation', 'ecs', 'events', 'sqs', 'ec2'))\n",
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

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn text_of(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
#[ignore = "a benchmark: bench/aws.sh runs it"]
fn bench_deploy_and_put_to_launch() {
    let Some(c) = Containers::start() else {
        panic!("the benchmark needs dockerd and docker-registry (scripts/test-containers.sh)")
    };
    let events: usize = std::env::var("NBPIPE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let m = moto::Moto::start();
    let sb = Sandbox::new();
    let bins = binaries(sb.dir.path());
    let net = boto(
        &m,
        "vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId']\n\
         ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={'Value': True})\n\
         sub = ec2.create_subnet(VpcId=vpc, CidrBlock='10.0.1.0/24')['Subnet']['SubnetId']\n\
         sg = ec2.create_security_group(GroupName='t', Description='t', VpcId=vpc)['GroupId']\n\
         ecs.create_cluster(clusterName='bench')\n\
         for b in ('bench-in', 'bench-out'):\n    s3.create_bucket(Bucket=b)\n\
         s3.put_bucket_notification_configuration(Bucket='bench-in', \
         NotificationConfiguration={'EventBridgeConfiguration': {}})\n\
         import urllib.request\n\
         urllib.request.urlopen(urllib.request.Request(kw['endpoint_url'] + '/moto-api/state-manager/set-transition', \
         data=json.dumps({'model_name': 'ecs::task', 'transition': {'progression': 'manual', 'times': 10**9}}).encode(), method='POST'))\n\
         print(sub, sg)",
        &[],
    );
    let (subnet, sg) = net.split_once(' ').unwrap();
    let dir = sb.path("bench");
    std::fs::create_dir_all(&dir).unwrap();
    let nb = json!({
        "cells": [code("print('hello')")],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("nb.ipynb"), nb.to_string()).unwrap();
    let yaml = |mode: &str, image: &str| {
        format!(
            "name: bench\nnotebooks: [nb.ipynb]\noutput: s3://bench-out/runs/{{run_id}}/\n\
             image:\n  base: {base}\n\
             trigger:\n  s3: {{bucket: bench-in, prefix: incoming/}}\n\
             deploy:\n  mode: {mode}\n\
             regions:\n  {REGION}:\n    cluster: bench\n    subnets: [{subnet}]\n    security_groups: [{sg}]\n\
             executor:\n  ecs:\n    cluster: bench\n    region: {REGION}\n    subnets: [{subnet}]\n    \
             security_groups: [{sg}]\n    image: {image}\n",
            base = c.base,
        )
    };
    std::fs::write(dir.join("nbpipe.yaml"), yaml("direct", "unused")).unwrap();
    let deploy = |extra: &[&str]| -> (f64, Output) {
        let mut cmd = Command::new(&bins.0);
        sb.isolate(&mut cmd);
        for (k, v) in m.aws_env() {
            cmd.env(k, v);
        }
        cmd.env("NBPIPE_DEPLOY_REGISTRY", &c.registry_addr)
            .env("NBPIPE_IMAGE_BINARY", &bins.1)
            .env("NO_PROXY", "127.0.0.1")
            .env(
                "PATH",
                format!(
                    "{}/.local/bin:{}",
                    std::env::var("HOME").unwrap_or_default(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .args(["deploy", "aws"])
            .arg(&dir)
            .args(["--env", "bench", "--region", REGION, "--quiet"])
            .args(extra);
        let t = Instant::now();
        let out = cmd.output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "deploy {extra:?}: {}", text_of(&out));
        (secs, out)
    };

    // Deploy times.
    let (first, _) = deploy(&[]);
    let (again, _) = deploy(&[]);
    let (plan, _) = deploy(&["--plan"]);

    // Direct mode: put → the rule matched (an observer queue as a second target of the rule).
    let rule_queue = boto(
        &m,
        "rid = [r for r in cfn.describe_stack_resources(StackName=sys.argv[1])['StackResources'] \
         if r['LogicalResourceId'] == 'Rule'][0]['PhysicalResourceId']\n\
         rule = rid.split('|')[-1].split('/')[-1]\n\
         url = sqs.create_queue(QueueName='observe')['QueueUrl']\n\
         arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
         ids = [t['Id'] for t in events.list_targets_by_rule(Rule=rule)['Targets']]\n\
         events.remove_targets(Rule=rule, Ids=ids)\n\
         events.put_targets(Rule=rule, Targets=[{'Id': 'observe', 'Arn': arn}])\n\
         print(url)",
        &[&format!("nbpipe-bench-bench-{REGION}")],
    );
    let direct: Vec<f64> = serde_json::from_str(&boto(
        &m,
        "url, n = sys.argv[1], int(sys.argv[2])\nout = []\n\
         for i in range(n):\n\
         \x20   key = f'incoming/direct-{i}.csv'\n\
         \x20   t0 = time.time(); s3.put_object(Bucket='bench-in', Key=key, Body=b'x')\n\
         \x20   seen = None\n\
         \x20   while seen is None:\n\
         \x20       if time.time() - t0 > 30: raise SystemExit(f'{key}: no event in 30 s')\n\
         \x20       for msg in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10).get('Messages', []):\n\
         \x20           sqs.delete_message(QueueUrl=url, ReceiptHandle=msg['ReceiptHandle'])\n\
         \x20           if key in msg['Body']: seen = time.time()\n\
         \x20   out.append(seen - t0)\n\
         print(json.dumps(out))",
        &[&rule_queue, &events.to_string()],
    ))
    .unwrap();

    // Service mode: the stack's queue, read by `nbpipe serve --sqs-queue … --executor ecs`.
    let image = format!("{}/nbpipe/bench-bench:latest", c.registry_addr);
    std::fs::write(dir.join("nbpipe.yaml"), yaml("service", &image)).unwrap();
    let (to_service, _) = deploy(&[]);
    let queue = boto(
        &m,
        "print([u for u in sqs.list_queues()['QueueUrls'] if 'observe' not in u][0])",
        &[],
    );
    let mut env: Vec<(String, String)> = m
        .aws_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("NBPIPE_ECS_POLL_MS".into(), "500".into()));
    // moto's tasks never end by themselves: a worker per event, so that every launch is
    // measured without waiting for an earlier task.
    let workers = (events + 1).to_string();
    let server = Server::start_with(
        &sb,
        &dir,
        &[
            "--sqs-queue",
            &queue,
            "--no-inbox",
            "--warm-kernels",
            "0",
            "--per-project",
            "1000",
            "--workers",
            &workers,
        ],
        env.iter().cloned(),
    );
    let service: Vec<f64> = serde_json::from_str(&boto(
        &m,
        "n = int(sys.argv[1])\nout = []\nseen = set()\n\
         for i in range(n):\n\
         \x20   t0 = time.time(); s3.put_object(Bucket='bench-in', Key=f'incoming/service-{i}.csv', Body=b'x')\n\
         \x20   while True:\n\
         \x20       if time.time() - t0 > 60: raise SystemExit(f'service-{i}: no task in 60 s')\n\
         \x20       arns = [a for a in ecs.list_tasks(cluster='bench')['taskArns'] if a not in seen]\n\
         \x20       if arns:\n\
         \x20           now = time.time(); seen.add(arns[0]); out.append(now - t0); break\n\
         \x20       time.sleep(0.02)\n\
         print(json.dumps(out))",
        &[&events.to_string()],
    ))
    .unwrap();
    drop(server);
    let (destroy, _) = deploy(&["--destroy"]);

    let row = |name: &str, v: &[f64]| {
        format!(
            "{name:<44} p50 {:>7.3} s   p95 {:>7.3} s   n={}",
            percentile(v, 0.5),
            percentile(v, 0.95),
            v.len()
        )
    };
    let report = format!(
        "nbpipe deploy aws on moto (one region; image build + push to a local registry)\n\
         {:<44} {first:>7.2} s\n{:<44} {again:>7.2} s\n{:<44} {plan:>7.2} s\n\
         {:<44} {to_service:>7.2} s\n{:<44} {destroy:>7.2} s\n\n\
         object put -> task launch request, on moto\n{}\n{}\n\
         (direct: the rule matched the object; on AWS, EventBridge then calls RunTask itself, \
         which moto cannot)\n",
        "first deploy (create)",
        "deploy again, nothing changed",
        "--plan",
        "switch to service mode",
        "--destroy",
        row("direct mode: put -> rule matched", &direct),
        row("service mode: put -> RunTask (SQS, serve)", &service),
    );
    eprintln!("{report}");
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/out");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(
        out_dir.join("aws-results.json"),
        serde_json::to_string_pretty(&json!({
            "deploy_seconds": {"create": first, "unchanged": again, "plan": plan,
                               "to_service": to_service, "destroy": destroy},
            "direct_put_to_rule_seconds": direct,
            "service_put_to_runtask_seconds": service,
        }))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(service.len(), events);
}
