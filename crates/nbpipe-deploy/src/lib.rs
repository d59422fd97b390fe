//! `nbpipe deploy aws`: a project on AWS as one CloudFormation stack per project ×
//! environment × region, and the two pieces a deployed task needs at run time.
//!
//! - [`target`] resolves a project for an environment and a region ([`Target`]): the region's
//!   keys over the top-level ones, refusing what would make data cross regions;
//! - [`template`] writes a target's CloudFormation template (ECR repository, log group,
//!   cluster, least-privilege roles, Fargate task definition, and the trigger: an EventBridge
//!   rule running the task directly, or feeding an SQS queue for `nbpipe serve`);
//! - [`stack`] creates, updates (through change sets), plans and deletes stacks, and pushes
//!   the project's image to each region's repository;
//! - [`claim`] is direct mode's at-least-once guard (a conditional create of a marker);
//! - [`history`] lists the `run.json` files under an output prefix.
//!
//! CloudFormation does the ordering, rollback and deletion: this crate writes templates and
//! submits them, it never reconciles resources itself. It never reads a secret's value:
//! secrets reach templates as ARNs only.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let project = nbpipe_project::config::load(std::path::Path::new("sales"))?;
//! let target = nbpipe_deploy::target::resolve(&project, "prod", "eu-west-1")?;
//! let template = nbpipe_deploy::template::template(&target);
//! println!("{}", serde_json::to_string_pretty(&template)?);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod claim;
mod error;
pub mod history;
pub mod stack;
pub mod target;
pub mod template;

pub use error::DeployError;
pub use target::Target;
