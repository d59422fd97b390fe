//! `environments:`, a project's git branches as environments: each name (`staging`,
//! `production`) has the `branch` it follows and may override any top-level key.
//!
//! Owns reading the section, choosing an environment ([`Select`]) and laying its keys over the
//! top-level ones — on the located node tree the schema checks and on the typed values
//! parameters are read from, the same way, so every later check sees one ordinary project
//! file. The rule: an environment's key replaces the top-level key, except the name → value
//! mappings listed in [`MERGED`], which are merged name by name (the environment wins).
//!
//! Must not run git beyond asking which branch a folder has checked out.

use std::path::Path;

use nbpipe_params::{Parameters, Value};

use super::ctx::{Ctx, Result};
use super::error::ErrorKind;
use super::yaml::{Kind, Map, Node};

/// Top-level keys an environment may not set (the project's identity and the section itself).
const NOT_OVERRIDABLE: &[&str] = &["name", "environments"];

/// Top-level mappings merged key by key with an environment's (the others are replaced).
pub const MERGED: &[&str] = &["parameters", "secrets", "serve", "image", "deploy", "env"];

/// Which settings of a project to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Select<'a> {
    /// The environment whose `branch` the project folder has checked out; the top-level
    /// settings when none matches, when the folder is not in a git work tree, or when the
    /// project declares no environments.
    #[default]
    CheckedOut,
    /// This environment (an error when the project does not declare it).
    Named(&'a str),
    /// The top-level settings, whatever is checked out.
    Top,
}

/// One `environments:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Its name (`staging`).
    pub name: String,
    /// The git branch it follows (`main`, `staging`).
    pub branch: String,
}

/// A declared environment with its overriding keys.
pub(super) struct Declared<'n> {
    pub env: Environment,
    pub keys: &'n Map,
}

/// Reads `environments:` (empty when absent).
pub(super) fn declared<'n>(
    ctx: &Ctx<'_>,
    top: &'n Map,
    top_keys: &[&str],
) -> Result<Vec<Declared<'n>>> {
    let Some(section) = top.get("environments").filter(|n| !n.is_null()) else {
        return Ok(Vec::new());
    };
    let Kind::Map(entries) = &section.kind else {
        return Err(ctx.type_error(
            section,
            "environments",
            "a mapping of environment names to their settings",
        ));
    };
    if let Some((key, loc)) = &entries.duplicate {
        return Err(ctx.error(
            *loc,
            "environments",
            ErrorKind::DuplicateKey,
            format!("environment `{key}` is declared twice"),
        ));
    }
    let allowed: Vec<&str> = top_keys
        .iter()
        .copied()
        .filter(|k| !NOT_OVERRIDABLE.contains(k))
        .chain(["branch"])
        .collect();
    let mut out: Vec<Declared<'n>> = Vec::new();
    for (k, v) in &entries.entries {
        let name = ctx.string(k, "environments")?;
        let path = format!("environments.{name}");
        if !valid_name(&name) {
            return Err(ctx.error(
                k.loc,
                &path,
                ErrorKind::Value,
                format!(
                    "invalid environment name `{name}`: use letters, digits, `-` and `_` \
                     (it names runs, stacks and folders)"
                ),
            ));
        }
        let keys = ctx.map(v, &path, &allowed)?;
        let Some(branch) = keys.get("branch").filter(|n| !n.is_null()) else {
            return Err(ctx.error(
                v.loc,
                &path,
                ErrorKind::MissingKey,
                format!("environment `{name}` needs a `branch` (the git branch it follows)"),
            ));
        };
        let branch_name = ctx.string(branch, &format!("{path}.branch"))?;
        if let Some(other) = out.iter().find(|d| d.env.branch == branch_name) {
            return Err(ctx.error(
                branch.loc,
                &format!("{path}.branch"),
                ErrorKind::Conflict,
                format!(
                    "environments `{}` and `{name}` both follow branch `{branch_name}`: \
                     a branch is one environment",
                    other.env.name
                ),
            ));
        }
        out.push(Declared {
            env: Environment {
                name,
                branch: branch_name,
            },
            keys,
        });
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// The top-level mapping with `env`'s keys laid over it (`branch` and `environments` left
/// out).
pub(super) fn overlay_nodes(top: &Map, env: &Map) -> Map {
    let mut entries: Vec<(Node, Node)> = top
        .entries
        .iter()
        .filter(|(k, _)| k.scalar() != Some("environments"))
        .cloned()
        .collect();
    for (k, v) in &env.entries {
        let Some(key) = k.scalar() else { continue };
        if key == "branch" {
            continue;
        }
        match entries.iter_mut().find(|(tk, _)| tk.scalar() == Some(key)) {
            Some((_, tv)) if MERGED.contains(&key) => merge_node(tv, v),
            Some(slot) => *slot = (k.clone(), v.clone()),
            None => entries.push((k.clone(), v.clone())),
        }
    }
    Map {
        entries,
        duplicate: None,
    }
}

/// Lays `over`'s entries over `base` when both are mappings; otherwise `over` replaces it.
fn merge_node(base: &mut Node, over: &Node) {
    match (&mut base.kind, &over.kind) {
        (Kind::Map(b), Kind::Map(o)) => {
            for (k, v) in &o.entries {
                match b
                    .entries
                    .iter_mut()
                    .find(|(bk, _)| bk.scalar() == k.scalar())
                {
                    Some(slot) => *slot = (k.clone(), v.clone()),
                    None => b.entries.push((k.clone(), v.clone())),
                }
            }
        }
        _ => *base = over.clone(),
    }
}

/// The same overlay on the document's typed values (where parameters are read from).
pub(super) fn overlay_values(doc: &Parameters, env: &str) -> Parameters {
    let over = match doc.get("environments") {
        Some(Value::Dict(envs)) => envs
            .iter()
            .find(|(k, _)| k == env)
            .and_then(|(_, v)| match v {
                Value::Dict(d) => Some(d.clone()),
                _ => None,
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut out: Parameters = doc
        .iter()
        .filter(|(k, _)| *k != "environments")
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    for (k, v) in over {
        if k == "branch" {
            continue;
        }
        let merged = match (out.get(&k), &v) {
            (Some(Value::Dict(base)), Value::Dict(o)) if MERGED.contains(&k.as_str()) => {
                let mut d = base.clone();
                for (ok, ov) in o {
                    match d.iter_mut().find(|(dk, _)| dk == ok) {
                        Some(slot) => slot.1 = ov.clone(),
                        None => d.push((ok.clone(), ov.clone())),
                    }
                }
                Value::Dict(d)
            }
            _ => v,
        };
        out.set(&k, merged);
    }
    out
}

/// The branch `dir` has checked out (`None`: not in a git work tree, detached HEAD, or no
/// `git`).
pub fn checked_out_branch(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["symbolic-ref", "--quiet", "--short", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let b = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!b.is_empty()).then_some(b)
}
