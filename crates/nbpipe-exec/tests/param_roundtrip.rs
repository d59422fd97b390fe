//! Property test of the parameter translators against real kernels: thousands of generated
//! strings (quotes, backslashes, control characters, NUL, Latin-1, BMP oddities such as
//! U+2028/U+FEFF/U+FFFF, astral characters, code-like fragments, long strings) are rendered
//! with `nbpipe_params::render_parameters`, assigned in one real kernel, read back as the hex of
//! their UTF-8 bytes, and compared with Rust's bytes. Every string must round-trip exactly and
//! the rendered cell must contain nothing but assignments.
//!
//! Needs the kernels that `scripts/test.sh` provisions (`NBPIPE_TEST_ENV`); a missing kernel is
//! a failure, never a skip.

use std::path::PathBuf;
use std::time::{Duration, Instant as StdInstant};

use nbpipe_kernel::spec::KernelSpec;
use nbpipe_kernel::{Event, Kernel, LaunchOptions};
use nbpipe_params::{render_parameters, Language, ParamError, Parameters, Value};
use tokio::time::Instant;

/// Strings checked in ipykernel.
const PYTHON_STRINGS: usize = 3_000;
/// Parameters per injected Python cell.
const PYTHON_BATCH: usize = 500;
/// Strings checked in bash_kernel.
const BASH_STRINGS: usize = 320;
/// Parameters per injected bash cell (bash_kernel feeds the cell line by line to a pty).
const BASH_BATCH: usize = 50;

// ---------------------------------------------------------------------------------------------
// Deterministic generation
// ---------------------------------------------------------------------------------------------

/// xorshift64*: tiny, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: u32, hi_inclusive: u32) -> u32 {
        lo + self.below(u64::from(hi_inclusive - lo) + 1) as u32
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Characters chosen on purpose: escapes, line breaks in some languages' eyes, BOM,
/// non-characters, the edges of the surrogate gap, the last code point.
const SPECIAL: &[char] = &[
    '\'',
    '"',
    '\\',
    '\0',
    '\r',
    '\n',
    '\t',
    '\x0b',
    '\x0c',
    '\x1b',
    '\x7f',
    '\u{80}',
    '\u{85}',
    '\u{9b}',
    '\u{a0}',
    '\u{ad}',
    '\u{e9}',
    '\u{ff}',
    '\u{100}',
    '\u{200b}',
    '\u{200d}',
    '\u{202e}',
    '\u{2028}',
    '\u{2029}',
    '\u{feff}',
    '\u{fffe}',
    '\u{ffff}',
    '\u{d7ff}',
    '\u{e000}',
    '\u{fdd0}',
    '\u{10000}',
    '\u{1f600}',
    '\u{1f4a9}',
    '\u{1f468}',
    '\u{e0001}',
    '\u{10fffd}',
    '\u{10ffff}',
    '$',
    '`',
    '{',
    '}',
    '#',
    '!',
    '%',
];

/// Fragments that would be code if a translator forgot to escape something.
const FRAGMENTS: &[&str] = &[
    "\"); import os; os.system(\"x",
    "'); import os; os.system('x",
    "\"\"\"",
    "'''",
    "\\\"",
    "\\'",
    "\\",
    "\\\\",
    "\\n",
    "\\x00",
    "\\u0041",
    "\\U0001F600",
    "\\N{BULLET}",
    "{}",
    "{0}",
    "{name}",
    "%s",
    "%(x)s",
    "${x}",
    "$x",
    "$(id)",
    "`id`",
    "'\"'\"'",
    "'; echo pwned; '",
    "\"; echo pwned; \"",
    "\n# comment\n",
    "\nimport os\n",
    "; rm -rf /tmp/nonexistent-nbpipe",
    "#",
    "\r\n",
    "f\"{1+1}\"",
    "b'\\x00'",
    "r'\\'",
    "\u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}",
    "e\u{301}",
    "!!",
    "<<EOF",
    "*",
    "~",
];

/// Which characters a generated string may contain.
#[derive(Clone, Copy, PartialEq)]
enum Alphabet {
    /// Everything a Rust `String` can hold (all Unicode scalar values).
    Full,
    /// What a bash variable can hold: everything but NUL. Control characters and Unicode line
    /// breaks are included: nbpipe escapes them so bash_kernel's pty never sees them (see
    /// `bash_control_characters_are_data_not_keystrokes`).
    BashKernel,
}

fn allowed(alphabet: Alphabet, c: char) -> bool {
    match alphabet {
        Alphabet::Full => true,
        Alphabet::BashKernel => c != '\0',
    }
}

fn random_char(rng: &mut Rng) -> char {
    let cp = match rng.below(100) {
        0..=44 => rng.range(0x20, 0x7e),
        45..=49 => *rng.pick(&[0x22, 0x27, 0x5c, 0x24, 0x60, 0x7b, 0x7d]),
        50..=59 => rng.range(0x00, 0x1f),
        60..=61 => 0x7f,
        62..=71 => rng.range(0x80, 0xff),
        72..=83 => loop {
            let cp = rng.range(0x100, 0xffff);
            if !(0xd800..=0xdfff).contains(&cp) {
                break cp;
            }
        },
        84..=91 => rng.range(0x10000, 0x10ffff),
        _ => *rng.pick(SPECIAL) as u32,
    };
    char::from_u32(cp).expect("generator only yields scalar values")
}

fn random_string(rng: &mut Rng, alphabet: Alphabet) -> String {
    let len = match rng.below(100) {
        0..=2 => 0,
        3..=59 => rng.range(1, 12),
        60..=94 => rng.range(12, 120),
        _ => rng.range(500, 3_000),
    } as usize;
    let mut s = String::new();
    let mut chars = 0;
    while chars < len {
        if rng.below(12) == 0 {
            let frag = rng.pick(FRAGMENTS);
            if frag.chars().all(|c| allowed(alphabet, c)) {
                s.push_str(frag);
                chars += frag.chars().count();
            }
            continue;
        }
        let c = random_char(rng);
        if allowed(alphabet, c) {
            s.push(c);
            chars += 1;
        }
    }
    s
}

/// `n` strings: every special character alone and inside text, every fragment, then random
/// strings; deterministic for a seed.
fn corpus(seed: u64, n: usize, alphabet: Alphabet) -> Vec<String> {
    let mut out: Vec<String> = vec![String::new()];
    for &c in SPECIAL {
        if allowed(alphabet, c) {
            out.push(c.to_string());
            out.push(format!("a{c}b"));
            out.push(c.to_string().repeat(3));
        }
    }
    for frag in FRAGMENTS {
        if frag.chars().all(|c| allowed(alphabet, c)) {
            out.push(frag.to_string());
        }
    }
    if alphabet == Alphabet::Full {
        // Every C0 control, DEL and every Latin-1 character alone.
        out.extend((0u32..0x100).filter_map(char::from_u32).map(String::from));
    }
    // A long string made of every kind of character.
    let mut long = String::new();
    let mut rng = Rng::new(seed ^ 0x5eed);
    while long.len() < 20_000 {
        let c = random_char(&mut rng);
        if allowed(alphabet, c) {
            long.push(c);
        }
    }
    out.push(long);
    let mut rng = Rng::new(seed);
    while out.len() < n {
        out.push(random_string(&mut rng, alphabet));
    }
    assert!(out.len() >= n);
    out
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Rendered cells contain nothing but assignments
// ---------------------------------------------------------------------------------------------

/// Every line of a Python cell is `# Parameters` or `pN = "..."`, in order, and the whole cell
/// is printable ASCII (so no character a tokenizer might treat as a line break survives).
fn assert_python_cell_is_assignments(cell: &str, names: &[String]) {
    for (i, c) in cell.char_indices() {
        assert!(
            c == '\n' || (' '..='~').contains(&c),
            "rendered Python cell has a raw {c:?} at byte {i}"
        );
    }
    let lines: Vec<&str> = cell.split('\n').collect();
    assert_eq!(lines.len(), names.len() + 2, "one line per parameter");
    assert_eq!(lines[0], "# Parameters");
    assert_eq!(*lines.last().unwrap(), "", "cell ends with a newline");
    for (line, name) in lines[1..=names.len()].iter().zip(names) {
        let lit = line
            .strip_prefix(&format!("{name} = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("not an assignment of {name}: {line:?}"));
        // Inside the literal every `"` is escaped and every backslash starts an escape.
        let mut chars = lit.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => panic!("unescaped quote in {line:?}"),
                '\\' => {
                    let e = chars
                        .next()
                        .unwrap_or_else(|| panic!("dangling \\ in {line:?}"));
                    assert!("\\\"tnrxuU".contains(e), "escape \\{e} in {line:?}");
                }
                _ => {}
            }
        }
    }
}

/// A bash cell is `# Parameters` then `pN=WORD` per line, where WORD is a run of shell-safe
/// characters, `'...'` (no `'` inside), `"'"` and `$'...'` (ANSI-C quoting, backslash escapes):
/// the shell sees assignments only, and the terminal no control character but newlines.
fn assert_bash_cell_is_assignments(cell: &str, names: &[String]) {
    assert!(
        !cell
            .chars()
            .any(|c| (c.is_control() && c != '\n') || matches!(c, '\u{2028}' | '\u{2029}')),
        "a control character reaches bash_kernel's terminal"
    );
    let mut rest = cell
        .strip_prefix("# Parameters\n")
        .unwrap_or_else(|| panic!("no comment line: {cell:?}"));
    for name in names {
        rest = rest
            .strip_prefix(&format!("{name}="))
            .unwrap_or_else(|| panic!("expected `{name}=` at {:?}", &rest[..rest.len().min(80)]));
        loop {
            if let Some(r) = rest.strip_prefix('\n') {
                rest = r;
                break;
            } else if let Some(r) = rest.strip_prefix("\"'\"") {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("$'") {
                let mut chars = r.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => {
                            chars.next();
                        }
                        Some((i, '\'')) => break i,
                        Some(_) => {}
                        None => panic!("unterminated $'...' in {name}"),
                    }
                };
                rest = &r[end + 1..];
            } else if let Some(r) = rest.strip_prefix('\'') {
                let end = r
                    .find('\'')
                    .unwrap_or_else(|| panic!("unterminated quote in {name}"));
                rest = &r[end + 1..];
            } else {
                let c = rest.chars().next().expect("cell ends inside an assignment");
                assert!(
                    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c),
                    "unquoted {c:?} in the value of {name}"
                );
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    assert_eq!(rest, "", "text after the last assignment");
}

// ---------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------

fn test_env() -> PathBuf {
    let venv = PathBuf::from(std::env::var("NBPIPE_TEST_ENV").expect(
        "NBPIPE_TEST_ENV is not set: run the tests with `scripts/test.sh`, which provisions the \
         Python and bash kernels (or export NBPIPE_TEST_ENV=$HOME/.cache/nbpipe/test-env)",
    ));
    assert!(
        venv.join("bin/python").exists(),
        "NBPIPE_TEST_ENV={} has no bin/python; rerun scripts/test.sh",
        venv.display()
    );
    venv
}

fn spec(name: &str) -> KernelSpec {
    let dir = test_env().join("share/jupyter/kernels");
    nbpipe_kernel::spec::find_in(name, std::slice::from_ref(&dir)).unwrap_or_else(|e| {
        panic!(
            "kernel `{name}` is not installed in {}: {e}; run scripts/test.sh to provision it",
            dir.display()
        )
    })
}

async fn launch(name: &str) -> Kernel {
    let opts = LaunchOptions {
        start_timeout: Duration::from_secs(60),
        env: vec![
            ("PYDEVD_DISABLE_FILE_VALIDATION".into(), "1".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
        ],
        ..LaunchOptions::default()
    };
    Kernel::launch(&spec(name), &opts)
        .await
        .unwrap_or_else(|e| {
            panic!("kernel `{name}` did not start: {e}; run scripts/test.sh to provision it")
        })
}

/// What one execute request produced.
#[derive(Debug, Default)]
struct Reply {
    stdout: String,
    other_outputs: Vec<serde_json::Value>,
    status: String,
}

/// Run `code`, collecting every IOPub message of the request until the kernel is idle and the
/// shell reply has arrived (stream text may come in many pieces).
async fn run(kernel: &mut Kernel, code: &str, limit: Duration) -> Reply {
    let msg_id = kernel.execute(code).await.expect("execute_request");
    let deadline = Instant::now() + limit;
    let mut reply = Reply::default();
    let (mut idle, mut replied) = (false, false);
    while !(idle && replied) {
        let ev = kernel
            .next_event_until(deadline)
            .await
            .unwrap_or_else(|e| panic!("kernel died while running a cell: {e}"))
            .unwrap_or_else(|| {
                panic!(
                    "no reply within {limit:?} (idle={idle}, replied={replied}, got {reply:?}) for:\n{}",
                    &code[..code.len().min(2_000)]
                )
            });
        match ev {
            Event::IoPub(m) if m.parent_id == msg_id => match m.msg_type.as_str() {
                "status" => idle |= m.str_field("execution_state") == "idle",
                "stream" if m.str_field("name") == "stdout" => {
                    reply.stdout.push_str(m.str_field("text"))
                }
                "execute_input" => {}
                _ => reply.other_outputs.push(m.content.clone()),
            },
            Event::Shell(m) if m.parent_id == msg_id => {
                replied = true;
                reply.status = m.str_field("status").to_string();
            }
            _ => {}
        }
    }
    reply
}

fn params(names: &[String], values: &[String]) -> Parameters {
    let mut p = Parameters::new();
    for (n, v) in names.iter().zip(values) {
        p.set(n, Value::Str(v.clone()));
    }
    p
}

fn report_mismatches(kernel: &str, names: &[String], values: &[String], got: &[String]) {
    let bad: Vec<String> = names
        .iter()
        .zip(values)
        .zip(got)
        .filter(|((_, v), g)| hex(v) != **g)
        .take(10)
        .map(|((n, v), g)| format!("  {n} = {v:?}\n    expected {}\n    got      {g}", hex(v)))
        .collect();
    assert!(
        bad.is_empty(),
        "{kernel}: strings did not round-trip (first {}):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn corpus_is_deterministic_and_covers_the_hard_characters() {
    let a = corpus(0x00C0_FFEE, PYTHON_STRINGS, Alphabet::Full);
    assert_eq!(a, corpus(0x00C0_FFEE, PYTHON_STRINGS, Alphabet::Full));
    assert!(a.len() >= 3_000);
    let all: String = a.concat();
    for c in [
        '\0',
        '\r',
        '\t',
        '\x0b',
        '\x1b',
        '\x7f',
        '\u{e9}',
        '\u{2028}',
        '\u{2029}',
        '\u{feff}',
        '\u{ffff}',
        '\u{d7ff}',
        '\u{e000}',
        '\u{1f600}',
        '\u{10ffff}',
        '\'',
        '"',
        '\\',
        '`',
    ] {
        assert!(all.contains(c), "corpus lacks {c:?}");
    }
    assert!(a.iter().any(String::is_empty));
    assert!(a.iter().any(|s| s.chars().count() >= 1_000));
    assert!(a.iter().any(|s| s.contains("os.system(")));
    assert!(a.iter().any(|s| s.contains("${x}")));
    let b = corpus(0xBA5E, BASH_STRINGS, Alphabet::BashKernel);
    assert!(b.len() >= 300);
    assert!(b.iter().all(|s| !s.contains('\0')));
}

#[test]
fn bash_refuses_nul_instead_of_truncating() {
    for s in ["\0", "a\0b", "\0\0", "x\0; echo pwned"] {
        let mut p = Parameters::new();
        p.set("p0", Value::Str(s.into()));
        let err = render_parameters(Language::Bash, &p, "Parameters").unwrap_err();
        assert!(
            matches!(err, ParamError::Unrepresentable { .. }),
            "{s:?}: {err:?}"
        );
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_kernel_reads_back_every_generated_string() {
    let started = StdInstant::now();
    let values = corpus(0x00C0_FFEE, PYTHON_STRINGS, Alphabet::Full);
    let mut kernel = launch("python3").await;
    let mut checked = 0;
    for (b, chunk) in values.chunks(PYTHON_BATCH).enumerate() {
        let names: Vec<String> = (0..chunk.len()).map(|i| format!("p{i}")).collect();
        let cell = render_parameters(Language::Python, &params(&names, chunk), "Parameters")
            .expect("Python renders every string");
        assert_python_cell_is_assignments(&cell, &names);

        let r = run(&mut kernel, &cell, Duration::from_secs(120)).await;
        assert_eq!(r.status, "ok", "batch {b}: parameters cell failed: {r:?}");
        assert!(
            r.stdout.is_empty() && r.other_outputs.is_empty(),
            "batch {b}: assignments produced output: {r:?}"
        );

        let read_back = format!(
            "import json\nprint(json.dumps([globals()[f'p{{i}}'].encode('utf-8').hex() for i in range({})]))\ndel json\nfor _i in range({}): del globals()[f'p{{_i}}']",
            chunk.len(),
            chunk.len()
        );
        let r = run(&mut kernel, &read_back, Duration::from_secs(120)).await;
        assert_eq!(r.status, "ok", "batch {b}: read-back failed: {r:?}");
        let got: Vec<String> = serde_json::from_str(r.stdout.trim_end())
            .unwrap_or_else(|e| panic!("batch {b}: read-back is not a JSON list ({e})"));
        assert_eq!(got.len(), chunk.len());
        report_mismatches("ipykernel", &names, chunk, &got);
        checked += chunk.len();
    }
    kernel.shutdown().await;
    assert!(checked >= 3_000);
    eprintln!(
        "python3: {checked} strings ({} bytes of UTF-8) round-tripped in {:.1?}",
        values.iter().map(String::len).sum::<usize>(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_kernel_reads_back_every_generated_string() {
    let started = StdInstant::now();
    let values = corpus(0xBA5E, BASH_STRINGS, Alphabet::BashKernel);
    let mut kernel = launch("bash").await;
    let mut checked = 0;
    for (b, chunk) in values.chunks(BASH_BATCH).enumerate() {
        let names: Vec<String> = (0..chunk.len()).map(|i| format!("p{i}")).collect();
        let cell = render_parameters(Language::Bash, &params(&names, chunk), "Parameters")
            .expect("bash renders every NUL-free string");
        assert_bash_cell_is_assignments(&cell, &names);

        let r = run(&mut kernel, &cell, Duration::from_secs(120)).await;
        assert_eq!(r.status, "ok", "batch {b}: parameters cell failed: {r:?}");
        assert!(
            r.stdout.trim().is_empty(),
            "batch {b}: assignments produced output: {r:?}"
        );

        // One `pN:HEX` line per variable; bash_kernel adds `\r` and a trailing newline.
        let read_back: String = names
            .iter()
            .map(|n| {
                format!("printf '{n}:%s\\n' \"$(printf '%s' \"${n}\" | od -An -v -tx1 | tr -d ' \\n')\"; unset {n}\n")
            })
            .collect();
        let r = run(&mut kernel, read_back.trim_end(), Duration::from_secs(120)).await;
        assert_eq!(r.status, "ok", "batch {b}: read-back failed: {r:?}");
        let lines: Vec<&str> = r
            .stdout
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), names.len(), "batch {b}: {:?}", r.stdout);
        let got: Vec<String> = lines
            .iter()
            .zip(&names)
            .map(|(l, n)| {
                l.strip_prefix(&format!("{n}:"))
                    .unwrap_or_else(|| panic!("batch {b}: expected {n}: in {l:?}"))
                    .to_string()
            })
            .collect();
        report_mismatches("bash_kernel", &names, chunk, &got);
        checked += chunk.len();
    }
    kernel.shutdown().await;
    assert!(checked >= 300);
    eprintln!(
        "bash: {checked} strings ({} bytes of UTF-8) round-tripped in {:.1?}",
        values.iter().map(String::len).sum::<usize>(),
        started.elapsed()
    );
}

/// Regression: papermill's `shlex.quote` rendering let bash_kernel's pty/readline act on
/// control characters inside the quotes (`^U` killed the typed line so the rest of the value
/// ran as a command, `^S` froze the kernel). nbpipe renders such values as `$'...'` with
/// byte escapes; each control character must survive and nothing may run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_control_characters_are_data_not_keystrokes() {
    let marker = std::env::temp_dir().join(format!("nbpipe-injected-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut kernel = launch("bash").await;
    let mut failures = Vec::new();
    for c in (1u8..0x20).chain([0x7f]).map(char::from) {
        if c == '\n' {
            continue;
        }
        let value = format!("x{c} touch {} #", marker.display());
        let mut p = Parameters::new();
        p.set("p0", Value::Str(value.clone()));
        let cell = render_parameters(Language::Bash, &p, "Parameters").unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            run(&mut kernel, &cell, Duration::from_secs(60)),
        )
        .await;
        if r.is_err() {
            failures.push(format!("{c:?}: the kernel never answered"));
            kernel = launch("bash").await;
            continue;
        }
        if marker.exists() {
            failures.push(format!("{c:?}: the value ran as code"));
            let _ = std::fs::remove_file(&marker);
        }
        let r = run(
            &mut kernel,
            "printf '%s' \"$p0\" | od -An -v -tx1 | tr -d ' \\n'; unset p0",
            Duration::from_secs(10),
        )
        .await;
        if r.stdout.trim() != hex(&value) {
            failures.push(format!("{c:?}: read back {:?}", r.stdout.trim()));
        }
    }
    kernel.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
