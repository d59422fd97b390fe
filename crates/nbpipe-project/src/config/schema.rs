//! The schema of `nbpipe.yaml`: walks the located node tree from the top,
//! checks every key and value, and builds a [`Project`]. Parameter values
//! are typed by `nbpipe_params::parse_yaml` (YAML 1.1, as papermill);
//! everything else takes scalars literally (`bucket: on` is the string `on`).
//! Steps are read in `steps.rs`, triggers in `trigger.rs`.

use std::path::Path;

use nbpipe_params::Parameters;

use super::ctx::{params_first_tag, Ctx, Result, Seg};
use super::environments::{self, Environment, Select};
use super::error::ConfigError;
use super::error::ErrorKind;
use super::yaml::{self, Kind, Loc, Map, Node};
use super::DEFAULT_OUTPUT;
use super::{resolve_location, EnvConfig, Project};

const TOP_KEYS: &[&str] = &[
    "name",
    "parameters",
    "output",
    "env",
    "notebooks",
    "trigger",
    "jobs",
    "serve",
    "image",
    "executor",
    "deploy",
    "regions",
    "secrets",
    "environments",
    "notify",
    "S3TriggerBucket",
    "S3TriggerKeyPrefix",
    "S3TriggerKeySuffix",
];
const ENV_KEYS: &[&str] = &["requirements", "python", "fork_server", "preload"];

pub(super) fn project(
    dir: &Path,
    file_name: &str,
    text: &str,
    select: Select<'_>,
) -> Result<Project> {
    let ctx = Ctx {
        dir,
        file: dir.join(file_name),
        text,
        values: None,
        first_tag: None,
    };
    let root = yaml::parse(text.strip_prefix('\u{feff}').unwrap_or(text)).map_err(|e| {
        ctx.error(
            e.loc,
            "",
            ErrorKind::Syntax,
            format!("invalid YAML: {}", e.message),
        )
    })?;
    let Some(root) = root.filter(|r| !r.is_null()) else {
        return Err(ctx.error(
            Loc { line: 1, column: 1 },
            "",
            ErrorKind::MissingKey,
            "the project file is empty: it needs a `notebooks:` list".into(),
        ));
    };
    if !matches!(root.kind, Kind::Map(_)) {
        return Err(ctx.error(
            root.loc,
            "",
            ErrorKind::Syntax,
            format!(
                "the project file must be a mapping of keys (`notebooks:` ...), found {}",
                root.describe()
            ),
        ));
    }
    let file_top = ctx.map(&root, "", TOP_KEYS)?;
    let declared = environments::declared(&ctx, file_top, TOP_KEYS)?;
    let chosen = match select {
        Select::Top => None,
        Select::Named(name) => match declared.iter().position(|d| d.env.name == name) {
            Some(i) => Some(i),
            None => {
                return Err(ConfigError::UnknownEnvironment {
                    file: ctx.file.clone(),
                    name: name.to_owned(),
                    known: declared.iter().map(|d| d.env.name.clone()).collect(),
                })
            }
        },
        Select::CheckedOut if declared.is_empty() => None,
        Select::CheckedOut => environments::checked_out_branch(dir)
            .and_then(|b| declared.iter().position(|d| d.env.branch == b)),
    };
    let list: Vec<Environment> = declared.iter().map(|d| d.env.clone()).collect();
    let settings = |i: Option<usize>| -> Result<Project> {
        let (root, env_name) = match i {
            Some(i) => (
                Node {
                    kind: Kind::Map(environments::overlay_nodes(file_top, declared[i].keys)),
                    ..root.clone()
                },
                Some(declared[i].env.name.as_str()),
            ),
            None => (root.clone(), None),
        };
        let mut ctx = Ctx {
            dir,
            file: ctx.file.clone(),
            text,
            values: None,
            first_tag: None,
        };
        if let Some(env) = env_name {
            let doc = text.strip_prefix('\u{feff}').unwrap_or(text);
            ctx.values = nbpipe_params::parse_yaml(doc)
                .ok()
                .map(|v| environments::overlay_values(&v, env));
        }
        Ok(Project {
            environment: env_name.map(str::to_owned),
            environments: list.clone(),
            ..build(&mut ctx, &root)?
        })
    };
    // Every environment is checked, whichever is chosen: a mistake in `production` is found
    // while working on `staging`.
    for i in (0..declared.len()).filter(|i| Some(*i) != chosen) {
        settings(Some(i))?;
    }
    settings(chosen)
}

/// Checks one set of settings (the top level, or an environment laid over it).
fn build(ctx: &mut Ctx<'_>, root: &Node) -> Result<Project> {
    let dir = ctx.dir;
    let Kind::Map(top) = &root.kind else {
        return Err(ctx.type_error(root, "", "a mapping of keys"));
    };
    ctx.first_tag = params_first_tag(top);

    let name = match top.get("name").filter(|n| !n.is_null()) {
        Some(n) => {
            let name = ctx.string(n, "name")?;
            if name.contains('@') {
                return Err(ctx.error(
                    n.loc,
                    "name",
                    ErrorKind::Value,
                    format!(
                        "invalid project name `{name}`: `@` separates a project from its \
                         environment (`sales@staging`)"
                    ),
                ));
            }
            name
        }
        None => default_name(dir).replace('@', "-"),
    };
    let parameters = match top.get("parameters") {
        Some(n) => ctx.parameters(n, "parameters", &[Seg::Key("parameters")])?,
        None => Parameters::new(),
    };
    let output = match top.get("output").filter(|n| !n.is_null()) {
        Some(n) => {
            let s = ctx.string(n, "output")?;
            check_template(ctx, n, &s)?;
            resolve_location(dir, &s)
        }
        None => resolve_location(dir, DEFAULT_OUTPUT),
    };
    let env = env(ctx, top)?;
    let jobs = match top.get("jobs").filter(|n| !n.is_null()) {
        Some(n) => match ctx.uint(n, "jobs")? {
            0 => {
                return Err(ctx.error(
                    n.loc,
                    "jobs",
                    ErrorKind::Value,
                    "`jobs` must be at least 1".into(),
                ))
            }
            j => Some(usize::try_from(j).unwrap_or(usize::MAX)),
        },
        None => None,
    };
    let steps = super::steps::steps(ctx, root, top)?;
    let triggers = super::trigger::triggers(ctx, top)?;
    let serve = super::serve::policy(ctx, top)?;
    let image = super::image::image(ctx, top)?;
    let executor = super::executor::executor(ctx, top)?;
    let deploy = super::deploy::deploy(ctx, top)?;
    let regions = super::regions::regions(ctx, top)?;
    let secrets = super::secrets::secrets(ctx, top.get("secrets"), "secrets")?;
    let notify = super::notify::notify(ctx, top)?;
    Ok(Project {
        dir: dir.to_path_buf(),
        file: ctx.file.clone(),
        name,
        parameters,
        output,
        env,
        steps,
        triggers,
        jobs,
        serve,
        image,
        executor,
        deploy,
        regions,
        secrets,
        notify,
        environment: None,
        environments: Vec::new(),
    })
}

fn default_name(dir: &Path) -> String {
    let from = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
    };
    from(dir)
        .or_else(|| dir.canonicalize().ok().as_deref().and_then(from))
        .unwrap_or_else(|| "project".to_owned())
}

/// `{placeholder}` syntax of the output template: balanced braces around
/// identifiers.
fn check_template(ctx: &Ctx<'_>, node: &Node, s: &str) -> Result<()> {
    let mut rest = s;
    while let Some(open) = rest.find(['{', '}']) {
        let bad = |why: &str| {
            ctx.error(
                node.loc,
                "output",
                ErrorKind::Value,
                format!("invalid `output` template `{s}`: {why}"),
            )
        };
        if rest[open..].starts_with('}') {
            return Err(bad("`}` without `{`"));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(bad("`{` without `}`"));
        };
        let name = &rest[open + 1..open + close];
        let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(bad(&format!(
                "`{{{name}}}` is not a placeholder (letters, digits and `_`, e.g. `{{run_id}}`)"
            )));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

fn env(ctx: &Ctx<'_>, top: &Map) -> Result<EnvConfig> {
    let mut env = EnvConfig::default();
    if let Some(n) = top.get("env").filter(|n| !n.is_null()) {
        let m = ctx.map(n, "env", ENV_KEYS)?;
        if let Some(r) = m.get("requirements").filter(|n| !n.is_null()) {
            let s = ctx.string(r, "env.requirements")?;
            let path = ctx.dir.join(&s);
            if !path.is_file() {
                return Err(ctx.error(
                    r.loc,
                    "env.requirements",
                    ErrorKind::Path,
                    format!(
                        "requirements file `{s}` not found in `{}`",
                        ctx.dir.display()
                    ),
                ));
            }
            env.requirements = Some(path);
        }
        env.python = ctx.opt_string(m, "env", "python")?;
        if let Some(n) = m.get("fork_server").filter(|n| !n.is_null()) {
            env.fork_server = ctx.boolean(n, "env.fork_server")?;
        }
        if let Some(n) = m.get("preload") {
            for (name, node) in ctx.strings(n, "env.preload")? {
                let valid = name.split('.').all(|part| {
                    let mut chars = part.chars();
                    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                        && chars.all(|c| c.is_alphanumeric() || c == '_')
                });
                if !valid {
                    return Err(ctx.error(
                        node.loc,
                        "env.preload",
                        ErrorKind::Value,
                        format!("`env.preload` must list Python module names, found `{name}`"),
                    ));
                }
                env.preload.push(name);
            }
        }
    }
    if env.requirements.is_none() {
        let default = ctx.dir.join("requirements.txt");
        if default.is_file() {
            env.requirements = Some(default);
        }
    }
    Ok(env)
}
