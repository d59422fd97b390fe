//! Store configuration: the environment variables (or explicit key/values) that say how to reach
//! object stores, and nbpipe's own retry settings.
//!
//! Owns: reading `AWS_*` / `GOOGLE_*` / `AZURE_*` / `NBPIPE_STORE_*` values and the AWS shared
//! config files (`~/.aws/credentials`, `~/.aws/config`). Must not: log or print a value — only key
//! names ever leave this module in text ([`StoreConfig`]'s `Debug` shows keys, never values).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::StoreError;

/// Environment variables (besides the `AWS_`, `GOOGLE_`, `AZURE_` and `NBPIPE_STORE_` families)
/// that the cloud builders read.
const EXTRA_KEYS: &[&str] = &[
    "HOME",
    "SERVICE_ACCOUNT",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
];

const PREFIXES: &[&str] = &["AWS_", "GOOGLE_", "AZURE_", "NBPIPE_STORE_"];

/// Default number of retries of one request after its first attempt.
pub const DEFAULT_MAX_RETRIES: usize = 10;
/// Default time after which a failing request is no longer retried.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default size above which an object is uploaded in parts.
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 32 * 1024 * 1024;
/// S3's smallest part (all but the last).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// How to reach object stores: a set of environment-style key/values.
///
/// [`StoreConfig::from_env`] takes them from the process environment (what
/// [`Location::parse`](crate::Location::parse) uses); [`StoreConfig::new`] starts empty so tests
/// and embedders can pass an explicit configuration with [`StoreConfig::with`] without touching
/// the process environment. Keys are the usual variable names:
///
/// * S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
///   `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` / `AWS_ENDPOINT` (an
///   `http://` endpoint is allowed; path-style requests unless
///   `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`), `AWS_PROFILE` with `AWS_SHARED_CREDENTIALS_FILE` /
///   `AWS_CONFIG_FILE` (default `~/.aws/…`; static keys, `region`, `endpoint_url`),
///   `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
///   (ECS / EKS Pod Identity), `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, instance metadata
///   (IMDSv2) last unless `AWS_EC2_METADATA_DISABLED=true`; `AWS_SKIP_SIGNATURE=true` for public
///   buckets; any other key `object_store` knows (`AWS_TIMEOUT`, `AWS_REQUEST_PAYER`, …).
/// * GCS: `GOOGLE_SERVICE_ACCOUNT` (path), `GOOGLE_SERVICE_ACCOUNT_KEY` (JSON),
///   `GOOGLE_APPLICATION_CREDENTIALS`, `SERVICE_ACCOUNT`, else the metadata server.
/// * Azure: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`,
///   `AZURE_CLIENT_ID` / `AZURE_CLIENT_SECRET` / `AZURE_TENANT_ID`, `AZURE_STORAGE_USE_EMULATOR`,
///   `IDENTITY_ENDPOINT`, …
/// * nbpipe: `NBPIPE_STORE_MAX_RETRIES` (default 10), `NBPIPE_STORE_RETRY_TIMEOUT_SECS`
///   (default 60; fractions allowed), `NBPIPE_STORE_MULTIPART_THRESHOLD_MB` (default 32; larger
///   objects are uploaded in parts of that size, at least 5 MiB).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct StoreConfig {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values can be secrets: show only which keys are set.
        f.debug_struct("StoreConfig")
            .field("keys", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StoreConfig {
    /// An empty configuration: nothing from the process environment.
    pub fn new() -> StoreConfig {
        StoreConfig::default()
    }

    /// The store-related variables of the process environment.
    pub fn from_env() -> StoreConfig {
        let mut config = StoreConfig::new();
        for (key, value) in std::env::vars_os() {
            let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                continue;
            };
            if PREFIXES.iter().any(|p| key.starts_with(p)) || EXTRA_KEYS.contains(&key) {
                config.vars.insert(key.to_string(), value.to_string());
            }
        }
        config
    }

    /// Set one key (an environment variable name such as `AWS_ENDPOINT_URL`).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> StoreConfig {
        self.vars.insert(key.into(), value.into());
        self
    }

    /// Every key set, with its value (values can be secrets: never print them).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of a key, if set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// All keys starting with `prefix`, with their values.
    pub(crate) fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.vars
            .iter()
            .filter(move |(k, v)| k.starts_with(prefix) && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether a boolean key is set to a true value (`true`, `1`, `yes`, `on`).
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on"
            )
        })
    }

    /// nbpipe's own retry and upload settings.
    pub(crate) fn settings(&self, url: &str) -> Result<Settings, StoreError> {
        let bad = |key: &str, want: &str| StoreError::Config {
            url: url.to_string(),
            reason: format!("`{key}` must be {want}"),
        };
        let max_retries = match self.get("NBPIPE_STORE_MAX_RETRIES") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| bad("NBPIPE_STORE_MAX_RETRIES", "a whole number"))?,
            None => DEFAULT_MAX_RETRIES,
        };
        let retry_timeout = match self.get("NBPIPE_STORE_RETRY_TIMEOUT_SECS") {
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad("NBPIPE_STORE_RETRY_TIMEOUT_SECS", "a number of seconds"))?,
            None => DEFAULT_RETRY_TIMEOUT,
        };
        let multipart_threshold = match self.get("NBPIPE_STORE_MULTIPART_THRESHOLD_MB") {
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|mb| *mb > 0)
                .map(|mb| (mb * 1024 * 1024).max(MIN_PART_SIZE))
                .ok_or_else(|| bad("NBPIPE_STORE_MULTIPART_THRESHOLD_MB", "a positive number"))?,
            None => DEFAULT_MULTIPART_THRESHOLD,
        };
        Ok(Settings {
            max_retries,
            retry_timeout,
            multipart_threshold,
        })
    }

    /// Credentials, region and endpoint from the AWS shared files for the selected profile, for
    /// whatever the environment does not set itself.
    pub(crate) fn aws_profile(&self) -> AwsProfile {
        let profile = self
            .get("AWS_PROFILE")
            .or_else(|| self.get("AWS_DEFAULT_PROFILE"))
            .unwrap_or("default")
            .to_string();
        let home = self.get("HOME").map(PathBuf::from);
        let file = |key: &str, default: &str| {
            self.get(key)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let mut out = AwsProfile::default();
        // The credentials file names sections `[name]`; the config file `[profile name]`
        // (and `[default]`). Credentials in the credentials file win.
        if let Some(text) =
            file("AWS_CONFIG_FILE", "config").and_then(|p| std::fs::read_to_string(p).ok())
        {
            let section = if profile == "default" {
                "default".to_string()
            } else {
                format!("profile {profile}")
            };
            out.merge(ini_section(&text, &section));
        }
        if let Some(text) = file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            let creds = ini_section(&text, &profile);
            if creds.contains_key("aws_access_key_id") {
                out.access_key_id = None;
                out.secret_access_key = None;
                out.session_token = None;
            }
            out.merge(creds);
        }
        out
    }
}

/// Retry and upload settings for one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub max_retries: usize,
    pub retry_timeout: Duration,
    pub multipart_threshold: usize,
}

impl Settings {
    /// `object_store`'s retry policy: exponential backoff with jitter (0.5 s, then about ×3 per
    /// retry, at most 15 s apart), bounded by a count and a total time.
    pub fn retry_config(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(500).min(self.retry_timeout / 4),
                max_backoff: Duration::from_secs(15),
                base: 3.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

/// What an AWS profile in the shared files supplies.
#[derive(Default, Clone)]
pub(crate) struct AwsProfile {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

impl AwsProfile {
    fn merge(&mut self, section: BTreeMap<String, String>) {
        for (k, v) in section {
            let slot = match k.as_str() {
                "aws_access_key_id" => &mut self.access_key_id,
                "aws_secret_access_key" => &mut self.secret_access_key,
                "aws_session_token" => &mut self.session_token,
                "region" => &mut self.region,
                "endpoint_url" => &mut self.endpoint_url,
                _ => continue,
            };
            *slot = Some(v);
        }
    }
}

/// The `key = value` lines of one `[section]` of an INI file (keys lower-cased).
fn ini_section(text: &str, section: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let (k, v) = (k.trim(), v.trim());
            // Nested blocks (`s3 =` followed by indented lines) are skipped: no value.
            if !v.is_empty() {
                out.insert(k.to_ascii_lowercase(), v.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_keys_but_never_values() {
        let c = StoreConfig::new()
            .with("AWS_ACCESS_KEY_ID", "AKIDVISIBLE")
            .with("AWS_SECRET_ACCESS_KEY", "s3cr3t-value");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("AWS_SECRET_ACCESS_KEY"), "{dbg}");
        assert!(
            !dbg.contains("s3cr3t-value") && !dbg.contains("AKIDVISIBLE"),
            "{dbg}"
        );
    }

    #[test]
    fn settings_have_defaults_and_reject_garbage() {
        let s = StoreConfig::new().settings("s3://b/k").unwrap();
        assert_eq!(s.max_retries, DEFAULT_MAX_RETRIES);
        assert_eq!(s.retry_timeout, DEFAULT_RETRY_TIMEOUT);
        let s = StoreConfig::new()
            .with("NBPIPE_STORE_RETRY_TIMEOUT_SECS", "2.5")
            .with("NBPIPE_STORE_MAX_RETRIES", "3")
            .with("NBPIPE_STORE_MULTIPART_THRESHOLD_MB", "1")
            .settings("s3://b/k")
            .unwrap();
        assert_eq!(s.retry_timeout, Duration::from_millis(2500));
        assert_eq!(s.max_retries, 3);
        assert_eq!(s.multipart_threshold, MIN_PART_SIZE);
        let err = StoreConfig::new()
            .with("NBPIPE_STORE_RETRY_TIMEOUT_SECS", "soon")
            .settings("s3://b/k")
            .unwrap_err();
        assert!(
            err.to_string().contains("NBPIPE_STORE_RETRY_TIMEOUT_SECS"),
            "{err}"
        );
    }

    #[test]
    fn aws_profile_reads_credentials_and_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = SDEF\n\
             [work]\naws_access_key_id=AKWORK\naws_secret_access_key=SWORK\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile work]\nregion = us-west-2\n\
             endpoint_url = http://127.0.0.1:9000\ns3 =\n  addressing_style = path\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let p = StoreConfig::new().with("HOME", home).aws_profile();
        assert_eq!(p.access_key_id.as_deref(), Some("AKDEF"));
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(p.endpoint_url, None);
        let p = StoreConfig::new()
            .with("HOME", home)
            .with("AWS_PROFILE", "work")
            .aws_profile();
        assert_eq!(p.access_key_id.as_deref(), Some("AKWORK"));
        assert_eq!(p.secret_access_key.as_deref(), Some("SWORK"));
        assert_eq!(p.region.as_deref(), Some("us-west-2"));
        assert_eq!(p.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
    }
}
