"""TEST-ONLY stand-in for Fargate: moto records ECS tasks but runs no container, and no
Fargate can run here. This loop takes each task moto holds and runs it the way Fargate
would, on the test's local dockerd: the task definition's image, the task's container
overrides (environment, command), its secrets read from moto's Secrets Manager / SSM by
`valueFrom` as ECS injects them, the test's AWS settings (so the container reaches moto's
S3 for its outputs), its output shipped to the task definition's `awslogs` group and stream
in moto's CloudWatch Logs; when the container exits the task is stopped
("Essential container in task exited"), and a task stopped through the API (StopTask) gets
its container stopped (SIGTERM, then SIGKILL after 20 s). It is not part of nbpipe.

    python ecs_standin.py MOTO_ENDPOINT REGION STATE_FILE

Every container it started is recorded in STATE_FILE (one `task_arn container` per line).
"""

import json
import os
import subprocess
import sys
import time

import boto3

endpoint, region, state_file = sys.argv[1], sys.argv[2], sys.argv[3]
kw = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id="test",
          aws_secret_access_key="test")
ecs = boto3.client("ecs", **kw)
logs = boto3.client("logs", **kw)
secretsmanager = boto3.client("secretsmanager", **kw)
ssm = boto3.client("ssm", **kw)
AWS_ENV = {
    "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": region, "AWS_EC2_METADATA_DISABLED": "true",
}
running = {}  # task arn -> {container, cluster, group, stream, shipped}


def docker(*args, check=False):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def ship(t):
    """Send the container's new output lines to its log stream."""
    out = docker("logs", t["container"])
    lines = (out.stdout + out.stderr).splitlines()
    new = lines[t["shipped"]:]
    if not new:
        return
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": line or " "} for line in new]
    logs.put_log_events(logGroupName=t["group"], logStreamName=t["stream"], logEvents=events)
    t["shipped"] = len(lines)


def secret_value(value_from):
    """What ECS puts in the container for a `secrets` entry (`ARN`, or `ARN:json-key::`)."""
    if ":ssm:" in value_from:
        name = value_from.split(":parameter", 1)[1]
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    parts = value_from.split(":")
    arn, key = ":".join(parts[:7]), (parts[7] if len(parts) > 7 else "")
    text = secretsmanager.get_secret_value(SecretId=arn)["SecretString"]
    return json.loads(text)[key] if key else text


def start(cluster, task):
    arn = task["taskArn"]
    td = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    cdef = td["containerDefinitions"][0]
    override = next((o for o in task.get("overrides", {}).get("containerOverrides", [])
                     if o.get("name") == cdef["name"]), {})
    env = dict(AWS_ENV)
    env.update({e["name"]: e["value"] for e in cdef.get("environment", [])})
    env.update({e["name"]: e["value"] for e in override.get("environment", [])})
    try:
        env.update({s["name"]: secret_value(s["valueFrom"]) for s in cdef.get("secrets", [])})
    except Exception as e:  # ECS fails such a task before it starts
        ecs.stop_task(cluster=cluster, task=task["taskArn"],
                      reason=f"ResourceInitializationError: unable to pull secrets: {e}"[:250])
        return
    opts = cdef["logConfiguration"]["options"]
    task_id = arn.rsplit("/", 1)[1]
    stream = f"{opts['awslogs-stream-prefix']}/{cdef['name']}/{task_id}"
    try:
        logs.create_log_stream(logGroupName=opts["awslogs-group"], logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    name = f"standin-{task_id}"
    args = ["run", "-d", "--name", name, "--network", "host"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    args.append(cdef["image"])
    args += override.get("command", cdef.get("command", []))
    r = docker(*args)
    if r.returncode != 0:
        ecs.stop_task(cluster=cluster, task=arn,
                      reason=f"CannotPullContainerError: {r.stderr.strip()[:200]}")
        return
    running[arn] = {"container": name, "cluster": cluster, "group": opts["awslogs-group"],
                    "stream": stream, "shipped": 0}
    with open(state_file, "a") as f:
        f.write(f"{arn} {name}\n")


def finish(arn, t, stop_reason=None):
    ship(t)
    docker("rm", "-f", t["container"])
    if stop_reason:
        ecs.stop_task(cluster=t["cluster"], task=arn, reason=stop_reason)
    del running[arn]


while True:
    try:
        for cluster in ecs.list_clusters()["clusterArns"]:
            arns = ecs.list_tasks(cluster=cluster, desiredStatus="RUNNING")["taskArns"]
            stopped = ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]
            if arns:
                for task in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]:
                    if task["taskArn"] not in running and task.get("lastStatus") != "STOPPED":
                        start(cluster, task)
            for arn in [a for a in list(running) if a in stopped]:
                # Stopped through the API: SIGTERM, SIGKILL after the grace.
                t = running[arn]
                docker("stop", "-t", "20", t["container"])
                finish(arn, t)
        for arn, t in list(running.items()):
            state = docker("inspect", "-f", "{{.State.Running}}", t["container"]).stdout.strip()
            ship(t)
            if state == "false":
                finish(arn, t, "Essential container in task exited")
    except Exception as e:  # moto restarting, a container gone: try again
        print(f"stand-in: {e}", file=sys.stderr, flush=True)
    time.sleep(0.3)
