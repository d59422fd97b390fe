//! `nbpipe serve`'s HTTP API fuzzed from its own OpenAPI document: schemathesis (installed in
//! the test env by `scripts/test-env.sh`) with every check, against the real binary on a free
//! loopback port with a token. Bounded: a fixed seed, a few examples per operation, and a
//! wall-clock limit on the process (about 15 s on an idle machine). Its stateful phase follows the document's
//! links from `POST /api/runs` (and the `Location` headers it sees) to real run ids.
//!
//! The server runs with `--max-running 0` (runs stay queued, no kernel starts: the API is under
//! test, not the executor) and `--warm-kernels 0`. Any schemathesis failure fails the test,
//! with its report.

mod common;
mod serve_support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serve_support::*;

/// Longest a schemathesis run may take before the test fails.
const LIMIT: Duration = Duration::from_secs(170);

#[test]
fn schemathesis_finds_nothing_the_openapi_document_does_not_say() {
    let sb = Sandbox::new();
    let st = sb.venv.join("bin/schemathesis");
    assert!(
        st.exists(),
        "{} is missing: rerun scripts/test-env.sh (it installs schemathesis)",
        st.display()
    );
    let dir = project(&sb, SEED, &["print('hello')"]);
    let server = Server::start(
        &sb,
        &dir,
        &["--max-running", "0", "--warm-kernels", "0", "--no-inbox"],
    );
    // An event stream of a queued run never ends: judge its first event.
    let config = sb.path("schemathesis.toml");
    std::fs::write(
        &config,
        "[[operations]]\ninclude-operation-id = \"runEvents\"\nmax-stream-events = 1\n",
    )
    .unwrap();
    let report = sb.path("schemathesis-report");
    let mut child = Command::new(&st)
        .current_dir(sb.path(""))
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://127.0.0.1:{}/api/openapi.json", server.port))
        .args(["--checks", "all"])
        .args(["--max-examples", "20", "--seed", "1"])
        .args(["--request-timeout", "5"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg("--report-dir")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read output on threads so a full pipe cannot stall the process.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let status = status.unwrap_or_else(|| panic!("schemathesis ran over {LIMIT:?}:\n{out}\n{err}"));
    eprintln!("schemathesis took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        status.success(),
        "schemathesis failed ({status}):\n{out}\n{err}"
    );
    // It really tested the API: every operation, and the stateful phase ran on real runs.
    assert!(out.contains("Tested: 18"), "{out}");
    assert!(!out.contains("No links"), "{out}");
    let runs = server.runs();
    assert!(
        !runs.is_empty(),
        "no run was submitted while fuzzing:\n{out}"
    );
    drop(server);
    sb.assert_no_processes_left();
}
