//! `secrets:` end to end: values from an environment variable, a file, AWS Secrets Manager
//! (whole and one JSON key) and SSM Parameter Store (a real `moto_server` on 127.0.0.1) reach
//! a real kernel as environment variables — cold and forked from a zygote — and never reach
//! anything saved or shown: notebooks, HTML reports, `run.json`, the command's output, the
//! service's API, UI, metrics and log. The values contain quotes, backslashes, newlines,
//! HTML-special characters and non-ASCII text; the notebook prints them, shows them in reprs
//! (a dict, a DataFrame-like object with `__repr__` and `_repr_html_`, JSON), splits one
//! across two prints, and raises an exception containing one.
//!
//! The forms that must not appear are computed by Python itself (`repr`, `ascii`,
//! `json.dumps`, `html.escape`), not by the masker under test.

mod common;
#[path = "../../nbpipe-server/tests/common/moto.rs"]
mod moto;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use moto::Moto;
use serde_json::{json, Value};
use serve_support::{Server, TOKEN};

const ENV_VALUE: &str = "pa\"ss'w\nörd✓-from-env";
const FILE_VALUE: &str = "fi<le>&\"sec'ret\\ü✓ from file";
const SM_VALUE: &str = "sm-'q\"uo✓te\nsecond line of sm";
const SM_FIELD: &str = "jsön-field\"'<pass>\\word";
const SSM_VALUE: &str = "ssm ünï\"cøde'✓ parameter-value";

/// `(name, value)` of every secret the project declares.
fn secrets() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ENV_SECRET", ENV_VALUE),
        ("FILE_SECRET", FILE_VALUE),
        ("SM_SECRET", SM_VALUE),
        ("SM_FIELD", SM_FIELD),
        ("SSM_SECRET", SSM_VALUE),
    ]
}

/// The cells of the leaking notebook (after its parameters cell, which declares `expected`:
/// name → sha256 of the value).
const CELLS: &[&str] = &[
    // The kernel has every value, exactly.
    "import os, sys, json, html, hashlib, time\n\
     names = sorted(expected)\n\
     got = {n: hashlib.sha256(os.environ[n].encode()).hexdigest() for n in names}\n\
     assert got == expected, 'the kernel did not get the values'\n\
     print('hashes ok', len(got))",
    // Printed directly, to stdout and stderr.
    "for n in names:\n    print(n, '=', os.environ[n])\n    print(n, os.environ[n], file=sys.stderr)",
    // Reprs: a dict (execute_result), repr/ascii prints, JSON both ways.
    "print(repr(os.environ['ENV_SECRET']), ascii(os.environ['FILE_SECRET']))\n\
     print(json.dumps({n: os.environ[n] for n in names}))\n\
     print(json.dumps({n: os.environ[n] for n in names}, ensure_ascii=False))\n\
     {n: os.environ[n] for n in names}",
    // A DataFrame-like object: text/plain and text/html, and raw JSON/markdown displays.
    "class Frame:\n\
     \x20   def __init__(self, rows):\n\
     \x20       self.rows = rows\n\
     \x20   def __repr__(self):\n\
     \x20       return '\\n'.join(f'{i:>3} {k!r:>14} {v!r}' for i, (k, v) in enumerate(self.rows))\n\
     \x20   def _repr_html_(self):\n\
     \x20       return '<table>' + ''.join(f'<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>' for k, v in self.rows) + '</table>'\n\
     from IPython.display import display\n\
     display({'application/json': {n: os.environ[n] for n in names}, 'text/markdown': '* ' + os.environ['SSM_SECRET'], 'text/plain': 'raw'}, raw=True)\n\
     Frame([(n, os.environ[n]) for n in names])",
    // One value split across two prints (two messages), on stdout and on stderr.
    "s = os.environ['SSM_SECRET']\n\
     print('before', s[:3], end='', flush=True)\n\
     time.sleep(0.3)\n\
     print(s[3:], 'after')\n\
     t = os.environ['SM_FIELD']\n\
     sys.stderr.write(t[:6]); sys.stderr.flush()\n\
     time.sleep(0.3)\n\
     sys.stderr.write(t[6:] + '\\n'); sys.stderr.flush()\n\
     print('split done')",
    // A traceback (the run fails here).
    "raise ValueError('bad secret: ' + os.environ['FILE_SECRET'] + ' / ' + repr(os.environ['SM_SECRET']))",
];

/// Every string that must not appear in anything saved or shown: each value and each line of
/// it (at least 4 characters), in the forms Python gives it (`repr`, `ascii`, `json.dumps`
/// both ways), each of those also JSON- and HTML-escaped (as in a saved notebook or report).
fn forbidden() -> Vec<String> {
    let script = r#"
import sys, json, html
out = set()
for v in json.loads(sys.argv[1]):
    parts = [v] + [l.strip() for l in v.splitlines() if len(l.strip()) >= 4]
    for p in parts:
        base = {p, repr(p)[1:-1], ascii(p)[1:-1], json.dumps(p)[1:-1], json.dumps(p, ensure_ascii=False)[1:-1]}
        for b in base:
            out.update({b, json.dumps(b)[1:-1], json.dumps(b, ensure_ascii=False)[1:-1], html.escape(b), html.escape(b, quote=False)})
print(json.dumps(sorted(out)))
"#;
    let values: Vec<&str> = secrets().iter().map(|(_, v)| *v).collect();
    let out = Command::new(moto::test_env_bin("python"))
        .args(["-c", script, &serde_json::to_string(&values).unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let forms: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(forms.len() > 40, "{forms:?}");
    forms
}

/// Fail if `text` (from `what`) contains any forbidden form.
fn assert_clean(forms: &[String], what: &str, text: &str) {
    for f in forms {
        assert!(
            !text.contains(f.as_str()),
            "{what} contains a secret's form {f:?}:\n{text}"
        );
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn assert_files_clean(forms: &[String], dir: &Path) -> usize {
    let files = files_under(dir);
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        assert_clean(forms, &f.display().to_string(), &text);
    }
    files.len()
}

/// Secrets Manager secrets `sm-plain` and `sm-json` and the SSM SecureString
/// `/team/ssm-secret` on `moto`; returns their ARNs.
fn aws_secrets(moto: &Moto) -> (String, String, String) {
    let script = r#"
sm = boto3.client('secretsmanager', **kw)
ssm = boto3.client('ssm', **kw)
a = sm.create_secret(Name='sm-plain', SecretString=sys.argv[1])['ARN']
b = sm.create_secret(Name='sm-json', SecretString=json.dumps({'user': 'u', 'password': sys.argv[2]}))['ARN']
ssm.put_parameter(Name='/team/ssm-secret', Value=sys.argv[3], Type='SecureString')
c = ssm.get_parameter(Name='/team/ssm-secret')['Parameter']['ARN']
print(a, b, c)
"#;
    let out = moto.boto(script, &[SM_VALUE, SM_FIELD, SSM_VALUE]);
    let arns: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(arns.len(), 3, "{out}");
    (arns[0].into(), arns[1].into(), arns[2].into())
}

/// The project: `nbpipe.yaml` with the five secrets, `secret.txt` (with a trailing newline,
/// as secret files have), and `leak.ipynb`.
fn leaking_project(sb: &Sandbox, moto: &Moto) -> PathBuf {
    let (sm, sm_json, ssm) = aws_secrets(moto);
    let dir = sb.path("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret.txt"), format!("{FILE_VALUE}\n")).unwrap();
    let expected: serde_json::Map<String, Value> = secrets()
        .into_iter()
        .map(|(n, v)| (n.to_string(), json!(sha256(v))))
        .collect();
    let yaml = format!(
        "notebooks:\n  - leak.ipynb\n\
         parameters:\n  expected: {}\n\
         secrets:\n\
         \x20 ENV_SECRET: {{env: NBP_TEST_SOURCE_VAR}}\n\
         \x20 FILE_SECRET: {{file: secret.txt}}\n\
         \x20 SM_SECRET: {sm}\n\
         \x20 SM_FIELD:\n    aws: {sm_json}\n    json_key: password\n\
         \x20 SSM_SECRET: {{aws: {ssm}}}\n",
        Value::Object(expected)
    );
    std::fs::write(dir.join("nbpipe.yaml"), yaml).unwrap();
    let mut cells = vec![tagged("expected = {}", "parameters")];
    cells.extend(CELLS.iter().map(|s| code(s)));
    let nb = json!({
        "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("leak.ipynb"), nb.to_string()).unwrap();
    dir
}

fn sha256(v: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(v.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The process environment the project's sources and the AWS SDK need.
fn source_env(moto: &Moto) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = moto
        .aws_env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.push(("NBP_TEST_SOURCE_VAR".into(), ENV_VALUE.into()));
    env
}

/// The output notebook of the only run of `project`, and its run folder.
fn only_run(project: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(project.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// What the notebook recorded shows every step happened, with the values masked.
fn assert_recorded(run: &Path) {
    let nb: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("leak.ipynb")).unwrap()).unwrap();
    let cells = nb["cells"].as_array().unwrap();
    let all: String = cells.iter().map(|c| c["outputs"].to_string()).collect();
    let stdout: String = cells.iter().map(|c| stream(c, "stdout")).collect();
    let stderr: String = cells.iter().map(|c| stream(c, "stderr")).collect();
    assert!(stdout.contains("hashes ok 5"), "{stdout}");
    assert!(stdout.contains("ENV_SECRET = ***"), "{stdout}");
    assert!(stdout.contains("split done"), "{stdout}");
    // The split value is masked as one: what came before and after it is kept.
    assert!(stdout.contains("before *** after"), "{stdout}");
    assert!(stderr.contains("***\n"), "{stderr}");
    assert!(
        all.contains("text/html") && all.contains("<table>"),
        "{all}"
    );
    assert!(all.contains("application/json"), "{all}");
    let error = cells
        .iter()
        .flat_map(|c| c["outputs"].as_array().cloned().unwrap_or_default())
        .find(|o| o["output_type"] == "error")
        .expect("the raising cell's error output");
    assert_eq!(error["ename"], "ValueError");
    assert!(
        error["evalue"]
            .as_str()
            .unwrap()
            .starts_with("bad secret: *** / '***'"),
        "{error}"
    );
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let step_error = m["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        step_error.contains("ValueError: bad secret: ***"),
        "{step_error}"
    );
    // Parameters carry hashes only; no secret name maps to a value there.
    assert!(m["parameters"].get("ENV_SECRET").is_none(), "{m}");
}

#[test]
fn secrets_reach_the_kernel_and_no_saved_or_printed_form_of_them() {
    let sb = Sandbox::new();
    let moto = Moto::start();
    let forms = forbidden();
    let project = leaking_project(&sb, &moto);
    // Forked from a zygote (the default) and started cold.
    for (round, extra) in [(0, None), (1, Some("--no-fork-server"))] {
        let _ = std::fs::remove_dir_all(project.join("runs"));
        let mut cmd = sb.nbpipe();
        cmd.env("NBPIPE_HOME", shared_home())
            .envs(source_env(&moto))
            .args(["run", project.to_str().unwrap(), "--json"]);
        if let Some(a) = extra {
            cmd.arg(a);
        }
        let out = run(&mut cmd);
        let printed = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "round {round}: the last cell raises\n{printed}"
        );
        assert_clean(
            &forms,
            &format!("round {round}: the command's output"),
            &printed,
        );
        let run_dir = only_run(&project);
        assert_recorded(&run_dir);
        let n = assert_files_clean(&forms, &project.join("runs"));
        assert!(n >= 3, "notebook, report and run.json: {n} files");
        assert_files_clean(&forms, &shared_home().join("unsaved"));
    }
    sb.assert_no_processes_left();
}

#[test]
fn an_unresolvable_secret_fails_the_run_before_any_kernel_starts() {
    let sb = Sandbox::new();
    let moto = Moto::start();
    let (sm, _, _) = aws_secrets(&moto);
    let dir = sb.path("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let nb = json!({
        "cells": [code("open('kernel-ran', 'w').write('x')")],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("nb.ipynb"), nb.to_string()).unwrap();
    let missing_arn = sm.replace("sm-plain", "no-such-secret");
    let cases = [
        (
            "OK: {env: NBP_TEST_SOURCE_VAR}\n  GONE: {env: NBP_TEST_UNSET_VAR}\n".to_string(),
            vec![
                "`GONE`",
                "`secrets.GONE`",
                "`NBP_TEST_UNSET_VAR` is not set",
            ],
        ),
        (
            "OK: {env: NBP_TEST_SOURCE_VAR}\n  KEYFILE: {file: keys/missing.txt}\n".to_string(),
            vec!["`KEYFILE`", "missing.txt", "No such file"],
        ),
        (
            format!("OK: {{env: NBP_TEST_SOURCE_VAR}}\n  FROM_SM: {missing_arn}\n"),
            vec!["`FROM_SM`", &missing_arn, "ResourceNotFoundException"],
        ),
        (
            format!("OK: {sm}\n  FIELD: {{aws: {sm}, json_key: password}}\n"),
            vec!["`FIELD`", "is not JSON"],
        ),
    ];
    let forms = forbidden();
    for (secrets, expected) in &cases {
        std::fs::write(
            dir.join("nbpipe.yaml"),
            format!("notebooks: [nb.ipynb]\nsecrets:\n  {secrets}"),
        )
        .unwrap();
        let out = run(sb
            .nbpipe()
            .env("NBPIPE_HOME", shared_home())
            .envs(source_env(&moto))
            .args(["run", dir.to_str().unwrap()]));
        let err = stderr(&out);
        assert!(!out.status.success(), "{secrets}: {err}");
        for e in expected {
            assert!(err.contains(e), "{secrets}: expected {e:?} in:\n{err}");
        }
        assert_clean(&forms, "the error", &err);
        assert_clean(&forms, "the output", &String::from_utf8_lossy(&out.stdout));
        assert!(!dir.join("kernel-ran").exists(), "a kernel ran: {secrets}");
        assert!(
            files_under(&dir.join("runs"))
                .iter()
                .all(|f| f.extension().is_none_or(|e| e != "ipynb")),
            "a notebook was written"
        );
    }
    sb.assert_no_processes_left();
}

/// `GET path` as text (`curl`, the token sent; at most `secs` seconds: event streams end by
/// timing out).
fn fetch(server: &Server, path: &str, secs: u32) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", &secs.to_string(), "-H"])
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(format!("http://127.0.0.1:{}{path}", server.port))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_service_runs_with_secrets_and_shows_none() {
    let sb = Sandbox::new();
    let moto = Moto::start();
    let forms = forbidden();
    let project = leaking_project(&sb, &moto);
    let server = Server::start_with(
        &sb,
        &project,
        &["--lease", "3", "--no-inbox"],
        source_env(&moto),
    );
    assert_eq!(
        server.post("/api/runs", &json!({"project": "proj"}).to_string(), true),
        201
    );
    let runs = server.wait_runs("the run", |r| serve_support::done(r, 1));
    let id = runs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["status"], "failed", "{runs:#?}");
    let run_dir = only_run(&project);
    assert_recorded(&run_dir);
    assert_files_clean(&forms, &project.join("runs"));
    let detail = fetch(&server, &format!("/api/runs/{id}"), 10);
    assert!(detail.contains("bad secret: ***"), "{detail}");
    for path in [
        "/api/runs".to_string(),
        format!("/api/runs/{id}"),
        format!("/api/runs/{id}/log"),
        format!("/api/runs/{id}/events"),
        format!("/runs/{id}"),
        format!("/runs/{id}/steps/leak.html"),
        format!("/runs/{id}/steps/leak.ipynb"),
        "/metrics".to_string(),
        "/".to_string(),
    ] {
        let text = fetch(&server, &path, 3);
        assert_clean(&forms, &path, &text);
    }
    drop(server);
    // The server's own log (stderr).
    for f in files_under(sb.dir.path()) {
        if f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("serve-"))
        {
            assert_clean(
                &forms,
                "the server's log",
                &std::fs::read_to_string(&f).unwrap(),
            );
        }
    }
}

/// Inside an ECS task the variable is already set (ECS injected it): it is used as it is and
/// AWS is not called (here it cannot be: the endpoint is closed and the secret missing).
#[test]
fn an_aws_secret_already_in_the_environment_is_used_without_calling_aws() {
    let sb = Sandbox::new();
    let dir = sb.path("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let nb = json!({
        "cells": [code("import os\nprint('got', os.environ['INJECTED'] == 'from-ecs ✓\"x', os.environ['INJECTED'])")],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("nb.ipynb"), nb.to_string()).unwrap();
    std::fs::write(
        dir.join("nbpipe.yaml"),
        "notebooks: [nb.ipynb]\nsecrets:\n  INJECTED: \
         arn:aws:secretsmanager:us-east-1:123456789012:secret:absent-AbCdEf\n",
    )
    .unwrap();
    let closed = serve_support::free_port();
    let out = run(sb
        .nbpipe()
        .env("NBPIPE_HOME", shared_home())
        .env("INJECTED", "from-ecs ✓\"x")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["run", dir.to_str().unwrap(), "--quiet"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = only_run(&dir);
    let nb: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("nb.ipynb")).unwrap()).unwrap();
    assert_eq!(stream(&nb["cells"][0], "stdout"), "got True ***\n");
}
