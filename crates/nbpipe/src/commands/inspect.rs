//! `nbpipe inspect` and `exec --help-notebook`: the parameters a notebook declares.

use nbpipe_params::{Language, ParamInfo};
use serde_json::json;

use crate::cli::InspectArgs;
use crate::exit;

/// Run the command; returns the exit code.
pub fn run(args: InspectArgs) -> u8 {
    match infer(
        &args.notebook,
        args.kernel.as_deref(),
        args.language.as_deref(),
    ) {
        Ok(Inferred { params, has_cell }) => {
            if args.json {
                let list: Vec<_> = params
                    .iter()
                    .map(|p| json!({"name": p.name, "inferred_type_name": p.inferred_type_name, "default": p.default, "help": p.help}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else {
                print!("{}", table(&args.notebook, &params, has_cell));
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

/// `exec --help-notebook`: papermill's usage line plus the parameter table.
pub fn help_notebook(notebook: &str, kernel: Option<&str>, language: Option<&str>) -> u8 {
    match infer(notebook, kernel, language) {
        Ok(Inferred { params, has_cell }) => {
            println!("Usage: nbpipe exec [OPTIONS] NOTEBOOK_PATH [OUTPUT_PATH]");
            print!("{}", table(notebook, &params, has_cell));
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::USAGE
        }
    }
}

struct Inferred {
    params: Vec<ParamInfo>,
    has_cell: bool,
}

fn infer(path: &str, kernel: Option<&str>, language: Option<&str>) -> Result<Inferred, String> {
    let loc = nbpipe_store::Location::parse(path).map_err(|e| e.to_string())?;
    let bytes = loc.read().map_err(|e| e.to_string())?;
    let nb = nbpipe_notebook::read(&bytes)
        .map_err(|e| format!("`{path}` is not a valid notebook: {e}"))?;
    let Some(idx) = nb.cells.iter().position(|c| c.has_tag("parameters")) else {
        return Ok(Inferred {
            params: vec![],
            has_cell: false,
        });
    };
    let kname = kernel.or(nb.kernel_name()).unwrap_or("");
    let lang = language.or(nb.language()).unwrap_or("");
    let translator = Language::from_kernel(kname, lang).ok_or_else(|| {
        format!("cannot read parameters for kernel `{kname}` / language `{lang}`")
    })?;
    let params = nbpipe_params::inspect_parameters_cell(translator, &nb.cells[idx].source)
        .map_err(|e| e.to_string())?;
    Ok(Inferred {
        params,
        has_cell: true,
    })
}

/// papermill's layout: `  name: type (default value)` padded to 34 columns, then the help.
fn table(path: &str, params: &[ParamInfo], has_cell: bool) -> String {
    let mut out = format!("\nParameters inferred for notebook '{path}':\n");
    if !has_cell {
        out.push_str("\n  No cell tagged 'parameters'\n");
        return out;
    }
    if params.is_empty() {
        out.push_str("\n  Can't infer anything about this notebook's parameters. It may not have any parameter defined.\n");
        return out;
    }
    for p in params {
        let ty = if p.inferred_type_name == "None" {
            "Unknown type"
        } else {
            &p.inferred_type_name
        };
        let def = format!("  {}: {} (default {})", p.name, ty, p.default);
        if def.chars().count() > 30 {
            if p.help.is_empty() {
                out.push_str(&format!("{def}\n"));
            } else {
                out.push_str(&format!("{def}\n{}{}\n", " ".repeat(34), p.help));
            }
        } else {
            out.push_str(&format!("{def:<34}{}\n", p.help));
        }
    }
    out
}
