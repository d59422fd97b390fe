//! Kernels forked from a zygote against a real ipykernel: they must be distinct from each
//! other, look like a cold kernel to user code, interrupt and die like one, survive their
//! zygote, and leave no process behind.
//!
//! Needs the Python environment `scripts/test.sh` provisions (`NBPIPE_TEST_ENV`); a missing
//! environment is a failure, never a skip.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use nbpipe_kernel::spec::KernelSpec;
use nbpipe_kernel::{Event, ForkServers, Kernel, KernelError, LaunchOptions};
use tokio::time::Instant;

fn python() -> PathBuf {
    let venv = std::env::var_os("NBPIPE_TEST_ENV")
        .map(PathBuf::from)
        .expect("NBPIPE_TEST_ENV is not set; run scripts/test.sh");
    venv.join("bin/python")
}

/// A unique mark in every kernel's environment, to find leftover processes.
fn mark() -> (String, String) {
    ("NBPIPE_FORK_TEST".into(), uuid::Uuid::new_v4().to_string())
}

fn opts(
    forks: Option<&ForkServers>,
    mark: &(String, String),
    cwd: &std::path::Path,
) -> LaunchOptions {
    LaunchOptions {
        cwd: Some(cwd.to_path_buf()),
        start_timeout: Duration::from_secs(120),
        env: vec![
            mark.clone(),
            ("PYDEVD_DISABLE_FILE_VALIDATION".into(), "1".into()),
        ],
        echo_stderr: false,
        fork: forks.cloned(),
    }
}

/// Run `code`; its stdout, or the error name it raised.
async fn run(k: &mut Kernel, code: &str) -> Result<String, KernelError> {
    let id = k.execute(code).await?;
    let mut out = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match k.next_event_until(deadline).await? {
            Some(Event::IoPub(m)) if m.parent_id == id => match m.msg_type.as_str() {
                "stream" => out.push_str(m.content["text"].as_str().unwrap_or("")),
                "error" => out.push_str(&format!("ERROR:{}", m.content["ename"])),
                "status" if m.content["execution_state"] == "idle" => return Ok(out),
                _ => {}
            },
            Some(_) => {}
            None => panic!("no idle within 60 s; output so far: {out}"),
        }
    }
}

/// Pids of live processes whose environment carries `mark`, or whose command line names `dir`.
fn leftovers(mark: &(String, String), dir: Option<&str>) -> Vec<i32> {
    let needle = format!("{}={}", mark.0, mark.1);
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if status.contains(") Z ") {
            continue; // a zombie is dead, only not yet reaped
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        let cmdline = String::from_utf8_lossy(&cmdline);
        if environ.split('\0').any(|v| v == needle) || dir.is_some_and(|d| cmdline.contains(d)) {
            pids.push(pid);
        }
    }
    pids
}

/// Wait (up to 5 s) until no process of this test is left.
async fn assert_no_leftovers(mark: &(String, String), dir: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = leftovers(mark, dir);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_kernels_are_distinct() {
    let py = python();
    let forks = ForkServers::new().unwrap();
    forks.enable(&py, "test", &[]);
    let mark = mark();
    let cwd = tempfile::tempdir().unwrap();
    let spec = KernelSpec::for_python(&py);
    let mut seen: [HashSet<String>; 5] = Default::default();
    let mut kernels = Vec::new();
    for _ in 0..4 {
        kernels.push(
            Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
                .await
                .unwrap(),
        );
    }
    let zygote = forks.zygote_pid(&py).await.expect("a running zygote");
    for k in &mut kernels {
        let out = run(
            k,
            "import random, uuid, os, secrets\nprint(random.random(), uuid.uuid4(), os.getpid(), secrets.token_hex(8), os.getppid())",
        )
        .await
        .unwrap();
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{out}");
        for (i, f) in fields.iter().take(4).enumerate() {
            assert!(seen[i].insert(f.to_string()), "value {i} repeated: {out}");
        }
        assert_eq!(fields[4], zygote.to_string(), "the kernel was not forked");
        assert_eq!(fields[2], k.pid().to_string());
    }
    assert_eq!(forks.zygotes_started(&py).await, 1);
    for k in kernels {
        k.shutdown().await;
    }
    let dir = forks.runtime_dir().to_string_lossy().into_owned();
    drop(forks);
    assert_no_leftovers(&mark, Some(&dir)).await;
}
