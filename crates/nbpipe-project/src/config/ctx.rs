//! Reading values out of the located node tree: the checks every key
//! shares (known keys, types, strings, counts, durations, parameter values)
//! and the error they produce, naming file, line, column and key path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nbpipe_params::{Parameters, Value};

use super::error::{ConfigError, ErrorKind, Invalid};
use super::serve::SERVE_KEYS;
use super::yaml::{Kind, Loc, Map, Node};

/// Keys of a notebook item (also named in hints about misplaced keys).
pub(super) const STEP_KEYS: &[&str] = &[
    "path",
    "id",
    "parameters",
    "needs",
    "kernel",
    "timeout",
    "cell_timeout",
    "retries",
    "inputs",
];

pub(super) type Result<T> = std::result::Result<T, ConfigError>;

/// The file being validated.
pub(super) struct Ctx<'a> {
    pub dir: &'a Path,
    pub file: PathBuf,
    pub text: &'a str,
    /// The whole document typed by `nbpipe_params`, made on first use.
    pub values: Option<Parameters>,
    /// The first node with an explicit tag, where typing errors point.
    pub first_tag: Option<Loc>,
}

/// The first explicitly tagged node in the `parameters` values (the
/// project's, then each notebook's).
pub(super) fn params_first_tag(top: &Map) -> Option<Loc> {
    let steps = match top.get("notebooks").map(|n| &n.kind) {
        Some(Kind::Seq(items)) => items.as_slice(),
        _ => &[],
    };
    let step_params = steps.iter().filter_map(|item| match &item.kind {
        Kind::Map(m) => m.get("parameters"),
        _ => None,
    });
    top.get("parameters")
        .into_iter()
        .chain(step_params)
        .find_map(first_tag)
}

/// The location of the first node (in document order) with an explicit tag.
fn first_tag(node: &Node) -> Option<Loc> {
    if node.tag.is_some() {
        return Some(node.loc);
    }
    match &node.kind {
        Kind::Scalar { .. } => None,
        Kind::Seq(items) => items.iter().find_map(first_tag),
        Kind::Map(m) => m
            .entries
            .iter()
            .find_map(|(k, v)| first_tag(k).or_else(|| first_tag(v))),
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// ` in `notebooks[1]`` (empty at the top level) for messages.
fn place(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in `{path}`")
    }
}

/// The closest candidate when it is close enough to be a likely typo.
pub(super) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c.to_lowercase() == lower {
            return Some(c);
        }
        let d = strsim::levenshtein(&lower, &c.to_lowercase());
        let (a, b) = (word.chars().count(), c.chars().count());
        let limit = (a.max(b) / 3).max(1);
        if d <= limit && d < a.min(b) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

pub(super) fn backticked(items: &[&str]) -> String {
    items
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a> Ctx<'a> {
    pub(super) fn error(
        &self,
        loc: Loc,
        key: &str,
        kind: ErrorKind,
        message: String,
    ) -> ConfigError {
        ConfigError::Invalid(Box::new(Invalid {
            file: self.file.clone(),
            line: loc.line.max(1),
            column: loc.column.max(1),
            key: key.to_owned(),
            kind,
            message,
        }))
    }

    /// A mapping at `path`, with its keys checked against `allowed`.
    pub(super) fn map<'n>(&self, node: &'n Node, path: &str, allowed: &[&str]) -> Result<&'n Map> {
        let Kind::Map(map) = &node.kind else {
            return Err(self.type_error(node, path, "a mapping"));
        };
        if let Some((key, loc)) = &map.duplicate {
            return Err(self.error(
                *loc,
                &join(path, key),
                ErrorKind::DuplicateKey,
                format!("duplicate key `{key}`{}", place(path)),
            ));
        }
        for (k, _) in &map.entries {
            let Some(key) = k.scalar() else {
                return Err(self.error(
                    k.loc,
                    path,
                    ErrorKind::Type,
                    format!(
                        "keys{} must be strings, found {}",
                        place(path),
                        k.describe()
                    ),
                ));
            };
            if allowed.contains(&key) {
                continue;
            }
            let hint = match suggest(key, allowed.iter().copied()) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None if path.is_empty() && STEP_KEYS.contains(&key) => {
                    let whole_runs = if SERVE_KEYS.contains(&key) {
                        ", or under `serve:` for whole runs in `nbpipe serve`".to_string()
                    } else {
                        String::new()
                    };
                    format!(
                        "; `{key}` is set per notebook: move it into a `notebooks:` item \
                         (`- path: x.ipynb` followed by `{key}: ...`){whole_runs}"
                    )
                }
                None if path.is_empty() && SERVE_KEYS.contains(&key) => {
                    format!("; `{key}` is part of the service's run policy: move it under `serve:`")
                }
                None => format!("; expected one of {}", backticked(allowed)),
            };
            return Err(self.error(
                k.loc,
                &join(path, key),
                ErrorKind::UnknownKey,
                format!("unknown key `{key}`{}{hint}", place(path)),
            ));
        }
        Ok(map)
    }

    /// A mapping at `path` whose keys are the user's own (strings, no duplicates).
    pub(super) fn map_any<'n>(&self, node: &'n Node, path: &str) -> Result<&'n Map> {
        let Kind::Map(map) = &node.kind else {
            return Err(self.type_error(node, path, "a mapping"));
        };
        let keys: Vec<&str> = map.entries.iter().filter_map(|(k, _)| k.scalar()).collect();
        self.map(node, path, &keys)
    }

    pub(super) fn type_error(&self, node: &Node, path: &str, expected: &str) -> ConfigError {
        self.error(
            node.loc,
            path,
            ErrorKind::Type,
            format!("`{path}` must be {expected}, found {}", node.describe()),
        )
    }

    /// A non-empty string (any scalar style, taken literally).
    pub(super) fn string(&self, node: &Node, path: &str) -> Result<String> {
        match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() && !text.trim().is_empty() => {
                Ok(text.clone())
            }
            Kind::Scalar { .. } => Err(self.error(
                node.loc,
                path,
                ErrorKind::Value,
                format!("`{path}` must not be empty"),
            )),
            _ => Err(self.type_error(node, path, "a string")),
        }
    }

    /// A string, or `None` when the key is absent or null.
    pub(super) fn opt_string(&self, map: &Map, path: &str, key: &str) -> Result<Option<String>> {
        match map.get(key) {
            Some(n) if !n.is_null() => self.string(n, &join(path, key)).map(Some),
            _ => Ok(None),
        }
    }

    /// A string or a list of strings, with each item's node.
    pub(super) fn strings<'n>(
        &self,
        node: &'n Node,
        path: &str,
    ) -> Result<Vec<(String, &'n Node)>> {
        match &node.kind {
            _ if node.is_null() => Ok(Vec::new()),
            Kind::Scalar { .. } => Ok(vec![(self.string(node, path)?, node)]),
            Kind::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| Ok((self.string(n, &format!("{path}[{i}]"))?, n)))
                .collect(),
            Kind::Map(_) => Err(self.type_error(node, path, "a string or a list of strings")),
        }
    }

    /// `true` or `false` (unquoted; YAML 1.2 spellings).
    pub(super) fn boolean(&self, node: &Node, path: &str) -> Result<bool> {
        match &node.kind {
            Kind::Scalar { text, plain: true } => match text.trim() {
                "true" | "True" | "TRUE" => Ok(true),
                "false" | "False" | "FALSE" => Ok(false),
                other => Err(self.error(
                    node.loc,
                    path,
                    ErrorKind::Value,
                    format!("`{path}` must be `true` or `false`, found `{other}`"),
                )),
            },
            _ => Err(self.type_error(node, path, "`true` or `false`")),
        }
    }

    /// A non-negative integer written in decimal.
    pub(super) fn uint(&self, node: &Node, path: &str) -> Result<u64> {
        let text = match &node.kind {
            Kind::Scalar { text, .. } => text.trim(),
            _ => return Err(self.type_error(node, path, "a non-negative integer")),
        };
        let digits = text.strip_prefix('+').unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(v) = digits.parse::<u64>() {
                return Ok(v);
            }
        }
        Err(self.error(
            node.loc,
            path,
            ErrorKind::Value,
            format!("`{path}` must be a non-negative integer, found `{text}`"),
        ))
    }

    /// A positive duration: seconds (`90`, `1.5`) or humantime (`90s`,
    /// `5m`, `1h30m`, `500ms`).
    pub(super) fn duration(&self, node: &Node, path: &str) -> Result<Duration> {
        let text = match &node.kind {
            Kind::Scalar { text, .. } if !node.is_null() => text.trim(),
            _ => return Err(self.type_error(node, path, "a duration")),
        };
        let bad = |why: String| {
            self.error(
                node.loc,
                path,
                ErrorKind::Duration,
                format!(
                    "invalid duration `{text}` for `{path}`: {why}; write seconds (`90`) or a \
                     duration such as `90s`, `5m`, `1h30m`, `500ms`"
                ),
            )
        };
        let is_number = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && text.bytes().filter(|&b| b == b'.').count() <= 1
            && text != ".";
        let d = if is_number {
            let secs: f64 = text.parse().map_err(|_| bad("not a number".into()))?;
            Duration::try_from_secs_f64(secs).map_err(|e| bad(e.to_string()))?
        } else if text.starts_with('-') {
            return Err(bad("durations cannot be negative".into()));
        } else {
            humantime::parse_duration(text).map_err(|e| bad(e.to_string()))?
        };
        if d.is_zero() {
            return Err(bad(
                "it must be greater than zero (leave the key out for no limit)".into(),
            ));
        }
        Ok(d)
    }

    /// The typed parameter value at `key_path` (top-level keys, list indices
    /// and mapping keys) in the whole document.
    pub(super) fn parameters(&mut self, node: &Node, path: &str, at: &[Seg]) -> Result<Parameters> {
        if node.is_null() {
            return Ok(Parameters::new());
        }
        if !matches!(node.kind, Kind::Map(_)) {
            return Err(self.type_error(node, path, "a mapping of parameter names to values"));
        }
        if self.values.is_none() {
            let text = self.text.strip_prefix('\u{feff}').unwrap_or(self.text);
            let values = nbpipe_params::parse_yaml(text).map_err(|e| {
                // The typing errors `nbpipe_params` finds after our parse
                // are about explicit tags (`!!binary`, `!!int abc`...).
                let loc = self.first_tag.unwrap_or(node.loc);
                self.error(
                    loc,
                    path,
                    ErrorKind::Value,
                    format!("invalid parameter value: {e}"),
                )
            })?;
            self.values = Some(values);
        }
        let Some(top) = &self.values else {
            return Ok(Parameters::new());
        };
        let mut cur: Option<&Value> = None;
        for (i, seg) in at.iter().enumerate() {
            cur = match (i, seg, cur) {
                (0, Seg::Key(k), _) => top.get(k),
                (_, Seg::Key(k), Some(Value::Dict(d))) => {
                    d.iter().find(|(dk, _)| dk == k).map(|(_, v)| v)
                }
                (_, Seg::Index(n), Some(Value::List(l))) => l.get(*n),
                _ => None,
            };
        }
        match cur {
            Some(Value::Dict(d)) => Ok(d.iter().cloned().collect()),
            Some(Value::None) | None => Ok(Parameters::new()),
            Some(_) => Err(self.type_error(node, path, "a mapping of parameter names to values")),
        }
    }
}

/// A step in a path through the typed document.
pub(super) enum Seg<'s> {
    Key(&'s str),
    Index(usize),
}
