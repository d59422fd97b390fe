//! `nbpipe serve --git`: environments served from a real repository's branches (a bare
//! repository on disk served by `git daemon` on 127.0.0.1, pushes made with the `git` CLI,
//! webhooks shaped and signed like GitHub's, Gitea's and GitLab's).

mod common;
mod serve_support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use common::*;
use serve_support::*;

const SECRET: &str = "hook-secret-42";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.org"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `git daemon` serving the sandbox's repositories on a free loopback port; killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // `git daemon` runs `git-daemon` as its child: end the whole process group.
        let pg = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn daemon(base: &Path) -> (Daemon, u16) {
    let port = free_port();
    let child = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            "--export-all",
        ])
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let d = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "git daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (d, port)
}

fn notebook() -> String {
    json!({
        "cells": [
            tagged("greeting = None\npause = 0", "parameters"),
            code("import time\ntime.sleep(float(pause))\nprint('greeting', greeting)"),
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    })
    .to_string()
}

fn yaml(staging: &str, production: &str) -> String {
    format!(
        "name: sales\nparameters: {{greeting: top}}\nnotebooks: [nb.ipynb]\nenvironments:\n  \
         staging:\n    branch: staging\n    parameters: {{greeting: {staging}}}\n  production:\n    \
         branch: main\n    parameters: {{greeting: {production}}}\n"
    )
}

fn sign(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What run `id`'s notebook printed (outputs of a project served from git live under the
/// work folder, per project key).
fn printed_in(work: &Path, key: &str, id: &str) -> String {
    let path = work
        .join("outputs")
        .join(key)
        .join("runs")
        .join(id)
        .join("nb.ipynb");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("run notebook {}: {e}", path.display()));
    let nb: Value = serde_json::from_str(&text).unwrap();
    let mut out = String::new();
    for cell in nb["cells"].as_array().unwrap() {
        for o in cell["outputs"].as_array().into_iter().flatten() {
            match &o["text"] {
                Value::String(t) => out += t,
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(Value::as_str)
                    .for_each(|t| out += t),
                _ => {}
            }
        }
    }
    out
}

fn submit(server: &Server, project: &str, params: Value) -> String {
    let body = json!({"project": project, "parameters": params}).to_string();
    let (code, v) = server.post_json("/api/runs", &body);
    assert_eq!(code, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn serving(server: &Server, key: &str) -> Option<String> {
    let v = server.get(&format!("/api/revisions?project={key}"))?;
    v["revisions"]
        .as_array()?
        .iter()
        .find(|r| r["status"] == "serving")
        .and_then(|r| r["commit"].as_str().map(str::to_owned))
}

/// The served projects' names, sorted.
fn project_names(server: &Server) -> Vec<String> {
    let projects = server.get("/api/projects").unwrap();
    let mut names: Vec<String> = projects["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A bare repository `repos/origin.git` (default branch `main`) and a clone of it to push
/// from.
fn origin_and_clone(sb: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let repos = sb.path("repos");
    let origin = repos.join("origin.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    git(
        sb.dir.path(),
        &["clone", "-q", &origin.to_string_lossy(), "clone"],
    );
    (repos, sb.path("clone"))
}

/// POST a GitHub push hook for `body`, signed with the test's secret; its status and JSON.
fn github_push(server: &Server, body: &str) -> (u16, Value) {
    let sig = format!("X-Hub-Signature-256: sha256={}", sign(body));
    server.request(
        "POST",
        "/hooks/git",
        &[&sig, "X-GitHub-Event: push"],
        Some(body),
    )
}

/// `nbpipe serve --git URL` on a free loopback port with the test's token and webhook
/// secret, its stderr in `serve.log`, the repository mirrored under `gitwork`, plus `extra`
/// arguments; returns once `/api/health` answers.
fn serve_git(sb: &Sandbox, url: &str, poll: &str, extra: &[&str]) -> Server {
    let port = free_port();
    let log = std::fs::File::create(sb.path("serve.log")).unwrap();
    let child = sb
        .nbpipe()
        .env("NBPIPE_HOME", shared_home())
        .env("NBPIPE_TOKEN", TOKEN)
        .env("NBPIPE_GIT_WEBHOOK_SECRET", SECRET)
        .args(["serve", "--git", url, "--git-poll", poll, "--lease", "3"])
        .arg("--git-workdir")
        .arg(sb.path("gitwork"))
        .args(extra)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = Server { child, port };
    wait_for("the server", 120, || server.get("/api/health").is_some());
    server
}

#[test]
fn environments_follow_their_branches_and_a_broken_commit_is_refused() {
    let sb = Sandbox::new();
    let (repos, work) = origin_and_clone(&sb);
    std::fs::write(work.join("nbpipe.yaml"), yaml("staging-v1", "prod-v1")).unwrap();
    std::fs::write(work.join("nb.ipynb"), notebook()).unwrap();
    git(&work, &["checkout", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let main1 = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["push", "-q", "origin", "main"]);
    git(&work, &["checkout", "-q", "-b", "staging"]);
    git(&work, &["push", "-q", "origin", "staging"]);
    let staging1 = main1.clone();

    let (_daemon, git_port) = daemon(&repos);
    let url = format!("git://127.0.0.1:{git_port}/origin.git");
    let gitwork = sb.path("gitwork");
    let server = serve_git(&sb, &url, "30", &[]);

    // Both environments of the default branch's nbpipe.yaml are served, each at its branch.
    let names = project_names(&server);
    assert_eq!(names, ["sales@production", "sales@staging"]);
    assert_eq!(
        serving(&server, "sales@staging").as_deref(),
        Some(staging1.as_str())
    );
    assert_eq!(
        serving(&server, "sales@production").as_deref(),
        Some(main1.as_str())
    );

    let s1 = submit(&server, "sales@staging", json!({}));
    let p1 = submit(&server, "sales@production", json!({}));
    for id in [&s1, &p1] {
        wait_status(&server, id, |s| s == "succeeded" || s == "failed", 120);
    }
    let run = server.get(&format!("/api/runs/{s1}")).unwrap();
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["environment"], "staging");
    assert_eq!(run["commit"], staging1.as_str());
    assert_eq!(run["branch"], "staging");
    assert!(printed_in(&gitwork, "sales@staging", &s1).contains("greeting staging-v1"));
    assert!(printed_in(&gitwork, "sales@production", &p1).contains("greeting prod-v1"));
    let only: Vec<Value> = server.get("/api/runs?environment=production").unwrap()["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["id"], p1.as_str());

    // A run in flight when staging moves on finishes on its revision; new runs use the new one.
    let slow = submit(&server, "sales@staging", json!({"pause": 4}));
    wait_first_step_running(&server, &slow, 60);
    std::fs::write(work.join("nbpipe.yaml"), yaml("staging-v2", "prod-v1")).unwrap();
    git(&work, &["commit", "-q", "-am", "staging v2"]);
    let staging2 = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["push", "-q", "origin", "staging"]);
    let body =
        json!({"ref": "refs/heads/staging", "after": staging2, "repository": {"clone_url": url}})
            .to_string();
    // A forged signature is refused; the real one wakes the follower (it polls every 30 s).
    let bad = format!("X-Hub-Signature-256: sha256={}", "0".repeat(64));
    let (code, v) = server.request(
        "POST",
        "/hooks/git",
        &[&bad, "X-GitHub-Event: push"],
        Some(&body),
    );
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (401, Some("bad_signature")),
        "{v}"
    );
    let (code, v) = github_push(&server, &body);
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["followed"], true);
    wait_for("staging v2 to be served", 120, || {
        serving(&server, "sales@staging").as_deref() == Some(staging2.as_str())
    });
    let s2 = submit(&server, "sales@staging", json!({}));
    wait_status(&server, &s2, |s| s == "succeeded", 120);
    assert!(printed_in(&gitwork, "sales@staging", &s2).contains("greeting staging-v2"));
    let r = wait_status(&server, &slow, |s| s == "succeeded", 120);
    assert_eq!(r["commit"], staging1.as_str(), "{r:#}");
    assert!(printed_in(&gitwork, "sales@staging", &slow).contains("greeting staging-v1"));
    assert_eq!(
        serving(&server, "sales@production").as_deref(),
        Some(main1.as_str())
    );

    // A commit whose nbpipe.yaml is broken is refused with the error; v2 keeps serving.
    std::fs::write(
        work.join("nbpipe.yaml"),
        yaml("staging-v3", "prod-v1").replace("[nb.ipynb]", "[missing.ipynb]"),
    )
    .unwrap();
    git(&work, &["commit", "-q", "-am", "broken"]);
    let broken = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["push", "-q", "origin", "staging"]);
    let body = json!({"ref": "refs/heads/staging", "after": broken}).to_string();
    let gitea = format!("X-Gitea-Signature: {}", sign(&body));
    let (code, _) = server.request(
        "POST",
        "/hooks/git",
        &[&gitea, "X-Gitea-Event: push"],
        Some(&body),
    );
    assert_eq!(code, 202);
    let mut refused = Value::Null;
    wait_for("the broken commit to be refused", 60, || {
        refused = server.get("/api/revisions?project=sales@staging").unwrap()["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["commit"] == broken.as_str())
            .cloned()
            .unwrap_or(Value::Null);
        refused["status"] == "refused"
    });
    assert!(
        refused["error"].as_str().unwrap().contains("missing.ipynb"),
        "{refused:#}"
    );
    assert_eq!(
        serving(&server, "sales@staging").as_deref(),
        Some(staging2.as_str())
    );
    let s3 = submit(&server, "sales@staging", json!({}));
    wait_status(&server, &s3, |s| s == "succeeded", 120);
    assert!(printed_in(&gitwork, "sales@staging", &s3).contains("greeting staging-v2"));

    // A commit whose kernel environment cannot be built is refused too (before it serves).
    std::fs::write(work.join("nbpipe.yaml"), yaml("staging-v4", "prod-v1")).unwrap();
    std::fs::write(
        work.join("requirements.txt"),
        "nbpipe-no-such-package-xyz==0.0.1\n",
    )
    .unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "unbuildable"]);
    let unbuildable = git(&work, &["rev-parse", "HEAD"]);
    git(&work, &["push", "-q", "origin", "staging"]);
    let body = json!({"ref": "refs/heads/staging"}).to_string();
    let gh = format!("X-Hub-Signature-256: sha256={}", sign(&body));
    let (code, _) = server.request("POST", "/hooks/git", &[&gh], Some(&body));
    assert_eq!(code, 202);
    wait_for("the unbuildable commit to be refused", 180, || {
        server.get("/api/revisions?project=sales@staging").unwrap()["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| {
                r["commit"] == unbuildable.as_str()
                    && r["status"] == "refused"
                    && r["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("kernel environment")
            })
    });
    assert_eq!(
        serving(&server, "sales@staging").as_deref(),
        Some(staging2.as_str())
    );

    // GitLab's token header; a push to a branch no environment follows is not followed.
    let other = json!({"ref": "refs/heads/feature"}).to_string();
    let gl = format!("X-Gitlab-Token: {SECRET}");
    let (code, v) = server.request(
        "POST",
        "/hooks/git",
        &[&gl, "X-Gitlab-Event: Push Hook"],
        Some(&other),
    );
    assert_eq!((code, &v["followed"]), (202, &json!(false)), "{v}");
    let (code, _) = server.request(
        "POST",
        "/hooks/git",
        &["X-Gitlab-Token: nope"],
        Some(&other),
    );
    assert_eq!(code, 401);

    // The UI's run page shows the environment and the revision.
    let page = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/runs/{s2}", server.port)])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains("Environment") && page.contains(&staging2[..12]),
        "{page}"
    );
    // The projects page shows each environment's revision history, refusals with their error.
    let page = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/projects", server.port)])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains(&format!(
            "data-project=\"sales@staging\" data-commit=\"{broken}\" data-status=\"refused\""
        )) && page.contains("missing.ipynb"),
        "{page}"
    );
    assert!(page.contains(&format!(
        "data-commit=\"{staging1}\" data-status=\"superseded\""
    )));
}

/// The manifest of the only run under `dir/runs/`.
fn only_manifest(dir: &Path) -> Value {
    let runs: Vec<_> = std::fs::read_dir(dir.join("runs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let text = std::fs::read_to_string(runs[0].path().join("run.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn nbpipe_run_takes_the_checked_out_branch_or_env_and_records_it() {
    let sb = Sandbox::new();
    let dir = sb.path("sales");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nbpipe.yaml"), yaml("staging-v1", "prod-v1")).unwrap();
    std::fs::write(dir.join("nb.ipynb"), notebook()).unwrap();
    std::fs::write(dir.join(".gitignore"), "runs/\n.nbpipe/\n").unwrap();
    git(&dir, &["init", "-q", "-b", "staging"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "first"]);
    let commit = git(&dir, &["rev-parse", "HEAD"]);
    let run = |extra: &[&str]| {
        let _ = std::fs::remove_dir_all(dir.join("runs"));
        let out = sb
            .nbpipe()
            .env("NBPIPE_HOME", shared_home())
            .arg("run")
            .arg(&dir)
            .arg("--quiet")
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The checked-out branch chooses `staging`.
    let (code, err) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    let m = only_manifest(&dir);
    assert_eq!(m["environment_name"], "staging");
    assert_eq!(
        (&m["git"]["commit"], &m["git"]["branch"]),
        (&json!(commit), &json!("staging"))
    );
    assert_eq!(m["parameters"]["greeting"], "staging-v1", "{m:#}");
    // `--env` wins over the branch.
    let (code, err) = run(&["--env", "production"]);
    assert_eq!(code, Some(0), "{err}");
    let m = only_manifest(&dir);
    assert_eq!(m["environment_name"], "production");
    assert_eq!(m["parameters"]["greeting"], "prod-v1");
    // An environment the file does not declare: a clear usage error, nothing run.
    let (code, err) = run(&["--env", "prod"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("declares no environment `prod` (it declares: staging, production)"),
        "{err}"
    );
    assert!(!dir.join("runs").exists());
    // A branch no environment follows: the top-level settings, no environment recorded.
    git(&dir, &["checkout", "-q", "-b", "feature"]);
    let (code, err) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    let m = only_manifest(&dir);
    assert!(m.get("environment_name").is_none(), "{m:#}");
    assert_eq!(m["parameters"]["greeting"], "top");
}

/// A private repository over git's smart HTTP (`git http-backend` behind a server that wants
/// HTTP Basic credentials): `NBPIPE_GIT_TOKEN` gets in; without it the server refuses to
/// start, saying why.
#[test]
fn a_private_repository_is_followed_with_a_token_from_the_environment() {
    let sb = Sandbox::new();
    let (repos, work) = origin_and_clone(&sb);
    std::fs::write(
        work.join("nbpipe.yaml"),
        "name: private\nnotebooks: [nb.ipynb]\n",
    )
    .unwrap();
    std::fs::write(work.join("nb.ipynb"), notebook()).unwrap();
    git(&work, &["checkout", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);

    let http_port = free_port();
    let mut http = Command::new(
        std::path::Path::new(&std::env::var("NBPIPE_TEST_ENV").unwrap()).join("bin/python"),
    );
    http.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/gitops_support/http_backend.py"
    ))
    .arg(&repos)
    .args([&http_port.to_string(), "oauth2", "tok-123"])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .process_group(0);
    let _http = Daemon(http.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the HTTP git server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{http_port}/origin.git");
    let serve = |token: Option<&str>, port: u16| {
        let mut cmd = sb.nbpipe();
        cmd.env("NBPIPE_HOME", shared_home())
            .env("NBPIPE_TOKEN", TOKEN)
            .env("NBPIPE_GIT_USERNAME", "oauth2")
            .env_remove("NBPIPE_GIT_TOKEN")
            .args([
                "serve",
                "--git",
                &url,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--git-workdir")
            .arg(sb.path(&format!("work-{port}")));
        if let Some(t) = token {
            cmd.env("NBPIPE_GIT_TOKEN", t);
        }
        cmd
    };
    // No token: git is refused and never prompts; the server does not start.
    let out = serve(None, free_port()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("git fetch"), "{err}");
    // The token: served at the branch's commit, and the token is in no log line.
    let port = free_port();
    let log = std::fs::File::create(sb.path("serve.log")).unwrap();
    let child = serve(Some("tok-123"), port)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = Server { child, port };
    wait_for("the server", 120, || server.get("/api/health").is_some());
    assert_eq!(
        serving(&server, "private").as_deref(),
        Some(commit.as_str())
    );
    drop(server);
    let log = std::fs::read_to_string(sb.path("serve.log")).unwrap();
    assert!(!log.contains("tok-123"), "{log}");
}

/// The runs whose reason starts with `reason`.
fn runs_for(server: &Server, reason: &str) -> Vec<Value> {
    server
        .runs()
        .into_iter()
        .filter(|r| r["reason"].as_str().unwrap_or("").starts_with(reason))
        .collect()
}

/// A revision that changes the project's triggers takes them with it at the switch, without
/// a restart: an added schedule fires, a removed one stops, and the inbox follows a changed
/// trigger prefix and bucket (files under the old ones start nothing).
#[test]
fn a_revision_switch_rearms_schedules_and_inbox_triggers() {
    let sb = Sandbox::new();
    let (repos, work) = origin_and_clone(&sb);
    let config = |triggers: &str| {
        format!("name: rearm\nparameters: {{greeting: hi}}\nnotebooks: [nb.ipynb]\ntrigger:\n{triggers}")
    };
    std::fs::write(
        work.join("nbpipe.yaml"),
        config("  - s3: {bucket: drops, prefix: old/}\n"),
    )
    .unwrap();
    std::fs::write(work.join("nb.ipynb"), notebook()).unwrap();
    git(&work, &["checkout", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "main"]);

    let (_daemon, git_port) = daemon(&repos);
    let url = format!("git://127.0.0.1:{git_port}/origin.git");
    let inbox = sb.path("inbox");
    let server = serve_git(
        &sb,
        &url,
        "300",
        &[
            "--workers",
            "2",
            "--per-project",
            "2",
            "--inbox",
            inbox.to_str().unwrap(),
        ],
    );
    let pid = server.child.id();

    // Commits `nbpipe.yaml` with these triggers, pushes, signals the push and waits until the
    // commit is served (the follower polls only every 300 s: the webhook is what wakes it).
    let deploy = |triggers: &str, message: &str| {
        std::fs::write(work.join("nbpipe.yaml"), config(triggers)).unwrap();
        git(&work, &["commit", "-q", "-am", message]);
        let commit = git(&work, &["rev-parse", "HEAD"]);
        git(&work, &["push", "-q", "origin", "main"]);
        let body = json!({"ref": "refs/heads/main"}).to_string();
        let (code, v) = github_push(&server, &body);
        assert_eq!(code, 202, "{v}");
        wait_for(&format!("`{message}` to be served"), 120, || {
            serving(&server, "rearm").as_deref() == Some(commit.as_str())
        });
    };
    let drop_file = |rel: &str| {
        let path = inbox.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rel).unwrap();
    };
    let file_runs = |key: &str| runs_for(&server, &format!("file {key}")).len();

    // The first revision's inbox trigger works.
    drop_file("drops/old/a.csv");
    wait_for("the run of old/a.csv", 60, || file_runs("old/a.csv") == 1);

    // (a) A schedule added by a revision fires, with no restart.
    assert!(runs_for(&server, "schedule").is_empty());
    deploy(
        "  - s3: {bucket: drops, prefix: old/}\n  - schedule: '*/2 * * * * *'\n",
        "add a schedule",
    );
    wait_for("runs of the added schedule", 30, || {
        runs_for(&server, "schedule */2").len() >= 2
    });

    // (b) A revision without it: no scheduled run is queued after the switch (one being
    // queued while the switch happens is allowed for), though slots come every 2 s.
    // (c) Its trigger prefix moves from `old/` to `new/`.
    deploy(
        "  - s3: {bucket: drops, prefix: new/}\n",
        "remove the schedule, move the prefix",
    );
    let at_switch = runs_for(&server, "schedule").len();
    drop_file("drops/old/b.csv");
    drop_file("drops/new/c.csv");
    wait_for("the run of new/c.csv", 60, || file_runs("new/c.csv") == 1);
    std::thread::sleep(Duration::from_secs(5));
    let after = runs_for(&server, "schedule").len();
    assert!(
        after <= at_switch + 1,
        "the removed schedule went on firing: {at_switch} scheduled runs at the switch, {after} 5 s later"
    );
    assert_eq!(file_runs("old/b.csv"), 0, "{:#?}", server.runs());

    // A new bucket: its inbox folder is watched from the switch on, the old one's no more.
    deploy(
        "  - s3: {bucket: fresh, prefix: new/}\n",
        "move to another bucket",
    );
    drop_file("drops/new/d.csv");
    drop_file("fresh/new/e.csv");
    wait_for("the run of fresh/new/e.csv", 60, || {
        file_runs("new/e.csv") == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(file_runs("new/d.csv"), 0, "{:#?}", server.runs());
    // Nothing ran twice, and it was one server all along.
    assert_eq!(file_runs("old/a.csv"), 1);
    assert_eq!(file_runs("new/c.csv"), 1);
    assert_eq!(server.child.id(), pid);
    let runs = server.wait_runs("every run to finish", |r| {
        r.iter()
            .all(|x| x["status"] == "succeeded" || x["status"] == "failed")
    });
    assert!(runs.iter().all(|r| r["status"] == "succeeded"), "{runs:#?}");
}

/// A bare repository `repos/<name>.git` whose `main` holds a project `project` (no
/// environments) greeting `greeting`, and the clone it is pushed from; returns the clone
/// and the commit.
fn repo_with_project(
    sb: &Sandbox,
    name: &str,
    project: &str,
    greeting: &str,
) -> (std::path::PathBuf, String) {
    let origin = sb.path("repos").join(format!("{name}.git"));
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    let clone = sb.path(&format!("clone-{name}"));
    git(
        sb.dir.path(),
        &[
            "clone",
            "-q",
            &origin.to_string_lossy(),
            &clone.to_string_lossy(),
        ],
    );
    git(&clone, &["checkout", "-q", "-b", "main"]);
    let commit = commit_project(&clone, project, greeting);
    (clone, commit)
}

/// Commits `project`'s nbpipe.yaml (greeting `greeting`) and notebook in `clone` and pushes
/// `main`; returns the commit.
fn commit_project(clone: &Path, project: &str, greeting: &str) -> String {
    std::fs::write(
        clone.join("nbpipe.yaml"),
        format!("name: {project}\nparameters: {{greeting: {greeting}}}\nnotebooks: [nb.ipynb]\n"),
    )
    .unwrap();
    std::fs::write(clone.join("nb.ipynb"), notebook()).unwrap();
    git(clone, &["add", "."]);
    git(clone, &["commit", "-q", "-m", greeting]);
    git(clone, &["push", "-q", "origin", "main"]);
    git(clone, &["rev-parse", "HEAD"])
}

/// One server follows two repositories beside a project folder: each repository's project
/// is served from its own branch, a push hook naming one repository fetches that one only,
/// a hook naming none of them fetches every repository with the branch, and a repository
/// whose project key is served already stops the server's start with a clear error.
#[test]
fn one_server_follows_several_repositories_beside_a_folder() {
    use sha2::Digest;
    let sb = Sandbox::new();
    let (sales, sales1) = repo_with_project(&sb, "sales", "sales", "sales-v1");
    let (stock, stock1) = repo_with_project(&sb, "stock", "stock", "stock-v1");
    let (_dup, _) = repo_with_project(&sb, "dup", "stock", "dup-v1");
    let folder = project(
        &sb,
        "name: ledger\nnotebooks: [nb.ipynb]\n",
        &["print('ledger')"],
    );
    let (_daemon, git_port) = daemon(&sb.path("repos"));
    let url = |name: &str| format!("git://127.0.0.1:{git_port}/{name}.git");
    let (sales_url, stock_url) = (url("sales"), url("stock"));
    let gitwork = sb.path("gitwork");
    // Each repository's folder is `--git-workdir/<hash of its URL>`.
    let work_of = |u: &str| gitwork.join(&hex::encode(Sha256::digest(u.as_bytes()))[..16]);
    // Polled hourly: only the hooks make the server fetch.
    let server = serve_git(
        &sb,
        &sales_url,
        "3600",
        &["--git", &stock_url, &folder.to_string_lossy()],
    );
    let names = project_names(&server);
    assert_eq!(names, ["ledger", "sales", "stock"]);
    assert_eq!(serving(&server, "sales").as_deref(), Some(sales1.as_str()));
    assert_eq!(serving(&server, "stock").as_deref(), Some(stock1.as_str()));

    // Both repositories move on; the hook names the stock repository (by its web address,
    // as GitHub sends it): stock is fetched and switches, sales stays where it was.
    let sales2 = commit_project(&sales, "sales", "sales-v2");
    let stock2 = commit_project(&stock, "stock", "stock-v2");
    let body = json!({
        "ref": "refs/heads/main",
        "after": stock2,
        "repository": {"html_url": format!("git://127.0.0.1:{git_port}/stock/")},
    })
    .to_string();
    let (code, v) = github_push(&server, &body);
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["followed"], true, "{v}");
    assert_eq!(v["repositories"], json!([stock_url]), "{v}");
    wait_for("stock v2 to be served", 120, || {
        serving(&server, "stock").as_deref() == Some(stock2.as_str())
    });
    assert_eq!(serving(&server, "sales").as_deref(), Some(sales1.as_str()));
    // The API says where each project comes from (a folder has no source).
    let projects = server.get("/api/projects").unwrap();
    let source = |name: &str| {
        projects["projects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["source"].clone())
            .unwrap()
    };
    assert_eq!(
        source("stock"),
        json!({"repository": stock_url, "branch": "main", "commit": stock2}),
    );
    assert_eq!(source("sales")["commit"], json!(sales1));
    assert_eq!(source("ledger"), Value::Null);
    let page = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{}/projects", server.port))
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.contains(&format!("<code class=\"repository\">{stock_url}</code>")),
        "{page}"
    );

    // A hook whose addresses name no followed repository (a mirror): every repository with
    // that branch is fetched.
    let body = json!({
        "ref": "refs/heads/main",
        "repository": {"clone_url": "https://mirror.example.org/sales.git"},
    })
    .to_string();
    let (code, v) = github_push(&server, &body);
    assert_eq!(code, 202, "{v}");
    let mut woken: Vec<&str> = v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    woken.sort();
    assert_eq!(woken, [sales_url.as_str(), stock_url.as_str()], "{v}");
    wait_for("sales v2 to be served", 120, || {
        serving(&server, "sales").as_deref() == Some(sales2.as_str())
    });
    // A push to a branch no repository follows wakes none.
    let body =
        json!({"ref": "refs/heads/feature", "repository": {"clone_url": stock_url}}).to_string();
    let (code, v) = github_push(&server, &body);
    assert_eq!((code, &v["followed"]), (202, &json!(false)), "{v}");

    // Runs of each repository's project use its new revision and write under its folder.
    let (a, b, c) = (
        submit(&server, "sales", json!({})),
        submit(&server, "stock", json!({})),
        submit(&server, "ledger", json!({})),
    );
    for id in [&a, &b, &c] {
        let r = wait_status(&server, id, |s| s == "succeeded" || s == "failed", 120);
        assert_eq!(r["status"], "succeeded", "{r:#}");
    }
    assert!(printed_in(&work_of(&sales_url), "sales", &a).contains("greeting sales-v2"));
    assert!(printed_in(&work_of(&stock_url), "stock", &b).contains("greeting stock-v2"));
    assert!(printed(&folder, &c).contains("ledger"));
    drop(server);

    // A server that must not start: exit 2, and what it printed on stderr.
    let refused = |gits: &[&str], workdir: &str| {
        let mut cmd = sb.nbpipe();
        cmd.env("NBPIPE_HOME", shared_home()).arg("serve");
        for g in gits {
            cmd.args(["--git", g]);
        }
        let out = cmd
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--git-workdir")
            .arg(sb.path(workdir))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        err
    };
    // A second repository serving `stock` too: the server does not start, and says why.
    let err = refused(&[&stock_url, &url("dup")], "gitwork-dup");
    assert!(err.contains("`stock` is served already"), "{err}");
    // The same repository twice is refused as such.
    let err = refused(&[&stock_url, &stock_url], "gitwork-twice");
    assert!(err.contains("is given twice"), "{err}");
    // Credentials written into a URL are never printed (a token belongs in NBPIPE_GIT_TOKEN).
    let with_password = format!("http://deploy:pw-5150@127.0.0.1:{}/x.git", free_port());
    let err = refused(&[&stock_url, &with_password], "gitwork-creds");
    assert!(err.contains("git fetch `http://***@127.0.0.1:"), "{err}");
    assert!(!err.contains("pw-5150"), "{err}");
    sb.assert_no_processes_left();
}
