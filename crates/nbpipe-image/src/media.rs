//! OCI media types the builder writes, and the mapping of Docker's to them.

/// An image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An image config.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A gzipped tar layer.
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The OCI media type of a base image's layer, if it is a gzipped tar (Docker's schema 2
/// layers are the same bytes under another name).
pub fn oci_layer(media_type: &str) -> Option<&'static str> {
    match media_type {
        LAYER | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(LAYER),
        _ => None,
    }
}
