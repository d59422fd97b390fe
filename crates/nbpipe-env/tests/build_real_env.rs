//! Builds a real environment from PyPI with uv (or venv+pip) and checks reuse.
//!
//! Needs network access to PyPI. Skipped, with a message, when neither uv nor
//! `python3 -m venv` is available.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nbpipe_env::{ensure, nearest, EnvOptions, Marker};

fn imports(python: &Path, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn builds_reuses_and_rehashes_a_real_env() {
    if !nbpipe_env::installer_available() {
        eprintln!("SKIPPED: neither uv nor `python3 -m venv` is available");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // This test binary has a single test, so changing the process environment is safe.
    std::env::set_var("NBPIPE_HOME", tmp.path().join("nbpipe-home"));
    std::env::set_var("UV_PYTHON_DOWNLOADS", "never");
    let folder = tmp.path().join("project");
    std::fs::create_dir_all(folder.join("notebooks")).unwrap();
    std::fs::write(folder.join("requirements.txt"), "six\n").unwrap();
    let opts = EnvOptions {
        quiet: true,
        ..Default::default()
    };

    let env = ensure(&folder, &opts).unwrap();
    assert!(env
        .root
        .starts_with(tmp.path().join("nbpipe-home").join("envs")));
    assert!(
        imports(&env.python, "six, ipykernel"),
        "env python cannot import six and ipykernel"
    );
    let freeze = env.freeze.clone().expect("freeze recorded");
    assert!(freeze.to_lowercase().contains("six=="), "{freeze}");
    assert!(freeze.to_lowercase().contains("ipykernel=="), "{freeze}");
    assert_eq!(env.kernelspec().argv[0], env.python.to_string_lossy());

    let started = Instant::now();
    let again = ensure(&folder, &opts).unwrap();
    let took = started.elapsed();
    assert_eq!(again.root, env.root);
    assert_eq!(again.hash, env.hash);
    assert!(took < Duration::from_secs(10), "reuse took {took:?}");
    // The reuse check was kept (interpreter and environment facts), so later checks start
    // no Python; a fact never hides a broken environment: without its ipykernel package
    // the environment is rebuilt.
    let known: Vec<String> = std::fs::read_dir(tmp.path().join("nbpipe-home").join("known"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(known.iter().any(|n| n.starts_with("env-")), "{known:?}");
    let site = std::fs::read_dir(env.root.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().path().join("site-packages"))
        .find(|p| p.join("ipykernel").is_dir())
        .expect("ipykernel in the environment's site-packages");
    std::fs::remove_dir_all(site.join("ipykernel")).unwrap();
    assert!(!imports(&env.python, "ipykernel"));
    let rebuilt = ensure(&folder, &opts).unwrap();
    assert_eq!(rebuilt.hash, env.hash);
    assert!(
        imports(&rebuilt.python, "six, ipykernel"),
        "a broken environment was reused"
    );

    let (found_folder, found) = nearest(&folder.join("notebooks")).unwrap().unwrap();
    assert_eq!(found_folder, std::fs::canonicalize(&folder).unwrap());
    assert_eq!(found.root, env.root);
    assert!(!found.stale);

    std::fs::write(folder.join("requirements.txt"), "six\nattrs\n").unwrap();
    assert!(nearest(&folder).unwrap().unwrap().1.stale);
    let marker = Marker::read(&found_folder).unwrap().unwrap();
    let new_hash = nbpipe_env::compute_hash(
        Some(&folder.join("requirements.txt")),
        &marker.python_version,
    )
    .unwrap();
    assert_ne!(new_hash, env.hash);
}
