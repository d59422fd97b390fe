//! Tests of the project file: both forms, defaults, ordering and every error.

use std::path::Path;
use std::time::Duration;

use nbpipe_params::Value;

use super::*;

/// A project directory holding empty files at `files`.
fn dir_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let p = dir.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "{}").unwrap();
    }
    dir
}

const NBS: &[&str] = &["a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"];

fn ok(text: &str) -> Project {
    let dir = dir_with(NBS);
    parse(dir.path(), "nbpipe.yaml", text).unwrap_or_else(|e| panic!("{e}"))
}

/// The error for `text`, checking its display starts `DIR/nbpipe.yaml:LINE:`.
fn err_at(text: &str, line: usize) -> Invalid {
    let dir = dir_with(NBS);
    let e = match parse(dir.path(), "nbpipe.yaml", text) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e,
    };
    let shown = e.to_string();
    let prefix = format!("{}:{line}:", dir.path().join("nbpipe.yaml").display());
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} should start with {prefix:?}"
    );
    let inv = e.invalid().unwrap().clone();
    assert_eq!(inv.line, line, "{shown}");
    inv
}

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

#[test]
fn short_form_from_the_issue_runs_unchanged() {
    let dir = dir_with(&["my-notebook.ipynb", "my-second-notebook.ipynb"]);
    let text = "notebooks:
  - my-notebook.ipynb
  - my-second-notebook.ipynb
S3TriggerBucket: notebook-trigger-bucket
S3TriggerKeyPrefix: path/to/data/
";
    std::fs::write(dir.path().join("nbpipe.yaml"), text).unwrap();
    let p = load(dir.path()).unwrap();
    assert_eq!(p.file, dir.path().join("nbpipe.yaml"));
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["my-notebook", "my-second-notebook"]);
    assert_eq!(p.steps[1].path, Path::new("my-second-notebook.ipynb"));
    assert_eq!(p.steps[0].needs, Vec::<String>::new());
    assert_eq!(p.steps[1].needs, ["my-notebook"]);
    assert!(!p.steps[0].explicit_needs);
    assert_eq!(p.order(), vec![vec![0], vec![1]]);
    assert_eq!(
        p.triggers,
        vec![Trigger::S3 {
            bucket: "notebook-trigger-bucket".into(),
            prefix: "path/to/data/".into(),
            suffix: None,
        }]
    );
}

#[test]
fn short_form_accepts_a_key_suffix() {
    let p = ok("notebooks: [a.ipynb]\nS3TriggerBucket: bkt\nS3TriggerKeySuffix: .csv\n");
    assert_eq!(
        p.triggers,
        vec![Trigger::S3 {
            bucket: "bkt".into(),
            prefix: String::new(),
            suffix: Some(".csv".into()),
        }]
    );
}

#[test]
fn defaults_fill_everything_left_out() {
    let dir = dir_with(&["a.ipynb", "requirements.txt"]);
    let p = parse(dir.path(), "nbpipe.yaml", "notebooks: [a.ipynb]\n").unwrap();
    let dir_name = dir.path().file_name().unwrap().to_string_lossy();
    assert_eq!(p.name, dir_name);
    assert_eq!(
        p.output,
        format!("{}/runs/{{run_id}}/", dir.path().display())
    );
    assert_eq!(
        p.env.requirements,
        Some(dir.path().join("requirements.txt"))
    );
    assert_eq!(p.env.python, None);
    assert!(p.parameters.is_empty());
    assert!(p.triggers.is_empty());
    assert_eq!(p.jobs, None);
    let s = &p.steps[0];
    assert_eq!((s.id.as_str(), s.retries, s.kernel.clone()), ("a", 0, None));
    assert_eq!((s.timeout, s.cell_timeout), (None, None));
    assert!(s.inputs.is_empty() && s.parameters.is_empty() && s.needs.is_empty());

    // No requirements.txt: no default.
    assert_eq!(ok("notebooks: [a.ipynb]\n").env.requirements, None);
}

#[test]
fn full_form_reads_every_key() {
    let dir = dir_with(&["etl/extract.ipynb", "train.ipynb", "reqs/ml.txt"]);
    let text = "name: churn
parameters:
  region: eu
  alpha: 0.5
output: s3://bucket/churn/{run_id}/
env:
  requirements: reqs/ml.txt
  python: python3.12
jobs: 2
notebooks:
  - path: ./etl/extract.ipynb
    id: extract
    parameters: {limit: 100}
    kernel: python3
    timeout: 1h30m
    cell_timeout: 90
    retries: 2
    inputs:
      - s3://bucket/raw/
      - data/lookup.csv
  - path: train.ipynb
    needs: extract
    inputs: s3://bucket/features/
trigger:
  - s3: {bucket: incoming, prefix: sales/, suffix: .parquet}
  - schedule: '0 6 * * 1-5'
  - schedule: {cron: '30 2 * * *', timezone: Europe/Paris}
";
    let p = parse(dir.path(), "nbpipe.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name, "churn");
    assert_eq!(p.parameters.get("region"), Some(&Value::str("eu")));
    assert_eq!(p.output, "s3://bucket/churn/{run_id}/");
    assert_eq!(p.env.requirements, Some(dir.path().join("reqs/ml.txt")));
    assert_eq!(p.env.python.as_deref(), Some("python3.12"));
    assert_eq!(p.jobs, Some(2));
    let e = &p.steps[0];
    assert_eq!(e.id, "extract");
    assert_eq!(e.path, Path::new("etl/extract.ipynb"));
    assert_eq!(e.parameters.get("limit"), Some(&Value::int(100)));
    assert_eq!(e.kernel.as_deref(), Some("python3"));
    assert_eq!(
        (e.timeout, e.cell_timeout, e.retries),
        (secs(5400), secs(90), 2)
    );
    assert_eq!(e.inputs, ["s3://bucket/raw/", "data/lookup.csv"]);
    assert!(e.explicit_needs && e.needs.is_empty());
    let t = &p.steps[1];
    assert_eq!(
        (t.id.as_str(), t.needs.clone()),
        ("train", vec!["extract".to_owned()])
    );
    assert_eq!(t.inputs, ["s3://bucket/features/"]);
    assert_eq!(
        p.triggers,
        vec![
            Trigger::S3 {
                bucket: "incoming".into(),
                prefix: "sales/".into(),
                suffix: Some(".parquet".into()),
            },
            Trigger::Schedule {
                cron: "0 6 * * 1-5".into(),
                timezone: None,
            },
            Trigger::Schedule {
                cron: "30 2 * * *".into(),
                timezone: Some("Europe/Paris".into()),
            },
        ]
    );
    let merged = p.step_parameters(0);
    let names: Vec<&str> = merged.iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["region", "alpha", "limit"]);
}

#[test]
fn parameters_are_typed_like_papermill_yaml() {
    let p = ok("parameters:
  flag: yes
  when: 2024-01-01
  hex: 0x10
  none: ~
  quoted: 'yes'
  nested: {xs: [1, 2.5, off]}
  base: &base {k: 1}
notebooks:
  - path: a.ipynb
    parameters:
      <<: *base
      flag: no
");
    let g = |k: &str| p.parameters.get(k).cloned();
    assert_eq!(g("flag"), Some(Value::Bool(true)));
    assert_eq!(g("when"), Some(Value::str("2024-01-01")));
    assert_eq!(g("hex"), Some(Value::int(16)));
    assert_eq!(g("none"), Some(Value::None));
    assert_eq!(g("quoted"), Some(Value::str("yes")));
    assert_eq!(
        g("nested"),
        Some(Value::Dict(vec![(
            "xs".into(),
            Value::List(vec![Value::int(1), Value::Float(2.5), Value::Bool(false)])
        )]))
    );
    let step = p.step_parameters(0);
    assert_eq!(step.get("flag"), Some(&Value::Bool(false)));
    assert_eq!(step.get("k"), Some(&Value::int(1)));
}

#[test]
fn steps_without_needs_run_in_list_order() {
    let p = ok("notebooks: [a.ipynb, b.ipynb, c.ipynb]\n");
    assert_eq!(p.order(), vec![vec![0], vec![1], vec![2]]);
    assert_eq!(p.dependencies(2), vec![1]);
    assert_eq!(p.dependents(0), vec![1]);
    assert_eq!(p.steps[2].needs, ["b"]);
    assert!(p.steps.iter().all(|s| !s.explicit_needs));
}

#[test]
fn needs_anywhere_makes_a_dag() {
    let p = ok("notebooks:
  - a.ipynb
  - b.ipynb
  - path: c.ipynb
    needs: [a, b, a]
  - path: d.ipynb
    needs: a
");
    assert!(p.steps.iter().all(|s| s.explicit_needs));
    assert_eq!(p.order(), vec![vec![0, 1], vec![2, 3]]);
    assert_eq!(p.steps[2].needs, ["a", "b"]);
    assert_eq!(p.dependencies(2), vec![0, 1]);
    assert_eq!(p.dependents(0), vec![2, 3]);
    assert!(p.steps[1].needs.is_empty());
}

#[test]
fn dag_layers_follow_the_longest_path() {
    let p = ok("notebooks:
  - {path: d.ipynb, needs: [c, a]}
  - {path: c.ipynb, needs: b}
  - {path: b.ipynb, needs: []}
  - {path: a.ipynb, needs: []}
");
    assert_eq!(p.order(), vec![vec![2, 3], vec![1], vec![0]]);
}

#[test]
fn durations_accept_seconds_and_units() {
    for (written, expected) in [
        ("90", Duration::from_secs(90)),
        ("1.5", Duration::from_millis(1500)),
        ("90s", Duration::from_secs(90)),
        ("5m", Duration::from_secs(300)),
        ("1h30m", Duration::from_secs(5400)),
        ("2h", Duration::from_secs(7200)),
        ("500ms", Duration::from_millis(500)),
        ("'10s'", Duration::from_secs(10)),
    ] {
        let p = ok(&format!(
            "notebooks:\n  - path: a.ipynb\n    timeout: {written}\n"
        ));
        assert_eq!(p.steps[0].timeout, Some(expected), "{written}");
    }
}

#[test]
fn bad_durations_name_the_key_and_line() {
    for bad in ["5 parsecs", "-3", "0", "soon", "1.2.3"] {
        let text = format!("notebooks:\n  - path: a.ipynb\n    cell_timeout: {bad}\n");
        let e = err_at(&text, 3);
        assert_eq!(e.kind, ErrorKind::Duration, "{bad}: {}", e.message);
        assert_eq!(e.key, "notebooks[0].cell_timeout");
        assert!(e.message.contains(&format!("`{bad}`")), "{}", e.message);
        assert!(
            e.message.contains("`notebooks[0].cell_timeout`"),
            "{}",
            e.message
        );
        assert_eq!(e.column, 19);
    }
    let e = err_at("notebooks:\n  - path: a.ipynb\n    timeout: [1]\n", 3);
    assert_eq!(e.kind, ErrorKind::Type);
}

#[test]
fn unknown_keys_are_errors_with_suggestions() {
    let e = err_at("notebooks: [a.ipynb]\nnotebok: x\n", 2);
    assert_eq!(e.kind, ErrorKind::UnknownKey);
    assert_eq!(e.column, 1);
    assert_eq!(
        e.message,
        "unknown key `notebok` (did you mean `notebooks`?)"
    );

    let text = "notebooks:
  - a.ipynb
  - path: b.ipynb
    timout: 5m
";
    let e = err_at(text, 4);
    assert_eq!(e.key, "notebooks[1].timout");
    assert_eq!(
        e.message,
        "unknown key `timout` in `notebooks[1]` (did you mean `timeout`?)"
    );

    let e = err_at("s3triggerbucket: b\nnotebooks: [a.ipynb]\n", 1);
    assert!(
        e.message.contains("did you mean `S3TriggerBucket`?"),
        "{}",
        e.message
    );

    let e = err_at("notebooks: [a.ipynb]\nenv: {requirement: r.txt}\n", 2);
    assert!(
        e.message
            .contains("in `env` (did you mean `requirements`?)"),
        "{}",
        e.message
    );

    let e = err_at(
        "notebooks: [a.ipynb]\ntrigger:\n  s3: {bucket: b, region: eu}\n",
        3,
    );
    assert_eq!(e.key, "trigger.s3.region");
    assert!(
        e.message
            .contains("expected one of `bucket`, `prefix`, `suffix`"),
        "{}",
        e.message
    );
}

#[test]
fn duplicate_keys_are_errors() {
    let e = err_at("notebooks: [a.ipynb]\nname: x\nname: y\n", 3);
    assert_eq!(e.kind, ErrorKind::DuplicateKey);
    assert!(e.message.contains("duplicate key `name`"), "{}", e.message);
}

#[test]
fn cycles_are_reported_with_their_path() {
    let text = "notebooks:
  - path: a.ipynb
    needs: c
  - path: b.ipynb
    needs: a
  - path: c.ipynb
    needs: [b]
";
    let e = err_at(text, 3);
    assert_eq!(e.kind, ErrorKind::Cycle);
    assert_eq!(e.key, "notebooks[0].needs");
    assert!(e.message.contains("`a -> c -> b -> a`"), "{}", e.message);

    let e = err_at("notebooks:\n  - {path: a.ipynb, needs: a}\n", 2);
    assert!(e.message.contains("`a -> a`"), "{}", e.message);
}

#[test]
fn needs_must_name_existing_steps() {
    let text = "notebooks:
  - path: a.ipynb
    id: extract
  - path: b.ipynb
    needs: [extrct]
";
    let e = err_at(text, 5);
    assert_eq!(e.kind, ErrorKind::UnknownStep);
    assert_eq!(e.key, "notebooks[1].needs[0]");
    assert!(e.message.contains("`extrct`"), "{}", e.message);
    assert!(
        e.message.contains("did you mean `extract`?"),
        "{}",
        e.message
    );
}

#[test]
fn notebook_paths_must_exist_inside_the_project() {
    let e = err_at("notebooks:\n  - a.ipynb\n  - missing.ipynb\n", 3);
    assert_eq!((e.kind, e.key.as_str()), (ErrorKind::Path, "notebooks[1]"));
    assert!(
        e.message.contains("notebook `missing.ipynb` not found"),
        "{}",
        e.message
    );

    let e = err_at("notebooks:\n  - path: ../x.ipynb\n", 2);
    assert_eq!(e.key, "notebooks[0].path");
    assert!(
        e.message.contains("outside the project directory"),
        "{}",
        e.message
    );

    let e = err_at("notebooks:\n  - /etc/x.ipynb\n", 2);
    assert!(
        e.message.contains("outside the project directory"),
        "{}",
        e.message
    );

    let e = err_at("notebooks:\n  - a.py\n", 2);
    assert!(e.message.contains("must end in `.ipynb`"), "{}", e.message);

    let dir = dir_with(&["sub/x.txt"]);
    std::fs::create_dir(dir.path().join("d.ipynb")).unwrap();
    let e = parse(dir.path(), "nbpipe.yaml", "notebooks: [d.ipynb]\n").unwrap_err();
    assert!(e.to_string().contains("is not a file"), "{e}");

    let e = err_at("notebooks:\n  - {id: x}\n", 2);
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ErrorKind::MissingKey, "notebooks[0].path")
    );
}

#[test]
fn step_ids_are_unique_and_well_formed() {
    let dir = dir_with(&["x/a.ipynb", "y/a.ipynb", "my nb.ipynb"]);
    let e = parse(
        dir.path(),
        "nbpipe.yaml",
        "notebooks:\n  - x/a.ipynb\n  - y/a.ipynb\n",
    )
    .unwrap_err();
    let inv = e.invalid().unwrap();
    assert_eq!((inv.kind, inv.line), (ErrorKind::DuplicateId, 3));
    assert!(inv.message.contains("`a`") && inv.message.contains("`notebooks[0]` (line 2)"));

    let p = parse(
        dir.path(),
        "nbpipe.yaml",
        "notebooks:\n  - my nb.ipynb\n  - {path: y/a.ipynb, id: a2}\n",
    )
    .unwrap();
    assert_eq!(p.steps[0].id, "my_nb");
    assert_eq!(p.steps[1].id, "a2");

    let e = err_at("notebooks:\n  - path: a.ipynb\n    id: my step\n", 3);
    assert_eq!(e.key, "notebooks[0].id");
    assert!(
        e.message.contains("invalid step id `my step`"),
        "{}",
        e.message
    );
}

#[test]
fn retries_and_jobs_are_counts() {
    assert_eq!(
        ok("notebooks:\n  - path: a.ipynb\n    retries: 3\n").steps[0].retries,
        3
    );
    for bad in ["-1", "two", "1.5"] {
        let e = err_at(
            &format!("notebooks:\n  - path: a.ipynb\n    retries: {bad}\n"),
            3,
        );
        assert_eq!(e.key, "notebooks[0].retries");
        assert!(e.message.contains("non-negative integer"), "{}", e.message);
    }
    let e = err_at("notebooks: [a.ipynb]\njobs: 0\n", 2);
    assert_eq!(e.key, "jobs");
}

#[test]
fn malformed_files_are_reported_with_a_location() {
    let e = err_at("notebooks:\n  - a.ipynb\nname: [oops\n", 3);
    assert_eq!(e.kind, ErrorKind::Syntax);
    assert!(e.message.starts_with("invalid YAML"), "{}", e.message);

    let e = err_at("", 1);
    assert_eq!(e.kind, ErrorKind::MissingKey);
    let e = err_at("name: x\n", 1);
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ErrorKind::MissingKey, "notebooks")
    );
    let e = err_at("name: x\nnotebooks: []\n", 2);
    assert!(e.message.contains("`notebooks` is empty"), "{}", e.message);
    let e = err_at("- a.ipynb\n", 1);
    assert_eq!(e.kind, ErrorKind::Syntax);
    let e = err_at("notebooks: a.ipynb\n", 1);
    assert_eq!(e.kind, ErrorKind::Type);
    let e = err_at("notebooks: [a.ipynb]\nparameters: [1, 2]\n", 2);
    assert_eq!((e.kind, e.key.as_str()), (ErrorKind::Type, "parameters"));
    let e = err_at("notebooks: [a.ipynb]\n---\nnotebooks: [b.ipynb]\n", 2);
    assert_eq!(e.kind, ErrorKind::Syntax);
}

#[test]
fn trigger_forms_are_validated() {
    let e = err_at(
        "notebooks: [a.ipynb]\nS3TriggerBucket: b1\ntrigger:\n  s3: {bucket: b2}\n",
        4,
    );
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(
        e.message.contains("`S3TriggerBucket` (line 2)"),
        "{}",
        e.message
    );

    let e = err_at("notebooks: [a.ipynb]\nS3TriggerKeyPrefix: data/\n", 2);
    assert_eq!(e.kind, ErrorKind::Conflict);

    // The short S3 form and a full-form schedule go together.
    let p = ok("notebooks: [a.ipynb]\nS3TriggerBucket: bkt\ntrigger: {schedule: '@daily'}\n");
    assert_eq!(p.triggers.len(), 2);

    let e = err_at(
        "notebooks: [a.ipynb]\ntrigger:\n  schedule: 61 * * * *\n",
        3,
    );
    assert_eq!(e.key, "trigger.schedule");
    assert!(
        e.message.contains("invalid cron expression `61 * * * *`"),
        "{}",
        e.message
    );

    let e = err_at(
        "notebooks: [a.ipynb]\ntrigger:\n  schedule:\n    cron: 0 6 * * *\n    timezone: Mars/Olympus\n",
        5,
    );
    assert_eq!(e.key, "trigger.schedule.timezone");

    let e = err_at("notebooks: [a.ipynb]\nS3TriggerBucket: s3://b/data/\n", 2);
    assert!(e.message.contains("without a scheme"), "{}", e.message);

    let e = err_at("notebooks: [a.ipynb]\ntrigger:\n  - s3: {prefix: x/}\n", 3);
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ErrorKind::MissingKey, "trigger[0].s3.bucket")
    );
}

#[test]
fn other_values_are_validated() {
    let e = err_at("notebooks: [a.ipynb]\nenv:\n  requirements: nope.txt\n", 3);
    assert_eq!(
        (e.kind, e.key.as_str()),
        (ErrorKind::Path, "env.requirements")
    );

    let e = err_at("notebooks: [a.ipynb]\noutput: runs/{run_id/\n", 2);
    assert_eq!(e.key, "output");

    let p = ok("notebooks: [a.ipynb]\noutput: out/{run_id}\n");
    assert!(p.output.ends_with("/out/{run_id}"), "{}", p.output);
}

#[test]
fn load_finds_yml_and_reports_a_missing_file() {
    let dir = dir_with(&["a.ipynb"]);
    let e = load(dir.path()).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound { .. }));
    assert!(e.to_string().contains("expected `nbpipe.yaml`"), "{e}");

    std::fs::write(
        dir.path().join("nbpipe.yml"),
        "notebooks: [a.ipynb]\nbad: 1\n",
    )
    .unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.to_string().contains("nbpipe.yml:2:1: unknown key `bad`"),
        "{e}"
    );
}

#[test]
fn resolve_location_keeps_uris_and_joins_paths() {
    let d = Path::new("/p");
    assert_eq!(resolve_location(d, "s3://b/x/"), "s3://b/x/");
    assert_eq!(resolve_location(d, "/abs/out"), "/abs/out");
    assert_eq!(resolve_location(d, "./runs/{run_id}/"), "/p/runs/{run_id}/");
    assert_eq!(resolve_location(d, "./"), "/p/");
    assert_eq!(resolve_location(Path::new(""), "./runs/"), "runs/");
}

#[test]
fn bad_parameter_values_point_at_the_value() {
    let text =
        "notebooks:\n  - path: a.ipynb\n    parameters:\n      x: 1\n      y: !!binary aGVsbG8=\n";
    let e = err_at(text, 5);
    assert_eq!(e.key, "notebooks[0].parameters");
    assert!(
        e.message.contains("invalid parameter value"),
        "{}",
        e.message
    );
}

#[test]
fn step_keys_at_the_top_level_say_where_they_belong() {
    let e = err_at("notebooks: [a.ipynb]\nretries: 2\n", 2);
    assert!(
        e.message.contains("`retries` is set per notebook"),
        "{}",
        e.message
    );
}

/// The `yaml` blocks of the `nbpipe.yaml` reference (docs/projects.md) and of the README.
fn readme_examples() -> Vec<String> {
    let docs = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/projects.md"
    ));
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
    let start = readme
        .find("A project is a folder with `nbpipe.yaml`")
        .expect("README example");
    let mut blocks = yaml_blocks(docs);
    blocks.extend(yaml_blocks(&readme[start..]).into_iter().take(1));
    blocks
}

fn yaml_blocks(text: &str) -> Vec<String> {
    text.split("```yaml\n")
        .skip(1)
        .map(|b| b[..b.find("```").unwrap()].to_owned())
        .collect()
}

#[test]
fn readme_examples_are_valid() {
    let blocks = readme_examples();
    assert_eq!(blocks.len(), 4);
    let dir = dir_with(&["my-notebook.ipynb", "my-second-notebook.ipynb"]);
    let short = parse(dir.path(), "nbpipe.yaml", &blocks[0]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(short.steps.len(), 2);

    let dir = dir_with(&[
        "etl/extract.ipynb",
        "train.ipynb",
        "report.ipynb",
        "requirements.txt",
    ]);
    let full = parse(dir.path(), "nbpipe.yaml", &blocks[1]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(full.order(), vec![vec![0], vec![1, 2]]);
    assert_eq!(full.triggers.len(), 2);
    assert_eq!(full.steps[0].cell_timeout, secs(600));
    assert_eq!(full.serve.concurrency, Some(2));
    assert_eq!(full.serve.retries, Some(3));
    assert_eq!(full.serve.retry_backoff, secs(30));
    assert_eq!(full.serve.retry_backoff_max, secs(600));
    assert_eq!(full.serve.timeout, secs(7200));
    assert!(full.env.fork_server);
    assert_eq!(full.env.preload, ["pandas"]);
    assert_eq!(full.secrets.len(), 3);

    // The `secrets:` section's example.
    let dir = dir_with(&["a.ipynb"]);
    let text = format!("notebooks: [a.ipynb]\n{}", blocks[2]);
    let secrets = parse(dir.path(), "nbpipe.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    let sources: Vec<String> = secrets
        .secrets
        .iter()
        .map(|s| s.source.to_string())
        .collect();
    assert_eq!(sources.len(), 5, "{sources:?}");
    assert_eq!(sources[0], "environment variable `CHURN_DB_PASSWORD`");
    assert!(sources[3].ends_with("(JSON key `username`)"), "{sources:?}");

    // The README's example (examples/sales' own file, abridged).
    let dir = dir_with(&["extract.ipynb", "report.ipynb"]);
    let readme = parse(dir.path(), "nbpipe.yaml", &blocks[3]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(readme.steps.len(), 2);
    assert_eq!(readme.triggers.len(), 1);
}

#[test]
fn env_fork_server_and_preload() {
    let p = ok("notebooks: [a.ipynb]\n");
    assert!(p.env.fork_server, "the fork server is on by default");
    assert!(p.env.preload.is_empty());

    let p = ok(
        "notebooks: [a.ipynb]\nenv:\n  fork_server: false\n  preload: [pandas, numpy.random, _x]\n",
    );
    assert!(!p.env.fork_server);
    assert_eq!(p.env.preload, ["pandas", "numpy.random", "_x"]);
    let p = ok("notebooks: [a.ipynb]\nenv: {fork_server: True, preload: sklearn}\n");
    assert!(p.env.fork_server);
    assert_eq!(p.env.preload, ["sklearn"]);

    let e = err_at("notebooks: [a.ipynb]\nenv:\n  fork_server: 'no'\n", 3);
    assert_eq!(e.kind, ErrorKind::Type, "{}", e.message);
    let e = err_at("notebooks: [a.ipynb]\nenv:\n  fork_server: yes\n", 3);
    assert_eq!(e.kind, ErrorKind::Value);
    assert!(
        e.message
            .contains("`env.fork_server` must be `true` or `false`, found `yes`"),
        "{}",
        e.message
    );
    let e = err_at(
        "notebooks: [a.ipynb]\nenv:\n  preload:\n    - pandas\n    - os; import x\n",
        5,
    );
    assert_eq!(e.kind, ErrorKind::Value);
    assert!(e.message.contains("found `os; import x`"), "{}", e.message);
    let e = err_at("notebooks: [a.ipynb]\nenv:\n  preload: {pandas: 1}\n", 3);
    assert_eq!(e.kind, ErrorKind::Type);
    let e = err_at("notebooks: [a.ipynb]\nenv: {forkserver: false}\n", 2);
    assert!(
        e.message.contains("did you mean `fork_server`?"),
        "{}",
        e.message
    );
}

#[test]
fn declared_name_reads_a_name_even_from_a_file_that_does_not_validate() {
    let dir = tempfile::tempdir().unwrap();
    let name_in = |text: &str| {
        std::fs::write(dir.path().join("nbpipe.yaml"), text).unwrap();
        declared_name(dir.path())
    };
    // The notebook is missing: the project does not load, its name is still read.
    let text = "name: 'sales'  # comment\nnotebooks: [missing.ipynb]\n";
    assert!(load(dir.path()).is_err());
    assert_eq!(name_in(text).as_deref(), Some("sales"));
    // Only the top-level key counts.
    assert_eq!(name_in("notify:\n  name: x\nnotebooks: [a.ipynb]\n"), None);
    assert_eq!(name_in("name: ''\n"), None);
    assert_eq!(name_in("name: [unclosed\n"), None);
    assert_eq!(name_in("- a list\n"), None);
    std::fs::remove_file(dir.path().join("nbpipe.yaml")).unwrap();
    assert_eq!(declared_name(dir.path()), None);
}
