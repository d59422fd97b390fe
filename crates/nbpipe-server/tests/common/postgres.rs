//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, the server on a free
//! port listening on `127.0.0.1` only (and a socket in the temp dir), trust auth, no fsync;
//! stopped (immediate mode) on drop. Included by path from every test binary that needs it
//! (`#[path = "…/nbpipe-server/tests/common/postgres.rs"] mod postgres;`), like the moto
//! harness: the queue tests (through `queue_support`) and the `nbpipe serve` end-to-end tests.
//!
//! Self-contained (std and `tempfile` only). The binaries come from Debian's `postgresql`
//! package (`pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`); as root the
//! server runs as the `postgres` user, since it refuses to run as root.
//! [`Postgres::start_or_skip`] is the gate: without PostgreSQL the caller prints why and
//! passes, unless `NBPIPE_TEST_POSTGRES=1` makes that a failure.
#![allow(dead_code)] // each test binary uses a part

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A PostgreSQL cluster in a temp dir on a free port, stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    fn find_bin() -> Option<PathBuf> {
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return Some(dir);
            }
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        found.sort();
        found.pop()
    }

    fn cmd(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            // The server refuses to run as root.
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// Starts a cluster; `None` (after printing why `what` is skipped) when PostgreSQL cannot
    /// start, unless `NBPIPE_TEST_POSTGRES=1`, which makes that a panic.
    pub fn start_or_skip(what: &str) -> Option<Postgres> {
        let required = std::env::var("NBPIPE_TEST_POSTGRES").is_ok_and(|v| v == "1");
        let started = Instant::now();
        match Postgres::start() {
            Ok(pg) => {
                eprintln!("postgres: started in {:?}", started.elapsed());
                Some(pg)
            }
            Err(e) if required => {
                panic!("NBPIPE_TEST_POSTGRES=1 but PostgreSQL could not start: {e}")
            }
            Err(e) => {
                eprintln!(
                    "{what} not run: {e} (install `postgresql`; NBPIPE_TEST_POSTGRES=1 makes \
                     this an error)"
                );
                None
            }
        }
    }

    /// Starts a cluster, or says why it could not.
    pub fn start() -> Result<Postgres, String> {
        let bin = Self::find_bin().ok_or("no PostgreSQL server binaries (initdb) found")?;
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if as_postgres {
            run(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path()))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let pg = Postgres {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.dir.path().join("data");
        run(pg
            .cmd("initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data))?;
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            pg.port,
            pg.dir.path().display()
        );
        run(pg
            .cmd("pg_ctl")
            .args(["-w", "-t", "60", "-o", &opts, "-l"])
            .arg(pg.dir.path().join("log"))
            .arg("-D")
            .arg(&data)
            .arg("start"))?;
        Ok(pg)
    }

    /// The URL of database `db` (`postgres` exists from the start).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .args(["-m", "immediate", "-w", "stop", "-D"])
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::null())
            .status();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
