//! Submitted parameters checked against the notebooks that would receive them, before a run
//! is queued: a name that is not an identifier in a step's language, or a value that
//! language cannot express, would only make a run that fails. The check is the one the
//! runner makes when it injects them ([`nbpipe_params::render_parameters`]), on each step's
//! notebook as it is now on disk.
//!
//! Must not: judge whether a notebook declares a parameter (papermill injects undeclared ones
//! with a warning, and so does nbpipe), or refuse a run over a notebook the runner would
//! itself report (unreadable, no translator for its language).

use nbpipe_params::{Language, Parameters, Value as Param};
use serde_json::{Map, Value};

use super::{ApiError, StepNotebook};

/// `Ok` when every step's notebook can take `parameters`; else `400 bad_parameters` naming
/// the step, its language, the parameter and why.
pub(crate) async fn check(
    steps: &[StepNotebook],
    parameters: &Map<String, Value>,
) -> Result<(), ApiError> {
    if parameters.is_empty() {
        return Ok(());
    }
    for step in steps {
        let Some(lang) = language_of(step).await else {
            continue;
        };
        for (name, value) in parameters {
            let mut one = Parameters::new();
            one.set(name, Param::from_json(value));
            if let Err(e) = nbpipe_params::render_parameters(lang, &one, "") {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "bad_parameters",
                    format!(
                        "parameter `{}` cannot be given to step `{}` ({}): {e}",
                        shown(name),
                        step.id,
                        lang.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The parameter language of a step's notebook, as the runner picks it (the step's kernel,
/// else the notebook's; its language), when the notebook can be read.
async fn language_of(step: &StepNotebook) -> Option<Language> {
    let bytes = tokio::fs::read(&step.notebook).await.ok()?;
    let nb = nbpipe_notebook::read(&bytes).ok()?;
    let kernel = step
        .kernel
        .clone()
        .or_else(|| nb.kernel_name().map(str::to_string))
        .unwrap_or_default();
    Language::from_kernel(&kernel, nb.language().unwrap_or(""))
}

/// A parameter name as it goes into a message: at most 100 characters.
fn shown(name: &str) -> String {
    let mut s: String = name.chars().take(100).collect();
    if s.len() < name.len() {
        s.push('…');
    }
    s
}
