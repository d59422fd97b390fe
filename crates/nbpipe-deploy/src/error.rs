//! The error type of deployments.

/// Why a deployment (or a claim, or a history listing) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The project's settings cannot be deployed to this region as they are (a missing key,
    /// or a value that would make data cross regions). The message names the keys.
    #[error("{0}")]
    Config(String),
    /// Bad command-line input (environment name, region list).
    #[error("{0}")]
    Usage(String),
    /// An AWS API call failed.
    #[error("{service} `{action}` in `{region}` failed: {message}")]
    Aws {
        /// `cloudformation`, `ecr`, `sts`.
        service: &'static str,
        /// The API action.
        action: &'static str,
        /// The region called.
        region: String,
        /// What AWS said.
        message: String,
    },
    /// CloudFormation could not apply a change set or delete a stack.
    #[error("stack `{stack}` in `{region}`: {message}")]
    Stack {
        /// The stack's name.
        stack: String,
        /// Its region.
        region: String,
        /// The status and reason CloudFormation gave.
        message: String,
    },
    /// Building or pushing the image failed.
    #[error(transparent)]
    Image(#[from] nbpipe_image::ImageError),
    /// Reading or writing the output prefix failed (claims, run history).
    #[error(transparent)]
    Store(#[from] nbpipe_store::StoreError),
    /// The claim marker could not be written (nor found to exist).
    #[error("cannot claim the trigger at `{marker}`: {message}")]
    Claim {
        /// The marker's location.
        marker: String,
        /// The store's error.
        message: String,
    },
    /// Writing a template file failed.
    #[error("cannot write `{path}`: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl DeployError {
    /// Whether the fault is in the project file or the command line (exit 2) rather than in
    /// AWS or the network (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DeployError::Config(_)
                | DeployError::Usage(_)
                | DeployError::Image(nbpipe_image::ImageError::Config(_))
        )
    }
}

/// Format an SDK error with its service message (`DisplayErrorContext` shows the chain).
pub(crate) fn sdk_message<E: std::error::Error>(e: &E) -> String {
    aws_sdk_cloudformation::error::DisplayErrorContext(e).to_string()
}
