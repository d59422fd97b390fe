//! A running kernel: process launch, the four ZMQ channels, interrupt, shutdown and liveness.
//!
//! Every wait here is raced against the kernel process exiting and against a deadline, so a
//! kernel that never starts, crashes, or is OOM-killed is reported within moments instead of
//! hanging the caller. Dropping a [`Kernel`] kills its whole process group: no code path leaves
//! a kernel process behind.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, InputReply, InterruptRequest, JupyterMessage,
    JupyterMessageContent, KernelInfoRequest, ReplyStatus, ShutdownRequest, Transport,
};
use jupyter_zmq_client::{
    create_client_control_connection, create_client_iopub_connection,
    create_client_shell_connection_with_identity, create_client_stdin_connection_with_identity,
    peek_ports, peer_identity_for_session, ClientControlConnection, RawMessage,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout, Instant};

use crate::spec::{InterruptMode, KernelSpec};
use crate::wire::Msg;

/// Errors while starting or talking to a kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel process could not be spawned.
    #[error("could not start kernel `{name}` with `{command}`: {source}")]
    Spawn {
        /// Kernelspec name.
        name: String,
        /// The command line tried.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel did not answer `kernel_info_request` within the start timeout.
    #[error("kernel `{name}` did not become ready within {secs} s{}", stderr_hint(.stderr))]
    StartTimeout {
        /// Kernelspec name.
        name: String,
        /// Timeout in seconds.
        secs: u64,
        /// Last lines the kernel wrote to stderr.
        stderr: String,
    },
    /// The kernel process exited.
    #[error("kernel `{name}` died ({status}){}", stderr_hint(.stderr))]
    Died {
        /// Kernelspec name.
        name: String,
        /// How it ended, e.g. `killed by signal 9 (SIGKILL)`.
        status: String,
        /// Last lines the kernel wrote to stderr.
        stderr: String,
    },
    /// Talking to the kernel failed at the transport level.
    #[error("kernel channel error: {0}")]
    Channel(String),
    /// Local I/O (connection file) failed.
    #[error("kernel setup failed: {0}")]
    Io(#[from] std::io::Error),
}

fn stderr_hint(stderr: &str) -> String {
    let tail = stderr.trim();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; kernel stderr:\n{tail}")
    }
}

/// How to launch a kernel.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Working directory of the kernel process.
    pub cwd: Option<PathBuf>,
    /// How long to wait for the kernel to answer `kernel_info_request`.
    pub start_timeout: Duration,
    /// Extra environment variables for the kernel process.
    pub env: Vec<(String, String)>,
    /// Forward the kernel's stderr to ours as it arrives (it is always kept for error reports).
    pub echo_stderr: bool,
    /// Fork Python kernels of enabled environments from their zygote instead of starting
    /// them cold (see [`crate::fork`]).
    pub fork: Option<crate::fork::ForkServers>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            cwd: None,
            start_timeout: Duration::from_secs(60),
            env: Vec::new(),
            echo_stderr: false,
            fork: None,
        }
    }
}

/// Something that arrived from the kernel.
#[derive(Debug)]
pub enum Event {
    /// A reply on the shell channel.
    Shell(Msg),
    /// A broadcast on the IOPub channel.
    IoPub(Msg),
    /// A request on the stdin channel (e.g. `input_request`).
    Stdin(Msg),
    /// A message that could not be decoded; the channel goes on.
    Garbled(String),
}

/// How a kernel process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// Human-readable status: `exit code 1`, `killed by signal 9 (SIGKILL)`.
    pub status: String,
}

/// A live kernel process and its channels.
pub struct Kernel {
    name: String,
    pgid: Pid,
    interrupt_mode: InterruptMode,
    shell: jupyter_zmq_client::DealerSendConnection,
    stdin: jupyter_zmq_client::DealerSendConnection,
    control: ClientControlConnection,
    events: mpsc::UnboundedReceiver<Event>,
    exit: watch::Receiver<Option<ExitInfo>>,
    stderr: Arc<Mutex<StderrTail>>,
    kernel_info: Value,
    _connection_file: tempfile::TempPath,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The last 16 KiB a kernel wrote to stderr.
#[derive(Default)]
pub(crate) struct StderrTail {
    buf: VecDeque<u8>,
}

impl StderrTail {
    const CAP: usize = 16 * 1024;
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
        while self.buf.len() > Self::CAP {
            self.buf.pop_front();
        }
    }
    pub(crate) fn text(&self) -> String {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        // Keep the last 20 lines: enough for a traceback, short enough for a terminal.
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Kernel {
    /// Start a kernel from `spec` and wait until it answers on shell and IOPub.
    pub async fn launch(spec: &KernelSpec, opts: &LaunchOptions) -> Result<Kernel, KernelError> {
        // Ports are picked free, then released for the kernel to bind: another process can
        // take one in between (jupyter_client has the same race). A kernel that dies because
        // a port was taken is started again on new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::launch_once(spec, opts).await {
                Err(
                    KernelError::Died { stderr, .. } | KernelError::StartTimeout { stderr, .. },
                ) if attempt < 4 && port_clash(&stderr) => continue,
                other => return other,
            }
        }
    }

    async fn launch_once(spec: &KernelSpec, opts: &LaunchOptions) -> Result<Kernel, KernelError> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let ports = peek_ports(ip, 5)
            .await
            .map_err(|e| KernelError::Channel(e.to_string()))?;
        let info = ConnectionInfo {
            ip: ip.to_string(),
            transport: Transport::TCP,
            shell_port: ports[0],
            iopub_port: ports[1],
            stdin_port: ports[2],
            control_port: ports[3],
            hb_port: ports[4],
            key: uuid::Uuid::new_v4().to_string(),
            signature_scheme: "hmac-sha256".to_string(),
            kernel_name: Some(spec.name.clone()),
        };
        let file = tempfile::Builder::new()
            .prefix("nbpipe-kernel-")
            .suffix(".json")
            .tempfile()?;
        serde_json::to_writer(file.as_file(), &info)
            .map_err(|e| KernelError::Io(std::io::Error::other(e)))?;
        let connection_file = file.into_temp_path();

        let mut argv = spec.command(&connection_file);
        if is_ipykernel(&argv) {
            // As nbclient does: IPython would otherwise write every cell to its sqlite history
            // file, which triples the per-cell cost and serialises parallel runs on one file.
            argv.push("--HistoryManager.hist_file=:memory:".into());
        }
        let echo = opts.echo_stderr;
        let started = match fork_route(spec, opts, &argv).await {
            Some((zygote, env, cwd)) => match zygote.fork(&argv[3..], &cwd, &env).await {
                Ok(forked) => Some(start_forked(forked, echo)),
                // The zygote went away between routing and forking: start cold instead.
                Err(_) => None,
            },
            None => None,
        };
        let started = match started {
            Some(s) => s,
            None => spawn_cold(spec, opts, &argv).await?,
        };
        let Started {
            pgid,
            stderr,
            exit: exit_rx,
            mut tasks,
        } = started;

        let mut guard = StartGuard { pgid, armed: true };
        let deadline = Instant::now() + opts.start_timeout;
        let session = uuid::Uuid::new_v4().to_string();
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut kernel_exit = exit_rx.clone();
        let name = spec.name.clone();
        let died = |stderr: &Arc<Mutex<StderrTail>>, exit: &watch::Receiver<Option<ExitInfo>>| {
            KernelError::Died {
                name: name.clone(),
                status: exit
                    .borrow()
                    .as_ref()
                    .map(|e| e.status.clone())
                    .unwrap_or_else(|| "exited".into()),
                stderr: stderr.lock().map(|t| t.text()).unwrap_or_default(),
            }
        };
        let timed_out = |stderr: &Arc<Mutex<StderrTail>>| KernelError::StartTimeout {
            name: name.clone(),
            secs: opts.start_timeout.as_secs(),
            stderr: stderr.lock().map(|t| t.text()).unwrap_or_default(),
        };

        // The kernel binds its ports some time after it starts: wait until it does, dies, or
        // the start timeout passes, then connect (retrying if a connect still fails).
        let connect = async {
            wait_listening(
                ip,
                &[
                    info.shell_port,
                    info.iopub_port,
                    info.stdin_port,
                    info.control_port,
                ],
            )
            .await;
            loop {
                let attempt = async {
                    let identity = peer_identity_for_session(&session)?;
                    let iopub = create_client_iopub_connection(&info, "", &session).await?;
                    let shell = create_client_shell_connection_with_identity(
                        &info,
                        &session,
                        identity.clone(),
                    )
                    .await?;
                    let stdin =
                        create_client_stdin_connection_with_identity(&info, &session, identity)
                            .await?;
                    let control = create_client_control_connection(&info, &session).await?;
                    Ok::<_, jupyter_zmq_client::RuntimeError>((iopub, shell, stdin, control))
                };
                match attempt.await {
                    Ok(conns) => return Ok::<_, KernelError>(conns),
                    Err(_) => sleep(Duration::from_millis(20)).await,
                }
            }
        };
        // A kernel that lost a port race may stay alive without its sockets: watch its
        // stderr so the caller can start another on free ports at once.
        let clash = async {
            loop {
                sleep(Duration::from_millis(100)).await;
                if stderr.lock().is_ok_and(|t| port_clash(&t.text())) {
                    return;
                }
            }
        };
        let conns = tokio::select! {
            r = connect => r?,
            _ = kernel_exit.wait_for(|e| e.is_some()) => return Err(died(&stderr, &exit_rx)),
            _ = clash => return Err(died(&stderr, &exit_rx)),
            _ = tokio::time::sleep_until(deadline) => return Err(timed_out(&stderr)),
        };
        let (iopub, shell, stdin, control) = conns;
        let (shell_tx, shell_rx) = shell.split();
        let (stdin_tx, stdin_rx) = stdin.split();
        tasks.push(spawn_reader(iopub, events_tx.clone(), Event::IoPub));
        tasks.push(spawn_reader(shell_rx, events_tx.clone(), Event::Shell));
        tasks.push(spawn_reader(stdin_rx, events_tx, Event::Stdin));

        let mut kernel = Kernel {
            name: spec.name.clone(),
            pgid,
            interrupt_mode: spec.interrupt_mode,
            shell: shell_tx,
            stdin: stdin_tx,
            control,
            events,
            exit: exit_rx,
            stderr,
            kernel_info: Value::Null,
            _connection_file: connection_file,
            _tasks: tasks,
        };
        kernel.wait_ready(deadline).await.map_err(|e| match e {
            KernelError::StartTimeout { .. } => timed_out(&kernel.stderr),
            other => other,
        })?;
        guard.armed = false;
        Ok(kernel)
    }

    /// Send `kernel_info_request` until the kernel answers on shell *and* its IOPub traffic
    /// reaches us (a SUB socket misses what is published before it is connected).
    async fn wait_ready(&mut self, deadline: Instant) -> Result<(), KernelError> {
        // Replies to any request sent so far count: a slow kernel answers the first one late.
        let mut ids: Vec<String> = Vec::new();
        let mut reply: Option<Value> = None;
        let mut iopub_seen = false;
        loop {
            let id = self.send_shell(KernelInfoRequest {}.into()).await?;
            ids.push(id);
            let mut round = Instant::now() + Duration::from_millis(500);
            loop {
                match self.next_event_until(round.min(deadline)).await? {
                    Some(Event::Shell(m))
                        if m.msg_type == "kernel_info_reply" && ids.contains(&m.parent_id) =>
                    {
                        reply = Some(m.content);
                        // Shell works; if IOPub is still subscribing, ask again soon.
                        round = round.min(Instant::now() + Duration::from_millis(50));
                    }
                    Some(Event::IoPub(m)) if ids.contains(&m.parent_id) => iopub_seen = true,
                    // JEP 65 (ipykernel >= 6.27): the kernel saw our subscription, so all it
                    // publishes from now on reaches us.
                    Some(Event::IoPub(m)) if m.msg_type == "iopub_welcome" => iopub_seen = true,
                    Some(_) => {}
                    None => break,
                }
                // A kernel that lost a port race may stay alive without its sockets: give
                // up on it at once so the caller can start another on free ports.
                if port_clash(&self.stderr_tail()) {
                    return Err(self.died_error());
                }
                if iopub_seen {
                    if let Some(info) = reply.take() {
                        self.kernel_info = info;
                        return Ok(());
                    }
                }
            }
            if port_clash(&self.stderr_tail()) {
                return Err(self.died_error());
            }
            if Instant::now() >= deadline {
                return Err(KernelError::StartTimeout {
                    name: self.name.clone(),
                    secs: 0,
                    stderr: String::new(),
                });
            }
        }
    }

    /// The next event, or `None` once `until` passes. Errors if the kernel dies first.
    pub async fn next_event_until(&mut self, until: Instant) -> Result<Option<Event>, KernelError> {
        let mut exit = self.exit.clone();
        tokio::select! {
            biased;
            ev = self.events.recv() => Ok(ev),
            _ = exit.wait_for(|e| e.is_some()) => {
                // Deliver what the kernel said before it died first.
                match self.events.try_recv() {
                    Ok(ev) => Ok(Some(ev)),
                    Err(_) => Err(self.died_error()),
                }
            }
            _ = tokio::time::sleep_until(until) => Ok(None),
        }
    }

    /// The error describing how the kernel died.
    pub fn died_error(&self) -> KernelError {
        KernelError::Died {
            name: self.name.clone(),
            status: self
                .exit
                .borrow()
                .as_ref()
                .map(|e| e.status.clone())
                .unwrap_or_else(|| "exited".into()),
            stderr: self.stderr_tail(),
        }
    }

    /// The last lines the kernel wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|t| t.text()).unwrap_or_default()
    }

    /// `Some` once the kernel process has exited.
    /// A receiver that holds the kernel's exit once it happened (for waiting on it without
    /// holding the kernel).
    pub fn exit_watch(&self) -> watch::Receiver<Option<ExitInfo>> {
        self.exit.clone()
    }

    /// How the kernel process ended, if it did.
    pub fn exited(&self) -> Option<ExitInfo> {
        self.exit.borrow().clone()
    }

    /// The content of the kernel's `kernel_info_reply` (has `language_info`).
    pub fn kernel_info(&self) -> &Value {
        &self.kernel_info
    }

    /// The kernelspec name this kernel was started from.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn send_shell(&mut self, content: JupyterMessageContent) -> Result<String, KernelError> {
        let msg = JupyterMessage::new(content, None);
        let id = msg.header.msg_id.clone();
        self.shell
            .send(msg)
            .await
            .map_err(|e| KernelError::Channel(e.to_string()))?;
        Ok(id)
    }

    /// Send an `execute_request`; returns its message id. `allow_stdin` is false, so a
    /// well-behaved kernel raises on `input()` instead of waiting for a human.
    pub async fn execute(&mut self, code: &str) -> Result<String, KernelError> {
        let req = ExecuteRequest {
            code: code.to_string(),
            silent: false,
            store_history: true,
            user_expressions: None,
            allow_stdin: false,
            stop_on_error: false,
        };
        self.send_shell(req.into()).await
    }

    /// Answer an `input_request` from a kernel that ignores `allow_stdin`, so it cannot hang.
    pub async fn reply_input(&mut self, value: &str) -> Result<(), KernelError> {
        let msg = JupyterMessage::new(
            InputReply {
                value: value.to_string(),
                status: ReplyStatus::Error,
                error: None,
            },
            None,
        );
        self.stdin
            .send(msg)
            .await
            .map_err(|e| KernelError::Channel(e.to_string()))
    }

    /// Interrupt the running cell the way the kernelspec asks (signal or control message).
    pub async fn interrupt(&mut self) -> Result<(), KernelError> {
        match self.interrupt_mode {
            InterruptMode::Signal => {
                let _ = killpg(self.pgid, Signal::SIGINT);
                Ok(())
            }
            InterruptMode::Message => {
                let msg = JupyterMessage::new(InterruptRequest {}, None);
                let _ = timeout(Duration::from_secs(2), self.control.send(msg)).await;
                Ok(())
            }
        }
    }

    /// Ask the kernel to shut down; escalate to SIGTERM, then SIGKILL of its process group.
    /// A kernel normally exits within ~250 ms of the request; some ipykernel versions
    /// occasionally never do, so the grace periods are short.
    pub async fn shutdown(mut self) {
        if self.exited().is_none() {
            let msg = JupyterMessage::new(ShutdownRequest { restart: false }, None);
            let _ = timeout(Duration::from_secs(1), self.control.send(msg)).await;
            let exit = self.exit.clone();
            let gone = |secs: f64| {
                let mut exit = exit.clone();
                async move {
                    timeout(
                        Duration::from_secs_f64(secs),
                        exit.wait_for(|e| e.is_some()),
                    )
                    .await
                    .is_ok()
                }
            };
            if !gone(1.5).await {
                let _ = killpg(self.pgid, Signal::SIGTERM);
                if !gone(1.0).await {
                    let _ = killpg(self.pgid, Signal::SIGKILL);
                    let _ = gone(2.0).await;
                }
            }
        }
        // Whatever the kernel started in its group goes with it.
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }

    /// The kernel's process group id (= its pid).
    pub fn pid(&self) -> i32 {
        self.pgid.as_raw()
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // Last line of defence (errors, panics, cancellation): never leave a kernel behind.
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }
}

/// A kernel process that has been started, cold or forked.
struct Started {
    pgid: Pid,
    stderr: Arc<Mutex<StderrTail>>,
    exit: watch::Receiver<Option<ExitInfo>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The zygote to fork this launch from, with the kernel's full environment and cwd.
async fn fork_route(
    spec: &KernelSpec,
    opts: &LaunchOptions,
    argv: &[String],
) -> Option<(Arc<crate::fork::Zygote>, Vec<(String, String)>, PathBuf)> {
    let servers = opts.fork.as_ref()?;
    // Exactly what a spawned child would get: our environment, the spec's, the launch's.
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in std::env::vars_os() {
        env.push((k.into_string().ok()?, v.into_string().ok()?));
    }
    let mut merged: std::collections::BTreeMap<String, String> = env.into_iter().collect();
    merged.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.extend(opts.env.iter().cloned());
    let env: Vec<(String, String)> = merged.into_iter().collect();
    let cwd = match &opts.cwd {
        Some(c) => std::path::absolute(c).ok()?,
        None => std::env::current_dir().ok()?,
    };
    let zygote = servers.route(argv, &env).await?;
    Some((zygote, env, cwd))
}

/// Spawn the kernel process (the cold start).
async fn spawn_cold(
    spec: &KernelSpec,
    opts: &LaunchOptions,
    argv: &[String],
) -> Result<Started, KernelError> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(spec.env.iter())
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &opts.cwd {
        cmd.current_dir(cwd);
    }
    // SAFETY: prctl is async-signal-safe; it makes the kernel die with us even on SIGKILL.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let mut child = spawn_from_launcher(cmd)
        .await
        .map_err(|source| KernelError::Spawn {
            name: spec.name.clone(),
            command: argv.join(" "),
            source,
        })?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    let pgid = Pid::from_raw(pid);
    let stderr = Arc::new(Mutex::new(StderrTail::default()));
    let stderr_reader = child
        .stderr
        .take()
        .map(|pipe| spawn_stderr_reader(pipe, stderr.clone(), opts.echo_stderr));
    let (exit_tx, exit) = watch::channel(None);
    let waiter = tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => describe_exit(s),
            Err(e) => format!("unknown exit: {e}"),
        };
        report_exit(pgid, status, stderr_reader, exit_tx).await;
    });
    Ok(Started {
        pgid,
        stderr,
        exit,
        tasks: vec![waiter],
    })
}

/// Follow a kernel forked by a zygote: its stderr pipe, and its exit (pidfd + report).
fn start_forked(forked: crate::fork::Forked, echo: bool) -> Started {
    let pgid = Pid::from_raw(forked.pid);
    let stderr = Arc::new(Mutex::new(StderrTail::default()));
    let stderr_reader = tokio::net::unix::pipe::Receiver::from_owned_fd(forked.stderr)
        .ok()
        .map(|pipe| spawn_stderr_reader(pipe, stderr.clone(), echo));
    let (exit_tx, exit) = watch::channel(None);
    let waiter = tokio::spawn(async move {
        let status = crate::fork::Forked::wait(forked.report, forked.pidfd).await;
        report_exit(pgid, status, stderr_reader, exit_tx).await;
    });
    Started {
        pgid,
        stderr,
        exit,
        tasks: vec![waiter],
    }
}

fn spawn_stderr_reader<R>(
    mut pipe: R,
    tail: Arc<Mutex<StderrTail>>,
    echo: bool,
) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if echo {
                use std::io::Write;
                let _ = std::io::stderr().write_all(&buf[..n]);
            }
            tail.lock().map(|mut t| t.push(&buf[..n])).ok();
        }
    })
}

/// The kernel exited: reap the rest of its group, let its last stderr arrive, tell waiters.
async fn report_exit(
    pgid: Pid,
    status: String,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    exit_tx: watch::Sender<Option<ExitInfo>>,
) {
    // A kernel's own children must not outlive it.
    let _ = killpg(pgid, Signal::SIGKILL);
    if let Some(reader) = stderr_reader {
        let _ = timeout(Duration::from_secs(1), reader).await;
    }
    let _ = exit_tx.send(Some(ExitInfo { status }));
}

/// Whether a kernel's stderr says it could not bind one of its ports.
fn port_clash(stderr: &str) -> bool {
    stderr.contains("Address already in use")
}

/// Whether a kernel command line starts ipykernel (which takes IPython's config flags).
fn is_ipykernel(argv: &[String]) -> bool {
    argv.iter().any(|a| {
        a == "ipykernel_launcher" || a == "ipykernel" || a.ends_with("/ipykernel_launcher.py")
    })
}

/// Kills the kernel's process group if `launch` fails half way.
struct StartGuard {
    pgid: Pid,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Wait until something listens on each of `ports` of `ip`. The ZeroMQ connects back off
/// exponentially from 50 ms while a port is not bound yet, which cost a kernel that binds its
/// ports 20 ms after it starts (a forked one) 30 ms more, and a cold one up to a third of its
/// start; a plain TCP connect every 2 ms finds each port as soon as it is bound (the kernel's
/// ZeroMQ socket drops the probe, which never completes a ZMTP handshake).
async fn wait_listening(ip: IpAddr, ports: &[u16]) {
    let mut pending: Vec<u16> = ports.to_vec();
    loop {
        let mut still = Vec::new();
        for &port in &pending {
            if tokio::net::TcpStream::connect((ip, port)).await.is_err() {
                still.push(port);
            }
        }
        if still.is_empty() {
            return;
        }
        pending = still;
        sleep(Duration::from_millis(2)).await;
    }
}

fn spawn_reader<S>(
    mut conn: jupyter_zmq_client::Connection<S>,
    tx: mpsc::UnboundedSender<Event>,
    wrap: fn(Msg) -> Event,
) -> tokio::task::JoinHandle<()>
where
    S: zeromq::SocketRecv + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let frames = match conn.socket.recv().await {
                Ok(f) => f,
                Err(_) => break,
            };
            let ev = match RawMessage::from_multipart(frames, &conn.mac) {
                Ok(raw) => match Msg::from_frames(&raw.jparts) {
                    Ok(m) => wrap(m),
                    Err(e) => Event::Garbled(e),
                },
                Err(e) => Event::Garbled(e.to_string()),
            };
            if tx.send(ev).is_err() {
                break;
            }
        }
    })
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let hint = if sig == 9 {
            " — possibly the out-of-memory killer"
        } else {
            ""
        };
        format!("killed by signal {sig} ({name}){hint}")
    } else {
        format!("exit code {}", status.code().unwrap_or(-1))
    }
}

/// Spawn `cmd` from one thread that lives as long as the process.
///
/// A kernel's parent-death signal (`PR_SET_PDEATHSIG`) fires when the *thread* that forked it
/// exits, not the process. tokio retires threads while the process lives on (a worker that ran
/// `block_in_place` ends as a blocking-pool thread, and those exit after 10 s idle), which
/// SIGKILLed idle warm kernels forked from such a thread. Forking from a thread that never
/// exits keeps the signal meaning "nbpipe died". The child is registered with the caller's
/// runtime, as if spawned in place.
pub(crate) async fn spawn_from_launcher(
    mut cmd: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    type Job = Box<dyn FnOnce() + Send>;
    static LAUNCHER: std::sync::OnceLock<Option<std::sync::Mutex<std::sync::mpsc::Sender<Job>>>> =
        std::sync::OnceLock::new();
    let launcher = LAUNCHER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("nbpipe-kernel-launcher".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .ok()
            .map(|_| std::sync::Mutex::new(tx))
    });
    let Some(launcher) = launcher else {
        // No thread could be started: spawn here, as before.
        return cmd.spawn();
    };
    let handle = tokio::runtime::Handle::current();
    let (done, spawned) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _runtime = handle.enter();
        let _ = done.send(cmd.spawn());
    });
    let sent = launcher
        .lock()
        .map_err(|_| std::io::Error::other("the kernel launcher thread is gone"))?
        .send(job);
    if sent.is_err() {
        return Err(std::io::Error::other("the kernel launcher thread is gone"));
    }
    spawned
        .await
        .map_err(|_| std::io::Error::other("the kernel launcher thread is gone"))?
}
