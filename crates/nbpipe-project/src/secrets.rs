//! Resolving a project's `secrets:` to values, once per run, for the kernels it starts.
//!
//! Owns reading each source — an environment variable of this process, a file, an AWS
//! Secrets Manager secret (`GetSecretValue`, `SecretString`, optionally one field of a JSON
//! object) or an SSM Parameter Store parameter (`GetParameter` with decryption) — and the
//! [`Resolved`] set: the kernel's extra environment plus the [`Masker`] that keeps the values
//! out of everything the run records. AWS clients take credentials, and the endpoint
//! (`AWS_ENDPOINT_URL`), from the standard AWS environment; the region is the ARN's.
//!
//! Inside a container the values may already be in the environment under their names:
//! - ECS (the ECS executor, a deployed stack) injects each AWS secret: when the variable
//!   `NAME` is set and the source is `aws`, its value is used and AWS is not called;
//! - the Docker executor resolves every secret on the server and passes `NAME=value`, listing
//!   the names in [`IN_ENV_VAR`]: those are used as they are, whatever their source.
//!
//! Errors name the secret and its source, never a value. Values are never logged, written,
//! nor shown by `Debug`.

use std::collections::HashMap;

use nbpipe_exec::Masker;

use crate::config::{AwsArn, Secret, SecretSource};

/// How long reading one AWS secret may take (the SDK's own retries included).
const AWS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Names of secrets whose values the environment already holds under their own names
/// (comma-separated), set by the executor that started this process.
pub const IN_ENV_VAR: &str = "NBPIPE_SECRETS_IN_ENV";

/// A run's secret values.
#[derive(Clone, Default)]
pub struct Resolved {
    env: Vec<(String, String)>,
    masker: Masker,
}

impl std::fmt::Debug for Resolved {
    /// Names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Resolved").field("names", &names).finish()
    }
}

impl Resolved {
    /// Values given directly (name, value); for callers that resolved them elsewhere.
    pub fn from_values(env: Vec<(String, String)>) -> Resolved {
        let masker = Masker::new(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Resolved { env, masker }
    }

    /// `(NAME, value)` for the kernel's environment.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Masks every value (and its encoded forms).
    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Whether there are no secrets.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
    }
}

/// A secret that could not be resolved. Messages never contain a value.
#[derive(Debug, thiserror::Error)]
#[error("secret `{name}` (`{key}`, from {source_desc}) could not be read: {reason}")]
pub struct SecretError {
    /// The secret's name (its environment variable in the kernel).
    pub name: String,
    /// Where it is configured (`secrets.DB_PASSWORD`).
    pub key: String,
    /// The source, described (`environment variable `X``, `file `…``, the ARN).
    pub source_desc: String,
    /// What went wrong.
    pub reason: String,
}

/// Resolve every secret (in order; the first failure stops).
pub async fn resolve(secrets: &[Secret]) -> Result<Resolved, SecretError> {
    let mut env = Vec::with_capacity(secrets.len());
    let mut configs: HashMap<String, aws_config::SdkConfig> = HashMap::new();
    let given = std::env::var(IN_ENV_VAR).unwrap_or_default();
    let given: Vec<&str> = given.split(',').map(str::trim).collect();
    for s in secrets {
        if given.contains(&s.name.as_str()) {
            if let Ok(v) = std::env::var(&s.name) {
                env.push((s.name.clone(), v));
                continue;
            }
        }
        let fail = |reason: String| SecretError {
            name: s.name.clone(),
            key: s.key.clone(),
            source_desc: s.source.to_string(),
            reason,
        };
        let value = match &s.source {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(fail(format!("`{var}` is not set in nbpipe's environment")))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(fail(format!("`{var}` is not valid UTF-8")))
                }
            },
            SecretSource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let mut v = String::from_utf8(bytes)
                    .map_err(|_| fail("the file is not valid UTF-8".into()))?;
                // One trailing newline, as Docker and Kubernetes secret files have.
                if v.ends_with('\n') {
                    v.pop();
                    if v.ends_with('\r') {
                        v.pop();
                    }
                }
                v
            }
            SecretSource::Aws(arn) => match std::env::var(&s.name) {
                // Injected by ECS into the container (see the module docs).
                Ok(v) => v,
                Err(_) => {
                    let config = match configs.get(&arn.region) {
                        Some(c) => c.clone(),
                        None => {
                            let c = aws_config::defaults(aws_config::BehaviorVersion::latest())
                                .region(aws_config::Region::new(arn.region.clone()))
                                .load()
                                .await;
                            configs.insert(arn.region.clone(), c.clone());
                            c
                        }
                    };
                    match tokio::time::timeout(AWS_TIMEOUT, fetch(&config, arn)).await {
                        Ok(got) => got.map_err(fail)?,
                        Err(_) => {
                            return Err(fail(format!(
                                "AWS did not answer within {} s",
                                AWS_TIMEOUT.as_secs()
                            )))
                        }
                    }
                }
            },
        };
        env.push((s.name.clone(), value));
    }
    Ok(Resolved::from_values(env))
}

/// Read one AWS secret or parameter.
async fn fetch(config: &aws_config::SdkConfig, arn: &AwsArn) -> Result<String, String> {
    if arn.service == "ssm" {
        let client = aws_sdk_ssm::Client::new(config);
        let out = client
            .get_parameter()
            .name(&arn.arn)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| format!("SSM GetParameter failed: {}", sdk_error(&e)))?;
        return out
            .parameter
            .and_then(|p| p.value)
            .ok_or_else(|| "SSM returned no value".to_string());
    }
    let client = aws_sdk_secretsmanager::Client::new(config);
    let out = client
        .get_secret_value()
        .secret_id(&arn.arn)
        .send()
        .await
        .map_err(|e| format!("Secrets Manager GetSecretValue failed: {}", sdk_error(&e)))?;
    let text = out.secret_string.ok_or_else(|| {
        "the secret holds binary data (`SecretBinary`); only `SecretString` is supported"
            .to_string()
    })?;
    let Some(key) = &arn.json_key else {
        return Ok(text);
    };
    // serde_json's messages name positions, never content.
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("`json_key` is set but the secret is not JSON ({e})"))?;
    match json.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Null) | None => {
            Err(format!("the secret's JSON object has no field `{key}`"))
        }
        Some(other) => Ok(other.to_string()),
    }
}

/// An SDK error with its service message (code and message; AWS never echoes a value).
fn sdk_error(e: &(dyn std::error::Error + 'static)) -> String {
    aws_sdk_ssm::error::DisplayErrorContext(e).to_string()
}
