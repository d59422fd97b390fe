//! Kernels in milliseconds: a fork server ("zygote") per managed Python environment.
//!
//! [`ForkServers`] knows which interpreters may be served by a zygote ([`ForkServers::enable`],
//! called for managed environments only). When [`crate::Kernel::launch`] is about to run
//! `PYTHON -m ipykernel_launcher -f FILE ...` with an enabled `PYTHON`, it asks that
//! environment's zygote — a Python process that has already imported ipykernel — to fork the
//! kernel instead. The forked kernel is then driven exactly like a launched one: same
//! connection file and ports, cwd, environment, argv, its own process group (interrupt and
//! kill by group), stderr kept for error reports, and death noticed at once through a pidfd
//! (the kernel is the zygote's child, not ours) with the exit status the zygote reports.
//!
//! The zygote is `src/zygote.py`, shipped inside the binary and written to a private 0700
//! runtime directory next to its socket. The protocol, one Unix-socket connection per kernel:
//!
//! ```text
//! nbpipe → zygote  {"argv": [ARGS after -m ipykernel_launcher], "cwd": DIR, "env": {..}}\n
//!                  + SCM_RIGHTS [stderr pipe (write end), pidfd of this process]
//! zygote → nbpipe  {"pid": N}\n   or   {"error": "..."}\n
//! zygote → nbpipe  {"exit": "exit code 0" | "killed by signal 9 (SIGKILL)"}\n  (when it exits)
//! ```
//!
//! Lifetimes: the zygote dies with this process (a pidfd it polls, and `PR_SET_PDEATHSIG`)
//! and when its [`ForkServers`] handle is dropped or the environment is re-enabled with
//! another id. A kernel does not depend on its zygote (killing the zygote leaves running
//! kernels alone; the next request starts a new one) but kills its own process group when
//! the process that asked for it exits. If a zygote cannot start, that environment falls back
//! to cold starts. A request whose `PYTHON*` variables differ from the zygote's (they shape
//! the interpreter at start-up) is started cold too.
//!
//! Sharing ([`advert`]): a set made with [`ForkServers::advertised`] publishes its zygotes in
//! a private registry folder; one made with [`ForkServers::discovering`] starts none and forks
//! from an advertised zygote when the kernel would be the same as a cold one (`nbpipe exec`
//! while `nbpipe serve` or `nbpipe run` serves the environment).

mod advert;

use std::collections::HashMap;
use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::watch;

use crate::client::{KernelError, StderrTail};

const SCRIPT: &str = include_str!("../zygote.py");
/// How long a zygote may take to import ipykernel and the preloaded modules.
const ZYGOTE_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a started zygote may take to answer a request with a pid.
const FORK_TIMEOUT: Duration = Duration::from_secs(10);

/// The zygotes of one process (a run, a server), per enabled interpreter. Cheap to clone.
#[derive(Clone)]
pub struct ForkServers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ForkServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let envs: Vec<PathBuf> = self
            .inner
            .envs
            .lock()
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("ForkServers").field("envs", &envs).finish()
    }
}

struct Inner {
    dir: tempfile::TempDir,
    script: PathBuf,
    registry: Registry,
    envs: Mutex<HashMap<PathBuf, Arc<Entry>>>,
    /// Which interpreter each slot (project) uses now.
    slots: Mutex<HashMap<String, PathBuf>>,
}

/// Whether this set's zygotes are shared with other processes.
enum Registry {
    /// Private to this process.
    None,
    /// Each zygote is advertised in this folder while it runs.
    Advertise(PathBuf),
    /// No zygote of our own: fork from those advertised in this folder.
    Discover(PathBuf),
}

/// One enabled interpreter and its zygote (started on demand, restarted when dead).
struct Entry {
    id: String,
    preload: Vec<String>,
    zygote: tokio::sync::Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    zygote: Option<Arc<Zygote>>,
    /// The zygote failed to start: serve this environment cold from now on.
    broken: bool,
    started: u32,
}

impl ForkServers {
    /// A set of fork servers with its own private runtime directory (0700).
    pub fn new() -> std::io::Result<ForkServers> {
        Self::with_registry(Registry::None)
    }

    /// Like [`ForkServers::new`], and each running zygote is advertised in `registry` (a
    /// folder kept at mode 0700, e.g. `$NBPIPE_HOME/zygotes`) so that other nbpipe
    /// processes of this user may fork from it ([`ForkServers::discovering`]).
    pub fn advertised(registry: PathBuf) -> std::io::Result<ForkServers> {
        Self::with_registry(Registry::Advertise(registry))
    }

    /// A set that starts no zygote: a Python kernel is forked from the zygote another
    /// process advertises in `registry` for the kernel's interpreter, when the kernel would
    /// be what a cold start gives (same user, namespaces, cgroup, limits: see the `advert`
    /// module), else started cold.
    pub fn discovering(registry: PathBuf) -> std::io::Result<ForkServers> {
        Self::with_registry(Registry::Discover(registry))
    }

    fn with_registry(registry: Registry) -> std::io::Result<ForkServers> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("nbpipe-fork-");
        let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if Path::new(&d).is_dir() => builder.tempdir_in(d)?,
            _ => builder.tempdir()?,
        };
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        }
        let script = dir.path().join("zygote.py");
        std::fs::write(&script, SCRIPT)?;
        Ok(ForkServers {
            inner: Arc::new(Inner {
                dir,
                script,
                registry,
                envs: Mutex::new(HashMap::new()),
                slots: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Serve kernels of `python` (a managed environment's interpreter) from a zygote, for
    /// `slot` (e.g. a project). `id` names the environment's contents (its hash): enabling
    /// the same interpreter with another id or preload list replaces its zygote, and
    /// enabling a slot with another interpreter retires the one it had (unless another slot
    /// uses it). The zygote starts in the background now when a tokio runtime is running,
    /// else at the first request.
    pub fn enable(&self, slot: &str, python: &Path, id: &str, preload: &[String]) {
        let entry = {
            let Ok(mut envs) = self.inner.envs.lock() else {
                return;
            };
            let Ok(mut slots) = self.inner.slots.lock() else {
                return;
            };
            if let Some(old) = slots.insert(slot.to_string(), python.to_path_buf()) {
                if old != python && !slots.values().any(|p| *p == old) {
                    envs.remove(&old);
                }
            }
            if let Some(e) = envs.get(python) {
                if e.id == id && e.preload == preload {
                    return;
                }
            }
            let entry = Arc::new(Entry {
                id: id.to_string(),
                preload: preload.to_vec(),
                zygote: tokio::sync::Mutex::new(Slot::default()),
            });
            // The replaced entry's zygote is killed once no request holds it.
            envs.insert(python.to_path_buf(), entry.clone());
            entry
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let this = self.clone();
            let python = python.to_path_buf();
            rt.spawn(async move {
                let _ = this.zygote_for(&python, &entry).await;
            });
        }
    }

    /// The private directory holding the zygote script and sockets (zygote command lines
    /// name it).
    pub fn runtime_dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// Stop serving `python` from a zygote (its zygote is killed; its kernels keep running).
    pub fn disable(&self, python: &Path) {
        if let Ok(mut envs) = self.inner.envs.lock() {
            envs.remove(python);
        }
        if let Ok(mut slots) = self.inner.slots.lock() {
            slots.retain(|_, p| p != python);
        }
    }

    /// The pid of `python`'s running zygote, if any (for tests and diagnostics).
    pub async fn zygote_pid(&self, python: &Path) -> Option<i32> {
        let entry = self.inner.envs.lock().ok()?.get(python).cloned()?;
        let slot = entry.zygote.lock().await;
        slot.zygote.as_ref().filter(|z| z.alive()).map(|z| z.pid)
    }

    /// How many zygotes were started for `python` so far (restarts included).
    pub async fn zygotes_started(&self, python: &Path) -> u32 {
        let Some(entry) = self
            .inner
            .envs
            .lock()
            .ok()
            .and_then(|e| e.get(python).cloned())
        else {
            return 0;
        };
        let started = entry.zygote.lock().await.started;
        started
    }

    /// The zygote to fork `argv` from, if one may: `argv` is `PYTHON -m ipykernel_launcher
    /// ...` with an enabled `PYTHON`, and `env` agrees with the zygote on `PYTHON*` variables.
    pub(crate) async fn route(
        &self,
        argv: &[String],
        env: &[(String, String)],
    ) -> Option<Arc<Zygote>> {
        if argv.len() < 3 || argv[1] != "-m" || argv[2] != "ipykernel_launcher" {
            return None;
        }
        let python = PathBuf::from(&argv[0]);
        let zygote = match &self.inner.registry {
            Registry::Discover(dir) => match advert::Advert::find(dir, &python, SCRIPT) {
                Ok(a) => Arc::new(Zygote::discovered(a)?),
                Err(why) => {
                    debug(&format!("{}: starting cold: {why}", python.display()));
                    return None;
                }
            },
            _ => {
                let entry = self.inner.envs.lock().ok()?.get(&python).cloned()?;
                self.zygote_for(&python, &entry).await?
            }
        };
        let python_vars = |vars: &mut dyn Iterator<Item = (&String, &String)>| {
            let mut v: Vec<(String, String)> = vars
                .filter(|(k, _)| k.starts_with("PYTHON"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            v.sort();
            v
        };
        let wanted = python_vars(&mut env.iter().map(|(k, v)| (k, v)));
        let had = python_vars(&mut zygote.env.iter().map(|(k, v)| (k, v)));
        (wanted == had).then_some(zygote)
    }

    /// The live zygote of `entry`, started (again) if needed; `None` if it cannot start.
    async fn zygote_for(&self, python: &Path, entry: &Entry) -> Option<Arc<Zygote>> {
        let mut slot = entry.zygote.lock().await;
        if slot.broken {
            return None;
        }
        if let Some(z) = slot.zygote.as_ref().filter(|z| z.alive()) {
            return Some(z.clone());
        }
        slot.zygote = None;
        let sock = self
            .inner
            .dir
            .path()
            .join(format!("{}-{}.sock", entry.id, slot.started));
        slot.started += 1;
        match Zygote::start(python, &self.inner.script, &sock, &entry.preload).await {
            Ok(mut z) => {
                if let Registry::Advertise(dir) = &self.inner.registry {
                    z.advert = z.advertise(dir, python, entry);
                }
                let z = Arc::new(z);
                slot.zygote = Some(z.clone());
                Some(z)
            }
            Err(e) => {
                // Cold starts from now on; they report the environment's problem themselves.
                debug(&format!("fork server for {} failed: {e}", python.display()));
                slot.broken = true;
                None
            }
        }
    }
}

/// `NBPIPE_DEBUG_FORK=1`: say on stderr why a kernel was not forked.
fn debug(what: &str) {
    if std::env::var_os("NBPIPE_DEBUG_FORK").is_some() {
        eprintln!("nbpipe: {what}");
    }
}

/// A running zygote process: ours, or another process's (discovered through its advert).
pub(crate) struct Zygote {
    pid: i32,
    socket: PathBuf,
    env: Vec<(String, String)>,
    exited: watch::Receiver<bool>,
    waiter: tokio::task::JoinHandle<()>,
    /// Started by this process (killed when dropped), or discovered (left alone).
    owned: bool,
    /// Our advert of it, retracted when it is dropped.
    advert: Option<PathBuf>,
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if !self.owned {
            self.waiter.abort();
            return;
        }
        if let Some(path) = &self.advert {
            advert::Advert::retract(path, &self.socket);
        }
        // Only the zygote: its kernels are in their own sessions and outlive it.
        if !*self.exited.borrow() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// A kernel forked by a zygote.
pub(crate) struct Forked {
    /// Its pid, process group and session id.
    pub pid: i32,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
    /// The zygote's connection, which reports the kernel's exit status.
    pub report: BufReader<tokio::net::UnixStream>,
    /// A pidfd of the kernel (`None` if it was already gone).
    pub pidfd: Option<OwnedFd>,
}

impl Zygote {
    /// Another process's zygote, from its advert; its exit is watched through a pidfd.
    fn discovered(a: advert::Advert) -> Option<Zygote> {
        let pidfd = pidfd_open(a.pid).ok()?;
        // SAFETY: the AsyncFd owns the pidfd, so it stays open while it is registered.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
        }
        .ok()?;
        let (exit_tx, exited) = watch::channel(false);
        let waiter = tokio::spawn(async move {
            let _ = fd.readable().await;
            let _ = exit_tx.send(true);
        });
        Some(Zygote {
            pid: a.pid,
            socket: a.socket,
            env: a.python_env,
            exited,
            waiter,
            owned: false,
            advert: None,
        })
    }

    /// Publish this (our) zygote in `dir`; the advert's path.
    fn advertise(&self, dir: &Path, python: &Path, entry: &Entry) -> Option<PathBuf> {
        advert::Advert {
            version: advert::VERSION,
            script: advert::script_digest(SCRIPT),
            python: python.to_path_buf(),
            socket: self.socket.clone(),
            pid: self.pid,
            owner: std::process::id(),
            id: entry.id.clone(),
            preload: entry.preload.clone(),
            python_env: self
                .env
                .iter()
                .filter(|(k, _)| k.starts_with("PYTHON"))
                .cloned()
                .collect(),
        }
        .publish(dir)
    }

    async fn start(
        python: &Path,
        script: &Path,
        sock: &Path,
        preload: &[String],
    ) -> Result<Zygote, String> {
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(script)
            .arg(sock)
            .arg(std::process::id().to_string())
            .args(preload)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; the zygote dies with us even on SIGKILL.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        // Forked from the launcher thread, so its parent-death signal means "nbpipe died", not
        // "a runtime thread retired" (see `client::spawn_from_launcher`).
        let mut child = crate::client::spawn_from_launcher(cmd)
            .await
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let stdout = child.stdout.take();
        let tail = Arc::new(Mutex::new(StderrTail::default()));
        if let Some(mut pipe) = child.stderr.take() {
            let tail = tail.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    tail.lock().map(|mut t| t.push(&buf[..n])).ok();
                }
            });
        }
        let (exit_tx, exited) = watch::channel(false);
        let waiter = tokio::spawn(async move {
            let _ = child.wait().await;
            let _ = exit_tx.send(true);
        });
        let mut zygote = Zygote {
            pid,
            socket: sock.to_path_buf(),
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            exited,
            waiter,
            owned: true,
            advert: None,
        };
        let ready = async {
            let mut lines = BufReader::new(stdout?).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim() == "ready" {
                    return Some(());
                }
            }
            None
        };
        let mut exited = zygote.exited.clone();
        let why = tokio::select! {
            r = ready => match r { Some(()) => return Ok(zygote), None => "exited" },
            _ = exited.wait_for(|e| *e) => "exited",
            _ = tokio::time::sleep(ZYGOTE_START_TIMEOUT) => "did not become ready",
        };
        // Give its last words a moment to arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stderr = tail.lock().map(|t| t.text()).unwrap_or_default();
        zygote.env.clear();
        Err(format!("zygote {why}: {stderr}"))
    }

    fn alive(&self) -> bool {
        !*self.exited.borrow()
    }

    /// Fork a kernel running `python -m ipykernel_launcher ARGS` in `cwd` with exactly `env`.
    pub(crate) async fn fork(
        &self,
        args: &[String],
        cwd: &Path,
        env: &[(String, String)],
    ) -> Result<Forked, KernelError> {
        let io = |e: std::io::Error| KernelError::Channel(format!("fork server: {e}"));
        let (stderr_r, stderr_w) = std::io::pipe().map_err(io)?;
        let owner = pidfd_open(std::process::id() as i32).map_err(io)?;
        let env: serde_json::Map<String, Value> = env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut request = serde_json::to_vec(&json!({"argv": args, "cwd": cwd, "env": env}))
            .map_err(|e| {
                KernelError::Channel(format!("fork server: cannot encode request: {e}"))
            })?;
        request.push(b'\n');

        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket).map_err(io)?;
        let stderr_w: OwnedFd = stderr_w.into();
        let fds = [stderr_w.as_raw_fd(), owner.as_raw_fd()];
        let sent = sendmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &[IoSlice::new(&request)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| io(e.into()))?;
        stream.write_all(&request[sent..]).map_err(io)?;
        drop(stderr_w);
        drop(owner);
        stream.set_nonblocking(true).map_err(io)?;
        let mut report = BufReader::new(tokio::net::UnixStream::from_std(stream).map_err(io)?);

        let mut line = String::new();
        let mut exited = self.exited.clone();
        tokio::select! {
            r = report.read_line(&mut line) => { r.map_err(io)?; }
            _ = exited.wait_for(|e| *e) => {
                return Err(KernelError::Channel("fork server exited".into()));
            }
            _ = tokio::time::sleep(FORK_TIMEOUT) => {
                return Err(KernelError::Channel("fork server did not answer".into()));
            }
        }
        let reply: Value = serde_json::from_str(&line)
            .map_err(|_| KernelError::Channel(format!("fork server: unexpected reply {line:?}")))?;
        let Some(pid) = reply.get("pid").and_then(Value::as_i64) else {
            let why = reply.get("error").and_then(Value::as_str).unwrap_or("");
            return Err(KernelError::Channel(format!("fork server refused: {why}")));
        };
        Ok(Forked {
            pid: pid as i32,
            stderr: stderr_r.into(),
            report,
            pidfd: pidfd_open(pid as i32).ok(),
        })
    }
}

impl Forked {
    /// Wait until the kernel exits; returns how it ended.
    pub(crate) async fn wait(
        mut report: BufReader<tokio::net::UnixStream>,
        pidfd: Option<OwnedFd>,
    ) -> String {
        let reported = async {
            let mut line = String::new();
            match report.read_line(&mut line).await {
                Ok(n) if n > 0 => serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v.get("exit").and_then(Value::as_str).map(String::from)),
                _ => None,
            }
        };
        let watched = pidfd.is_some();
        let gone = async {
            // SAFETY: the AsyncFd owns the pidfd, so it stays open while it is registered.
            let fd = pidfd.map(|fd| unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            });
            match fd {
                Some(Ok(fd)) => {
                    let _ = fd.readable().await;
                }
                // No pidfd (the kernel was gone before we looked): the report decides.
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(reported);
        tokio::pin!(gone);
        tokio::select! {
            status = &mut reported => match status {
                Some(s) => s,
                None if !watched => "exited".to_string(),
                None => {
                    // The zygote is gone; the kernel may well still run.
                    gone.await;
                    "exited (status unknown: its fork server had exited)".to_string()
                }
            },
            _ = &mut gone => {
                tokio::time::timeout(Duration::from_millis(500), reported)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "exited".to_string())
            }
        }
    }
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: a plain syscall; on success it returns a new file descriptor we own.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
