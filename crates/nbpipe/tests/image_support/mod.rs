//! Container test harness: a private `dockerd` (Debian's docker.io, `--iptables=false
//! --bridge=none`, its own data root, exec root and socket) and a private `docker-registry`
//! on 127.0.0.1, both stopped when the harness is dropped; the base image (a debootstrapped
//! bookworm with python3 that `scripts/test-containers.sh` caches) imported and pushed to the
//! registry. Without these tools each test prints why and passes, unless
//! `NBPIPE_TEST_DOCKER=1` (set by `scripts/test.sh`) makes it fail.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Containers {
    pub dir: tempfile::TempDir,
    dockerd: Child,
    registry: Child,
    pub socket: PathBuf,
    pub registry_addr: String,
    pub base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn base_tarball() -> PathBuf {
    std::env::var_os("NBPIPE_TEST_BASE_TAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/nbpipe/images/bookworm-python3.tar")
        })
}

impl Containers {
    /// Start everything, or `None` (with a note) when the tools are missing and the run
    /// does not require them.
    pub fn start() -> Option<Containers> {
        let missing: Vec<&str> = [
            ("dockerd", which("dockerd")),
            ("docker", which("docker")),
            (
                "docker-registry",
                Some(PathBuf::from("/usr/bin/docker-registry")).filter(|p| p.exists()),
            ),
            ("base tarball", Some(base_tarball()).filter(|p| p.exists())),
        ]
        .into_iter()
        .filter(|(_, p)| p.is_none())
        .map(|(n, _)| n)
        .collect();
        if !missing.is_empty() {
            let why = format!(
                "container tests need {} (run scripts/test-containers.sh)",
                missing.join(", ")
            );
            if std::env::var("NBPIPE_TEST_DOCKER").as_deref() == Ok("1") {
                panic!("{why}");
            }
            eprintln!("skipped: {why}");
            return None;
        }
        // Short paths: containerd's sockets live under the exec root (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("nbd")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("d.sock");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let dockerd = Command::new("dockerd")
            .args([
                "--iptables=false",
                "--bridge=none",
                "--storage-driver=overlay2",
            ])
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("x"))
            .arg("--pidfile")
            .arg(dir.path().join("d.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let port = free_port();
        let registry_addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {registry_addr}\n",
                dir.path().join("registry").display()
            ),
        )
        .unwrap();
        let rlog = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let registry = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(rlog.try_clone().unwrap())
            .stderr(rlog)
            .spawn()
            .expect("start docker-registry");
        let mut c = Containers {
            dir,
            dockerd,
            registry,
            socket,
            registry_addr,
            base: String::new(),
        };
        c.wait_ready();
        c.base = format!("{}/base:bookworm", c.registry_addr);
        let ok = c.docker(&["import", &base_tarball().to_string_lossy(), &c.base]);
        assert!(
            ok.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let ok = c.docker(&["push", &c.base]);
        assert!(
            ok.status.success(),
            "docker push: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        Some(c)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let docker_ok = self.docker(&["version"]).status.success();
            let reg_ok = std::net::TcpStream::connect(&self.registry_addr).is_ok();
            if docker_ok && reg_ok {
                return;
            }
            if let Ok(Some(s)) = self.dockerd.try_wait() {
                panic!("dockerd exited ({s}): {}", self.log("dockerd.log"));
            }
            assert!(
                Instant::now() < deadline,
                "dockerd/registry did not start: {}",
                self.log("dockerd.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The docker CLI against this daemon (tests only: nbpipe itself speaks the API).
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.docker_host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI")
    }

    /// Containers carrying the `nbpipe.project` label, or nbpipe's smoke containers.
    pub fn leftover_containers(&self) -> String {
        let a = self.docker(&["ps", "-a", "-q", "--filter", "label=nbpipe.project"]);
        let b = self.docker(&["ps", "-a", "-q", "--filter", "name=nbpipe-smoke"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout)
        )
        .trim()
        .to_string()
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        // Remove any container, then stop the daemon (it stops containerd) and the registry.
        let ids = self.docker(&["ps", "-a", "-q"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        for child in [&mut self.dockerd, &mut self.registry] {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for child in [&mut self.dockerd, &mut self.registry] {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The daemon leaves its network namespace file mounted: unmount whatever is still
        // mounted under our directory (deepest first), then remove it.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = Command::new("rm").arg("-rf").arg(self.dir.path()).status();
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A private copy of the nbpipe binary under test (the shared target directory may be
/// rebuilt by another checkout while a long test runs), and one without debug info for the
/// images (a debug build is ~400 MB; images carry the code only).
pub fn binaries(dir: &Path) -> (PathBuf, PathBuf) {
    let full = dir.join("nbpipe-under-test");
    std::fs::copy(under_test(), &full).unwrap();
    let slim = dir.join("nbpipe");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&slim)
        .arg(&full)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        std::fs::copy(&full, &slim).unwrap();
    }
    (full, slim)
}

/// The binary under test: `NBPIPE_TEST_BIN` when set (a copy taken right after building, when
/// several checkouts share one target directory), else cargo's.
pub fn under_test() -> PathBuf {
    std::env::var_os("NBPIPE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nbpipe")))
}

/// The binary under test with the sandbox's environment.
pub fn nbpipe(sb: &super::common::Sandbox) -> Command {
    let mut c = Command::new(under_test());
    sb.isolate(&mut c);
    c
}
