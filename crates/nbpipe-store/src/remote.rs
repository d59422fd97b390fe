//! Object stores behind `s3://`, `gs://`, `az://` (and `azure://`, `adl://`, `abfs(s)://`) and
//! `http(s)://` URLs, through `object_store`.
//!
//! Owns: URL → backend and key, building each backend from a [`StoreConfig`] (the AWS way for S3:
//! endpoint, region, path-style, credential chain), the per-process cache of built stores, the
//! retry policy, and the get/put/head/list calls with their error translation. Must not: retry on
//! its own on top of `object_store` (one bounded policy), or show a credential anywhere.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
};
use url::Url;

use crate::config::{Settings, StoreConfig};
use crate::error::{classify, Context};
use crate::{ObjectInfo, StoreError};

/// Which kind of service a remote location lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Amazon S3 or an S3-compatible store (`s3://`, `s3a://`).
    S3,
    /// Google Cloud Storage (`gs://`, `gcs://`).
    Gcs,
    /// Azure Blob Storage / ADLS Gen2 (`az://`, `azure://`, `adl://`, `abfs://`, `abfss://`).
    Azure,
    /// A plain HTTP(S) server (`http://`, `https://`): GET to read, PUT to write.
    Http,
}

/// A built object store for one bucket (or HTTP origin), shared by every location in it.
pub struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    backend: Backend,
    endpoint: String,
    settings: Settings,
    credential_hosts: Vec<String>,
    credential_hint: &'static str,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The inner store's Debug can include configuration values: never print it.
        f.debug_struct("RemoteStore")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl RemoteStore {
    /// The `object_store` handle, for operations this crate does not wrap.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The kind of service.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The endpoint requests go to (scheme, host, port; no credentials), as shown in errors.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(
        &self,
        e: object_store::Error,
        url: &str,
        op: &'static str,
        start: Instant,
    ) -> StoreError {
        let hosts: Vec<&str> = self.credential_hosts.iter().map(String::as_str).collect();
        classify(
            e,
            &Context {
                url,
                endpoint: &self.endpoint,
                op,
                elapsed: start.elapsed(),
                credential_hosts: &hosts,
                credential_hint: self.credential_hint,
            },
        )
    }

    pub(crate) async fn get(&self, url: &str, path: &ObjectPath) -> Result<Vec<u8>, StoreError> {
        let start = Instant::now();
        let result = self
            .store
            .get(path)
            .await
            .map_err(|e| self.error(e, url, "get", start))?;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.error(e, url, "get", start))?;
        Ok(Vec::from(bytes))
    }

    pub(crate) async fn put(
        &self,
        url: &str,
        path: &ObjectPath,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let len = bytes.len() as u64;
        self.put_from(url, path, Source::Memory(bytes::Bytes::from(bytes)), len)
            .await
    }

    /// Upload the first `len` bytes of `file`, reading one part at a time.
    pub(crate) async fn put_file(
        &self,
        url: &str,
        path: &ObjectPath,
        file: std::fs::File,
        len: u64,
    ) -> Result<(), StoreError> {
        self.put_from(url, path, Source::File(file), len).await
    }

    async fn put_from(
        &self,
        url: &str,
        path: &ObjectPath,
        source: Source,
        len: u64,
    ) -> Result<(), StoreError> {
        let start = Instant::now();
        let attributes = content_type(path)
            .map(|t| Attributes::from_iter([(Attribute::ContentType, t)]))
            .unwrap_or_default();
        let part_size = self.settings.multipart_threshold as u64;
        let read_error = |e: std::io::Error| StoreError::Write {
            path: url.to_string(),
            source: e,
        };
        // The HTTP backend has no multipart uploads; object stores make a multipart object
        // visible only when it is complete, so both paths replace the object atomically.
        if len <= part_size || self.backend == Backend::Http {
            let opts = PutOptions {
                attributes,
                ..Default::default()
            };
            let payload = source.range(0, len).map_err(read_error)?;
            self.store
                .put_opts(path, PutPayload::from(payload), opts)
                .await
                .map_err(|e| self.error(e, url, "put", start))?;
            return Ok(());
        }
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let mut upload = self
            .store
            .put_multipart_opts(path, opts)
            .await
            .map_err(|e| self.error(e, url, "put", start))?;
        let mut offset = 0;
        while offset < len {
            let end = (offset + part_size).min(len);
            let part = match source.range(offset, end) {
                Ok(part) => part,
                Err(e) => {
                    let _ = upload.abort().await;
                    return Err(read_error(e));
                }
            };
            if let Err(e) = upload.put_part(PutPayload::from(part)).await {
                let _ = upload.abort().await;
                return Err(self.error(e, url, "put", start));
            }
            offset = end;
        }
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(self.error(e, url, "put", start));
        }
        Ok(())
    }

    pub(crate) async fn head(
        &self,
        url: &str,
        path: &ObjectPath,
    ) -> Result<Option<ObjectInfo>, StoreError> {
        let start = Instant::now();
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(ObjectInfo {
                size: meta.size,
                // `object_store` reports a missing `Last-Modified` as the epoch.
                last_modified: (meta.last_modified.timestamp() != 0).then_some(meta.last_modified),
                etag: meta.e_tag,
                version: meta.version,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(e, url, "head", start)),
        }
    }

    /// Names directly under `path` (objects, then sub-prefixes with a trailing `/`), sorted.
    pub(crate) async fn list(
        &self,
        url: &str,
        path: &ObjectPath,
    ) -> Result<Vec<String>, StoreError> {
        let start = Instant::now();
        let prefix = (!path.as_ref().is_empty()).then_some(path);
        let listing = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| self.error(e, url, "list", start))?;
        let mut names: Vec<String> = listing
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_string))
            .chain(
                listing
                    .common_prefixes
                    .iter()
                    .filter_map(|p| p.filename().map(|n| format!("{n}/"))),
            )
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// A notebook or HTML page gets a content type browsers and consoles understand.
fn content_type(path: &ObjectPath) -> Option<&'static str> {
    match path.extension()?.to_ascii_lowercase().as_str() {
        "ipynb" => Some("application/x-ipynb+json"),
        "json" => Some("application/json"),
        "html" | "htm" => Some("text/html; charset=utf-8"),
        "txt" | "log" => Some("text/plain; charset=utf-8"),
        "yaml" | "yml" => Some("application/yaml"),
        _ => None,
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    backend: Backend,
    authority: String,
    config: StoreConfig,
}

static CACHE: LazyLock<Mutex<HashMap<CacheKey, Arc<RemoteStore>>>> =
    LazyLock::new(Default::default);

/// What [`open`] found in a URL.
pub(crate) struct Opened {
    pub store: Arc<RemoteStore>,
    pub path: ObjectPath,
}

/// The scheme of `s` if it looks like `scheme://…`.
pub(crate) fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    (!scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
    .then_some(scheme)
}

/// `s` without a query string, fragment or password, for messages.
pub(crate) fn redact(s: &str) -> String {
    let cut = s.find(['?', '#']).unwrap_or(s.len());
    let s = &s[..cut];
    if let Some(start) = s.find("://").map(|i| i + 3) {
        let auth_end = s[start..].find('/').map_or(s.len(), |i| start + i);
        if let Some(at) = s[start..auth_end].rfind('@') {
            let user = &s[start..start + at];
            if user.contains(':') {
                return format!("{}***@{}", &s[..start], &s[start + at + 1..]);
            }
        }
    }
    s.to_string()
}

/// Resolve a remote URL to its (cached) store and key.
pub(crate) fn open(s: &str, config: &StoreConfig) -> Result<Opened, StoreError> {
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: redact(s),
        reason,
    };
    let scheme = scheme_of(s).unwrap_or_default().to_ascii_lowercase();
    let backend = match scheme.as_str() {
        "s3" | "s3a" => Backend::S3,
        "gs" | "gcs" => Backend::Gcs,
        "az" | "azure" | "adl" | "abfs" | "abfss" => Backend::Azure,
        "http" | "https" => Backend::Http,
        _ => {
            return Err(StoreError::UnsupportedScheme {
                url: redact(s),
                scheme: scheme_of(s).unwrap_or_default().to_string(),
            })
        }
    };
    let url = Url::parse(s).map_err(|e| invalid(e.to_string()))?;
    if url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are not supported: configure them in the environment".into(),
        ));
    }
    if !url.username().is_empty() && !matches!(scheme.as_str(), "abfs" | "abfss") {
        return Err(invalid("a user name in the URL is not supported".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "query strings and fragments are not supported (write `?` and `#` in a key as `%3F` \
             and `%23`)"
                .into(),
        ));
    }
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        let what = match backend {
            Backend::S3 | Backend::Gcs => "bucket",
            Backend::Azure => "container",
            Backend::Http => "host",
        };
        return Err(invalid(format!(
            "no {what} name (expected `{scheme}://{what}/key`)"
        )));
    }
    let path = ObjectPath::from_url_path(url.path()).map_err(|e| invalid(e.to_string()))?;
    let authority = match backend {
        Backend::Http => url[url::Position::BeforeHost..url::Position::AfterPort].to_string(),
        Backend::Azure if !url.username().is_empty() => format!("{}@{host}", url.username()),
        _ => host.to_string(),
    };
    let key = CacheKey {
        backend,
        authority,
        config: config.clone(),
    };
    if let Some(store) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(Opened {
            store: Arc::clone(store),
            path,
        });
    }
    let settings = config.settings(&redact(s))?;
    let store = Arc::new(build(
        backend,
        &scheme,
        &url,
        &key.authority,
        config,
        settings,
        s,
    )?);
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, Arc::clone(&store));
    Ok(Opened { store, path })
}

fn build(
    backend: Backend,
    scheme: &str,
    url: &Url,
    authority: &str,
    config: &StoreConfig,
    settings: Settings,
    given: &str,
) -> Result<RemoteStore, StoreError> {
    let config_err = |e: object_store::Error| StoreError::Config {
        url: redact(given),
        reason: crate::error::short(&e),
    };
    let retry = settings.retry_config();
    let host = url.host_str().unwrap_or_default();
    match backend {
        Backend::S3 => build_s3(host, config, settings, given),
        Backend::Gcs => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let mut b = GoogleCloudStorageBuilder::new();
            if let Some(sa) = config.get("SERVICE_ACCOUNT") {
                b = b.with_service_account_path(sa);
            }
            for (k, v) in config.with_prefix("GOOGLE_") {
                if let Ok(key) = k.to_ascii_lowercase().parse::<GoogleConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            let store = b
                .with_bucket_name(host)
                .with_retry(retry)
                .build()
                .map_err(config_err)?;
            Ok(RemoteStore {
                store: Arc::new(store),
                backend,
                endpoint: "https://storage.googleapis.com".into(),
                settings,
                credential_hosts: vec![
                    "metadata.google.internal".into(),
                    "169.254.169.254".into(),
                    "oauth2.googleapis.com".into(),
                ],
                credential_hint: "set `GOOGLE_APPLICATION_CREDENTIALS` (or \
                                  `GOOGLE_SERVICE_ACCOUNT`) to a service-account key file, or run \
                                  on Google Cloud with a service account attached",
            })
        }
        Backend::Azure => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let mut b = MicrosoftAzureBuilder::new();
            for (k, v) in config.with_prefix("AZURE_") {
                if let Ok(key) = k.to_ascii_lowercase().parse::<AzureConfigKey>() {
                    b = b.with_config(key, v);
                }
            }
            let msi = config
                .get("IDENTITY_ENDPOINT")
                .or_else(|| config.get("MSI_ENDPOINT"));
            if let Some(endpoint) = msi {
                b = b.with_msi_endpoint(endpoint);
            }
            let store = b
                .with_url(format!("{scheme}://{authority}"))
                .with_retry(retry)
                .build()
                .map_err(|e| match config_err(e) {
                    StoreError::Config { url, reason } if reason.contains("Account") => {
                        StoreError::Config {
                            url,
                            reason: format!(
                                "{reason}: set `AZURE_STORAGE_ACCOUNT_NAME`, or write the \
                                 location as `abfss://container@account.dfs.core.windows.net/…`"
                            ),
                        }
                    }
                    other => other,
                })?;
            let account = config
                .get("AZURE_STORAGE_ACCOUNT_NAME")
                .or_else(|| config.get("AZURE_STORAGE_ACCOUNT"))
                .map(str::to_string)
                .or_else(|| {
                    (!url.username().is_empty())
                        .then(|| host.split('.').next().unwrap_or_default().to_string())
                });
            let mut credential_hosts = vec![
                "login.microsoftonline.com".to_string(),
                "169.254.169.254".to_string(),
            ];
            credential_hosts.extend(msi.map(str::to_string));
            Ok(RemoteStore {
                store: Arc::new(store),
                backend,
                endpoint: match account {
                    _ if config.flag("AZURE_STORAGE_USE_EMULATOR") => {
                        "the Azurite emulator".to_string()
                    }
                    Some(a) => format!("https://{a}.blob.core.windows.net"),
                    None => "Azure Blob Storage".to_string(),
                },
                settings,
                credential_hosts,
                credential_hint:
                    "set `AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY` \
                                  or `AZURE_STORAGE_SAS_KEY`, or `AZURE_CLIENT_ID`, \
                                  `AZURE_CLIENT_SECRET` and `AZURE_TENANT_ID`, or run with a \
                                  managed identity",
            })
        }
        Backend::Http => {
            use object_store::http::HttpBuilder;
            let origin = format!("{scheme}://{authority}");
            let store = HttpBuilder::new()
                .with_url(format!("{origin}/"))
                .with_retry(retry)
                .with_client_options(
                    object_store::ClientOptions::new().with_allow_http(scheme == "http"),
                )
                .build()
                .map_err(config_err)?;
            Ok(RemoteStore {
                store: Arc::new(store),
                backend,
                endpoint: origin,
                settings,
                credential_hosts: Vec::new(),
                credential_hint: "",
            })
        }
    }
}

/// S3 the AWS way: explicit endpoint (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`,
/// `AWS_ENDPOINT`, the profile's `endpoint_url`), plain HTTP allowed for an `http://` endpoint,
/// path-style requests unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`, region from `AWS_REGION`,
/// `AWS_DEFAULT_REGION` or the profile, and the credential chain environment → profile → web
/// identity → container → instance metadata.
fn build_s3(
    bucket: &str,
    config: &StoreConfig,
    settings: Settings,
    given: &str,
) -> Result<RemoteStore, StoreError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut b = AmazonS3Builder::new();
    for (k, v) in config.with_prefix("AWS_") {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            b = b.with_config(key, v);
        }
    }
    let profile = config.aws_profile();
    let region = config
        .get("AWS_REGION")
        .or_else(|| config.get("AWS_DEFAULT_REGION"))
        .map(str::to_string)
        .or(profile.region.clone())
        .unwrap_or_else(|| "us-east-1".to_string());
    b = b.with_region(&region);
    let endpoint = config
        .get("AWS_ENDPOINT_URL_S3")
        .or_else(|| config.get("AWS_ENDPOINT_URL"))
        .or_else(|| config.get("AWS_ENDPOINT"))
        .map(str::to_string)
        .or(profile.endpoint_url.clone());
    let virtual_hosted = config.flag("AWS_VIRTUAL_HOSTED_STYLE_REQUEST");
    if let Some(endpoint) = &endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(virtual_hosted);
        if endpoint.to_ascii_lowercase().starts_with("http://") {
            b = b.with_allow_http(true);
        }
    }
    let env_keys =
        config.get("AWS_ACCESS_KEY_ID").is_some() || config.get("AWS_SECRET_ACCESS_KEY").is_some();
    let mut static_keys = env_keys;
    if !env_keys {
        if let (Some(id), Some(secret)) = (&profile.access_key_id, &profile.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
            if let Some(token) = &profile.session_token {
                b = b.with_token(token);
            }
            static_keys = true;
        }
    }
    let skip_signature = config.flag("AWS_SKIP_SIGNATURE");
    let web_identity =
        config.get("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() && config.get("AWS_ROLE_ARN").is_some();
    let container = config
        .get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .is_some()
        || (config.get("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
            && config
                .get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                .is_some());
    let hint = "set `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (or `AWS_PROFILE`), run where \
                container or instance credentials are available, or set \
                `AWS_SKIP_SIGNATURE=true` for a public bucket";
    let mut credential_hosts = Vec::new();
    if !static_keys && !skip_signature {
        if web_identity {
            credential_hosts.push(
                config
                    .get("AWS_ENDPOINT_URL_STS")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("sts.{region}.amazonaws.com")),
            );
        } else if container {
            credential_hosts.push("169.254.170.2".into());
            credential_hosts.extend(
                config
                    .get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
                    .map(str::to_string),
            );
        } else if config.flag("AWS_EC2_METADATA_DISABLED") {
            return Err(StoreError::Credentials {
                url: redact(given),
                cause: "no credentials are configured and `AWS_EC2_METADATA_DISABLED` rules out \
                        instance metadata"
                    .into(),
                hint: hint.into(),
            });
        } else {
            credential_hosts.push("169.254.169.254".into());
            credential_hosts.extend(config.get("AWS_METADATA_ENDPOINT").map(str::to_string));
        }
    }
    let store = b
        .with_bucket_name(bucket)
        .with_retry(settings.retry_config())
        .build()
        .map_err(|e| StoreError::Config {
            url: redact(given),
            reason: crate::error::short(&e),
        })?;
    let shown = match &endpoint {
        Some(e) if virtual_hosted => redact(e),
        Some(e) => redact(e).trim_end_matches('/').to_string(),
        None if virtual_hosted => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        None => format!("https://s3.{region}.amazonaws.com"),
    };
    Ok(RemoteStore {
        store: Arc::new(store),
        backend: Backend::S3,
        endpoint: shown,
        settings,
        credential_hosts,
        credential_hint: hint,
    })
}

/// Where the bytes of an upload come from.
enum Source {
    Memory(bytes::Bytes),
    /// A temporary file, read one part at a time so an upload never holds more than a part.
    File(std::fs::File),
}

impl Source {
    fn range(&self, start: u64, end: u64) -> std::io::Result<bytes::Bytes> {
        match self {
            Source::Memory(b) => Ok(b.slice(start as usize..end as usize)),
            Source::File(f) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; (end - start) as usize];
                f.read_exact_at(&mut buf, start)?;
                Ok(bytes::Bytes::from(buf))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_queries_and_passwords() {
        assert_eq!(
            redact("https://u:pw@h.example/a?X-Amz-Signature=abc"),
            "https://***@h.example/a"
        );
        assert_eq!(
            redact("abfss://cont@acct.dfs.core.windows.net/p"),
            "abfss://cont@acct.dfs.core.windows.net/p"
        );
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type(&ObjectPath::from("runs/a.ipynb")),
            Some("application/x-ipynb+json")
        );
        assert_eq!(content_type(&ObjectPath::from("runs/a.bin")), None);
    }
}
