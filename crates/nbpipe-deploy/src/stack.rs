//! Stacks on CloudFormation: create or update one [`Target`]'s stack through a change set,
//! print a plan without changing anything, recognise "nothing changed", and delete it.
//! CloudFormation does the ordering, rollback and deletion; this module only submits
//! templates and waits. The first deployment of a target happens in two steps — the
//! repository alone, then (after the image is pushed to it) the whole template — because the
//! task definition names an image that must already exist.
//!
//! Endpoints and credentials come from the standard AWS environment (`AWS_ENDPOINT_URL` for
//! moto in the tests).

use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, StackStatus, Tag,
};
use aws_sdk_cloudformation::Client;
use nbpipe_image::{BuiltImage, Store};

use crate::error::sdk_message;
use crate::template::{self, IMAGE_PARAMETER};
use crate::{DeployError, Target};

/// The variable naming a registry that stands in for every region's ECR registry
/// (`127.0.0.1:5000`): the image goes there instead, under the same repository path. For
/// tests and air-gapped setups; ECR's authorization token is still requested.
pub const REGISTRY_OVERRIDE_VAR: &str = "NBPIPE_DEPLOY_REGISTRY";

/// The longest a stack operation is waited for.
const STACK_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// One resource a change set would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `Add`, `Modify`, `Remove`, …
    pub action: String,
    /// The template's logical id (`TaskDefinition`).
    pub logical_id: String,
    /// `AWS::ECS::TaskDefinition`.
    pub resource_type: String,
    /// `True`, `False` or `Conditional` for modifications.
    pub replacement: Option<String>,
}

/// What a deployment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The stack was created.
    Created(Vec<Change>),
    /// The stack was updated.
    Updated(Vec<Change>),
    /// The stack already matched: nothing was changed.
    Unchanged,
    /// `--plan`: what would change (`exists`: the stack exists); nothing was changed.
    Planned {
        /// Whether the stack exists.
        exists: bool,
        /// The change set's changes.
        changes: Vec<Change>,
    },
    /// `--destroy`: the stack was deleted.
    Destroyed,
    /// `--destroy` of a stack that does not exist.
    Absent,
}

/// The image to deploy: built locally, pushed per region.
pub struct Image<'a> {
    /// The built image.
    pub built: &'a BuiltImage,
    /// Where its blobs are.
    pub store: &'a Store,
}

/// CloudFormation, ECR and STS clients of one region.
pub struct Region {
    name: String,
    cfn: Client,
    ecr: aws_sdk_ecr::Client,
    sts: aws_sdk_sts::Client,
}

fn aws(
    service: &'static str,
    action: &'static str,
    region: &str,
    e: impl std::error::Error,
) -> DeployError {
    DeployError::Aws {
        service,
        action,
        region: region.to_string(),
        message: sdk_message(&e),
    }
}

impl Region {
    /// Clients for `region` from the standard AWS environment.
    pub async fn connect(region: &str) -> Region {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .load()
            .await;
        Region {
            name: region.to_string(),
            cfn: Client::new(&conf),
            ecr: aws_sdk_ecr::Client::new(&conf),
            sts: aws_sdk_sts::Client::new(&conf),
        }
    }

    /// The stack's status, `None` when it does not exist.
    pub async fn status(&self, stack: &str) -> Result<Option<StackStatus>, DeployError> {
        match self.cfn.describe_stacks().stack_name(stack).send().await {
            Ok(out) => Ok(out
                .stacks()
                .first()
                .and_then(|s| s.stack_status().cloned())
                .filter(|s| *s != StackStatus::DeleteComplete)),
            Err(e) => {
                let msg = sdk_message(&e);
                if msg.contains("does not exist") {
                    Ok(None)
                } else {
                    Err(DeployError::Aws {
                        service: "cloudformation",
                        action: "DescribeStacks",
                        region: self.name.clone(),
                        message: msg,
                    })
                }
            }
        }
    }

    /// The stack's outputs (key → value).
    pub async fn outputs(&self, stack: &str) -> Result<Vec<(String, String)>, DeployError> {
        let out = self
            .cfn
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| aws("cloudformation", "DescribeStacks", &self.name, e))?;
        Ok(out
            .stacks()
            .first()
            .map(|s| {
                s.outputs()
                    .iter()
                    .filter_map(|o| {
                        Some((o.output_key()?.to_string(), o.output_value()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The registry images of this region go to: ECR's (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`)
    /// or [`REGISTRY_OVERRIDE_VAR`]'s.
    pub async fn registry(&self) -> Result<String, DeployError> {
        if let Some(r) = std::env::var(REGISTRY_OVERRIDE_VAR)
            .ok()
            .filter(|v| !v.is_empty())
        {
            return Ok(r);
        }
        let me = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| aws("sts", "GetCallerIdentity", &self.name, e))?;
        let account = me.account().unwrap_or_default();
        let domain = if self.name.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        Ok(format!("{account}.dkr.ecr.{}.{domain}", self.name))
    }

    /// `REGISTRY/REPOSITORY@DIGEST`, the image the template names.
    pub async fn image_uri(&self, t: &Target, digest: &str) -> Result<String, DeployError> {
        Ok(format!(
            "{}/{}@{digest}",
            self.registry().await?,
            t.repository
        ))
    }

    /// Push the image to the region's repository with an ECR authorization token.
    async fn push(&self, t: &Target, image: &Image<'_>) -> Result<String, DeployError> {
        let token = self
            .ecr
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| aws("ecr", "GetAuthorizationToken", &self.name, e))?;
        let credentials = token
            .authorization_data()
            .first()
            .and_then(|d| d.authorization_token())
            .and_then(|t| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(t).ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            });
        let repository = format!("{}/{}", self.registry().await?, t.repository);
        let tag = image
            .built
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(16)
            .collect::<String>();
        let credentials = if std::env::var_os(REGISTRY_OVERRIDE_VAR).is_some() {
            // The stand-in registry takes no credentials: the token was still fetched.
            None
        } else {
            credentials
        };
        let digest =
            nbpipe_image::push_to(image.built, image.store, &repository, &[tag], credentials)
                .await?;
        Ok(format!("{repository}@{digest}"))
    }

    /// Create or update `t`'s stack with `image` (`plan`: only show the change set).
    pub async fn deploy(
        &self,
        t: &Target,
        image: &Image<'_>,
        plan: bool,
        note: &(dyn Fn(&str) + Sync),
    ) -> Result<Outcome, DeployError> {
        let mut status = self.status(&t.stack_name).await?;
        // A stack left by an interrupted first deployment or a failed creation cannot be
        // updated: CloudFormation only lets it be deleted.
        if matches!(
            status,
            Some(StackStatus::ReviewInProgress | StackStatus::RollbackComplete)
        ) && !plan
        {
            note(&format!(
                "removing `{}` left by an earlier failed creation",
                t.stack_name
            ));
            self.delete(&t.stack_name).await?;
            status = None;
        }
        let exists = matches!(&status, Some(s) if *s != StackStatus::ReviewInProgress);
        let full = serde_json::to_string_pretty(&template::template(t)).unwrap_or_default();
        if plan {
            let uri = self.image_uri(t, &image.built.digest).await?;
            let kind = if exists {
                ChangeSetType::Update
            } else {
                ChangeSetType::Create
            };
            let Some(id) = self.change_set(t, &full, Some(&uri), kind).await? else {
                return Ok(Outcome::Planned {
                    exists,
                    changes: Vec::new(),
                });
            };
            let result = self.wait_change_set(t, &id).await;
            let _ = self
                .cfn
                .delete_change_set()
                .change_set_name(&id)
                .stack_name(&t.stack_name)
                .send()
                .await;
            if !exists {
                // The change set made a placeholder stack (REVIEW_IN_PROGRESS): remove it.
                self.delete(&t.stack_name).await?;
            }
            return Ok(Outcome::Planned {
                exists,
                changes: result?.unwrap_or_default(),
            });
        }
        if !exists {
            note(&format!("creating `{}` (repository first)", t.stack_name));
            let boot = serde_json::to_string_pretty(&template::bootstrap(t)).unwrap_or_default();
            let id = self
                .change_set(t, &boot, None, ChangeSetType::Create)
                .await?
                .unwrap_or_default();
            self.wait_change_set(t, &id).await?;
            self.execute(t, &id).await?;
        }
        note(&format!(
            "pushing the image to `{}` in `{}`",
            t.repository, self.name
        ));
        let uri = self.push(t, image).await?;
        let Some(id) = self
            .change_set(t, &full, Some(&uri), ChangeSetType::Update)
            .await?
        else {
            return Ok(Outcome::Unchanged);
        };
        match self.wait_change_set(t, &id).await? {
            None => {
                let _ = self
                    .cfn
                    .delete_change_set()
                    .change_set_name(&id)
                    .stack_name(&t.stack_name)
                    .send()
                    .await;
                Ok(Outcome::Unchanged)
            }
            Some(changes) => {
                self.execute(t, &id).await?;
                Ok(if exists {
                    Outcome::Updated(changes)
                } else {
                    Outcome::Created(changes)
                })
            }
        }
    }

    /// Delete `t`'s stack; [`Outcome::Absent`] when there is none. Buckets are never in it.
    pub async fn destroy(&self, t: &Target) -> Result<Outcome, DeployError> {
        if self.status(&t.stack_name).await?.is_none() {
            return Ok(Outcome::Absent);
        }
        self.delete(&t.stack_name).await?;
        Ok(Outcome::Destroyed)
    }

    async fn delete(&self, stack: &str) -> Result<(), DeployError> {
        self.cfn
            .delete_stack()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| aws("cloudformation", "DeleteStack", &self.name, e))?;
        let deadline = Instant::now() + STACK_TIMEOUT;
        loop {
            match self.status(stack).await? {
                None => return Ok(()),
                Some(StackStatus::DeleteFailed) => {
                    return Err(DeployError::Stack {
                        stack: stack.to_string(),
                        region: self.name.clone(),
                        message: "DELETE_FAILED (see the stack's events)".into(),
                    })
                }
                Some(_) if Instant::now() > deadline => {
                    return Err(DeployError::Stack {
                        stack: stack.to_string(),
                        region: self.name.clone(),
                        message: "still deleting after an hour".into(),
                    })
                }
                Some(_) => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        }
    }

    async fn change_set(
        &self,
        t: &Target,
        body: &str,
        image: Option<&str>,
        kind: ChangeSetType,
    ) -> Result<Option<String>, DeployError> {
        let name = format!("nbpipe-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
        let mut req = self
            .cfn
            .create_change_set()
            .stack_name(&t.stack_name)
            .change_set_name(name)
            .template_body(body)
            .change_set_type(kind)
            .capabilities(Capability::CapabilityIam)
            .description("nbpipe deploy aws");
        if let Some(uri) = image {
            req = req.parameters(
                Parameter::builder()
                    .parameter_key(IMAGE_PARAMETER)
                    .parameter_value(uri)
                    .build(),
            );
        }
        for (k, v) in [("nbpipe:project", &t.project), ("nbpipe:env", &t.env)] {
            req = req.tags(Tag::builder().key(k).value(v.as_str()).build());
        }
        match req.send().await {
            Ok(out) => Ok(Some(out.id().unwrap_or_default().to_string())),
            Err(e) => {
                // Some implementations (moto; CloudFormation's own UpdateStack) refuse a change
                // set without changes up front instead of creating a FAILED one.
                let msg = sdk_message(&e);
                if msg.contains("No updates are to be performed") {
                    return Ok(None);
                }
                Err(DeployError::Aws {
                    service: "cloudformation",
                    action: "CreateChangeSet",
                    region: self.name.clone(),
                    message: msg,
                })
            }
        }
    }

    /// Wait for a change set; `None` when it holds no changes.
    async fn wait_change_set(
        &self,
        t: &Target,
        id: &str,
    ) -> Result<Option<Vec<Change>>, DeployError> {
        let deadline = Instant::now() + STACK_TIMEOUT;
        loop {
            let cs = self
                .cfn
                .describe_change_set()
                .change_set_name(id)
                .stack_name(&t.stack_name)
                .send()
                .await
                .map_err(|e| aws("cloudformation", "DescribeChangeSet", &self.name, e))?;
            match cs.status() {
                Some(ChangeSetStatus::CreateComplete) => {
                    let changes = cs
                        .changes()
                        .iter()
                        .filter_map(|c| c.resource_change())
                        .map(|r| Change {
                            action: r
                                .action()
                                .map(|a| a.as_str().to_string())
                                .unwrap_or_default(),
                            logical_id: r.logical_resource_id().unwrap_or_default().to_string(),
                            resource_type: r.resource_type().unwrap_or_default().to_string(),
                            replacement: r.replacement().map(|x| x.as_str().to_string()),
                        })
                        .collect();
                    return Ok(Some(changes));
                }
                Some(ChangeSetStatus::Failed) => {
                    let reason = cs.status_reason().unwrap_or_default();
                    if reason.contains("didn't contain changes") || reason.contains("No updates") {
                        return Ok(None);
                    }
                    return Err(DeployError::Stack {
                        stack: t.stack_name.clone(),
                        region: self.name.clone(),
                        message: format!("the change set failed: {reason}"),
                    });
                }
                _ if Instant::now() > deadline => {
                    return Err(DeployError::Stack {
                        stack: t.stack_name.clone(),
                        region: self.name.clone(),
                        message: "the change set was not ready after an hour".into(),
                    })
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    async fn execute(&self, t: &Target, id: &str) -> Result<(), DeployError> {
        self.cfn
            .execute_change_set()
            .change_set_name(id)
            .stack_name(&t.stack_name)
            .send()
            .await
            .map_err(|e| aws("cloudformation", "ExecuteChangeSet", &self.name, e))?;
        let deadline = Instant::now() + STACK_TIMEOUT;
        loop {
            let status = self.status(&t.stack_name).await?;
            let s = status
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if s.ends_with("_IN_PROGRESS") || s == "REVIEW_IN_PROGRESS" {
                if Instant::now() > deadline {
                    return Err(DeployError::Stack {
                        stack: t.stack_name.clone(),
                        region: self.name.clone(),
                        message: format!("still {s} after an hour"),
                    });
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            if s == "CREATE_COMPLETE" || s == "UPDATE_COMPLETE" {
                return Ok(());
            }
            return Err(DeployError::Stack {
                stack: t.stack_name.clone(),
                region: self.name.clone(),
                message: format!(
                    "ended as {s} (CloudFormation rolled back; see the stack's events)"
                ),
            });
        }
    }
}
