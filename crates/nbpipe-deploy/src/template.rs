//! The CloudFormation template of one [`Target`] (JSON, built with `serde_json`):
//!
//! - `Repository` (ECR) the image is pushed to, `LogGroup`, `Cluster` (unless one is given);
//! - `ExecutionRole` (pull from `Repository`, write to `LogGroup`, read the named secrets —
//!   nothing else) and `TaskRole` (read the trigger prefix, read/write the output prefix —
//!   nothing else), unless role ARNs are given;
//! - `TaskDefinition` (Fargate, one container `nbpipe` from the `ImageUri` parameter, with the
//!   container contract's `NBPIPE_OUTPUT`, secrets as ECS `Secrets` — ARNs only, never
//!   values —, logs to `LogGroup`);
//! - the trigger: `direct` — `Rule` (EventBridge) whose target runs the task, its input
//!   transformer putting the object into `NBPIPE_TRIGGER` and `EventsRole` allowed to run that
//!   task definition only; `service` — `Rule` → `Queue` (SQS) + `QueuePolicy`, for
//!   `nbpipe serve --sqs-queue`.
//!
//! Must not: talk to AWS. The event patterns come from `nbpipe-eventbridge`, the same ones
//! `nbpipe serve`'s intake documents and its tests deliver through moto.

use nbpipe_eventbridge::{event_pattern, RuleSource};
use nbpipe_project::config::{DeployMode, TriggerSource};
use serde_json::{json, Value};

use crate::Target;

/// The container's name in the task definition.
pub const CONTAINER: &str = "nbpipe";

/// The template's parameter naming the image (`REPO@sha256:…`).
pub const IMAGE_PARAMETER: &str = "ImageUri";

fn tags(t: &Target) -> Value {
    json!([
        {"Key": "nbpipe:project", "Value": t.project},
        {"Key": "nbpipe:env", "Value": t.env},
    ])
}

/// `arn:PARTITION:s3:::RESOURCE`, partition from the stack's.
fn s3_arn(resource: &str) -> Value {
    json!({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", resource]]})
}

/// `bucket/prefix` of an `s3://bucket/prefix/{run_id}/` template, cut at its first
/// placeholder: every run's files and the claim markers are below it.
pub fn output_base(output: &str) -> String {
    let rest = output.strip_prefix("s3://").unwrap_or(output);
    rest.split('{').next().unwrap_or(rest).to_string()
}

fn policy(statements: Vec<Value>) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn assume(service: &str) -> Value {
    policy(vec![json!({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole"
    })])
}

/// The rule's event pattern: the intake's, with the suffix matched by EventBridge itself
/// when no intake stands between the rule and the task (`direct`).
pub fn pattern(t: &Target) -> Value {
    let source = match t.trigger_source {
        TriggerSource::ObjectCreated => RuleSource::ObjectCreated,
        TriggerSource::CloudTrail => RuleSource::CloudTrail,
    };
    let mut p = event_pattern(&t.trigger.bucket, &t.trigger.prefix, source);
    if let (DeployMode::Direct, Some(suffix)) = (t.mode, &t.trigger.suffix) {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('*', "\\*");
        let matcher =
            json!([{ "wildcard": format!("{}*{}", esc(&t.trigger.prefix), esc(suffix)) }]);
        match source {
            RuleSource::ObjectCreated => p["detail"]["object"]["key"] = matcher,
            RuleSource::CloudTrail => p["detail"]["requestParameters"]["key"] = matcher,
        }
    }
    p
}

/// The input transformer of the direct-mode target: the event's object as the container's
/// `NBPIPE_TRIGGER` (the container contract's JSON).
pub fn input_transformer(t: &Target) -> Value {
    let paths = match t.trigger_source {
        TriggerSource::ObjectCreated => json!({
            "bucket": "$.detail.bucket.name",
            "key": "$.detail.object.key",
            "etag": "$.detail.object.etag",
            "version": "$.detail.object.version-id",
            "time": "$.time",
            "region": "$.region",
        }),
        TriggerSource::CloudTrail => json!({
            "bucket": "$.detail.requestParameters.bucketName",
            "key": "$.detail.requestParameters.key",
            "version": "$.detail.responseElements.x-amz-version-id",
            "time": "$.detail.eventTime",
            "region": "$.detail.awsRegion",
        }),
    };
    let etag = match t.trigger_source {
        TriggerSource::ObjectCreated => "<etag>",
        TriggerSource::CloudTrail => "",
    };
    // NBPIPE_TRIGGER is JSON inside the JSON of the overrides: its quotes are escaped once.
    let trigger = format!(
        r#"{{\"bucket\": \"<bucket>\", \"key\": \"<key>\", \"uri\": \"s3://<bucket>/<key>\", \"etag\": \"{etag}\", \"version\": \"<version>\", \"event_time\": \"<time>\", \"region\": \"<region>\"}}"#
    );
    let template = format!(
        r#"{{"containerOverrides": [{{"name": "{CONTAINER}", "environment": [{{"name": "NBPIPE_TRIGGER", "value": "{trigger}"}}]}}]}}"#
    );
    json!({"InputPathsMap": paths, "InputTemplate": template})
}

/// The whole template.
pub fn template(t: &Target) -> Value {
    let mut resources = serde_json::Map::new();
    let mut outputs = serde_json::Map::new();
    let mut put = |name: &str, v: Value| {
        resources.insert(name.to_string(), v);
    };
    put(
        "Repository",
        json!({
            "Type": "AWS::ECR::Repository",
            "Properties": {
                "RepositoryName": t.repository,
                "EmptyOnDelete": true,
                "ImageScanningConfiguration": {"ScanOnPush": true},
                "Tags": tags(t),
            }
        }),
    );
    put(
        "LogGroup",
        json!({
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": format!("/nbpipe/{}", t.stack_name),
                "RetentionInDays": 30,
            }
        }),
    );
    let cluster_arn = match &t.cluster {
        None => {
            put(
                "Cluster",
                json!({
                    "Type": "AWS::ECS::Cluster",
                    "Properties": {"ClusterName": t.stack_name, "Tags": tags(t)}
                }),
            );
            json!({"Fn::GetAtt": ["Cluster", "Arn"]})
        }
        Some(c) if c.starts_with("arn:") => json!(c),
        Some(c) => json!({"Fn::Sub": format!(
            "arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:cluster/{c}"
        )}),
    };

    let secret_arns = |service: &str| -> Vec<Value> {
        t.secrets
            .iter()
            .filter_map(|s| s.arn())
            .filter(|a| a.service == service)
            .map(|a| json!(a.arn))
            .collect()
    };
    let execution_role = match &t.execution_role {
        Some(arn) => json!(arn),
        None => {
            let mut statements = vec![
                json!({"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}),
                json!({
                    "Effect": "Allow",
                    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                               "ecr:BatchCheckLayerAvailability"],
                    "Resource": {"Fn::GetAtt": ["Repository", "Arn"]}
                }),
                json!({
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": {"Fn::GetAtt": ["LogGroup", "Arn"]}
                }),
            ];
            let sm = secret_arns("secretsmanager");
            if !sm.is_empty() {
                statements.push(json!({
                    "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": sm
                }));
            }
            let ssm = secret_arns("ssm");
            if !ssm.is_empty() {
                statements.push(json!({
                    "Effect": "Allow", "Action": "ssm:GetParameters", "Resource": ssm
                }));
            }
            put(
                "ExecutionRole",
                json!({
                    "Type": "AWS::IAM::Role",
                    "Properties": {
                        "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
                        "Policies": [{"PolicyName": "pull-log-secrets", "PolicyDocument": policy(statements)}],
                        "Tags": tags(t),
                    }
                }),
            );
            json!({"Fn::GetAtt": ["ExecutionRole", "Arn"]})
        }
    };
    let task_role = match &t.task_role {
        Some(arn) => json!(arn),
        None => {
            let trigger = format!("{}/{}*", t.trigger.bucket, t.trigger.prefix);
            let output = format!("{}*", output_base(&t.output));
            put(
                "TaskRole",
                json!({
                    "Type": "AWS::IAM::Role",
                    "Properties": {
                        "AssumeRolePolicyDocument": assume("ecs-tasks.amazonaws.com"),
                        "Policies": [{"PolicyName": "trigger-read-output-write", "PolicyDocument": policy(vec![
                            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": s3_arn(&trigger)}),
                            json!({"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": s3_arn(&output)}),
                        ])}],
                        "Tags": tags(t),
                    }
                }),
            );
            json!({"Fn::GetAtt": ["TaskRole", "Arn"]})
        }
    };

    let mut environment = vec![
        json!({"Name": "NBPIPE_OUTPUT", "Value": t.output}),
        json!({"Name": "AWS_REGION", "Value": t.region}),
    ];
    if t.mode == DeployMode::Direct {
        environment.push(json!({"Name": "NBPIPE_CLAIM", "Value": "1"}));
    }
    if let Some(env) = &t.environment {
        environment.push(json!({"Name": "NBPIPE_ENV", "Value": env}));
    }
    let secrets: Vec<Value> = t
        .secrets
        .iter()
        .filter_map(|s| {
            s.ecs_value_from()
                .map(|v| json!({"Name": s.name, "ValueFrom": v}))
        })
        .collect();
    let mut container = json!({
        "Name": CONTAINER,
        "Image": {"Ref": IMAGE_PARAMETER},
        "Essential": true,
        "Environment": environment,
        "LogConfiguration": {
            "LogDriver": "awslogs",
            "Options": {
                "awslogs-group": {"Ref": "LogGroup"},
                "awslogs-region": {"Ref": "AWS::Region"},
                "awslogs-stream-prefix": "nbpipe",
            }
        },
    });
    if !secrets.is_empty() {
        container["Secrets"] = json!(secrets);
    }
    put(
        "TaskDefinition",
        json!({
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": t.stack_name,
                "RequiresCompatibilities": ["FARGATE"],
                "NetworkMode": "awsvpc",
                "Cpu": t.cpu.to_string(),
                "Memory": t.memory.to_string(),
                "ExecutionRoleArn": execution_role,
                "TaskRoleArn": task_role,
                "ContainerDefinitions": [container],
                "Tags": tags(t),
            }
        }),
    );

    let description = format!(
        "nbpipe project {} ({}), environment {}, {} mode: runs on new objects in s3://{}/{}",
        t.project,
        t.region,
        t.env,
        t.mode.as_str(),
        t.trigger.bucket,
        t.trigger.prefix
    );
    match t.mode {
        DeployMode::Direct => {
            put(
                "EventsRole",
                json!({
                    "Type": "AWS::IAM::Role",
                    "Properties": {
                        "AssumeRolePolicyDocument": assume("events.amazonaws.com"),
                        "Policies": [{"PolicyName": "run-task", "PolicyDocument": policy(vec![
                            json!({
                                "Effect": "Allow",
                                "Action": "ecs:RunTask",
                                "Resource": {"Ref": "TaskDefinition"},
                                "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}}
                            }),
                            json!({
                                "Effect": "Allow",
                                "Action": "iam:PassRole",
                                "Resource": [execution_role, task_role]
                            }),
                        ])}],
                        "Tags": tags(t),
                    }
                }),
            );
            let subnets = &t.subnets;
            let mut vpc = json!({
                "Subnets": subnets,
                "AssignPublicIp": if t.assign_public_ip { "ENABLED" } else { "DISABLED" },
            });
            if !t.security_groups.is_empty() {
                vpc["SecurityGroups"] = json!(t.security_groups);
            }
            put(
                "Rule",
                json!({
                    "Type": "AWS::Events::Rule",
                    "Properties": {
                        "Description": description,
                        "EventPattern": pattern(t),
                        "State": "ENABLED",
                        "Targets": [{
                            "Id": "run-task",
                            "Arn": cluster_arn,
                            "RoleArn": {"Fn::GetAtt": ["EventsRole", "Arn"]},
                            "EcsParameters": {
                                "TaskDefinitionArn": {"Ref": "TaskDefinition"},
                                "TaskCount": 1,
                                "LaunchType": "FARGATE",
                                "NetworkConfiguration": {"AwsVpcConfiguration": vpc},
                                "PropagateTags": "TASK_DEFINITION",
                            },
                            "InputTransformer": input_transformer(t),
                            "RetryPolicy": {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 3600},
                        }],
                    }
                }),
            );
        }
        DeployMode::Service => {
            put(
                "Queue",
                json!({
                    "Type": "AWS::SQS::Queue",
                    "Properties": {
                        "QueueName": queue_name(t),
                        "MessageRetentionPeriod": 1_209_600,
                        "VisibilityTimeout": 120,
                        "Tags": tags(t),
                    }
                }),
            );
            put(
                "QueuePolicy",
                json!({
                    "Type": "AWS::SQS::QueuePolicy",
                    "Properties": {
                        "Queues": [{"Ref": "Queue"}],
                        "PolicyDocument": policy(vec![json!({
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["Queue", "Arn"]},
                            "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["Rule", "Arn"]}}}
                        })]),
                    }
                }),
            );
            put(
                "Rule",
                json!({
                    "Type": "AWS::Events::Rule",
                    "Properties": {
                        "Description": description,
                        "EventPattern": pattern(t),
                        "State": "ENABLED",
                        "Targets": [{"Id": "queue", "Arn": {"Fn::GetAtt": ["Queue", "Arn"]}}],
                    }
                }),
            );
            outputs.insert(
                "QueueUrl".into(),
                json!({"Description": "for nbpipe serve --sqs-queue", "Value": {"Ref": "Queue"}}),
            );
        }
    }
    outputs.insert(
        "RepositoryUri".into(),
        json!({"Value": {"Fn::GetAtt": ["Repository", "RepositoryUri"]}}),
    );
    outputs.insert("Cluster".into(), json!({"Value": cluster_arn}));
    outputs.insert(
        "TaskDefinition".into(),
        json!({"Value": {"Ref": "TaskDefinition"}}),
    );
    outputs.insert("LogGroup".into(), json!({"Value": {"Ref": "LogGroup"}}));
    // For `executor: {ecs: …}` of `nbpipe serve` in service mode.
    outputs.insert("TaskRole".into(), json!({"Value": task_role}));
    outputs.insert("ExecutionRole".into(), json!({"Value": execution_role}));
    outputs.insert("Rule".into(), json!({"Value": {"Ref": "Rule"}}));
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": description,
        "Parameters": {
            IMAGE_PARAMETER: {
                "Type": "String",
                "Description": "The project's image (REPOSITORY@sha256:DIGEST), pushed by nbpipe deploy aws",
            }
        },
        "Resources": resources,
        "Outputs": outputs,
    })
}

/// The first deployment's template: the repository alone, so the image can be pushed before
/// the task definition names it. Same logical id and properties as in [`template`].
pub fn bootstrap(t: &Target) -> Value {
    let full = template(t);
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": full["Description"],
        "Resources": {"Repository": full["Resources"]["Repository"]},
        "Outputs": {"RepositoryUri": full["Outputs"]["RepositoryUri"]},
    })
}

/// The SQS queue's name (at most 80 characters).
pub fn queue_name(t: &Target) -> String {
    t.stack_name.chars().take(80).collect()
}
