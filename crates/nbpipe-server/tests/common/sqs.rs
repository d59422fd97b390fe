//! The SQS side of the intake tests: an AWS SDK client bound to a [`Moto`] server, configured
//! explicitly (not from the environment), and intake options that poll briskly. Included by
//! path next to `moto.rs` by the test binaries that read SQS.
#![allow(dead_code)]

use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::Client;
use nbpipe_server::intake::sqs::SqsOptions;

use crate::moto::{Moto, REGION};

/// An SQS client of `moto`.
pub fn client(moto: &Moto) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    Client::from_conf(config)
}

/// Options for `queue_url`: 1 s long polls and a 1 s visibility timeout.
pub fn options(queue_url: &str) -> SqsOptions {
    SqsOptions {
        wait: Duration::from_secs(1),
        visibility_timeout: Some(Duration::from_secs(1)),
        ..SqsOptions::new(queue_url)
    }
}
