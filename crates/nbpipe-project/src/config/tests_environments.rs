//! Tests of `environments:`: choosing an environment and laying it over the top level.

use std::process::Command;

use nbpipe_params::Value;

use super::*;

const FILE: &str = "\
name: sales
parameters: {region: eu, limit: 10}
output: ./runs/{run_id}/
serve: {retries: 2, timeout: 1h}
notebooks:
  - a.ipynb
environments:
  staging:
    branch: staging
    parameters: {limit: 5}
    output: s3://staging-bucket/runs/{run_id}/
  production:
    branch: main
    serve: {timeout: 2h}
    notebooks:
      - path: a.ipynb
        parameters: {full: true}
";

fn dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.ipynb"), "{}").unwrap();
    dir
}

fn load_as(text: &str, select: Select<'_>) -> Result<Project, ConfigError> {
    let dir = dir();
    parse_env(dir.path(), "nbpipe.yaml", text, select)
}

#[test]
fn an_environment_replaces_keys_and_merges_parameters_and_serve() {
    let staging = load_as(FILE, Select::Named("staging")).unwrap();
    assert_eq!(staging.environment.as_deref(), Some("staging"));
    assert_eq!(staging.output, "s3://staging-bucket/runs/{run_id}/");
    assert_eq!(staging.parameters.get("limit"), Some(&Value::int(5)));
    assert_eq!(staging.parameters.get("region"), Some(&Value::str("eu")));
    assert_eq!(staging.serve.retries, Some(2));
    let names: Vec<(&str, &str)> = staging
        .environments
        .iter()
        .map(|e| (e.name.as_str(), e.branch.as_str()))
        .collect();
    assert_eq!(names, [("staging", "staging"), ("production", "main")]);

    let prod = load_as(FILE, Select::Named("production")).unwrap();
    // `serve` is merged key by key, `notebooks` replaced (with its own parameters read).
    assert_eq!(prod.serve.retries, Some(2));
    assert_eq!(
        prod.serve.timeout,
        Some(std::time::Duration::from_secs(7200))
    );
    assert_eq!(
        prod.step_parameters(0).get("full"),
        Some(&Value::Bool(true))
    );
    assert_eq!(prod.parameters.get("limit"), Some(&Value::int(10)));
    assert!(prod.output.ends_with("/runs/{run_id}/"), "{}", prod.output);

    let top = load_as(FILE, Select::Top).unwrap();
    assert_eq!(top.environment, None);
    assert_eq!(top.parameters.get("limit"), Some(&Value::int(10)));
    assert_eq!(top.environments.len(), 2);
}

#[test]
fn an_unknown_environment_is_refused_naming_the_declared_ones() {
    let e = load_as(FILE, Select::Named("prod"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("declares no environment `prod` (it declares: staging, production)"),
        "{e}"
    );
    let e = load_as("notebooks: [a.ipynb]\n", Select::Named("staging"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("(it has no `environments:`)"), "{e}");
}

#[test]
fn mistakes_in_any_environment_are_found_whichever_is_chosen() {
    let bad = FILE.replace("serve: {timeout: 2h}", "serve: {timeout: soon}");
    let e = load_as(&bad, Select::Named("staging")).unwrap_err();
    let inv = e.invalid().unwrap();
    assert_eq!(inv.line, 14, "{e}");
    assert!(e.to_string().contains("soon"), "{e}");

    let no_branch = FILE.replace("    branch: staging\n", "");
    let e = load_as(&no_branch, Select::Top).unwrap_err().to_string();
    assert!(e.contains("environment `staging` needs a `branch`"), "{e}");

    let same = FILE.replace("branch: main", "branch: staging");
    let e = load_as(&same, Select::Top).unwrap_err().to_string();
    assert!(e.contains("both follow branch `staging`"), "{e}");

    let renamed = FILE.replace("    branch: main\n", "    branch: main\n    name: other\n");
    let e = load_as(&renamed, Select::Top).unwrap_err().to_string();
    assert!(e.contains("unknown key `name`"), "{e}");

    let bad_name = FILE.replace("  staging:\n", "  \"stag ing\":\n");
    let e = load_as(&bad_name, Select::Top).unwrap_err().to_string();
    assert!(e.contains("invalid environment name `stag ing`"), "{e}");
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

#[test]
fn the_checked_out_branch_chooses_the_environment() {
    let dir = dir();
    std::fs::write(dir.path().join("nbpipe.yaml"), FILE).unwrap();
    // Not a git work tree: the top-level settings.
    let p = load(dir.path()).unwrap();
    assert_eq!(p.environment, None);
    assert_eq!(checked_out_branch(dir.path()), None);

    git(dir.path(), &["init", "-q", "-b", "staging"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "first"]);
    let p = load(dir.path()).unwrap();
    assert_eq!(p.environment.as_deref(), Some("staging"));
    assert_eq!(checked_out_branch(dir.path()).as_deref(), Some("staging"));

    git(dir.path(), &["checkout", "-q", "-b", "main"]);
    assert_eq!(
        load(dir.path()).unwrap().environment.as_deref(),
        Some("production")
    );
    // A branch no environment follows: the top level; `--env` still chooses.
    git(dir.path(), &["checkout", "-q", "-b", "feature"]);
    assert_eq!(load(dir.path()).unwrap().environment, None);
    let p = load_env(dir.path(), Select::Named("production")).unwrap();
    assert_eq!(p.environment.as_deref(), Some("production"));
    // A detached HEAD follows no branch.
    git(dir.path(), &["checkout", "-q", "--detach"]);
    assert_eq!(load(dir.path()).unwrap().environment, None);
}
