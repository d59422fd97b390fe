//! Talking to OCI registries (the distribution API, through `oci-client`): pulling a base
//! image's manifest, config and layers into the [`Store`], and pushing a built image's blobs
//! and manifest. Registries on loopback addresses (`localhost`, `127.0.0.0/8`, `::1`) are
//! spoken to over plain HTTP, as dockerd does; every other one over HTTPS.
//!
//! Credentials: `NBPIPE_REGISTRY_USER` / `NBPIPE_REGISTRY_PASSWORD` when set, else the
//! user's `~/.docker/config.json` (`$DOCKER_CONFIG`), including its credential helpers,
//! else anonymous.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::error::ImageError;
use crate::media;
use crate::store::{Blob, Store};

/// Parse an image reference (`python:3.11-slim`, `127.0.0.1:5000/team/p:tag`).
pub fn parse(reference: &str) -> Result<Reference, ImageError> {
    reference
        .parse::<Reference>()
        .map_err(|e| ImageError::BadReference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })
}

/// Whether `registry` (`host[:port]`) is on this machine (plain HTTP).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A client for the registry of `reference`, with its credentials.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    name: String,
}

impl Registry {
    /// A client for `reference`'s registry.
    pub fn for_reference(reference: &Reference) -> Registry {
        let name = reference.resolve_registry().to_string();
        let protocol = if is_loopback(reference.registry()) {
            ClientProtocol::HttpsExcept(vec![reference.registry().to_string(), name.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        Registry {
            client,
            auth: credentials(reference.registry()),
            name,
        }
    }

    /// A client for `reference`'s registry with these credentials (user, password) instead
    /// of the ones found in the environment: e.g. an ECR authorization token.
    pub fn with_credentials(reference: &Reference, user: String, password: String) -> Registry {
        let mut r = Registry::for_reference(reference);
        r.auth = RegistryAuth::Basic(user, password);
        r
    }

    fn err(&self, action: String, e: impl std::fmt::Display) -> ImageError {
        ImageError::Registry {
            registry: self.name.clone(),
            action,
            message: e.to_string(),
        }
    }

    /// Pull `reference` (resolving a multi-platform index to linux/amd64) into `store`: the
    /// manifest's digest, its config blob and its layers (those already stored are skipped).
    pub async fn pull(
        &self,
        reference: &Reference,
        store: &Store,
    ) -> Result<(String, Blob, Vec<Blob>), ImageError> {
        let (manifest, digest) = self
            .client
            .pull_image_manifest(reference, &self.auth)
            .await
            .map_err(|e| self.err(format!("pulling the manifest of `{reference}`"), e))?;
        let config = self
            .fetch(reference, &manifest.config, store, media::CONFIG)
            .await?;
        let mut layers = Vec::new();
        for l in &manifest.layers {
            let media_type =
                media::oci_layer(&l.media_type).ok_or_else(|| ImageError::BadBase {
                    base: reference.to_string(),
                    reason: format!("layer media type `{}` is not a gzipped tar", l.media_type),
                })?;
            layers.push(self.fetch(reference, l, store, media_type).await?);
        }
        Ok((digest, config, layers))
    }

    async fn fetch(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        store: &Store,
        media_type: &str,
    ) -> Result<Blob, ImageError> {
        let size = u64::try_from(desc.size).unwrap_or(0);
        if !store.has(&desc.digest) {
            let (file, tmp) = store.temp_file()?;
            let mut out = tokio::fs::File::from_std(file);
            self.client
                .pull_blob(reference, desc, &mut out)
                .await
                .map_err(|e| self.err(format!("pulling blob {}", desc.digest), e))?;
            tokio::io::AsyncWriteExt::flush(&mut out)
                .await
                .map_err(|e| ImageError::io("writing", &tmp, e))?;
            store.publish(&tmp, &desc.digest, size, media_type)?;
        }
        Ok(Blob {
            digest: desc.digest.clone(),
            size,
            media_type: media_type.to_string(),
        })
    }

    /// Push `blobs` (skipping those the repository has) then `manifest` under each of
    /// `tags` of `repository`. Returns the manifest's digest.
    pub async fn push(
        &self,
        repository: &Reference,
        tags: &[String],
        blobs: &[Blob],
        store: &Store,
        manifest: &[u8],
    ) -> Result<String, ImageError> {
        self.client
            .store_auth_if_needed(&self.name, &self.auth)
            .await;
        for blob in blobs {
            let exists = self
                .client
                .blob_exists(repository, &blob.digest)
                .await
                .map_err(|e| self.err(format!("checking blob {}", blob.digest), e))?;
            if exists {
                continue;
            }
            let data = tokio::fs::read(store.blob_path(&blob.digest))
                .await
                .map_err(|e| ImageError::io("reading blob", store.blob_path(&blob.digest), e))?;
            self.client
                .push_blob(repository, data, &blob.digest)
                .await
                .map_err(|e| self.err(format!("pushing blob {}", blob.digest), e))?;
        }
        for tag in tags {
            let target = Reference::with_tag(
                repository.registry().to_string(),
                repository.repository().to_string(),
                tag.clone(),
            );
            self.client
                .push_manifest_raw(&target, manifest.to_vec(), http_header(media::MANIFEST))
                .await
                .map_err(|e| self.err(format!("pushing manifest `{target}`"), e))?;
        }
        use sha2::Digest;
        Ok(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(manifest))
        ))
    }
}

fn http_header(v: &'static str) -> http::HeaderValue {
    http::HeaderValue::from_static(v)
}

/// The credentials for `registry` (see the module's documentation).
fn credentials(registry: &str) -> RegistryAuth {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(user), Some(password)) =
        (var("NBPIPE_REGISTRY_USER"), var("NBPIPE_REGISTRY_PASSWORD"))
    {
        return RegistryAuth::Basic(user, password);
    }
    let mut keys = vec![registry.to_string()];
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.push("https://index.docker.io/v1/".to_string());
    }
    for key in keys {
        if let Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) =
            docker_credential::get_credential(&key)
        {
            return RegistryAuth::Basic(u, p);
        }
    }
    RegistryAuth::Anonymous
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.8.0.3:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("docker.io"));
    }

    #[test]
    fn references_parse_or_fail_clearly() {
        let r = parse("127.0.0.1:5000/team/demo:abc").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/demo");
        assert_eq!(r.tag(), Some("abc"));
        let r = parse("python:3.11-slim").unwrap();
        assert_eq!(r.repository(), "library/python");
        assert!(matches!(
            parse("Bad Ref"),
            Err(ImageError::BadReference { .. })
        ));
    }
}
