//! The `notebooks:` list: notebook paths, step ids, per-step settings, and
//! the `needs` graph (existing ids, no cycles; list order when no step uses
//! `needs`).

use std::path::{Component, Path, PathBuf};

use nbpipe_params::Parameters;

use super::ctx::{backticked, join, suggest, Ctx, Result, Seg, STEP_KEYS};
use super::error::ErrorKind;
use super::yaml::{Kind, Loc, Map, Node};
use super::{graph, Step};

/// A step while being read, with the locations errors need.
struct Draft<'n> {
    step: Step,
    /// Where the step is (its item).
    loc: Loc,
    /// Where its id comes from (`id:` value or the path).
    id_loc: Loc,
    /// Each written `needs` entry and its node.
    needs: Vec<(String, &'n Node)>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A notebook path: relative, inside the project, `.ipynb`, an existing file.
fn notebook_path(ctx: &Ctx<'_>, node: &Node, path: &str) -> Result<PathBuf> {
    let s = ctx.string(node, path)?;
    let bad = |why: String| ctx.error(node.loc, path, ErrorKind::Path, why);
    let p = Path::new(&s);
    let mut rel = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(bad(format!(
                    "notebook `{s}` is outside the project directory; paths are relative to \
                     `{}` and cannot use `..` or start with `/`",
                    ctx.dir.display()
                )))
            }
        }
    }
    if rel.extension().is_none_or(|e| e != "ipynb") || rel.file_stem().is_none() {
        return Err(bad(format!(
            "`{s}` is not a notebook: the path must end in `.ipynb`"
        )));
    }
    let full = ctx.dir.join(&rel);
    if !full.exists() {
        return Err(bad(format!(
            "notebook `{s}` not found in `{}`",
            ctx.dir.display()
        )));
    }
    if !full.is_file() {
        return Err(bad(format!("notebook `{s}` is not a file")));
    }
    Ok(rel)
}

pub(super) fn steps(ctx: &mut Ctx<'_>, root: &Node, top: &Map) -> Result<Vec<Step>> {
    let Some(list) = top.get("notebooks").filter(|n| !n.is_null()) else {
        return Err(ctx.error(
            root.loc,
            "notebooks",
            ErrorKind::MissingKey,
            "missing `notebooks:`, the list of notebooks to run".into(),
        ));
    };
    let Kind::Seq(items) = &list.kind else {
        return Err(ctx.type_error(list, "notebooks", "a list of notebooks"));
    };
    if items.is_empty() {
        return Err(ctx.error(
            list.loc,
            "notebooks",
            ErrorKind::Value,
            "`notebooks` is empty: list at least one notebook".into(),
        ));
    }
    let mut drafts: Vec<Draft<'_>> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        drafts.push(step(ctx, item, i)?);
    }
    let explicit = drafts.iter().any(|d| d.step.explicit_needs);

    // Unique ids.
    for (i, d) in drafts.iter().enumerate() {
        if let Some(j) = drafts[..i].iter().position(|o| o.step.id == d.step.id) {
            return Err(ctx.error(
                d.id_loc,
                &format!("notebooks[{i}]"),
                ErrorKind::DuplicateId,
                format!(
                    "step id `{}` of `notebooks[{i}]` is already used by `notebooks[{j}]` (line {}); \
                     give one of them a different `id:`",
                    d.step.id, drafts[j].loc.line
                ),
            ));
        }
    }

    // Needs: existing ids, then no cycle.
    let ids: Vec<String> = drafts.iter().map(|d| d.step.id.clone()).collect();
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.iter_mut().enumerate() {
        let mut these: Vec<usize> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (k, (need, node)) in d.needs.iter().enumerate() {
            let Some(j) = ids.iter().position(|id| id == need) else {
                let hint = match suggest(need, ids.iter().map(String::as_str)) {
                    Some(s) => format!(" (did you mean `{s}`?)"),
                    None => format!(
                        "; the step ids are {}",
                        backticked(&ids.iter().map(String::as_str).collect::<Vec<_>>())
                    ),
                };
                return Err(ctx.error(
                    node.loc,
                    &format!("notebooks[{i}].needs[{k}]"),
                    ErrorKind::UnknownStep,
                    format!("`notebooks[{i}].needs` names `{need}`, which is not a step id{hint}"),
                ));
            };
            if !these.contains(&j) {
                these.push(j);
                names.push(need.clone());
            }
        }
        if !explicit && i > 0 {
            these = vec![i - 1];
            names = vec![ids[i - 1].clone()];
        }
        d.step.needs = names;
        d.step.explicit_needs = explicit;
        deps.push(these);
    }
    if let Some(cycle) = graph::find_cycle(&deps) {
        let (a, b) = (cycle[0], cycle[1]);
        let node = drafts[a]
            .needs
            .iter()
            .find(|(n, _)| *n == ids[b])
            .map(|(_, node)| node.loc)
            .unwrap_or(drafts[a].loc);
        let path = cycle
            .iter()
            .map(|&s| ids[s].as_str())
            .collect::<Vec<_>>()
            .join(" -> ");
        return Err(ctx.error(
            node,
            &format!("notebooks[{a}].needs"),
            ErrorKind::Cycle,
            format!("`needs` makes a cycle: `{path}` (each step needs the next)"),
        ));
    }
    Ok(drafts.into_iter().map(|d| d.step).collect())
}

fn step<'n>(ctx: &mut Ctx<'_>, item: &'n Node, i: usize) -> Result<Draft<'n>> {
    let path = format!("notebooks[{i}]");
    if let Kind::Scalar { .. } = item.kind {
        let rel = notebook_path(ctx, item, &path)?;
        return Ok(Draft {
            step: new_step(default_id(&rel), rel),
            loc: item.loc,
            id_loc: item.loc,
            needs: Vec::new(),
        });
    }
    if !matches!(item.kind, Kind::Map(_)) {
        return Err(ctx.type_error(item, &path, "a notebook path or a mapping with `path:`"));
    }
    let m = ctx.map(item, &path, STEP_KEYS)?;
    let Some(p) = m.get("path") else {
        return Err(ctx.error(
            item.loc,
            &join(&path, "path"),
            ErrorKind::MissingKey,
            format!("`{path}` has no `path:` (the notebook to run)"),
        ));
    };
    let rel = notebook_path(ctx, p, &join(&path, "path"))?;
    let (id, id_loc) = match m.get("id").filter(|n| !n.is_null()) {
        Some(n) => {
            let id = ctx.string(n, &join(&path, "id"))?;
            if !valid_id(&id) {
                return Err(ctx.error(
                    n.loc,
                    &join(&path, "id"),
                    ErrorKind::Value,
                    format!(
                        "invalid step id `{id}` in `{path}`: use only letters, digits, `_`, `.` and `-`"
                    ),
                ));
            }
            (id, n.loc)
        }
        None => (default_id(&rel), p.loc),
    };
    let mut step = new_step(id, rel);
    if let Some(n) = m.get("parameters") {
        let at = [Seg::Key("notebooks"), Seg::Index(i), Seg::Key("parameters")];
        step.parameters = ctx.parameters(n, &join(&path, "parameters"), &at)?;
    }
    let mut needs = Vec::new();
    if let Some(n) = m.get("needs") {
        step.explicit_needs = true;
        needs = ctx.strings(n, &join(&path, "needs"))?;
    }
    step.kernel = ctx.opt_string(m, &path, "kernel")?;
    for (key, slot) in [
        ("timeout", &mut step.timeout),
        ("cell_timeout", &mut step.cell_timeout),
    ] {
        if let Some(n) = m.get(key).filter(|n| !n.is_null()) {
            *slot = Some(ctx.duration(n, &join(&path, key))?);
        }
    }
    if let Some(n) = m.get("retries").filter(|n| !n.is_null()) {
        let key = join(&path, "retries");
        let r = ctx.uint(n, &key)?;
        step.retries = u32::try_from(r).map_err(|_| {
            ctx.error(
                n.loc,
                &key,
                ErrorKind::Value,
                format!("`{key}` is too large"),
            )
        })?;
    }
    if let Some(n) = m.get("inputs") {
        step.inputs = ctx
            .strings(n, &join(&path, "inputs"))?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
    }
    Ok(Draft {
        step,
        loc: item.loc,
        id_loc,
        needs,
    })
}

fn new_step(id: String, path: PathBuf) -> Step {
    Step {
        id,
        path,
        parameters: Parameters::new(),
        needs: Vec::new(),
        kernel: None,
        timeout: None,
        cell_timeout: None,
        retries: 0,
        inputs: Vec::new(),
        explicit_needs: false,
    }
}

/// The file stem with characters outside `[A-Za-z0-9_.-]` replaced by `_`.
fn default_id(rel: &Path) -> String {
    rel.file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
