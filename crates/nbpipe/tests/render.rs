//! Browser test of the HTML report: a rich notebook rendered by `nbpipe-render` is opened in
//! headless Chromium, which must show it like a notebook and must not let the notebook's script
//! reach the page.
//!
//! Needs `/usr/bin/chromium` (Debian package `chromium`; CI installs it). Without it the test
//! fails and says so: a report nobody opened in a browser is not tested. The screenshot and the
//! page are kept under `$CARGO_TARGET_DIR/test-artifacts/` (or `target/test-artifacts/`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A 2×2 red PNG (RGB, 8 bits), with valid CRCs and zlib stream.
const RED_PNG: [u8; 73] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a,
    0x73, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x44, 0x0c, 0x10, 0x0a, 0x00, 0x1f, 0xee, 0x03, 0xfd, 0x8b, 0x5f, 0x14, 0xd4, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// How long one Chromium run may take before the test gives up on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

fn rich_notebook() -> Value {
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD.encode(RED_PNG);
    let svg = concat!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"120\" height=\"60\">",
        "<script>parent.document.body.innerHTML='PW'+'NED by svg'</script>",
        "<rect width=\"120\" height=\"60\" rx=\"8\" fill=\"#208ffb\"/>",
        "<text x=\"60\" y=\"36\" text-anchor=\"middle\" fill=\"white\" font-size=\"16\">SVG</text></svg>"
    );
    let html_output = concat!(
        "<table border=\"1\" class=\"dataframe\"><thead><tr><th></th><th>city</th><th>sales</th></tr></thead>",
        "<tbody><tr><th>0</th><td>Lyon</td><td>12</td></tr><tr><th>1</th><td>Oslo</td><td>7</td></tr></tbody></table>",
        "<script>parent.document.body.innerHTML='PWNED'</script>",
        "<script>document.body.insertAdjacentHTML('beforeend','<p>frame script ran</p>')</script>"
    );
    let traceback = [
        "\u{1b}[0;31m---------------------------------------------------------------------------\u{1b}[0m",
        "\u{1b}[0;31mZeroDivisionError\u{1b}[0m                         Traceback (most recent call last)",
        "Cell \u{1b}[0;32mIn[3], line 1\u{1b}[0m\n\u{1b}[0;32m----> 1\u{1b}[0m \u{1b}[38;5;241m1\u{1b}[39m\u{1b}[38;5;241m/\u{1b}[39m\u{1b}[38;5;241m0\u{1b}[39m\n",
        "\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero <script>parent.document.title='PW'+'NED'</script>",
    ];
    let banner_style = "style=\"color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;\"";
    let banner = |text: String| {
        json!({"cell_type": "markdown", "id": format!("banner-{}", text.len()),
               "metadata": {"tags": ["papermill-error-cell-tag"]}, "source": text})
    };
    let pm = |status: &str, duration: f64| {
        json!({"status": status, "duration": duration, "exception": status == "failed",
               "start_time": "2024-05-01T10:00:00.000000",
               "end_time": "2024-05-01T10:00:01.000000"})
    };
    json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python", "version": "3.11.2", "file_extension": ".py",
                              "pygments_lexer": "ipython3"},
            "papermill": {
                "parameters": {"region": "north", "threshold": 0.75},
                "input_path": "sales.ipynb", "output_path": "sales-out.ipynb",
                "start_time": "2024-05-01T10:00:00.000000", "end_time": "2024-05-01T10:00:04.250000",
                "duration": 4.25, "exception": true, "version": "2.6.0"
            }
        },
        "cells": [
            banner(format!("<span {banner_style}>An Exception was encountered at '<a href=\"#papermill-error-cell\">In [3]</a>'.</span>")),
            {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": [
                "# Sales render test\n",
                "\n",
                "Euler's identity $e^{i\\pi} + 1 = 0$ and a display:\n",
                "\n",
                "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$\n",
                "\n",
                "| region | target |\n|---|---:|\n| north | 10 |\n",
                "\n",
                "<script>document.body.innerHTML='PW'+'NED by markdown'</script>",
                "<img src=\"nope\" onerror=\"document.body.innerHTML='PW'+'NED by img'\">"
            ]},
            {"cell_type": "code", "id": "params", "execution_count": 1, "source": "region = \"north\"\nthreshold = 0.75",
             "metadata": {"tags": ["injected-parameters"], "papermill": pm("completed", 0.004)}, "outputs": []},
            {"cell_type": "code", "id": "load", "execution_count": 2,
             "source": "import pandas as pd\n# load and summarise\ndf = load_sales(region)\nprint(\"hello from stdout <script>x</script>\")\ndf",
             "metadata": {"papermill": pm("completed", 1.234)},
             "outputs": [
                {"output_type": "stream", "name": "stdout", "text": "hello from stdout <script>x</script>\n"},
                {"output_type": "stream", "name": "stderr", "text": "  0%|          | 0/2\r 50%|#####     | 1/2\r"},
                {"output_type": "stream", "name": "stderr", "text": "100%|##########| 2/2\n"},
                {"output_type": "display_data", "metadata": {"image/png": {"width": 48, "height": 48}},
                 "data": {"image/png": png, "text/plain": "<Figure size 2x2>"}},
                {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": svg}},
                {"output_type": "execute_result", "execution_count": 2, "metadata": {},
                 "data": {"text/html": html_output, "text/plain": "  city  sales"}}
             ]},
            banner(format!("<span id=\"papermill-error-cell\" {banner_style}>Execution using papermill encountered an exception here and stopped:</span>")),
            {"cell_type": "code", "id": "boom", "execution_count": 3, "source": "1/0",
             "metadata": {"papermill": pm("failed", 0.021)},
             "outputs": [{"output_type": "error", "ename": "ZeroDivisionError",
                          "evalue": "division by zero <script>parent.document.title='PW'+'NED'</script>",
                          "traceback": traceback}]},
            {"cell_type": "code", "id": "after", "execution_count": null, "source": "report(df)",
             "metadata": {"papermill": {"status": "pending", "duration": null, "exception": null}},
             "outputs": []}
        ]
    })
}

fn artifacts_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("test-artifacts")
}

/// Run Chromium headless on `url` with `extra` flags; returns its stdout.
fn chromium(profile: &Path, url: &str, extra: &[String]) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            // Keep sandboxed frames in the page's process: virtual time then covers their
            // scripts and messages, so the DOM dump is deterministic. Isolation still comes from
            // the frame's opaque origin, which is what this test proves.
            "--disable-features=IsolateSandboxedIframes",
            "--virtual-time-budget=3000",
            "--window-size=1200,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start `{CHROMIUM}`: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            child.kill().ok();
            child.wait().ok();
            panic!("Chromium did not finish within {CHROMIUM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap().unwrap_or_default();
    let stderr = err_reader.join().unwrap().unwrap_or_default();
    assert!(
        status.success(),
        "Chromium failed ({status}) with flags {extra:?}:\n{stderr}"
    );
    stdout
}

/// `dom` without the `srcdoc` attributes, where the frames' (escaped) source legitimately lives.
fn without_srcdoc(dom: &str) -> String {
    let mut out = String::with_capacity(dom.len());
    let mut rest = dom;
    while let Some(start) = rest.find(" srcdoc=\"") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 9..];
        let end = after.find('"').expect("srcdoc attribute is closed");
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn rich_notebook_renders_in_chromium_without_running_its_script_in_the_page() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "`{CHROMIUM}` is missing: this test opens the report in headless Chromium.\n\n\
         Install it with `apt-get install -y chromium` (CI installs it)."
    );

    let bytes = serde_json::to_vec(&rich_notebook()).unwrap();
    let nb = nbpipe_notebook::read(&bytes).expect("the test notebook is valid");
    let html = nbpipe_render::render(&nb, &nbpipe_render::RenderOptions::default());

    // Kept first, so a failure leaves the page to look at.
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("render-report.html"), &html).unwrap();
    println!("page: {}", artifacts.join("render-report.html").display());

    let temp = tempfile::tempdir().unwrap();
    let page = temp.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let url = format!("file://{}", page.display());

    // The DOM after scripts ran (virtual time lets the frames load and report their height).
    let dom = chromium(
        &temp.path().join("profile-dom"),
        &url,
        &["--dump-dom".to_owned()],
    );
    assert!(
        dom.contains("<main class=\"notebook\">"),
        "no page in:\n{dom}"
    );
    let top = without_srcdoc(&dom);
    assert!(
        !top.contains("PWNED"),
        "notebook script changed the page:\n{top}"
    );
    for expected in [
        "<title>Sales render test</title>",
        "<h1 class=\"title\">Sales render test</h1>",
        "Euler's identity",
        "hello from stdout &lt;script&gt;x&lt;/script&gt;",
        "100%|##########| 2/2",
        "ZeroDivisionError",
        "division by zero &lt;script&gt;",
        "In [3]:",
        "Out[2]:",
        "✗ failed after 0.021 s",
        "✓ completed in 1.23 s",
        "<span class=\"pill failed\">Failed</span>",
        "<th>region</th><td><code>\"north\"</code></td>",
        "src=\"data:image/png;base64,",
        "src=\"data:image/svg+xml;base64,",
        "sandbox=\"allow-scripts\"",
        "id=\"papermill-error-cell\"",
    ] {
        assert!(top.contains(expected), "`{expected}` missing from:\n{top}");
    }
    assert!(
        !top.contains("50%|"),
        "progress bar overwrites were not applied"
    );
    // The frame's own scripts did run (inside the sandbox) and sized the frame.
    let frame = &top[top.find("<iframe").unwrap()..];
    let frame = &frame[..frame.find('>').unwrap()];
    assert!(
        frame.contains("style=\"height: "),
        "the HTML output frame never reported its height: {frame}"
    );

    // The screenshot a person would see.
    let shot = temp.path().join("report.png");
    chromium(
        &temp.path().join("profile-shot"),
        &url,
        &[format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("Chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank or single-colour 1200×2000 page compresses to a few KB; a notebook is far more.
    assert!(
        png.len() > 40 * 1024,
        "screenshot is only {} bytes: the page looks empty",
        png.len()
    );

    let kept = artifacts.join("render-report.png");
    std::fs::write(&kept, &png).unwrap();
    println!("screenshot: {}", kept.display());
}
