//! The environment layer: the project's kernel environment (its requirements plus
//! ipykernel, as `nbpipe env` resolves them) installed on the host by `uv` for the base
//! image's Python version and for Linux x86-64 wheels (`--python-version`,
//! `--python-platform`), so the build needs no network inside the image and no daemon.
//!
//! It lives at [`ENV_ROOT`] in the image as a virtualenv made by hand for the image's
//! interpreter: `pyvenv.cfg` whose `home` is the image's Python, `bin/python` a link to it,
//! the packages in `lib/python3.N/site-packages`, console scripts with their `#!` rewritten
//! to `bin/python`, a `python3` kernelspec under `share/jupyter`, and the resolved package
//! list (`nbpipe-freeze.txt`, what `run.json`'s `environment.txt` shows). Bytecode is
//! compiled with the host's `python3.N` when it has the same version (checked-hash `.pyc`
//! files naming the image's paths, so they are reproducible and tracebacks point at real
//! files); otherwise it is left to the first import.
//!
//! The layer depends only on the requirements, the base's Python and this format; it is
//! cached by those, with a fixed mtime, so it is reused while they are unchanged.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base::BasePython;
use crate::error::ImageError;
use crate::layer::{self, Entries, Layer, Source};
use crate::store::Store;

/// Where the environment lives in the image.
pub const ENV_ROOT: &str = "/opt/nbpipe/env";
/// The wheel platform installed for (glibc 2.28+: Debian 10 and later, official Python images).
pub const PYTHON_PLATFORM: &str = "x86_64-manylinux_2_28";
/// Bumped when the layer's layout changes.
const FORMAT: u32 = 1;

/// A built environment layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvLayer {
    /// The layer.
    pub layer: Layer,
    /// The environment's hash (the label `nbpipe.requirements_hash`, `run.json`'s).
    pub hash: String,
    /// The resolved package list.
    pub freeze: String,
}

/// Build (or reuse) the environment layer of the project in `dir`.
pub fn build(
    store: &Store,
    dir: &Path,
    requirements: Option<&Path>,
    python: &BasePython,
    quiet: bool,
) -> Result<EnvLayer, ImageError> {
    let req = match requirements {
        Some(r) => Some(r.to_path_buf()),
        None => Some(dir.join("requirements.txt")).filter(|p| p.is_file()),
    };
    let version_key = format!("image-cpython-{}-{PYTHON_PLATFORM}", python.version);
    let hash = nbpipe_env::compute_hash(req.as_deref(), &version_key)
        .map_err(|e| ImageError::Unsupported(e.to_string()))?;
    let key = {
        let mut h = Sha256::new();
        h.update(format!(
            "{FORMAT}\0{hash}\0{}\0{}",
            python.path, python.version
        ));
        hex::encode(&h.finalize()[..12])
    };
    let cache_name = format!("env-{key}.json");
    if let Some(hit) = store.cached::<EnvLayer>(&cache_name, |e| vec![e.layer.blob.digest.clone()])
    {
        note(quiet, "environment layer unchanged (cached)");
        return Ok(hit);
    }
    let uv = find_uv()?;
    let stage = tempfile::Builder::new()
        .prefix("env-")
        .tempdir_in(std::env::temp_dir())
        .map_err(|e| ImageError::io("creating", std::env::temp_dir(), e))?;
    let input = stage.path().join("requirements.in");
    let mut text = String::new();
    if let Some(r) = &req {
        let abs = std::path::absolute(r).unwrap_or_else(|_| r.clone());
        text.push_str(&format!("-r {}\n", abs.display()));
    }
    text.push_str("ipykernel\n");
    std::fs::write(&input, text).map_err(|e| ImageError::io("writing", &input, e))?;
    let resolved = stage.path().join("resolved.txt");
    note(
        quiet,
        &format!(
            "resolving the environment for Python {} ({PYTHON_PLATFORM}) with uv",
            python.version
        ),
    );
    let mut compile = uv_command(&uv);
    compile
        .args(["pip", "compile", "--quiet", "--no-header", "--no-annotate"])
        .args(["--python-version", &python.version])
        .args(["--python-platform", PYTHON_PLATFORM])
        .arg(&input)
        .arg("-o")
        .arg(&resolved)
        .current_dir(dir);
    run(compile, "resolving the requirements")?;
    let site = stage.path().join("site");
    let mut install = uv_command(&uv);
    install
        .args(["pip", "install", "--quiet", "--no-deps", "--target"])
        .arg(&site)
        .args(["--python-version", &python.version])
        .args(["--python-platform", PYTHON_PLATFORM])
        .arg("-r")
        .arg(&resolved)
        .current_dir(dir);
    run(install, "installing the environment")?;
    let site_in_image = format!("{ENV_ROOT}/lib/python{}/site-packages", python.version);
    if let Some(host_python) = crate::which(&format!("python{}", python.version)) {
        let mut compileall = Command::new(host_python);
        compileall
            .args([
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "checked-hash",
            ])
            .arg("-d")
            .arg(&site_in_image)
            .arg(&site)
            .env("SOURCE_DATE_EPOCH", "0");
        run(compileall, "compiling bytecode")?;
    }
    let freeze =
        std::fs::read_to_string(&resolved).map_err(|e| ImageError::io("reading", &resolved, e))?;
    let entries = entries(&site, python, &hash, &freeze, req.as_deref())?;
    let layer = layer::write(store, &entries, 0)?;
    let built = EnvLayer {
        layer,
        hash,
        freeze,
    };
    store.remember(&cache_name, &built)?;
    Ok(built)
}

/// The layer's entries from the installed `site` directory.
fn entries(
    site: &Path,
    python: &BasePython,
    hash: &str,
    freeze: &str,
    requirements: Option<&Path>,
) -> Result<Entries, ImageError> {
    let root = ENV_ROOT.trim_start_matches('/');
    let mut e = Entries::default();
    let home = Path::new(&python.path)
        .parent()
        .map_or("/usr/bin".into(), |p| p.display().to_string());
    e.add(
        &format!("{root}/pyvenv.cfg"),
        Source::Bytes(
            format!(
                "home = {home}\ninclude-system-site-packages = false\nversion = {}\n",
                python.version
            )
            .into_bytes(),
            0o644,
        ),
    );
    e.add(
        &format!("{root}/bin/python"),
        Source::Symlink(python.path.clone()),
    );
    e.add(
        &format!("{root}/bin/python3"),
        Source::Symlink("python".into()),
    );
    e.add(
        &format!("{root}/bin/python{}", python.version),
        Source::Symlink("python".into()),
    );
    let site_dest = format!("{root}/lib/python{}/site-packages", python.version);
    let listing = std::fs::read_dir(site).map_err(|err| ImageError::io("reading", site, err))?;
    let mut names: Vec<PathBuf> = listing.filter_map(|d| d.ok().map(|d| d.path())).collect();
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match name.as_str() {
            "bin" => add_scripts(&mut e, &path, &format!("{root}/bin"))?,
            "share" => e.add_tree(&path, &format!("{root}/share"))?,
            _ => e.add_tree(&path, &format!("{site_dest}/{name}"))?,
        }
    }
    let kernel = serde_json::json!({
        "argv": [format!("{ENV_ROOT}/bin/python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": true}
    });
    e.add(
        &format!("{root}/share/jupyter/kernels/python3/kernel.json"),
        Source::Bytes(
            serde_json::to_vec_pretty(&kernel).unwrap_or_default(),
            0o644,
        ),
    );
    e.add(
        &format!("{root}/{}", nbpipe_env::MANIFEST_FILE),
        Source::Bytes(
            nbpipe_env::manifest_json(
                hash,
                &format!("cpython-{}-x86_64", python.version),
                Path::new(&python.path),
                "uv (nbpipe image build)",
                "1970-01-01T00:00:00Z",
            )
            .into_bytes(),
            0o644,
        ),
    );
    e.add(
        &format!("{root}/{}", nbpipe_env::FREEZE_FILE),
        Source::Bytes(freeze.as_bytes().to_vec(), 0o644),
    );
    if let Some(r) = requirements {
        let text = std::fs::read(r).map_err(|err| ImageError::io("reading", r, err))?;
        e.add(
            &format!("{root}/nbpipe-requirements.txt"),
            Source::Bytes(text, 0o644),
        );
    }
    Ok(e)
}

/// Console scripts, their `#!` line pointing at the image's environment.
fn add_scripts(e: &mut Entries, bin: &Path, dest: &str) -> Result<(), ImageError> {
    let listing = std::fs::read_dir(bin).map_err(|err| ImageError::io("reading", bin, err))?;
    for entry in listing.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(&path).map_err(|err| ImageError::io("reading", &path, err))?;
        let data = match data.strip_prefix(b"#!") {
            Some(rest)
                if rest
                    .split(|&b| b == b'\n')
                    .next()
                    .is_some_and(|l| l.windows(6).any(|w| w == b"python")) =>
            {
                let body = rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(&[][..], |i| &rest[i..]);
                let mut out = format!("#!{ENV_ROOT}/bin/python").into_bytes();
                out.extend_from_slice(body);
                out
            }
            _ => data,
        };
        e.add(&format!("{dest}/{name}"), Source::Bytes(data, 0o755));
    }
    Ok(())
}

fn find_uv() -> Result<PathBuf, ImageError> {
    crate::which("uv").ok_or(ImageError::MissingTool {
        tool: "uv",
        purpose: "install the image's kernel environment on this machine",
        hint: "install it with `pip install uv`",
    })
}

fn uv_command(uv: &Path) -> Command {
    let mut c = Command::new(uv);
    c.env("UV_PYTHON_DOWNLOADS", "never").stdin(Stdio::null());
    c
}

fn run(mut cmd: Command, step: &'static str) -> Result<(), ImageError> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| ImageError::Install {
        step,
        command: shown.clone(),
        status: e.to_string(),
        output: String::new(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    Err(ImageError::Install {
        step,
        command: shown,
        status: out.status.to_string(),
        output: tail.into_iter().rev().map(|l| format!("  {l}\n")).collect(),
    })
}

fn note(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("nbpipe: {msg}");
    }
}
