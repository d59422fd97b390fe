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

/// What most tests start from: the test environment's Python, fork servers serving it, a
/// mark for leftover processes, a working folder and the Python kernelspec.
struct Setup {
    py: PathBuf,
    forks: ForkServers,
    mark: (String, String),
    cwd: tempfile::TempDir,
    spec: KernelSpec,
}

fn setup() -> Setup {
    let py = python();
    let forks = ForkServers::new().unwrap();
    forks.enable("test", &py, "test", &[]);
    Setup {
        spec: KernelSpec::for_python(&py),
        py,
        forks,
        mark: mark(),
        cwd: tempfile::tempdir().unwrap(),
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

/// Stop the fork servers and check that nothing of this test is left, their runtime folder
/// included.
async fn close(forks: ForkServers, mark: &(String, String)) {
    let dir = forks.runtime_dir().to_string_lossy().into_owned();
    drop(forks);
    assert_no_leftovers(mark, Some(&dir)).await;
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
    let Setup {
        py,
        forks,
        mark,
        cwd,
        spec,
    } = setup();
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
    close(forks, &mark).await;
}

/// At exit a forked kernel waits for its non-daemon threads before the atexit handlers run,
/// as the interpreter does for a cold kernel. ipykernel's control thread is one: without
/// the wait, `IPKernelApp.close` (an atexit handler) stopped the IOPub thread while the
/// control thread could still be flushing stdout after `shutdown_request`, which then
/// blocked for ever, and the kernel hung until nbpipe's grace period ended in SIGTERM (about
/// one forked kernel in three in a busy `nbpipe run`). A user's thread shows the order:
/// its late write lands, forked and cold alike, and both exit by themselves with code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_kernel_waits_for_its_threads_at_exit_as_a_cold_one_does() {
    let Setup {
        py,
        forks,
        mark,
        cwd,
        spec,
    } = setup();
    let zygote = {
        let k = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
            .await
            .unwrap();
        let z = forks.zygote_pid(&py).await.expect("a running zygote");
        k.shutdown().await;
        z
    };
    for forked in [true, false] {
        let launch = opts(forked.then_some(&forks), &mark, cwd.path());
        let mut k = Kernel::launch(&spec, &launch).await.unwrap();
        let done = cwd.path().join(format!("late-{forked}"));
        let code = format!(
            "import os, threading, time\n\
             def late():\n    \
                 time.sleep(0.4)\n    \
                 open({done:?}, 'w').write('written')\n\
             threading.Thread(target=late).start()\n\
             print(os.getppid())\n",
            done = done.display().to_string()
        );
        let out = run(&mut k, &code).await.unwrap();
        assert_eq!(
            out.trim() == zygote.to_string(),
            forked,
            "forked={forked}: parent {out}"
        );
        let exit = k.exit_watch();
        let started = Instant::now();
        k.shutdown().await;
        let took = started.elapsed();
        let status = exit.borrow().clone().map(|e| e.status);
        assert_eq!(
            status.as_deref(),
            Some("exit code 0"),
            "forked={forked}: the kernel did not exit by itself (took {took:?})"
        );
        assert_eq!(
            std::fs::read_to_string(&done).ok().as_deref(),
            Some("written"),
            "forked={forked}: the kernel exited without waiting for its thread"
        );
    }
    close(forks, &mark).await;
}

/// Forked kernels exit by themselves after `shutdown_request`. Their atexit handlers stop
/// ipykernel's IOPub thread before its `close`; a control thread still flushing after the
/// shutdown then waited for an IOPub thread that was gone, and the kernel hung until
/// nbpipe's SIGTERM 1.5 s later (about one kernel in three while the CPUs were busy; stacks
/// in docs/fork-server.md). The child now lets the control thread finish first. A race, so
/// this test gives it many chances: twenty kernels that print, shut down at once (with
/// twelve, one run in two failed without the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_kernels_exit_by_themselves_after_shutdown() {
    let Setup {
        py: _,
        forks,
        mark,
        cwd,
        spec,
    } = setup();
    let mut kernels = Vec::new();
    for _ in 0..20 {
        let mut k = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
            .await
            .unwrap();
        let out = run(&mut k, "import sys\nfor i in range(50):\n    print('line', i)\nprint('x' * 5000, file=sys.stderr)").await.unwrap();
        assert!(out.contains("line 49"), "{out}");
        kernels.push(k);
    }
    let mut shutdowns = tokio::task::JoinSet::new();
    for k in kernels {
        let exit = k.exit_watch();
        shutdowns.spawn(async move {
            let started = Instant::now();
            k.shutdown().await;
            let status = exit.borrow().clone().map(|e| e.status);
            (status, started.elapsed())
        });
    }
    let results = shutdowns.join_all().await;
    let hung: Vec<_> = results
        .iter()
        .filter(|(status, _)| status.as_deref() != Some("exit code 0"))
        .collect();
    assert!(
        hung.is_empty(),
        "kernels that did not exit by themselves: {hung:?}"
    );
    close(forks, &mark).await;
}

const PROBE: &str = r#"
import os, sys, json, signal, re, gc
ns = get_ipython().user_ns
print(json.dumps({
    "cwd": os.getcwd(),
    "argv": [re.sub(r".*nbpipe-kernel-.*\.json$", "CONN", a) for a in sys.argv],
    "env": dict(os.environ),
    "path": sys.path,
    "user_ns": sorted(ns),
    "dir": sorted(dir()),
    "name": __name__,
    "main": sys.modules["__main__"].__name__,
    "file": sys.modules["__main__"].__dict__.get("__file__"),
    "stdio": [type(s).__name__ for s in (sys.stdin, sys.stdout, sys.stderr)],
    "fds": sorted(int(f) for f in os.listdir("/proc/self/fd") if int(f) < 3),
    "pgid_is_pid": os.getpgid(0) == os.getpid(),
    "signals": {s: str(signal.getsignal(getattr(signal, s))) for s in ["SIGINT", "SIGTERM", "SIGCHLD", "SIGPIPE", "SIGHUP"]},
    "history": get_ipython().history_manager.hist_file,
    "displayhook": type(sys.displayhook).__name__,
    "gc": [gc.isenabled(), gc.get_threshold()],
}, sort_keys=True))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_kernel_looks_like_a_cold_kernel() {
    let Setup {
        py,
        forks,
        mark,
        cwd,
        spec,
    } = setup();
    let mut cold = Kernel::launch(&spec, &opts(None, &mark, cwd.path()))
        .await
        .unwrap();
    let mut forked = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();
    let zygote = forks.zygote_pid(&py).await.expect("a running zygote");
    let ppid = run(&mut forked, "import os; print(os.getppid())")
        .await
        .unwrap();
    assert_eq!(ppid.trim(), zygote.to_string(), "the kernel was not forked");
    run(&mut cold, "import os; print(os.getppid())")
        .await
        .unwrap();

    let a: serde_json::Value = serde_json::from_str(&run(&mut cold, PROBE).await.unwrap()).unwrap();
    let b: serde_json::Value =
        serde_json::from_str(&run(&mut forked, PROBE).await.unwrap()).unwrap();
    for key in a.as_object().unwrap().keys() {
        assert_eq!(
            a[key], b[key],
            "`{key}` differs between a cold and a forked kernel"
        );
    }
    assert_eq!(a, b);
    assert!(a["cwd"]
        .as_str()
        .unwrap()
        .ends_with(cwd.path().file_name().unwrap().to_str().unwrap()));
    cold.shutdown().await;
    forked.shutdown().await;
    close(forks, &mark).await;
}

/// What the zygote prepares before forking (imports, warmed caches, a frozen heap) is shared;
/// what a kernel makes is its own: names, IPython history, and collectable garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_kernels_share_no_names_or_history_and_collect_their_garbage() {
    let Setup {
        py: _,
        forks,
        mark,
        cwd,
        spec,
    } = setup();
    let mut a = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();
    run(&mut a, "only_in_a = 41").await.unwrap();
    let mut b = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();
    let seen = |k: &'static str| {
        format!(
            "import json\nhm = get_ipython().history_manager\nprint(json.dumps({{\
             'name': '{k}' in globals(), \
             'history': [src for _, _, src in hm.get_range()], \
             'In': [src for src in In if '{k}' in src and 'json' not in src]}}))"
        )
    };
    let out = run(&mut b, &seen("only_in_a")).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["name"], false, "a name leaked between kernels: {out}");
    assert_eq!(
        v["In"],
        serde_json::json!([]),
        "input history leaked: {out}"
    );
    let history: Vec<String> = serde_json::from_value(v["history"].clone()).unwrap();
    assert!(
        history.iter().all(|src| !src.starts_with("only_in_a")),
        "history session shared: {history:?}"
    );
    // a's own history has its cell, so the check above could fail.
    let out = run(&mut a, &seen("only_in_a")).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["name"], true, "{out}");
    assert_eq!(v["In"], serde_json::json!(["only_in_a = 41"]), "{out}");

    // Cyclic garbage made by user code is collected (the zygote's frozen heap is not the
    // kernel's: gc stays enabled and works).
    let out = run(
        &mut b,
        "import gc, weakref\nclass C: pass\nx = C(); y = C(); x.y = y; y.x = x\n\
         r = weakref.ref(x)\ndel x, y\ngc.collect()\nprint(r() is None, gc.isenabled())",
    )
    .await
    .unwrap();
    assert_eq!(out.trim(), "True True");
    a.shutdown().await;
    b.shutdown().await;
    close(forks, &mark).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_kernel_interrupts_and_dies_like_a_cold_one() {
    let Setup {
        py: _,
        forks,
        mark,
        cwd,
        spec,
    } = setup();
    let mut k = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();

    // Interrupt mid-sleep: KeyboardInterrupt, and the kernel goes on.
    let id = k.execute("import time; time.sleep(60)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    k.interrupt().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ename = String::new();
    loop {
        match k.next_event_until(deadline).await.unwrap() {
            Some(Event::IoPub(m)) if m.parent_id == id => {
                if m.msg_type == "error" {
                    ename = m.content["ename"].as_str().unwrap_or("").to_string();
                }
                if m.msg_type == "status" && m.content["execution_state"] == "idle" {
                    break;
                }
            }
            Some(_) => {}
            None => panic!("the interrupt did not stop the sleep"),
        }
    }
    assert_eq!(ename, "KeyboardInterrupt");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(run(&mut k, "print(6 * 7)").await.unwrap().trim(), "42");

    // SIGKILL mid-cell: reported at once, with the signal, like a cold kernel's death.
    let _ = k.execute("import time; time.sleep(60)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(k.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t0 = Instant::now();
    let err = loop {
        match k
            .next_event_until(Instant::now() + Duration::from_secs(10))
            .await
        {
            Err(e) => break e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the kernel's death was not noticed"),
        }
    };
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "noticed after {:?}",
        t0.elapsed()
    );
    match &err {
        KernelError::Died { status, .. } => assert!(status.contains("signal 9"), "{status}"),
        other => panic!("unexpected error {other}"),
    }
    assert!(k.exited().is_some());
    drop(k);
    close(forks, &mark).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_zygote_leaves_kernels_running_and_the_next_gets_a_new_one() {
    let Setup {
        py,
        forks,
        mark,
        cwd,
        spec,
    } = setup();
    let mut a = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();
    let first = forks.zygote_pid(&py).await.unwrap();
    let _ = a
        .execute("import time; time.sleep(1); print('slept')")
        .await
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The running cell finishes and the kernel goes on working.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = String::new();
    while !out.contains("slept") {
        match a.next_event_until(deadline).await.unwrap() {
            Some(Event::IoPub(m)) if m.msg_type == "stream" => {
                out.push_str(m.content["text"].as_str().unwrap_or(""))
            }
            Some(_) => {}
            None => panic!("the kernel stopped with its zygote"),
        }
    }
    assert_eq!(run(&mut a, "print(1 + 1)").await.unwrap().trim(), "2");
    assert!(a.exited().is_none());

    // The next kernel comes from a new zygote.
    let mut b = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();
    let second = forks.zygote_pid(&py).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(forks.zygotes_started(&py).await, 2);
    let ppid = run(&mut b, "import os; print(os.getppid())").await.unwrap();
    assert_eq!(ppid.trim(), second.to_string());

    // A kernel whose zygote is gone still reports its death.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Messages already on their way (the last cell's `execute_reply` can follow its idle
    // status) come first; then the death.
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        match a.next_event_until(deadline).await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert!(matches!(err, Err(KernelError::Died { .. })), "{err:?}");
    drop(a);
    b.shutdown().await;
    close(forks, &mark).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_environment_id_replaces_the_zygote() {
    let py = python();
    let forks = ForkServers::new().unwrap();
    forks.enable("test", &py, "hash-a", &[]);
    let mark = mark();
    let cwd = tempfile::tempdir().unwrap();
    let spec = KernelSpec::for_python(&py);
    let mut a = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();
    let first = forks.zygote_pid(&py).await.unwrap();
    forks.enable("test", &py, "hash-a", &[]); // same environment: same zygote
    assert_eq!(forks.zygote_pid(&py).await, Some(first));
    forks.enable("test", &py, "hash-b", &["json".to_string()]);
    let mut b = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();
    let second = forks.zygote_pid(&py).await.unwrap();
    assert_ne!(first, second);
    // The old zygote is gone; its kernel is not.
    let deadline = Instant::now() + Duration::from_secs(5);
    while leftovers(
        &("-".into(), "-".into()),
        Some(&format!("{}", forks.runtime_dir().join("hash-a").display())),
    )
    .contains(&first)
    {
        assert!(
            Instant::now() < deadline,
            "the replaced zygote {first} is still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(run(&mut a, "print('alive')").await.unwrap().trim(), "alive");
    let ppid = run(&mut b, "import os; print(os.getppid())").await.unwrap();
    assert_eq!(ppid.trim(), second.to_string());
    a.shutdown().await;
    b.shutdown().await;
    close(forks, &mark).await;
}

/// The protocol from another process: when the requester exits, its kernel goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_dies_with_the_process_that_asked_for_it() {
    let py = python();
    let forks = ForkServers::new().unwrap();
    forks.enable("test", &py, "test", &[]);
    let mark = mark();
    let cwd = tempfile::tempdir().unwrap();
    // Wait for the zygote, then find its socket.
    let spec = KernelSpec::for_python(&py);
    let k = Kernel::launch(&spec, &opts(Some(&forks), &mark, cwd.path()))
        .await
        .unwrap();
    k.shutdown().await;
    let sock = std::fs::read_dir(forks.runtime_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "sock"))
        .expect("a zygote socket");
    let conn = cwd.path().join("conn.json");
    let client = format!(
        r#"
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({sock:?})
r, w = os.pipe()
req = {{"argv": ["-f", {conn:?}], "cwd": {cwd:?}, "env": dict(os.environ)}}
socket.send_fds(s, [json.dumps(req).encode() + b"\n"], [w, os.pidfd_open(os.getpid())])
print(json.loads(s.makefile().readline())["pid"], flush=True)
"#,
        sock = sock.to_str().unwrap(),
        conn = conn.to_str().unwrap(),
        cwd = cwd.path().to_str().unwrap(),
    );
    let out = std::process::Command::new(&py)
        .arg("-c")
        .arg(&client)
        .env(&mark.0, &mark.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // The requester has exited: the kernel must follow within moments.
    let deadline = Instant::now() + Duration::from_secs(5);
    while leftovers(&mark, None).contains(&pid) {
        assert!(
            Instant::now() < deadline,
            "kernel {pid} outlived its requester"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    close(forks, &mark).await;
}

/// The zygote parses a kernel command line once per shape (connection file aside) and hands
/// the result to each kernel of that shape: options other than nbpipe's reach the kernel as
/// they do a cold one, shapes do not mix, each kernel binds its own connection file, and a
/// bad command line fails a forked kernel as it fails a cold one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forked_kernels_get_their_own_command_line_parsed_as_a_cold_kernel_does() {
    let py = python();
    let forks = ForkServers::new().unwrap();
    forks.enable("test", &py, "test", &[]);
    let mark = mark();
    let cwd = tempfile::tempdir().unwrap();
    let plain = KernelSpec::for_python(&py);
    let mut sized = KernelSpec::for_python(&py);
    sized.argv.push("--InteractiveShell.cache_size=1234".into());
    const SHOW: &str = "import sys\nip = get_ipython()\nprint(ip.cache_size, ip.history_manager.hist_file, sys.argv[-1])";
    let mut cold = Kernel::launch(&sized, &opts(None, &mark, cwd.path()))
        .await
        .unwrap();
    let want = run(&mut cold, SHOW).await.unwrap();
    assert_eq!(
        want.trim(),
        "1234 :memory: --HistoryManager.hist_file=:memory:"
    );
    // The second kernel of a shape reuses the zygote's parse; kernels of both shapes at once.
    let mut kernels = Vec::new();
    for spec in [&sized, &plain, &sized, &plain] {
        kernels.push(
            Kernel::launch(spec, &opts(Some(&forks), &mark, cwd.path()))
                .await
                .unwrap(),
        );
    }
    let zygote = forks.zygote_pid(&py).await.expect("a running zygote");
    let mut files = HashSet::new();
    for (i, k) in kernels.iter_mut().enumerate() {
        let out = run(k, SHOW).await.unwrap();
        let size = if i % 2 == 0 { "1234" } else { "1000" };
        assert_eq!(
            out.trim(),
            format!("{size} :memory: --HistoryManager.hist_file=:memory:"),
            "kernel {i}"
        );
        let out = run(
            k,
            "import os, sys\nprint(os.getppid(), sys.argv[sys.argv.index('-f') + 1])",
        )
        .await
        .unwrap();
        let (ppid, file) = out.trim().split_once(' ').unwrap();
        assert_eq!(ppid, zygote.to_string(), "kernel {i} was not forked");
        assert!(
            files.insert(file.to_string()),
            "connection file reused: {file}"
        );
        // `input()` behaves as in a cold kernel (nbpipe answers no stdin requests).
        let a = run(k, "input()").await.unwrap();
        let b = run(&mut cold, "input()").await.unwrap();
        assert_eq!(a, b, "input() differs from a cold kernel's");
    }
    // A command line the kernel rejects: the same failure, forked or cold.
    let mut bad = KernelSpec::for_python(&py);
    bad.argv.push("--InteractiveShell.cache_size".into());
    let short = |spec: &KernelSpec, fork: Option<&ForkServers>| {
        let mut o = opts(fork, &mark, cwd.path());
        o.start_timeout = Duration::from_secs(30);
        let spec = spec.clone();
        async move { Kernel::launch(&spec, &o).await.map(|_| ()) }
    };
    let cold_err = short(&bad, None).await.expect_err("a cold kernel started");
    let fork_err = short(&bad, Some(&forks))
        .await
        .expect_err("a forked kernel started");
    for e in [&cold_err, &fork_err] {
        assert!(
            e.to_string().contains("expected one argument"),
            "not argparse's error: {e}"
        );
    }
    for k in kernels {
        k.shutdown().await;
    }
    cold.shutdown().await;
    close(forks, &mark).await;
}

/// A kernel's parent pid, and whether it leads its own session (forked kernels do).
async fn parent(k: &mut Kernel) -> String {
    let code = "import os; print(os.getppid(), os.getsid(0) == os.getpid())";
    run(k, code).await.unwrap().trim().to_string()
}

/// Sharing with `nbpipe exec`: a set made with `ForkServers::discovering` starts no zygote;
/// it forks from the zygote another set advertises for the interpreter, and starts cold when
/// the advert names a process that is not that zygote, or is gone with its zygote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovering_set_forks_from_an_advertised_zygote_else_starts_cold() {
    use std::os::unix::fs::PermissionsExt;

    let py = python();
    let home = tempfile::tempdir().unwrap();
    let registry = home.path().join("zygotes");
    let owner = ForkServers::advertised(registry.clone()).unwrap();
    owner.enable("test", &py, "test", &[]);
    let mark = mark();
    let cwd = tempfile::tempdir().unwrap();
    let spec = KernelSpec::for_python(&py);
    // The owner's own first kernel: its zygote is started and advertised.
    let own = Kernel::launch(&spec, &opts(Some(&owner), &mark, cwd.path()))
        .await
        .unwrap();
    let zygote = owner.zygote_pid(&py).await.unwrap();
    let mode = std::fs::metadata(&registry).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the registry must be private");
    let adverts: Vec<PathBuf> = std::fs::read_dir(&registry)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(adverts.len(), 1, "{adverts:?}");
    let advert: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&adverts[0]).unwrap()).unwrap();
    assert_eq!(advert["pid"], zygote);
    assert_eq!(advert["python"], py.to_str().unwrap());

    let finder = ForkServers::discovering(registry.clone()).unwrap();
    let mut shared = Kernel::launch(&spec, &opts(Some(&finder), &mark, cwd.path()))
        .await
        .unwrap();
    assert_eq!(parent(&mut shared).await, format!("{zygote} True"));
    assert_eq!(owner.zygotes_started(&py).await, 1, "no second zygote");
    assert_eq!(finder.zygotes_started(&py).await, 0);
    shared.shutdown().await;

    // An advert whose pid is another process (here: this test) is not taken for the zygote.
    let original = std::fs::read(&adverts[0]).unwrap();
    let mut forged = advert.clone();
    forged["pid"] = serde_json::json!(std::process::id());
    std::fs::write(&adverts[0], forged.to_string()).unwrap();
    let mut cold = Kernel::launch(&spec, &opts(Some(&finder), &mark, cwd.path()))
        .await
        .unwrap();
    assert_eq!(
        parent(&mut cold).await,
        format!("{} False", std::process::id())
    );
    cold.shutdown().await;
    std::fs::write(&adverts[0], original).unwrap();

    // The owner gone: its advert is retracted, and the next kernel starts cold.
    own.shutdown().await;
    let dir = owner.runtime_dir().to_string_lossy().into_owned();
    drop(owner);
    assert!(!adverts[0].exists(), "the advert outlived its zygote");
    let mut cold = Kernel::launch(&spec, &opts(Some(&finder), &mark, cwd.path()))
        .await
        .unwrap();
    assert_eq!(
        parent(&mut cold).await,
        format!("{} False", std::process::id())
    );
    cold.shutdown().await;
    drop(finder);
    assert_no_leftovers(&mark, Some(&dir)).await;
}
