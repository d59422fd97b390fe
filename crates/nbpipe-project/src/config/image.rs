//! `image:`, how `nbpipe image build` packages the project as an OCI image: the repository
//! it is named in, the base image with Python, and system packages. Only reads and checks the
//! values; building is `nbpipe-image`'s job.

use super::ctx::{join, Ctx, Result};
use super::error::ErrorKind;
use super::yaml::Map;
use super::ImageConfig;

/// Keys of `image:`.
pub(super) const IMAGE_KEYS: &[&str] = &["name", "base", "apt"];

pub(super) fn image(ctx: &Ctx<'_>, top: &Map) -> Result<ImageConfig> {
    let mut image = ImageConfig::default();
    let Some(node) = top.get("image").filter(|n| !n.is_null()) else {
        return Ok(image);
    };
    let m = ctx.map(node, "image", IMAGE_KEYS)?;
    if let Some(name) = ctx.opt_string(m, "image", "name")? {
        let n = m.get("name").expect("present");
        if let Some(reason) = bad_reference(&name) {
            return Err(ctx.error(
                n.loc,
                "image.name",
                ErrorKind::Value,
                format!("`image.name` `{name}` is not an image repository: {reason}"),
            ));
        }
        image.name = Some(name);
    }
    if let Some(base) = ctx.opt_string(m, "image", "base")? {
        let n = m.get("base").expect("present");
        if let Some(reason) = bad_reference(&base) {
            return Err(ctx.error(
                n.loc,
                "image.base",
                ErrorKind::Value,
                format!("`image.base` `{base}` is not an image reference: {reason}"),
            ));
        }
        image.base = Some(base);
    }
    if let Some(n) = m.get("apt") {
        for (pkg, node) in ctx.strings(n, &join("image", "apt"))? {
            if !valid_package(&pkg) {
                return Err(ctx.error(
                    node.loc,
                    "image.apt",
                    ErrorKind::Value,
                    format!(
                        "`image.apt` item `{pkg}` is not a Debian package name (lowercase \
                         letters, digits, `+-.`, optionally `=VERSION`)"
                    ),
                ));
            }
            image.apt.push(pkg);
        }
    }
    Ok(image)
}

/// Why `s` cannot be an image reference (`[host[:port]/]path[:tag][@digest]`), if it cannot.
pub(crate) fn bad_reference(s: &str) -> Option<&'static str> {
    if s.chars().any(char::is_whitespace) {
        return Some("it contains spaces");
    }
    if s.contains("://") {
        return Some("write it without a scheme (`host:port/repo`)");
    }
    let name = s.split('@').next().unwrap_or(s);
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let parts: Vec<&str> = name.split('/').collect();
    let has_host = parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost");
    let path = if has_host { &parts[1..] } else { &parts[..] };
    let ok = |c: &&str| {
        !c.is_empty()
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
    };
    if !path.iter().all(ok) {
        return Some("repository names use lowercase letters, digits, `.`, `_` and `-`");
    }
    None
}

fn valid_package(p: &str) -> bool {
    let name = p.split('=').next().unwrap_or(p);
    name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        && !p.chars().any(char::is_whitespace)
}
