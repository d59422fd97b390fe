//! Parameters from the command line, shared by `exec` and `run`: papermill's sources and
//! precedence (-b, then -f, then -y, then -p, then -r; later wins, first position kept), plus
//! `--parameters-json` (typed JSON, as the Python API sends it) between -y and -p.

use std::path::PathBuf;

use anyhow::{Context, Result};
use nbpipe_params::{Parameters, Value};

/// The flags' values.
pub struct Sources<'a> {
    /// `-b` base64 YAML strings.
    pub base64: &'a [String],
    /// `-f` YAML files.
    pub files: &'a [PathBuf],
    /// `-y` YAML strings.
    pub yaml: &'a [String],
    /// `--parameters-json` files (`-` = stdin).
    pub json: &'a [String],
    /// `-p NAME VALUE` pairs, flattened.
    pub pairs: &'a [String],
    /// `-r NAME VALUE` pairs, flattened.
    pub raw: &'a [String],
}

/// Apply the sources on top of `params`.
pub fn collect(mut params: Parameters, src: &Sources<'_>) -> Result<Parameters> {
    for b in src.base64 {
        params.update(nbpipe_params::parse_base64_yaml(b).context("in `--parameters_base64`")?);
    }
    for f in src.files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("could not read parameters file `{}`", f.display()))?;
        params.update(
            nbpipe_params::parse_yaml(&text)
                .with_context(|| format!("in parameters file `{}`", f.display()))?,
        );
    }
    for y in src.yaml {
        params.update(nbpipe_params::parse_yaml(y).context("in `--parameters_yaml`")?);
    }
    for j in src.json {
        let text = if j == "-" {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                .context("could not read `--parameters-json` from stdin")?;
            t
        } else {
            std::fs::read_to_string(j)
                .with_context(|| format!("could not read parameters file `{j}`"))?
        };
        params.update(
            nbpipe_params::parse_json(&text)
                .with_context(|| format!("in `--parameters-json {j}`"))?,
        );
    }
    for (name, value) in pairs(src.pairs) {
        params.set(&name, nbpipe_params::resolve_cli_value(&value));
    }
    for (name, value) in pairs(src.raw) {
        params.set(&name, Value::Str(value));
    }
    Ok(params)
}

fn pairs(flat: &[String]) -> Vec<(String, String)> {
    flat.chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect()
}
