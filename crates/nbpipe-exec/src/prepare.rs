//! Getting a notebook ready to run, exactly as papermill does before it starts a kernel.
//!
//! Owns: papermill's load normalisation (upgrade to v4.5 with cell ids, `tags` and
//! `metadata.papermill` on every cell, notebook-level papermill defaults), the injected
//! parameters cell, report mode, input/output path metadata, removal of old error banners,
//! and `{name}` templating of paths.

use nbpipe_notebook::{CellType, Notebook};
use nbpipe_params::{Language, Parameters, Value as Param};
use serde_json::{json, Map, Value};

use crate::ExecError;

/// Tag of the cell holding default parameters.
pub const PARAMETERS_TAG: &str = "parameters";
/// Tag of the cell nbpipe/papermill injects.
pub const INJECTED_TAG: &str = "injected-parameters";
/// Tag of papermill's error banner cells.
pub const ERROR_MARKER_TAG: &str = "papermill-error-cell-tag";
/// Version string recorded in `metadata.papermill.version`.
pub const VERSION: &str = concat!("nbpipe-", env!("CARGO_PKG_VERSION"));

/// papermill's `load_notebook_node` normalisation.
pub fn normalize(nb: &mut Notebook) {
    if nb.nbformat_minor < 5 {
        nb.nbformat_minor = 5;
        for i in 0..nb.cells.len() {
            if nb.cells[i].id.is_none() {
                nb.cells[i].id = Some(nb.fresh_cell_id());
            }
        }
    }
    if !nb.metadata.contains_key("papermill") {
        nb.metadata.insert(
            "papermill".into(),
            json!({
                "default_parameters": {},
                "parameters": {},
                "environment_variables": {},
                "version": VERSION,
            }),
        );
    }
    for cell in &mut nb.cells {
        cell.metadata.entry("tags").or_insert_with(|| json!([]));
        cell.metadata
            .entry("papermill")
            .or_insert_with(|| json!({}));
    }
}

/// `metadata.papermill` as a mutable map (created if missing or not an object).
pub fn pm_meta(meta: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let v = meta
        .entry("papermill")
        .or_insert_with(|| Value::Object(Map::new()));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("just made an object")
}

/// The kernel name papermill would use: the override, else `metadata.kernelspec.name`.
pub fn kernel_name(nb: &Notebook, name: Option<&str>) -> Option<String> {
    name.map(str::to_string)
        .or_else(|| nb.kernel_name().map(str::to_string))
}

/// The language papermill would use: the override, else kernelspec language, else language_info.
pub fn language(nb: &Notebook, language: Option<&str>) -> Option<String> {
    language
        .map(str::to_string)
        .or_else(|| nb.language().map(str::to_string))
}

/// Index of the first cell carrying `tag`.
pub fn first_tagged(nb: &Notebook, tag: &str) -> Option<usize> {
    nb.cells.iter().position(|c| c.has_tag(tag))
}

/// Insert (or replace) the injected-parameters cell. Returns warnings for the user.
pub fn parameterize(
    nb: &mut Notebook,
    params: &Parameters,
    lang: Language,
    report_mode: bool,
) -> Result<Vec<String>, ExecError> {
    let mut warnings = Vec::new();
    // Warn about parameters the notebook does not declare (papermill does the same).
    if let Some(i) = first_tagged(nb, PARAMETERS_TAG) {
        if let Ok(declared) = nbpipe_params::inspect_parameters_cell(lang, &nb.cells[i].source) {
            if !declared.is_empty() {
                for (name, _) in params.iter() {
                    if !declared.iter().any(|d| d.name == name) {
                        warnings.push(format!("Passed unknown parameter: {name}"));
                    }
                }
            }
        }
    }
    let source =
        nbpipe_params::render_parameters(lang, params, "Parameters").map_err(ExecError::Params)?;
    let mut cell = nb.new_cell(CellType::Code, &source);
    cell.metadata.insert("tags".into(), json!([INJECTED_TAG]));
    if report_mode {
        cell.metadata
            .insert("jupyter".into(), json!({"source_hidden": true}));
    }
    if let Some(i) = first_tagged(nb, INJECTED_TAG) {
        nb.cells[i] = cell;
    } else if let Some(i) = first_tagged(nb, PARAMETERS_TAG) {
        nb.cells.insert(i + 1, cell);
    } else {
        warnings.push("Input notebook does not contain a cell with tag 'parameters'".into());
        nb.cells.insert(0, cell);
    }
    pm_meta(&mut nb.metadata).insert("parameters".into(), params.to_json());
    Ok(warnings)
}

/// papermill's `prepare_notebook_metadata` plus `remove_error_markers`.
pub fn prepare_metadata(nb: &mut Notebook, input: &str, output: Option<&str>, report_mode: bool) {
    if report_mode {
        for cell in nb.cells.iter_mut().filter(|c| c.is_code()) {
            let j = cell
                .metadata
                .entry("jupyter")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = j {
                m.insert("source_hidden".into(), Value::Bool(true));
            } else {
                *j = json!({"source_hidden": true});
            }
        }
    }
    let pm = pm_meta(&mut nb.metadata);
    pm.insert("input_path".into(), json!(input));
    pm.insert("output_path".into(), json!(output));
    nb.cells.retain(|c| !c.has_tag(ERROR_MARKER_TAG));
}

/// papermill's path templating: `{name}` is replaced by the parameter's `str()`; `{{`/`}}`
/// are literal braces. An unknown name is an error, as in papermill.
pub fn template_path(path: &str, params: &Parameters) -> Result<String, ExecError> {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => name.push(ch),
                        None => {
                            return Err(ExecError::Path(format!(
                                "`{path}`: unclosed `{{` in path template"
                            )))
                        }
                    }
                }
                let value = params.get(&name).ok_or_else(|| {
                    ExecError::Path(format!(
                        "`{path}`: missing parameter `{name}` for the path template"
                    ))
                })?;
                out.push_str(&python_str(value));
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Python's `str()` of a parameter value.
pub fn python_str(v: &Param) -> String {
    match v {
        Param::Str(s) => s.clone(),
        other => other
            .scalar_py_str()
            .or_else(|| nbpipe_params::translate_value(Language::Python, other).ok())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, Param)]) -> Parameters {
        let mut p = Parameters::new();
        for (k, v) in pairs {
            p.set(k, v.clone());
        }
        p
    }

    #[test]
    fn path_template_fills_names_and_keeps_escaped_braces() {
        let p = params(&[
            ("day", Param::Str("2024-01-02".into())),
            ("n", Param::Int("3".into())),
        ]);
        assert_eq!(
            template_path("out/{day}-{n}-{{x}}.ipynb", &p).unwrap(),
            "out/2024-01-02-3-{x}.ipynb"
        );
    }

    #[test]
    fn path_template_with_unknown_name_is_an_error() {
        let err = template_path("out/{nope}.ipynb", &Parameters::new()).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(template_path("out/{oops.ipynb", &Parameters::new()).is_err());
    }
}
