//! `nbpipe image`: daemon-less builds pushed to a real registry (Debian's docker-registry),
//! pulled and run by a real dockerd (Debian's docker.io) — the smoke check, the container
//! contract (`NBPIPE_*` variables, outputs in a mounted folder, exit code), reproducible
//! digests and a notebook-only change touching only the project layer.

mod common;
mod image_support;

use std::path::Path;
use std::process::Command;

use common::*;
use image_support::{binaries, Containers};
use serde_json::{json, Value};

fn write_project(dir: &Path, registry: &str, base: &str, greeting: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let nb = json!({
        "cells": [
            tagged("name = 'world'\nfail = False", "parameters"),
            code(&format!("import six, sys\nprint('{greeting}', name, 'six', six.__version__, sys.executable)\nassert not fail, 'asked to fail'")),
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    });
    std::fs::write(dir.join("hello.ipynb"), nb.to_string()).unwrap();
    std::fs::write(dir.join("requirements.txt"), "six==1.16.0\n").unwrap();
    std::fs::write(
        dir.join("nbpipe.yaml"),
        format!("name: hello\nnotebooks: [hello.ipynb]\nimage:\n  name: {registry}/demo/hello\n  base: {base}\n"),
    )
    .unwrap();
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

fn image_build(
    sb: &Sandbox,
    c: &Containers,
    bins: &(std::path::PathBuf, std::path::PathBuf),
    dir: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = Command::new(&bins.0);
    sb.isolate(&mut cmd);
    let path = format!(
        "{}/.local/bin:{}",
        std::env::var("HOME").unwrap_or_default(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("DOCKER_HOST", c.docker_host())
        .env("NBPIPE_IMAGE_BINARY", &bins.1)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["image", "build"])
        .arg(dir)
        .args(extra);
    cmd.output().unwrap()
}

fn built(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(".nbpipe/image.json")).unwrap()).unwrap()
}

fn layer(img: &Value, role: &str) -> String {
    img["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["role"] == role)
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn image_builds_pushes_runs_in_a_container_and_rebuilds_reproducibly() {
    let Some(c) = Containers::start() else { return };
    let sb = Sandbox::new();
    let bins = binaries(sb.dir.path());
    let dir = sb.path("hello");
    write_project(&dir, &c.registry_addr, &c.base, "hello");
    git(&dir, &["init", "-q"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "init"]);

    // Build, push, smoke check (the engine pulls the pushed digest and starts its kernel).
    let out = image_build(&sb, &c, &bins, &dir, &["--push", "--tag", "v1"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let img = built(&dir);
    let digest = img["digest"].as_str().unwrap().to_string();
    let repo = format!("{}/demo/hello", c.registry_addr);
    let pinned = format!("{repo}@{digest}");
    assert!(stdout.lines().any(|l| l == pinned), "{stdout}");
    assert!(
        stdout.contains(&format!("{repo}:{}", &digest[7..23])),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{repo}:v1")), "{stdout}");
    assert!(stderr.contains("smoke check passed: nbpipe "), "{stderr}");
    assert!(stderr.contains("kernel 3.11"), "{stderr}");
    let roles: Vec<&str> = img["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.last().copied(), Some("project"));
    assert_eq!(&roles[roles.len() - 3..roles.len() - 1], ["env", "binary"]);

    // Pull from the registry afresh, check the labels, run the project in a container.
    let _ = c.docker(&["rmi", "-f", &pinned]);
    let pull = c.docker(&["pull", &format!("{repo}:v1")]);
    assert!(
        pull.status.success(),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    let labels = c.docker(&["inspect", "--format", "{{json .Config.Labels}}", &pinned]);
    let labels: Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(labels["nbpipe.project"], "hello");
    assert_eq!(
        labels["org.opencontainers.image.revision"]
            .as_str()
            .unwrap()
            .len(),
        40
    );
    assert!(labels["org.opencontainers.image.created"]
        .as_str()
        .unwrap()
        .starts_with("20"));
    assert_eq!(labels["nbpipe.requirements_hash"], img["requirements_hash"]);

    let out_dir = sb.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let run = |run_id: &str, params: &str| {
        c.docker(&[
            "run",
            "--rm",
            "--network",
            "host",
            "--label",
            "nbpipe.project=hello",
            "--label",
            &format!("nbpipe.run_id={run_id}"),
            "-v",
            &format!("{}:/out", out_dir.display()),
            "-e",
            &format!("NBPIPE_RUN_ID={run_id}"),
            "-e",
            "NBPIPE_OUTPUT=/out/{run_id}/",
            "-e",
            &format!("NBPIPE_PARAMETERS={params}"),
            "-e",
            "NBPIPE_TRIGGER_URI=s3://incoming/data/a.csv",
            &pinned,
        ])
    };
    let ok = run("r1", r#"{"name": "container"}"#);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("r1/run.json")).unwrap())
            .unwrap();
    assert_eq!(m["status"], "succeeded");
    assert_eq!(m["run_id"], "r1");
    assert_eq!(m["parameters"]["name"], "container");
    assert_eq!(m["trigger"]["key"], "data/a.csv");
    assert_eq!(m["environment"]["python"], "/opt/nbpipe/env/bin/python");
    let nb = std::fs::read_to_string(out_dir.join("r1/hello.ipynb")).unwrap();
    assert!(
        nb.contains("hello container six 1.16.0 /opt/nbpipe/env/bin/python"),
        "{nb}"
    );
    let freeze = std::fs::read_to_string(out_dir.join("r1/environment.txt")).unwrap();
    assert!(
        freeze.contains("six==1.16.0") && freeze.contains("ipykernel=="),
        "{freeze}"
    );
    // A failing notebook: the container exits as `nbpipe run` does (1), run.json says failed.
    let failed = run("r2", r#"{"fail": true}"#);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("r2/run.json")).unwrap())
            .unwrap();
    assert_eq!(m["status"], "failed");

    // Nothing changed: the same digest.
    let again = image_build(&sb, &c, &bins, &dir, &["--no-smoke"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(built(&dir)["digest"], img["digest"]);

    // A notebook-only change: only the project layer differs. Not pushed: the smoke check
    // loads the image into the engine from the local store instead of pulling it.
    write_project(&dir, &c.registry_addr, &c.base, "bonjour");
    let changed = image_build(&sb, &c, &bins, &dir, &[]);
    let err = String::from_utf8_lossy(&changed.stderr);
    assert!(changed.status.success(), "{err}");
    assert!(err.contains("smoke check passed"), "{err}");
    let img2 = built(&dir);
    assert_ne!(img2["digest"], img["digest"]);
    for role in ["base", "env", "binary"] {
        assert_eq!(
            layer(&img2, role),
            layer(&img, role),
            "{role} layer changed"
        );
    }
    assert_ne!(layer(&img2, "project"), layer(&img, "project"));

    // The server's image: the same layers, started as `nbpipe serve` of the project.
    let server = image_build(&sb, &c, &bins, &dir, &["--server", "--push", "--no-smoke"]);
    let (out, err) = (
        String::from_utf8_lossy(&server.stdout),
        String::from_utf8_lossy(&server.stderr),
    );
    assert!(server.status.success(), "{err}");
    let simg: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".nbpipe/image-server.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        built(&dir)["digest"],
        img2["digest"],
        "the project's record is kept"
    );
    for role in ["base", "env", "binary", "project"] {
        assert_eq!(layer(&simg, role), layer(&img2, role), "{role}");
    }
    let sref = simg["references"][0].as_str().unwrap().to_string();
    assert!(sref.ends_with("-server"), "{sref}");
    assert!(out.contains(&sref), "{out}");
    let spinned = format!("{repo}@{}", simg["digest"].as_str().unwrap());
    // Without a token it refuses to listen on every interface.
    let refused = c.docker(&["run", "--rm", "--network", "none", &spinned]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("token"),
        "{refused:?}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = format!("nbpipe-server-{}", sb.tag);
    let started = c.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-e",
        "NBPIPE_TOKEN=server-token",
        "-e",
        &format!("NBPIPE_LISTEN=127.0.0.1:{port}"),
        &spinned,
        "--workers",
        "1",
    ]);
    assert!(started.status.success(), "{started:?}");
    let mut projects = Value::Null;
    for _ in 0..150 {
        let o = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/api/projects")])
            .output()
            .unwrap();
        if o.status.success() {
            projects = serde_json::from_slice(&o.stdout).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let logs = c.docker(&["logs", &name]);
    let _ = c.docker(&["rm", "-f", &name]);
    assert_eq!(
        projects["projects"][0]["name"],
        "hello",
        "{projects:#}\n{}",
        String::from_utf8_lossy(&logs.stderr)
    );

    assert_eq!(c.leftover_containers(), "", "containers left behind");
}

#[test]
fn image_apt_packages_are_installed_in_their_own_cached_layer() {
    let Some(c) = Containers::start() else { return };
    let sb = Sandbox::new();
    let bins = binaries(sb.dir.path());
    let dir = sb.path("apt");
    write_project(&dir, &c.registry_addr, &c.base, "hello");
    let yaml = std::fs::read_to_string(dir.join("nbpipe.yaml")).unwrap();
    std::fs::write(dir.join("nbpipe.yaml"), format!("{yaml}  apt: [jq]\n")).unwrap();
    let out = image_build(&sb, &c, &bins, &dir, &["--push"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("smoke check passed"), "{err}");
    let img = built(&dir);
    let roles: Vec<&str> = img["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap())
        .filter(|r| *r != "base")
        .collect();
    assert_eq!(roles, ["apt", "env", "binary", "project"]);
    let pinned = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("@sha256:"))
        .unwrap()
        .to_string();
    let jq = c.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "jq",
        &pinned,
        "--version",
    ]);
    assert!(
        jq.status.success() && String::from_utf8_lossy(&jq.stdout).starts_with("jq-"),
        "{}{}",
        String::from_utf8_lossy(&jq.stdout),
        String::from_utf8_lossy(&jq.stderr)
    );
    // No apt lists or caches left in the layer; the rebuild reuses it: same digest.
    let lists = c.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        &pinned,
        "-c",
        "ls /var/lib/apt/lists | wc -l",
    ]);
    assert_eq!(String::from_utf8_lossy(&lists.stdout).trim(), "0");
    let again = image_build(&sb, &c, &bins, &dir, &["--no-smoke"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(
        err.contains("system packages layer unchanged (cached)"),
        "{err}"
    );
    assert_eq!(built(&dir)["digest"], img["digest"]);
    assert_eq!(c.leftover_containers(), "", "containers left behind");
    let apt_left = c.docker(&["ps", "-aq", "--filter", "name=nbpipe-apt"]);
    assert_eq!(String::from_utf8_lossy(&apt_left.stdout).trim(), "");
}

#[test]
fn image_build_rejects_what_it_cannot_build() {
    let sb = Sandbox::new();
    let dir = sb.path("p");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.ipynb"), "{}").unwrap();
    std::fs::write(
        dir.join("nbpipe.yaml"),
        "notebooks: [a.ipynb]\nimage:\n  apt: [libgomp1]\n",
    )
    .unwrap();
    // System packages need an engine to run apt-get in the base: none answers here.
    let out = image_support::nbpipe(&sb)
        .args(["image", "build", "--no-smoke"])
        .arg(&dir)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", sb.path("no-engine.sock").display()),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`image.apt` (libgomp1)")
            && err.contains("none answers")
            && err.contains("nbpipe image dockerfile"),
        "{err}"
    );
    // The Dockerfile path does honour it.
    let df = image_support::nbpipe(&sb)
        .args(["image", "dockerfile"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(df.status.success());
    assert!(String::from_utf8_lossy(&df.stdout)
        .contains("apt-get install -y --no-install-recommends libgomp1"));

    std::fs::write(dir.join("nbpipe.yaml"), "notebooks: [a.ipynb]\n").unwrap();
    let out = image_support::nbpipe(&sb)
        .args(["image", "build", "--no-smoke", "--platform", "linux/arm64"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`linux/arm64` is not supported"));
    let out = image_support::nbpipe(&sb)
        .args(["image", "build", "--no-smoke", "--base", "Not A Ref"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_rejects_parameters_json_that_is_not_an_object() {
    let sb = Sandbox::new();
    let dir = sb.path("p");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.ipynb"), "{}").unwrap();
    std::fs::write(dir.join("nbpipe.yaml"), "notebooks: [a.ipynb]\n").unwrap();
    for (value, says) in [
        ("[1]", "must be a JSON object"),
        ("{nope", "invalid JSON parameters"),
    ] {
        let out = image_support::nbpipe(&sb)
            .args(["run"])
            .arg(&dir)
            .env("NBPIPE_PARAMETERS", value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("NBPIPE_PARAMETERS") && err.contains(says),
            "{err}"
        );
    }
}
